"""``check_adapter()``: the Python twin of ``%adapter_check``.

Static check first (configs and safetensors headers only); the behavioral check runs
only when nothing is breaking, since a shape mismatch would not even load.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ...backends import safetensors_header as st
from ...backends.files import sha256_file
from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from .. import events, options, tracking
from ..generation.resolve import resolve_model
from ..paths import shown_path
from .behavior import behavior_check, load_probes, write_behavior_traces
from .report import AdapterReport, Finding
from .static import adapter_config, static_check


def _resolve_adapter(ref: str, cfg: Settings, used: list | None = None) -> tuple[Path, str | None]:
    """The adapter folder and, when known locally, the base it was trained on; a registered
    adapter's version is added to ``used``."""
    path = Path(ref).expanduser()
    if path.exists() or "/" in ref or ref.startswith("."):
        acfg = adapter_config(path)
        trained_on = acfg.get("base_model_name_or_path") or ""
        return path.resolve(), (trained_on if trained_on and Path(trained_on).is_dir() else None)
    resolved = _resolved(ref, cfg, used)
    if resolved.adapter is None:
        raise BadInput(f"{ref} is a base model, not an adapter: give an adapter folder or a registered adapter")
    return Path(resolved.adapter.path), resolved.base_path


def _resolved(ref: str, cfg: Settings, used: list | None):
    """``resolve_model(ref)``, noting a registered version in ``used`` (the run links it)."""
    resolved = resolve_model(ref, cfg=cfg)
    if used is not None and resolved.version:
        used.append((resolved.name, resolved.version))
    return resolved


def _digest(paths: list[Path], cfg: Settings) -> str:
    digests = [(p.name, sha256_file(p, cache_dir=cfg.model_cache)) for p in paths]
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, d in digests).encode()).hexdigest()


def _behavior_backend(backend: str | None, cfg: Settings) -> str:
    backend = backend or ("vllm" if cfg.backend == "vllm" else "transformers")
    if backend not in ("vllm", "transformers"):
        raise BadInput(f"--backend must be vllm or transformers, got {backend!r}")
    return backend


