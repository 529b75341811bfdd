"""``shadow()``: run a primary and a candidate model over the same inputs and judge the
difference. The Python twin of ``%%shadow``.

Execution rules (vLLM facts measured on this project's machines):

* greedy outputs depend on what else is in the batch, so each side runs ALL cases as
  ONE batch, in the same order, with the same sampling and seed; a model compared
  with itself therefore gives zero differing cases;
* same base weights and serving options (differing only by adapter, or adapter vs
  none): ONE engine, adapters per request (``LoRARequest``), one batch per side,
  never both sides mixed in one batch (measured slower, and it changes outputs);
* different bases or serving options (``engine_args`` such as dtype or eager vs
  compiled, which change outputs of the same weights): two engines when the memory
  estimate of both fits the limit, else one after the other, releasing the first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...backends.base import GenerationRequest, GenerationResult, Sampling
from ...config import Settings, settings
from ...errors import BadInput, LlmopsError, ModelNotFound, TrackingError
from .. import events, options, tracking
from ..generation import engines
from ..generation.resolve import ResolvedModel, resolution_note, resolve_model
from .compare import compare_cases, judge_messages, judge_order, parse_vote
from .result import ShadowResult
from .stats import (
    Thresholds,
    differing_check,
    judge_check,
    latency_check,
    length_check,
    overall,
    paired_rate_check,
    similarity_check,
)

ENGINE_PLANS = options.RULES["engine_plan"].choices
# Share of the memory available at call time that two engines may use together.
MEMORY_FRACTION = 0.8


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Case:
    """One input: its position in the given inputs and the messages sent to both sides."""

    id: int
    input: Any
    messages: tuple[dict, ...]

    @property
    def request_text(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else self.messages[-1]["content"]


def parse_inputs(inputs) -> list:
    """Cell text (one input per line, or JSON lines), a list, or a pandas DataFrame/Series."""
    if inputs is None:
        items: list = []
    elif isinstance(inputs, str):
        items = []
        for lineno, line in enumerate(inputs.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    items.append(json.loads(line))
                except ValueError as e:
                    raise BadInput(
                        f"input line {lineno} looks like JSON but does not parse ({e.msg}): fix it or give plain text"
                    ) from None
            else:
                items.append(line)
    elif hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # DataFrame
        items = inputs.to_dict("records")
    elif hasattr(inputs, "tolist") and hasattr(inputs, "index"):  # Series
        items = inputs.tolist()
    elif isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        raise BadInput(f"inputs must be text, a list, or a pandas DataFrame/Series, not {type(inputs).__name__}")
    if not items:
        raise BadInput(
            "no inputs: write one input per line below %%shadow, or pass --inputs VAR "
            "(a list or a pandas DataFrame/Series)"
        )
    for i, item in enumerate(items):
        if not isinstance(item, (str, dict)):
            raise BadInput(f"input row {i} is a {type(item).__name__}: give text or a dict of template variables")
    return items


def sample_indices(total: int, n: int | None, seed: int) -> list[int]:
    """Reproducible sample of ``n`` of ``total`` case indices, in input order."""
    if n is None or n >= total:
        return list(range(total))
    if n < 1:
        raise BadInput(f"--n must be at least 1, got {n}")
    return sorted(random.Random(seed).sample(range(total), n))


def build_cases(items: list, indices: list[int], prompt=None, system: str | None = None) -> list[Case]:
    """Turn inputs into messages: through the prompt template, or as user messages."""
    cases = []
    for i in indices:
        item = items[i]
        if isinstance(item, dict) and "messages" in item and prompt is None:
            messages = tuple({"role": m["role"], "content": str(m["content"])} for m in item["messages"])
        elif prompt is not None:
            messages = tuple(prompt.render(_variables(item, i, prompt)))
        else:
            messages = (({"role": "system", "content": system},) if system else ()) + (
                {"role": "user", "content": _plain_text(item, i)},
            )
        cases.append(Case(i, item, messages))
    return cases


def _variables(item, row: int, prompt) -> dict:
    needed = sorted(prompt.variables)
    if isinstance(item, str):
        if len(needed) == 1:
            return {needed[0]: item}
        if not needed:
            return {}
        raise BadInput(
            f"prompt {prompt.name} needs variables {', '.join(needed)} but input row {row} is plain text: "
            "give JSON lines or a DataFrame with those columns"
        )
    missing = [v for v in needed if v not in item]
    if missing:
        raise BadInput(
            f"template variable {missing[0]!r} of prompt {prompt.name} is missing from the inputs "
            f"(first at row {row}: {_preview(item)}): add it as a column or JSON key"
        )
    return {k: item[k] for k in needed}


def _plain_text(item, row: int) -> str:
    if isinstance(item, str):
        return item
    for key in ("prompt", "input", "text", "question"):
        if key in item:
            return str(item[key])
    raise BadInput(
        f"input row {row} ({_preview(item)}) has no prompt, input, text or messages key: "
        "name a template with --prompt or add one of those keys"
    )


def _preview(item, width: int = 80) -> str:
    text = json.dumps(item, default=str) if isinstance(item, dict) else str(item)
    return text if len(text) <= width else text[: width - 1] + "…"


def _resolve_prompt(prompt: str | None):
    if prompt is None:
        return None
    try:
        from ..registry.prompts import resolve_prompt
    except ImportError:
        raise BadInput(
            "prompt templates need the prompt registry (llmops_magics.core.registry.prompts), "
            "which is not installed here: give the inputs as messages instead"
        ) from None
    return resolve_prompt(prompt)


# ---------------------------------------------------------------- models and engines


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

    @property
    def serve_path(self) -> str:
        """The weights its engine loads."""
        return self.merged_path or self.model.base_path

    @property
    def serve_adapter(self):
        """The adapter sent with each request (none once merged in)."""
        return None if self.merged_path else self.model.adapter

    @property
    def engine_identity(self) -> tuple:
        return engines.engine_key(self.serve_path, self.cfg, backend=self.backend)


def _side(role: str, ref: str, extra_engine_args: dict | None, cfg: Settings, backend: str | None) -> Side:
    try:
        model = resolve_model(ref, cfg=cfg)
    except ModelNotFound as e:
        raise ModelNotFound(f"--{role}: {e}") from None
    if model.kind != "chat":
        raise BadInput(f"--{role} {ref!r} is an embedding model: shadow compares chat models")
    # A registered model's params are its serving options (``--param dtype=bfloat16``);
    # explicit options win over them.
    args = {**cfg.engine_args, **serving_params(model.params), **(extra_engine_args or {})}
    return Side(role, model, dataclasses.replace(cfg, engine_args=args), backend or cfg.backend)


# Params of a registered model that describe requests, not the engine.
_REQUEST_PARAMS = {"temperature", "max_tokens", "seed", "top_p", "system", "base_digest", "adapter_digest"}


def serving_params(params: dict) -> dict:
    """Engine options recorded with a registered model (nested ``engine_args`` or flat)."""
    nested = params.get("engine_args")
    if isinstance(nested, dict):
        return dict(nested)
    return {k: v for k, v in params.items() if k not in _REQUEST_PARAMS and k != "engine_args"}


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
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _is_loaded(side: Side) -> bool:
    # A side whose engine is already up costs no new memory.
    return engines.is_loaded(side.serve_path, side.cfg, backend=side.backend)


def _two_engines_fit(primary: Side, candidate: Side, memory_limit_gb: float | None) -> tuple[bool, str]:
    """Whether engines for both sides fit in memory together, and the arithmetic."""
    need = engine_bytes(primary) + engine_bytes(candidate)
    if memory_limit_gb is not None:
        limit = memory_limit_gb * (1 << 30)
        source = f"limit {memory_limit_gb:g} GiB"
    else:
        import psutil

        # What is already loaded is no longer "available": count it back in.
        loaded = sum(engine_bytes(s) for s in (primary, candidate) if _is_loaded(s))
        limit = (psutil.virtual_memory().available + loaded) * MEMORY_FRACTION
        source = f"{MEMORY_FRACTION:.0%} of available memory"
    return need <= limit, f"{need / (1 << 30):.1f} GiB needed, {source} = {limit / (1 << 30):.1f} GiB"


def plan_engines(
    primary: Side, candidate: Side, plan: str = "auto", memory_limit_gb: float | None = None
) -> tuple[str, str]:
    """``shared`` | ``together`` | ``one-at-a-time``, and why."""
    if plan not in ENGINE_PLANS:
        raise BadInput(f"unknown engine plan {plan!r}: choose one of {', '.join(ENGINE_PLANS)}")
    if primary.engine_identity == candidate.engine_identity:
        return "shared", "same base and serving options: one engine, adapters per request"
    if plan != "auto":
        return plan, "chosen"
    fits, gib = _two_engines_fit(primary, candidate, memory_limit_gb)
    if fits:
        return "together", f"two engines fit ({gib})"
    return "one-at-a-time", f"two engines do not fit ({gib}): the first is released before the second starts"


def _adapter_digest(adapter_path: str, cfg: Settings) -> str:
    # The weights and the LoRA config (rank, alpha, targets) both decide the merged weights.
    config = Path(adapter_path) / "adapter_config.json"
    extra = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
    return hashlib.sha256(f"{folder_digest(adapter_path, cfg)}:{extra}".encode()).hexdigest()


def plan_adapters(
    primary: Side, candidate: Side, mode: str, memory_limit_gb: float | None, cfg: Settings
) -> tuple[Side, Side, dict]:
    """How each side's LoRA adapter is served, and why.

    ``merged``: a merged copy of base and adapter on its own engine (base speed; one
    more engine's memory). ``lora``: per request on the base engine (shared with the
    other side when the bases match; vLLM's CPU LoRA path is 4-8x slower). ``auto``
    merges a LoRA on a vLLM engine when the two engines fit in memory.
    """
    from ..generation.merge import is_lora, merged_copy

    sides, why = {}, {}
    for side, other in ((primary, candidate), (candidate, primary)):
        adapter = side.model.adapter
        if adapter is None:
            sides[side.role], why[side.role] = side, "no adapter"
            continue
        backend = side.engine_identity[0]
        if mode == "lora":
            chosen, reason = "lora", "chosen"
        elif backend == "openai":
            if mode == "merged":
                raise BadInput(
                    "--adapter-mode merged needs a local engine: a remote server serves adapters "
                    "by name (use --adapter-mode lora or auto)"
                )
            chosen, reason = "lora", "a remote server serves adapters by name"
        elif not is_lora(adapter.path):
            if mode == "merged":
                raise BadInput(
                    f"--adapter-mode merged: {adapter.path} is not a LoRA adapter (peft_type in "
                    "adapter_config.json): use --adapter-mode lora"
                )
            chosen, reason = "lora", "not a LoRA adapter"
        elif mode == "merged":
            chosen, reason = "merged", "chosen"
        elif backend != "vllm":
            chosen, reason = "lora", f"{backend} applies LoRA at nearly base speed"
        else:
            probe = dataclasses.replace(side, merged_path=side.model.base_path + "#merged")
            fits, gib = _two_engines_fit(probe, other, memory_limit_gb)
            chosen, reason = (
                ("merged", f"two engines fit ({gib})") if fits else ("lora", f"a second engine does not fit ({gib})")
            )
        if chosen == "merged":
            base_digest = side.model.params.get("base_digest") or folder_digest(side.model.base_path, cfg)
            path, built = merged_copy(
                side.model.base_path,
                adapter.path,
                base_digest,
                _adapter_digest(adapter.path, cfg),
                cfg,
                label=side.model.label,
            )
            side = dataclasses.replace(side, adapter_mode="merged", merged_path=str(path))
            reason += "; merged copy built now" if built else "; merged copy from the cache"
        else:
            side = dataclasses.replace(side, adapter_mode="lora")
        sides[side.role], why[side.role] = side, reason
    return sides["primary"], sides["candidate"], why


def _generate(side: Side, cases: list[Case], sampling: Sampling):
    engine = engines.get_engine(side.serve_path, side.cfg, backend=side.backend, label=side.model.label)
    requests = [GenerationRequest(c.messages, sampling, side.serve_adapter) for c in cases]
    # One batch per side, same order on both sides: batch composition changes outputs.
    t0 = time.perf_counter()
    results = engine.generator.generate(requests, progress=f"{side.role}: {side.model.label}")
    return engine.generator, engine.serving(), results, time.perf_counter() - t0


def run_sides(primary: Side, candidate: Side, cases: list[Case], sampling: Sampling, plan: str):
    """Generate both sides under the engine plan; returns (results_p, results_c, info)."""
    info: dict = {}
    first, second = primary, candidate
    if plan == "one-at-a-time" and _is_loaded(candidate) and not _is_loaded(primary):
        first, second = candidate, primary  # start with the engine already up
    gen1, serving1, res1, s1 = _generate(first, cases, sampling)
    if plan == "one-at-a-time":
        engines.release(gen1)
        if _is_loaded(second) and first.engine_identity[0] != "transformers":
            # In-process vLLM engines share process-global parallel state that closing
            # one tears down ("pipeline model parallel group is not initialized"):
            # a survivor must be restarted, not reused.
            stale, _ = engines.get_generator(second.serve_path, second.cfg, backend=second.backend)
            engines.release(stale)
    gen2, serving2, res2, s2 = _generate(second, cases, sampling)
    info[first.role] = (serving1, s1)
    info[second.role] = (serving2, s2)
    if first is candidate:
        res1, res2 = res2, res1
    return res1, res2, info


# ---------------------------------------------------------------- judge


def _judge_unavailable(judge: str, why) -> BadInput:
    return BadInput(f"judge {judge!r} is unavailable: {why}; give a chat model ref or drop --judge")


def resolve_judge(judge: str | None, cfg: Settings) -> ResolvedModel | None:
    """Resolve the judge before any generation, so a bad ref fails fast."""
    if judge is None:
        return None
    try:
        model = resolve_model(judge, cfg=cfg)
    except LlmopsError as e:
        raise _judge_unavailable(judge, e) from None
    if model.kind != "chat":
        raise _judge_unavailable(judge, f"{model.label} is an embedding model")
    return model


def run_judge(
    judge: str, model: ResolvedModel, cases: list[Case], res_p, res_c, seed: int, cfg: Settings, backend: str | None
) -> list[int]:
    """Pairwise preferences from a judge model, order randomized per case."""
    try:
        generator, _ = engines.get_generator(model.base_path, cfg, backend=backend)
    except LlmopsError as e:
        raise _judge_unavailable(judge, e) from None
    order = judge_order(len(cases), seed)
    sampling = Sampling(max_tokens=4, temperature=0.0, seed=seed)
    requests = [
        GenerationRequest(judge_messages(c.request_text, p.text, q.text, first), sampling, model.adapter)
        for c, p, q, first in zip(cases, res_p, res_c, order)
    ]
    votes = generator.generate(requests, progress=f"judge: {model.label}")
    return [parse_vote(v.text, first) for v, first in zip(votes, order)]


# ---------------------------------------------------------------- digests and logging


def folder_digest(path: str | None, cfg: Settings, pattern: str = "*.safetensors") -> str:
    """sha256 of a model folder's weight files (cached by size and mtime)."""
    if not path:
        return ""
    from ...backends.files import sha256_file

    files = sorted(Path(path).glob(pattern)) or sorted(Path(path).glob("*.bin"))
    if not files:
        return ""
    digests = [(f.name, sha256_file(f, cache_dir=cfg.model_cache)) for f in files]
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, d in digests).encode()).hexdigest()


