"""Small helpers the prompt and model registries share: who did it, when, short digests."""

from __future__ import annotations

from datetime import datetime, timezone

from ...config import Settings
from ..tracking import current_user


def who(cfg: Settings | None = None) -> str:
    """The author of registry work as MLflow knows them (see :func:`..tracking.current_user`)."""
    return current_user(cfg)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]
