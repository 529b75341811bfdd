"""The plan stage: how each side is served, decided before any engine starts.

Two decisions, in this order:

* adapters (:func:`plan_adapters`): a side's LoRA adapter is served ``lora`` (per
  request on the base engine, shared with the other side when the bases match) or
  ``merged`` (a merged copy of base and adapter on an engine of its own: base speed,
  one more engine's memory);
* engines (:func:`plan_engines`): ``shared`` when both sides have one engine key,
  else ``together`` (two engines when the memory estimate of both fits the limit) or
  ``one-at-a-time`` (the first released before the second starts).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ...config import Settings
from ...errors import BadInput
from .. import options
from ..generation.digests import adapter_digest, folder_digest
from ..generation.merge import is_lora, merged_copy
from .resolve import Resolved
from .sides import Side
from .spec import ShadowSpec

ENGINE_PLANS = options.RULES["engine_plan"].choices
# Share of the memory available at call time that two engines may use together.
MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class Plan:
    """Both sides as they will be served, the engine plan, and why."""

    primary: Side
    candidate: Side
    engines: str  # shared | together | one-at-a-time
    engines_reason: str
    adapter_reasons: dict  # role -> why its adapter is served the way it is

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.primary, self.candidate

    def notes(self) -> list[str]:
        """What the result should say about how the sides were served."""
        return [
            f"{s.role} {s.model.label} was served from a merged copy of its LoRA adapter "
            f"(same weights folded into the base; --adapter-mode lora serves it per request instead)"
            for s in self.sides
            if s.adapter_mode == "merged"
        ]


def plan(spec: ShadowSpec, resolved: Resolved) -> Plan:
    """Decide how each side's adapter is served (building a merged copy if needed),
    then whether the sides share an engine, run together or one at a time."""
    if not resolved.primary.regenerate:
        # A recorded primary that is not re-run has no engine: only the candidate is planned.
        candidate, why = plan_adapter(
            resolved.candidate, resolved.candidate, spec.adapter_mode, spec.memory_limit_gb, spec.cfg
        )
        reasons = {"primary": "recorded", "candidate": why}
        return Plan(resolved.primary, candidate, "single", "the primary is recorded: only the candidate runs", reasons)
    primary, candidate, adapter_reasons = plan_adapters(
        resolved.primary, resolved.candidate, spec.adapter_mode, spec.memory_limit_gb, spec.cfg
    )
    engines, reason = plan_engines(primary, candidate, spec.engine_plan, spec.memory_limit_gb)
    return Plan(primary, candidate, engines, reason, adapter_reasons)


def engine_bytes(side: Side) -> int:
    """Memory estimate of one engine: weight files, plus vLLM's KV cache on CPU, plus
    a fixed runtime overhead (512 MiB)."""
    # A merged copy not built yet weighs what its base does.
    base = Path(side.serve_path if Path(side.serve_path).is_dir() else side.model.base_path)
    weights = sum(f.stat().st_size for f in base.glob("*.safetensors")) or sum(
        f.stat().st_size for f in base.glob("*.bin")
    )
    kv = 0
    if side.backend in ("vllm", "auto") and not _cuda():
        kv = int(float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "4")) * (1 << 30))
    return weights + kv + (512 << 20)


def _cuda() -> bool:
    try:
        import torch  # deferred: torch takes seconds to import, and only a vLLM side asks

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def two_engines_fit(primary: Side, candidate: Side, memory_limit_gb: float | None) -> tuple[bool, str]:
    """Whether engines for both sides fit in memory together, and the arithmetic."""
    need = engine_bytes(primary) + engine_bytes(candidate)
    if memory_limit_gb is not None:
        limit = memory_limit_gb * (1 << 30)
        source = f"limit {memory_limit_gb:g} GiB"
    else:
        import psutil  # not a declared dependency: needed only when no limit is given

        # What is already loaded is no longer "available": count it back in.
        loaded = sum(engine_bytes(s) for s in (primary, candidate) if s.is_loaded)
        limit = (psutil.virtual_memory().available + loaded) * MEMORY_FRACTION
        source = f"{MEMORY_FRACTION:.0%} of available memory"
    return need <= limit, f"{need / (1 << 30):.1f} GiB needed, {source} = {limit / (1 << 30):.1f} GiB"


def plan_engines(
    primary: Side, candidate: Side, plan: str = "auto", memory_limit_gb: float | None = None
) -> tuple[str, str]:
    """``shared`` | ``together`` | ``one-at-a-time``, and why."""
    if plan not in ENGINE_PLANS:
        raise BadInput(f"unknown engine plan {plan!r}: choose one of {', '.join(ENGINE_PLANS)}")
    if primary.engine_key == candidate.engine_key:
        return "shared", "same base and serving options: one engine, adapters per request"
    if plan != "auto":
        return plan, "chosen"
    fits, gib = two_engines_fit(primary, candidate, memory_limit_gb)
    if fits:
        return "together", f"two engines fit ({gib})"
    return "one-at-a-time", f"two engines do not fit ({gib}): the first is released before the second starts"


def plan_adapters(
    primary: Side, candidate: Side, mode: str, memory_limit_gb: float | None, cfg: Settings
) -> tuple[Side, Side, dict]:
    """How each side's LoRA adapter is served, and why.

    ``merged``: a merged copy of base and adapter on its own engine (base speed; one
    more engine's memory). ``lora``: per request on the base engine (shared with the
    other side when the bases match; vLLM's CPU LoRA path is 4-8x slower). ``auto``
    merges a LoRA on a vLLM engine when the two engines fit in memory.
    """
    p, p_why = plan_adapter(primary, candidate, mode, memory_limit_gb, cfg)
    c, c_why = plan_adapter(candidate, primary, mode, memory_limit_gb, cfg)
    return p, c, {"primary": p_why, "candidate": c_why}


def plan_adapter(side: Side, other: Side, mode: str, memory_limit_gb: float | None, cfg: Settings) -> tuple[Side, str]:
    """How one side's adapter is served (``other`` shares the memory), and why."""
    if side.model.adapter is None:
        return side, "no adapter"
    chosen, reason = _adapter_choice(side, other, mode, memory_limit_gb)
    if chosen == "merged":
        side, built = _merged(side, cfg)
        return side, reason + ("; merged copy built now" if built else "; merged copy from the cache")
    return dataclasses.replace(side, adapter_mode="lora"), reason


def _adapter_choice(side: Side, other: Side, mode: str, memory_limit_gb: float | None) -> tuple[str, str]:
    adapter = side.model.adapter
    backend = side.engine_key.backend
    if mode == "lora":
        return "lora", "chosen"
    if backend == "openai":
        if mode == "merged":
            raise BadInput(
                "--adapter-mode merged needs a local engine: a remote server serves adapters "
                "by name (use --adapter-mode lora or auto)"
            )
        return "lora", "a remote server serves adapters by name"
    if not is_lora(adapter.path):
        if mode == "merged":
            raise BadInput(
                f"--adapter-mode merged: {adapter.path} is not a LoRA adapter (peft_type in "
                "adapter_config.json): use --adapter-mode lora"
            )
        return "lora", "not a LoRA adapter"
    if mode == "merged":
        return "merged", "chosen"
    if backend != "vllm":
        return "lora", f"{backend} applies LoRA at nearly base speed"
    probe = dataclasses.replace(side, merged_path=side.model.base_path + "#merged")
    fits, gib = two_engines_fit(probe, other, memory_limit_gb)
    return ("merged", f"two engines fit ({gib})") if fits else ("lora", f"a second engine does not fit ({gib})")


def _merged(side: Side, cfg: Settings) -> tuple[Side, bool]:
    """The side served from the merged copy of its adapter (built now unless cached)."""
    model = side.model
    base_digest = model.params.get("base_digest") or folder_digest(model.base_path, cfg)
    path, built = merged_copy(
        model.base_path,
        model.adapter.path,
        base_digest,
        adapter_digest(model.adapter.path, cfg),
        cfg,
        label=model.label,
    )
    return dataclasses.replace(side, adapter_mode="merged", merged_path=str(path)), built
