"""What a shadow run records as MLflow params: refs, digests, prompt, sampling, plans.

The same dict is ``ShadowResult.params``, so code reading a result and a person reading
the run see the same names. The promotion gate reads a run's evidence from these names:
``{side}_model_version`` / ``{side}_model_digest`` (the registry version and its manifest
digest) and ``{side}_prompt`` / ``{side}_prompt_digest`` (each side's prompt version;
equal on both sides when they share one, "" without a registered model or a prompt).
"""

from __future__ import annotations

import json

from ...config import Settings
from ..generation.digests import folder_digest
from ..paths import shown_path
from ..tracking import public_uri, redact
from .generate import Generated
from .plan import Plan
from .resolve import Resolved, prompt_label
from .sides import ROLES, Side
from .spec import ShadowSpec


def run_params(spec: ShadowSpec, resolved: Resolved, plan: Plan, generated: Generated, name: str) -> dict:
    """Every param of the comparison's run, in the order they are logged."""
    prompt, schema, sampling = resolved.prompt, resolved.schema, spec.sampling
    return {
        "name": name,
        **model_params(plan.primary, spec.cfg),
        **model_params(plan.candidate, spec.cfg),
        "prompt": f"{prompt.name}/{prompt.version}" if prompt else "",
        "prompt_digest": getattr(prompt, "digest", "") if prompt else "",
        **prompt_params(resolved),
        "response_format": json.dumps(schema, sort_keys=True) if schema else "",
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "seed": sampling.seed,
        "top_p": sampling.top_p,
        "n_inputs": len(spec.items),
        "n_cases": len(resolved.cases),
        "n_requested": spec.n if spec.n is not None else "",
        "sample_seed": spec.sample_seed,
        "judge": spec.judge or "",
        "engine_plan": plan.engines,
        "engine_plan_reason": plan.engines_reason,
        "adapter_mode": spec.adapter_mode,
        **{f"{s.role}_adapter_mode": s.adapter_mode for s in plan.sides},
        **{f"{role}_adapter_mode_reason": why for role, why in plan.adapter_reasons.items()},
        **{f"{role}_{k}": v for role in ROLES for k, v in generated.serving[role].items()},
        "thresholds": json.dumps(spec.thresholds.as_dict(), sort_keys=True),
        **source_params(spec, plan.primary),
        **placement_params(spec, generated),
    }


def placement_params(spec: ShadowSpec, generated: Generated) -> dict:
    """Where the sides were generated: ``on`` always; on Ray, the actors per side and the
    cluster (its label, credentials and secrets removed: a run travels)."""
    if spec.on != "ray":
        return {"on": spec.on}
    label = getattr(generated, "cluster", "")
    return {
        "on": "ray",
        "ray_concurrency": getattr(generated, "concurrency", spec.concurrency or ""),
        "ray_cluster": redact(public_uri(label)) if label else "",
        "ray_batch_size": getattr(generated, "batch_size", ""),
        "ray_batches_per_side": getattr(generated, "batches", ""),
    }


def prompt_params(resolved: Resolved) -> dict:
    """Each side's prompt version and its digest (the shared prompt on both sides when
    the candidate has none of its own)."""
    out = {}
    for role in ROLES:
        prompt = resolved.prompt_of(role)
        out[f"{role}_prompt"] = prompt_label(prompt)
        out[f"{role}_prompt_digest"] = (getattr(prompt, "digest", "") or "") if prompt is not None else ""
    return out


def source_params(spec: ShadowSpec, primary: Side) -> dict:
    """Where the cases came from and, for a recorded primary, what the recording says answered."""
    out = {}
    if spec.evidence is not None:
        out["source"] = spec.evidence.source
        out["source_kind"] = spec.source
    if primary.recorded is not None:
        m = primary.recorded
        out.update(
            {
                "primary_ref": "recorded",
                "primary_recorded_ref": m.ref or "",
                "primary_recorded": m.describe(),
                "primary_recorded_version": m.version or "",
                "primary_recorded_digest": m.digest or "",
                "primary_recorded_temperature": m.temperature if m.temperature is not None else "",
                "primary_regenerated": primary.regenerate,
            }
        )
    if spec.scorers:
        out["scorers"] = ",".join(getattr(s, "name", str(s)) for s in spec.scorers)
    return out


def model_params(side: Side, cfg: Settings) -> dict:
    """One side's model: ref, label, base and adapter with their digests, engine options."""
    m, p = side.model, side.role
    if not side.regenerate:  # a recording: no files to digest, what it says is in source_params
        return {
            f"{p}_ref": "recorded",
            f"{p}_label": m.label,
            f"{p}_model_digest": "",
            f"{p}_base": "",
            f"{p}_base_digest": "",
        }
    # Paths as people share them (relative to the notebook, <home>/..., ~/...): a run
    # travels to other machines; the absolute paths stay in the engine log.
    return {
        f"{p}_ref": m.ref,
        f"{p}_label": m.label,
        f"{p}_model_version": f"{m.name}/{m.version}" if m.version else "",
        # The registry's manifest digest: what the gate matches with the alias's version now.
        f"{p}_model_digest": (m.digest or "") if m.version else "",
        f"{p}_base": shown_path(m.base_path, cfg=cfg),
        f"{p}_base_digest": m.params.get("base_digest") or folder_digest(m.base_path, cfg),
        f"{p}_adapter": shown_path(m.adapter.path, cfg=cfg) if m.adapter else "",
        f"{p}_adapter_digest": (m.params.get("adapter_digest") or folder_digest(m.adapter.path, cfg))
        if m.adapter
        else "",
        f"{p}_engine_args": json.dumps(side.cfg.engine_args, sort_keys=True, default=str),
    }