def _model_params(side: Side, cfg: Settings) -> dict:
    m, p = side.model, side.role
    return {
        f"{p}_ref": m.ref,
        f"{p}_label": m.label,
        f"{p}_base": m.base_path,
        f"{p}_base_digest": m.params.get("base_digest") or folder_digest(m.base_path, cfg),
        f"{p}_adapter": m.adapter.path if m.adapter else "",
        f"{p}_adapter_digest": (m.params.get("adapter_digest") or folder_digest(m.adapter.path, cfg))
        if m.adapter
        else "",
        f"{p}_engine_args": json.dumps(side.cfg.engine_args, sort_keys=True, default=str),
    }


def _log(result: ShadowResult, prompt, cfg: Settings, started: float, ended: float) -> str:
    cols = list(result.rows[0]) if result.rows else []
    table = {c: [_cell(r[c]) for r in result.rows] for c in cols}
    links = (
        tracking.prompt_link_tags(prompt.name, prompt.version)
        if prompt is not None and getattr(prompt, "version", None)
        else {}
    )
    return tracking.log_run(
        run_name=f"shadow {result.name}",
        tags={
            "llmops.kind": "shadow",
            "llmops.verdict": result.label,
            "llmops.primary": result.primary,
            "llmops.candidate": result.candidate,
            **links,
        },
        params=result.params,
        metrics={
            **result.aggregates,
            **{f"p_value.{c.name.replace(' ', '_')}": c.p_value for c in result.checks if c.p_value is not None},
        },
        tables={"cases.json": table},
        cfg=cfg,
        start_time=started,
        end_time=ended,
    )