@tracking.bounded_command
def check_adapter(
    adapter: str,
    *,
    base: str,
    old_base: str | None = None,
    probes=None,
    max_lora_rank: int = 16,
    backend: str | None = None,
    behavior: bool = True,
    max_new_tokens: int = 16,
    log: bool = True,
    cfg: Settings | None = None,
) -> AdapterReport:
    """Will this LoRA adapter survive the new base model?

    Parameters
    ----------
    adapter : str
        A PEFT adapter folder or a registered adapter ref.
    base : str
        The new base: ``default``, a model folder or a registered ref.
    old_base : str, optional
        The base the adapter was trained on; defaults to the adapter's own
        ``base_model_name_or_path`` when that is a local folder.
    probes : list of str or path, optional
        Probe prompts for the behavioral check (default: the shipped set of 16).
    max_lora_rank : int
        The rank limit of the vLLM server that will serve the adapter.
    backend : str, optional
        ``transformers`` (exact KL; default) or ``vllm`` (prompt logprobs).
    behavior : bool
        Run the behavioral check when the static check passes (default True).
    max_new_tokens : int
        Length of the reference continuations.
    log : bool
        Record an MLflow run with the report as a JSON artifact (default True).

    Returns
    -------
    AdapterReport
    """
    cfg = cfg or settings()
    started = time.time()
    checked = options.check(max_lora_rank=max_lora_rank, max_new_tokens=max_new_tokens)
    max_lora_rank, max_new_tokens = checked["max_lora_rank"], checked["max_new_tokens"]
    backend = _behavior_backend(backend, cfg)
    used: list = []  # registered versions the check reads: its run links them
    adapter_path, trained_on = _resolve_adapter(adapter, cfg, used)
    base_path = Path(_resolved(base, cfg, used).base_path)
    old_path = (
        Path(_resolved(old_base, cfg, used).base_path) if old_base else (Path(trained_on) if trained_on else None)
    )
    probe_list = load_probes(probes) if behavior else []
    result = static_check(adapter_path, base_path, old_base_dir=old_path, max_lora_rank=max_lora_rank, base_label=base)
    report = AdapterReport(
        adapter=adapter,
        base=base,
        old_base=old_base or (shown_path(old_path, cfg=cfg) if old_path else None),
        findings=list(result.findings),
        static=result.stats,
    )
    b = None
    if behavior and report.verdict != "breaking":
        b = behavior_check(
            str(adapter_path),
            str(base_path),
            old_base_path=str(old_path) if old_path else None,
            probes=probe_list,
            backend=backend,
            max_new_tokens=max_new_tokens,
            cfg=cfg,
        )
        report.findings += b.findings
        report.metrics, report.per_probe, report.backend = b.metrics, b.per_probe, b.backend
    else:
        why = "the adapter does not fit the new base" if report.verdict == "breaking" else "static only"
        report.findings.append(Finding("info", "behavior", "adapter", message=f"behavioral check skipped: {why}"))
    if log:
        report.digests = _digests(adapter_path, base_path, old_path, cfg)
        try:
            report.run_id = _log(report, max_lora_rank, cfg, started, time.time(), models=used)
        except TrackingError as e:  # the report stands; the run waits in the home
            report.warnings.append(str(e))
            report.run_key = getattr(e, "key", None)
        if b is not None and b.traces:  # each greedy continuation, as a trace linked to the run
            traced = write_behavior_traces(b, report.run_id, cfg)
            report.trace_ids = traced.trace_ids
            if traced.note:
                report.warnings.append(traced.note)
    events.emit(
        events.AdapterChecked(
            adapter=adapter,
            base=base,
            verdict=report.verdict,
            run_id=report.run_id,
            run_key=report.run_key,
            findings=len(report.findings),
        )
    )
    return report


def _digests(adapter_path: Path, base_path: Path, old_path: Path | None, cfg: Settings) -> dict:
    weights = adapter_path / "adapter_model.safetensors"
    if not weights.is_file():
        weights = adapter_path / "adapter_model.bin"
    out = {
        "adapter": _digest([weights], cfg) if weights.is_file() else "",
        "base": _digest(st.weight_files(base_path), cfg),
    }
    if old_path is not None:
        out["old_base"] = _digest(st.weight_files(old_path), cfg)
    return out


def _log(report: AdapterReport, max_lora_rank: int, cfg: Settings, started: float, ended: float, models=()) -> str:
    counts = {f"findings_{s}": len(report.by(severity=s)) for s in ("breaking", "warning", "info")}
    metrics = {k: v for k, v in report.metrics.items() if isinstance(v, (int, float))}
    return tracking.log_run(
        run_name=f"adapter_check {Path(report.adapter).name} on {Path(report.base).name}",
        tags={
            "llmops.kind": "adapter_check",
            "llmops.verdict": report.verdict,
            "llmops.adapter_digest": report.digests.get("adapter", ""),
            "llmops.base_digest": report.digests.get("base", ""),
            "llmops.old_base_digest": report.digests.get("old_base", ""),
        },
        # Paths as people share them (relative to the notebook, ~/...); refs pass unchanged.
        params={
            "adapter": shown_path(report.adapter, cfg=cfg),
            "base": shown_path(report.base, cfg=cfg),
            "old_base": shown_path(report.old_base, cfg=cfg) if report.old_base else "",
            "backend": report.backend or "",
            "max_lora_rank": max_lora_rank,
        },
        metrics={
            **metrics,
            **counts,
            "static_bytes_read": report.static.get("bytes_read", 0),
            "static_seconds": report.static.get("seconds", 0.0),
        },
        dicts={"adapter_report.json": report.to_dict()},
        cfg=cfg,
        start_time=started,
        end_time=ended,
        models=models,
    )
