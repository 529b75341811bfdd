"""Small helpers the prompt and model registries share: who did it, when, short digests."""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timezone


def who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]