def _cell(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return v


# ---------------------------------------------------------------- the twin


@tracking.bounded_command
def shadow(
    inputs=None,
    *,
    primary: str,
    candidate: str,
    prompt: str | None = None,
    n: int | None = None,
    sample_seed: int = 0,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    judge: str | None = None,
    name: str | None = None,
    system: str | None = None,
    response_format: dict | None = None,
    primary_engine_args: dict | None = None,
    candidate_engine_args: dict | None = None,
    engine_plan: str = "auto",
    memory_limit_gb: float | None = None,
    thresholds: Thresholds | None = None,
    backend: str | None = None,
    log: bool = True,
    cfg: Settings | None = None,
    adapter_mode: str = "auto",
    **threshold_options,
) -> ShadowResult:
    """Compare a candidate model with the primary over the same inputs.

    Parameters
    ----------
    inputs : str, list, pandas DataFrame or Series
        Text with one input per line (JSON lines give template variables, or
        ``{"messages": [...]}``), a list of texts/dicts, or a DataFrame/Series.
    primary, candidate : str
        Model refs (``default``, a folder, an adapter folder, a registered name).
    prompt : str, optional
        A prompt ref; inputs then fill its template variables, and its response
        format (a JSON schema) turns on the format-validity check.
    n, sample_seed
        Compare a reproducible sample of ``n`` inputs.
    max_tokens, temperature, seed
        Sampling, identical on both sides.
    judge : str, optional
        A chat model ref that states a pairwise preference per case (order randomized).
    name : str, optional
        Name of the comparison (MLflow run name).
    system : str, optional
        A system message for plain-text inputs.
    response_format : dict, optional
        A JSON schema the answers must satisfy (overrides the prompt's).
    primary_engine_args, candidate_engine_args : dict, optional
        Serving options per side (e.g. ``{"dtype": "bfloat16"}``): a serving-config
        change of the same weights is a candidate too.
    engine_plan : str
        ``auto`` (two engines when they fit ``memory_limit_gb``, else one at a time),
        ``together`` or ``one-at-a-time``; sides sharing an engine always share it.
    memory_limit_gb : float, optional
        Memory two engines may use together; default 80% of available memory.
    adapter_mode : str
        How a side's LoRA adapter is served: ``merged`` (a merged copy of base and
        adapter, built once and cached, on its own engine: base speed), ``lora`` (per
        request on the base engine: less memory, 4-8x slower on vLLM's CPU build), or
        ``auto`` (merged on vLLM when two engines fit in memory).
    thresholds : Thresholds, optional
        What counts as equivalent; single fields may be given as keyword options
        (e.g. ``max_differing_rate=0.1``).
    log : bool
        Record one MLflow run (params, metrics, per-case table).

    Returns
    -------
    ShadowResult
    """
    cfg = cfg or settings()
    started = time.time()
    # Every option value is checked before any input is read or engine started.
    sampling = options.sampling(max_tokens, temperature, seed)
    checked = options.check(
        n=n,
        sample_seed=sample_seed,
        memory_limit_gb=memory_limit_gb,
        engine_plan=engine_plan,
        adapter_mode=adapter_mode,
    )
    n, sample_seed, memory_limit_gb, engine_plan, adapter_mode = (
        checked[k] for k in ("n", "sample_seed", "memory_limit_gb", "engine_plan", "adapter_mode")
    )
    primary_engine_args = options.check_engine_args(primary_engine_args, "primary_engine_args")
    candidate_engine_args = options.check_engine_args(candidate_engine_args, "candidate_engine_args")
    thresholds = _thresholds(thresholds, threshold_options)
    items = parse_inputs(inputs)
    indices = sample_indices(len(items), n, sample_seed)
    side_p = _side("primary", primary, primary_engine_args, cfg, backend)
    side_c = _side("candidate", candidate, candidate_engine_args, cfg, backend)
    judge_model = resolve_judge(judge, cfg)
    prompt_ref = _resolve_prompt(prompt)
    schema = response_format if response_format is not None else getattr(prompt_ref, "response_format", None)
    cases = build_cases(items, indices, prompt_ref, system)
    side_p, side_c, adapter_why = plan_adapters(side_p, side_c, adapter_mode, memory_limit_gb, cfg)
    plan, plan_reason = plan_engines(side_p, side_c, engine_plan, memory_limit_gb)

    t0 = time.perf_counter()
    res_p, res_c, info = run_sides(side_p, side_c, cases, sampling, plan)
    generate_s = time.perf_counter() - t0
    same_tokenizer = side_p.model.base_path == side_c.model.base_path
    comparisons = compare_cases(res_p, res_c, response_format=schema, same_tokenizer=same_tokenizer)
    prefs = run_judge(judge, judge_model, cases, res_p, res_c, seed, cfg, backend) if judge_model else None

    rows = _rows(cases, res_p, res_c, comparisons, prefs)
    checks = _checks(rows, thresholds, schema is not None, prefs is not None)
    name = name or f"{side_p.model.label}-vs-{side_c.model.label}"
    params = {
        "name": name,
        **_model_params(side_p, cfg),
        **_model_params(side_c, cfg),
        "prompt": f"{prompt_ref.name}/{prompt_ref.version}" if prompt_ref else "",
        "prompt_digest": getattr(prompt_ref, "digest", "") if prompt_ref else "",
        "response_format": json.dumps(schema, sort_keys=True) if schema else "",
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "seed": sampling.seed,
        "top_p": sampling.top_p,
        "n_inputs": len(items),
        "n_cases": len(cases),
        "n_requested": n if n is not None else "",
        "sample_seed": sample_seed,
        "judge": judge or "",
        "engine_plan": plan,
        "engine_plan_reason": plan_reason,
        "adapter_mode": adapter_mode,
        **{f"{s.role}_adapter_mode": s.adapter_mode for s in (side_p, side_c)},
        **{f"{role}_adapter_mode_reason": why for role, why in adapter_why.items()},
        **{f"{role}_{k}": v for role in ("primary", "candidate") for k, v in info[role][0].items()},
        "thresholds": json.dumps(thresholds.as_dict(), sort_keys=True),
    }
    result = ShadowResult(
        name=name,
        primary=side_p.model.label,
        candidate=side_c.model.label,
        rows=rows,
        verdict=overall(checks),
        aggregates=_aggregates(rows, info, generate_s),
        params=params,
        sampling=sampling,
        thresholds=thresholds,
        extra={
            "prompt": prompt_ref,
            "response_format": schema,
            "engine_plan": plan,
            "notes": [_adapter_note(s) for s in (side_p, side_c) if s.adapter_mode == "merged"],
        },
        serving={role: info[role][0] for role in ("primary", "candidate")},
    )
    if log:
        try:
            result.run_id = _log(result, prompt_ref, cfg, started, time.time())
        except TrackingError as e:  # the comparison stands; the run waits in the home
            result.warnings.append(str(e))
            result.run_key = getattr(e, "key", None)
    result.warnings += [
        n
        for n in (
            resolution_note(primary, side_p.model),
            resolution_note(candidate, side_c.model),
            resolution_note(prompt, prompt_ref) if prompt_ref is not None else None,
        )
        if n
    ]
    events.emit(
        events.ShadowRan(
            name=name,
            verdict=result.label,
            run_id=result.run_id,
            run_key=result.run_key,
            primary=side_p.model.ref,
            candidate=side_c.model.ref,
            n_cases=len(cases),
            primary_label=result.primary,
            candidate_label=result.candidate,
            prompt=params["prompt"],
            differing_cases=len(result.differing_cases),
            engine_plan=plan,
            serving=result.serving,
        )
    )
    return result


def _adapter_note(side: Side) -> str:
    return (
        f"{side.role} {side.model.label} was served from a merged copy of its LoRA adapter "
        f"(same weights folded into the base; --adapter-mode lora serves it per request instead)"
    )


def _thresholds(thresholds: Thresholds | None, values: dict) -> Thresholds:
    base = thresholds or Thresholds()
    base = dataclasses.replace(base, **options.check_thresholds(dataclasses.asdict(base)))
    return dataclasses.replace(base, **options.check_thresholds(values)) if values else base


def _rows(cases, res_p: list[GenerationResult], res_c: list[GenerationResult], comparisons, prefs) -> list[dict]:
    rows = []
    for i, (case, p, c, cmp) in enumerate(zip(cases, res_p, res_c, comparisons)):
        row = {
            "id": case.id,
            "input": case.input if isinstance(case.input, str) else json.dumps(case.input, default=str),
            "prompt": case.request_text,
            "primary_output": p.text,
            "candidate_output": c.text,
            **dataclasses.asdict(cmp),
            "primary_finish_reason": p.finish_reason,
            "candidate_finish_reason": c.finish_reason,
        }
        if prefs is not None:
            row["judge_preference"] = prefs[i]
        rows.append(row)
    return rows


def _checks(rows: list[dict], t: Thresholds, has_format: bool, has_judge: bool):
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    checks = [
        differing_check([not x for x in col("exact_match")], t),
        similarity_check("edit similarity", col("edit_similarity"), t.min_edit_similarity, t),
        similarity_check(
            "embedding similarity", col("embedding_similarity"), t.min_embedding_similarity, t, seed_offset=1
        ),
        length_check(col("length_ratio"), t),
        paired_rate_check("refusal rate", col("primary_refused"), col("candidate_refused"), t, higher_is_better=False),
    ]
    if has_format:
        checks.append(
            paired_rate_check(
                "format validity", col("primary_format_valid"), col("candidate_format_valid"), t, higher_is_better=True
            )
        )
    if has_judge:
        checks.append(judge_check(col("judge_preference"), t))
    checks.append(latency_check(col("primary_latency_s"), col("candidate_latency_s"), t))
    return checks


def _aggregates(rows: list[dict], info: dict, generate_s: float) -> dict:
    import numpy as np

    def mean(k):
        vals = [r[k] for r in rows if r.get(k) is not None]
        return float(np.mean(vals)) if vals else None

    agg = {
        "n_cases": len(rows),
        "differing_cases": sum(not r["exact_match"] for r in rows),
        "exact_match_rate": mean("exact_match"),
        "edit_similarity": mean("edit_similarity"),
        "embedding_similarity": mean("embedding_similarity"),
        "length_ratio": mean("length_ratio"),
        "primary_refusal_rate": mean("primary_refused"),
        "candidate_refusal_rate": mean("candidate_refused"),
        "primary_format_valid_rate": mean("primary_format_valid"),
        "candidate_format_valid_rate": mean("candidate_format_valid"),
        "judge_preference": mean("judge_preference"),
        "generate_s": generate_s,
    }
    for side in ("primary", "candidate"):
        out_tokens = sum(r[f"{side}_tokens_out"] for r in rows)
        agg[f"{side}_latency_s"] = mean(f"{side}_latency_s")
        agg[f"{side}_tokens_in"] = sum(r[f"{side}_tokens_in"] for r in rows)
        agg[f"{side}_tokens_out"] = out_tokens
        agg[f"{side}_batch_s"] = info[side][1]
        agg[f"{side}_tokens_per_s"] = out_tokens / info[side][1] if info[side][1] > 0 else None
    return {k: v for k, v in agg.items() if v is not None}
