"""The registry kinds by name: ``"prompt"`` and ``"model"`` in, the kind object out.

Public functions keep taking the kind as a word (``move_alias("prompt", ...)``,
``pin("model", ...)``); they look the object up here once and never ask again.
"""

from __future__ import annotations

from ...errors import BadInput
from .base import RegistryKind
from .models import MODELS
from .prompts import PROMPTS

# The same words, in the same order, as refs.KINDS (the ref grammar knows the words only).
KINDS: dict[str, RegistryKind] = {k.name: k for k in (PROMPTS, MODELS)}


def kind_of(kind) -> RegistryKind:
    """The kind object named ``kind`` (a kind object is returned as it is).

    Raises
    ------
    BadInput
        When ``kind`` names no kind.
    """
    if isinstance(kind, RegistryKind):
        return kind
    found = KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise BadInput(f"unknown kind {kind!r}: choose prompt or model")
    return found
