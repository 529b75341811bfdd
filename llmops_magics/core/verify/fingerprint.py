"""Digests of what a generation took and gave, as lineage records them per generation.

Plain functions of their inputs (no project imports), so the generation and shadow code
that records them and the verify code that compares them agree on one definition.
"""

from __future__ import annotations

import hashlib
import json


def text_digest(text: str | None) -> str:
    """``sha256:<hex>`` of an answer's text (UTF-8)."""
    return "sha256:" + hashlib.sha256((text or "").encode()).hexdigest()


def messages_digest(messages) -> str:
    """``sha256:<hex>`` of the messages sent (roles and contents, canonical JSON)."""
    canonical = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
