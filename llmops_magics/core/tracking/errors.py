"""MLflow errors classified by their error code, never by their message text.

Every call that may fail goes through :func:`mlflow_errors` (or :func:`refused`), so an
``MlflowException`` or a dropped connection reaches a notebook as one typed line.
"""

from __future__ import annotations

import contextlib

from ...config import Settings, settings
from ...errors import LlmopsError, TrackingError
from .redact import describe, public_uri

# MLflow's codes for "no such thing": file stores and REST servers say it differently.
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def error_code(e: BaseException) -> str:
    """MLflow's error code of ``e`` ('' for errors that are not MLflow's)."""
    return getattr(e, "error_code", "") or ""


def is_not_found(e: BaseException) -> bool:
    return error_code(e) in NOT_FOUND_CODES


def refused(e: BaseException, cfg: Settings | None = None, doing: str | None = None) -> TrackingError:
    """The one-line error for a call MLflow answered with a failure (URI redacted)."""
    uri = public_uri((cfg or settings()).resolved_tracking_uri)
    what = f" to {doing}" if doing else ""
    return TrackingError(f"MLflow at {uri} refused{what}: {describe(e)}")


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
        if not_found is not None and is_not_found(e):
            raise not_found from e
        raise refused(e, cfg, doing) from e
