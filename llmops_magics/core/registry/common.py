"""Small helpers the prompt and model registries share: who did it, when, why, short digests."""

from __future__ import annotations

from datetime import datetime, timezone

from ...config import Settings
from ...errors import BadInput
from ..tracking import current_user


def who(cfg: Settings | None = None) -> str:
    """The author of registry work as MLflow knows them (see :func:`..tracking.current_user`)."""
    return current_user(cfg)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]


def forced_why(force: bool, why: str | None) -> str | None:
    """The reason of a forced alias move, on one line (None unless ``force``).

    Raises
    ------
    BadInput
        ``force`` without a reason, or a reason without ``force``.
    """
    why = " ".join(str(why or "").split()) or None
    if force and not why:
        raise BadInput('--force needs a reason: --force --why "..." (it is recorded in the alias history)')
    if why and not force:
        raise BadInput("--why goes with --force: a move on evidence cites its run instead")
    return why
