"""Model refs -> something a backend can load.

A ref is ``default``, a local model folder, or a local PEFT adapter folder (its base
comes from ``adapter_config.json``). Registered names (``chat``, ``chat/2``,
``chat@champion``) are resolved by :mod:`llmops_magics.core.registry.models`, which registers a resolver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...backends.base import Adapter
from ...backends.default_models import chat_model_dir, embedding_model_dir
from ...config import DEFAULT_CHAT_REF, DEFAULT_EMBEDDING_REF, Settings, settings
from ...errors import BadInput, ModelNotFound
from ..tracking import unavailable

# Resolvers for named refs (the registry adds one); each returns a ResolvedModel or None.
_named_resolvers: list = []


@dataclass(frozen=True)
class ResolvedModel:
    """A model ref resolved to files: the base folder and an optional adapter."""

    ref: str
    name: str
    base_path: str
    adapter: Adapter | None = None
    version: str | None = None
    kind: str = "chat"
    params: dict = field(default_factory=dict)
    digest: str | None = None  # the registry's manifest digest, for registered models
    via: str = ""  # where a registered version came from when not the registry: "pin" or "lockfile"

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}" if self.version else self.name


def resolution_note(ref, resolved) -> str | None:
    """One line saying a ref was resolved without the registry (from a pin or the
    lockfile) while MLflow was unreachable; None otherwise."""
    via = getattr(resolved, "via", "")
    if via == "lockfile" or (via == "pin" and unavailable()):
        return f"{ref} resolved to {resolved.label} from the {via} (the registry was unreachable)"
    return None


def register_resolver(fn) -> None:
    """Add a resolver for named refs (used by the model registry)."""
    if fn not in _named_resolvers:
        _named_resolvers.append(fn)


def resolve_model(ref: str | None = None, *, kind: str = "chat", cfg: Settings | None = None) -> ResolvedModel:
    """Resolve a model ref.

    Parameters
    ----------
    ref : str, optional
        ``default``, ``default-embedding``, a local folder, or a registered name.
        None means ``Settings.default_model``.
    kind : str
        ``chat`` or ``embedding``.
    """
    cfg = cfg or settings()
    ref = (ref or (cfg.default_model if kind == "chat" else DEFAULT_EMBEDDING_REF)).strip()
    if ref == DEFAULT_CHAT_REF:
        return ResolvedModel(ref, "default", str(chat_model_dir(cfg.model_cache)), kind="chat")
    if ref == DEFAULT_EMBEDDING_REF:
        return ResolvedModel(ref, "default-embedding", str(embedding_model_dir()), kind="embedding")
    for resolver in _named_resolvers:
        found = resolver(ref, cfg)
        if found is not None:
            return found
    path = Path(ref).expanduser()
    if path.is_dir():
        return _resolve_folder(ref, path, cfg)
    hint = "'default', 'default-embedding', a local model folder"
    if _named_resolvers:
        hint += ", or a registered model (see %llm_model list)"
    raise ModelNotFound(f"unknown model {ref!r}: give {hint}")


def resolve_chat_model(
    ref: str | None = None, *, cfg: Settings | None = None, role: str | None = None, purpose: str = ""
) -> ResolvedModel:
    """Resolve a ref that must name a chat model (``llm``, each side of ``shadow``, a judge).

    Parameters
    ----------
    ref : str, optional
        As for :func:`resolve_model`.
    role : str, optional
        The option that named it (``primary``): an unknown ref then says ``--primary: ...``
        and an embedding model ``--primary 'ref' is ...``.
    purpose : str
        Why a chat model is needed, ending the message about an embedding model.

    Raises
    ------
    ModelNotFound
        The ref names no model.
    BadInput
        It names an embedding model.
    """
    try:
        model = resolve_model(ref, cfg=cfg)
    except ModelNotFound as e:
        if role is None:
            raise
        raise ModelNotFound(f"--{role}: {e}") from None
    if model.kind != "chat":
        named = f"--{role} {ref!r}" if role else model.label
        raise BadInput(f"{named} is an embedding model" + (f": {purpose}" if purpose else ""))
    return model


def _resolve_folder(ref: str, path: Path, cfg: Settings) -> ResolvedModel:
    path = path.resolve()
    adapter_config = path / "adapter_config.json"
    if adapter_config.is_file():
        base_ref = json.loads(adapter_config.read_text()).get("base_model_name_or_path") or ""
        if not base_ref or not Path(base_ref).is_dir():
            raise ModelNotFound(
                f"adapter {path} names base {base_ref!r}, which is not a local folder: "
                "register the adapter with its base (%llm_model register NAME --base ... --adapter ...)"
            )
        base = resolve_model(base_ref, cfg=cfg)
        return ResolvedModel(ref, path.name, base.base_path, Adapter(path.name, str(path)))
    if (path / "config.json").is_file():
        kind = "embedding" if (path / "modules.json").is_file() else "chat"
        return ResolvedModel(ref, path.name, str(path), kind=kind)
    raise ModelNotFound(f"{path} is not a model folder: it has no config.json or adapter_config.json")
