"""The two sides of a comparison: each a chat model and the engine settings it runs under."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...config import Settings
from ..evidence.recorded import RecordedModel
from ..generation import engines
from ..generation.engines import CacheKey
from ..generation.resolve import ResolvedModel, resolve_chat_model

ROLES = ("primary", "candidate")
# Params of a registered model that describe requests, not the engine.
_REQUEST_PARAMS = {"temperature", "max_tokens", "seed", "top_p", "system", "base_digest", "adapter_digest"}


@dataclass(frozen=True)
class Side:
    """One side of the comparison: the model, the settings its engine runs under, and how
    its adapter (if any) is served: ``lora`` (per request on the base engine) or
    ``merged`` (a merged copy of base and adapter on an engine of its own)."""

    role: str
    model: ResolvedModel
    cfg: Settings
    backend: str
    adapter_mode: str = "none"
    merged_path: str | None = None
    # A recorded primary (``--primary recorded``, ``--baseline``): what the recording says
    # answered, and whether that model still resolves and is re-run for the reproduction
    # baseline (``regenerate``); a side that is not re-run has no engine.
    recorded: RecordedModel | None = None
    regenerate: bool = True

    @property
    def serve_path(self) -> str:
        """The weights its engine loads."""
        return self.merged_path or self.model.base_path

    @property
    def serve_adapter(self):
        """The adapter sent with each request (none once merged in)."""
        return None if self.merged_path else self.model.adapter

    @property
    def engine_key(self) -> CacheKey:
        """The key of the engine that serves this side: equal keys share one engine."""
        return engines.engine_key(self.serve_path, self.cfg, backend=self.backend)

    @property
    def is_loaded(self) -> bool:
        """Whether its engine is already up (so it costs no new memory)."""
        return engines.is_loaded(self.serve_path, self.cfg, backend=self.backend)


def resolve_side(role: str, ref: str, engine_args: dict | None, cfg: Settings, backend: str | None) -> Side:
    """The side named ``ref``, with its engine options: the settings', then the registered
    model's serving params, then ``engine_args`` (each overriding the one before)."""
    model = resolve_chat_model(ref, cfg=cfg, role=role, purpose="shadow compares chat models")
    # A registered model's params are its serving options (``--param dtype=bfloat16``);
    # explicit options win over them.
    args = {**cfg.engine_args, **serving_params(model.params), **(engine_args or {})}
    return Side(role, model, dataclasses.replace(cfg, engine_args=args), backend or cfg.backend)


def serving_params(params: dict) -> dict:
    """Engine options recorded with a registered model (nested ``engine_args`` or flat)."""
    nested = params.get("engine_args")
    if isinstance(nested, dict):
        return dict(nested)
    return {k: v for k, v in params.items() if k not in _REQUEST_PARAMS and k != "engine_args"}
