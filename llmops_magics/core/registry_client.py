"""Shared plumbing for the prompt and model registries: MLflow errors become typed ones.

Every registry call goes through :func:`mlflow_errors`, so an ``MlflowException`` (or a
dropped connection) never reaches a notebook as a traceback.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from datetime import datetime, timezone

from ..config import Settings, settings
from ..errors import LlmopsError, TrackingError
from .tracking import first_line, public_uri  # noqa: F401  (re-exported for the registry modules)


@contextlib.contextmanager
def mlflow_errors(doing: str, cfg: Settings | None = None, *, not_found: LlmopsError | None = None):
    """Turn MLflow failures into typed errors.

    ``not_found`` is raised instead when MLflow says the thing does not exist.
    """
    try:
        yield
    except LlmopsError:
        raise
    except Exception as e:
        code = getattr(e, "error_code", "")
        if not_found is not None and code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise not_found from e
        uri = public_uri((cfg or settings()).resolved_tracking_uri)
        raise TrackingError(f"MLflow at {uri} refused to {doing}: {type(e).__name__}: {first_line(e)}") from e


def who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]
