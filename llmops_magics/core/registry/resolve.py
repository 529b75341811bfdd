"""Refs to versions, the way everything that runs resolves them: pins, registry, lockfile.

A pinned name gives its pinned version without a registry call; an explicit version
gives that version; while MLflow does not answer, the lockfile in force still
resolves what it holds. :func:`resolve` does it for either kind; :func:`resolve_prompt`
and the model resolver behind ``resolve_model("chat@champion")`` (:mod:`.serving`) use it.
"""

from __future__ import annotations

from dataclasses import replace

from ...config import Settings, settings
from ...errors import BadInput
from ..tracking import MlflowUnavailable, bounded_command
from .base import RegistryKind
from .kinds import kind_of
from .lockfile import locked
from .manifest import ModelRef
from .pins import enforce_lock, pinned
from .prompts import PromptRef
from .refs import Ref, parse_ref


def resolve_parsed(kind: RegistryKind, ref: Ref, cfg: Settings) -> PromptRef | ModelRef:
    """:func:`resolve` for a ref already parsed and a kind already looked up."""
    enforce_lock(cfg)  # under llmops-magics verify: the notebook's lockfile, before anything resolves
    pin = pinned(kind, ref, cfg)
    if pin is not None and pin.ref is not None:
        return replace(pin.ref, via="pin")
    try:
        return kind.find(ref, cfg)
    except MlflowUnavailable:
        found = locked(kind, ref, cfg)
        if found is None:
            raise
        return replace(found, via="lockfile")


@bounded_command
def resolve(ref: str, kind: str | None = None, *, cfg: Settings | None = None) -> PromptRef | ModelRef:
    """Resolve a prompt or model ref to one version: the pin, else the registry, else the lockfile.

    Parameters
    ----------
    ref : str
        ``prompts:/NAME...`` or ``models:/NAME...``; with ``kind``, also ``NAME``,
        ``NAME/3`` or ``NAME@ALIAS``.
    kind : {"prompt", "model"}, optional
        Needed when ``ref`` is not a URI.

    Returns
    -------
    PromptRef or ModelRef
        With ``via`` set to "pin" or "lockfile" when the registry was not asked.

    Raises
    ------
    BadInput
        When the ref is malformed or its kind is not said.
    PromptNotFound, ModelNotFound
        When the registry has no such version.
    """
    parsed = parse_ref(ref, kind)
    if parsed.kind is None:
        raise BadInput(f"say what {ref!r} is: prompts:/{ref} or models:/{ref}")
    return resolve_parsed(kind_of(parsed.kind), parsed, cfg or settings())


@bounded_command
def resolve_prompt(ref, cfg: Settings | None = None) -> PromptRef:
    """Resolve ``name``, ``name/3``, ``name@alias`` or ``prompts:/...`` to a version.

    A pinned name gives its pinned version (``name`` or the alias it was pinned from);
    an explicit version always wins; anything else asks the registry.
    """
    if isinstance(ref, PromptRef):
        return ref
    return resolve(ref, "prompt", cfg=cfg)
