"""Registered models as generation serves them: generation's side of the registry.

It adds the resolver behind ``resolve_model("chat@champion")`` (pins, then the registry,
then the lockfile) and lets the lockfile record how this kernel's engines serve each
pinned model. Generation imports the registry, never the other way round; this package's
``__init__`` imports this module, so the resolver is in place before any ref is resolved.
"""

from __future__ import annotations

from pathlib import Path

from ...backends.base import Adapter
from ...config import Settings
from ...errors import BadInput
from ..registry.manifest import ModelRef
from ..registry.models import MODELS
from ..registry.pinset import Pin, add_lock_detail
from ..registry.refs import parse_ref
from ..registry.resolve import resolve_parsed
from ..tracking import bounded_command
from .engines import serving_for
from .resolve import ResolvedModel, register_resolver


def resolved_model(model: ModelRef, ref: str | None = None, *, via: str = "") -> ResolvedModel:
    """What a backend loads for ``model``: the base folder plus the adapter, if any.

    ``via`` ("pin", "lockfile") defaults to where ``model`` itself came from.
    """
    adapter = Adapter(f"{model.name}-v{model.version}", model.adapter_path) if model.adapter_path else None
    return ResolvedModel(
        ref or model.label,
        model.name,
        model.base_path,
        adapter,
        str(model.version),
        model.kind,
        dict(model.params),
        digest=model.digest,
        via=via or model.via,
    )


@bounded_command
def resolve_registered(ref: str, cfg: Settings) -> ResolvedModel | None:
    """The resolver behind ``resolve_model("chat@champion")``: pins first, then the registry.

    Returns None for what is not a registry ref (a folder, a path), so other resolvers
    and the folder rule get their turn.
    """
    try:
        if Path(ref).expanduser().is_dir():
            return None
    except (OSError, RuntimeError):  # "~nobody" has no home folder: not a folder either
        pass
    try:
        parsed = parse_ref(ref, "model")
    except BadInput:
        return None
    return resolved_model(resolve_parsed(MODELS, parsed, cfg), ref)


def _serving(pin: Pin) -> dict:
    return {"serving": serving_for(pin.model.base_path)} if pin.model is not None else {}


register_resolver(resolve_registered)
add_lock_detail(_serving)
