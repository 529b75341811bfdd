"""``shadow()``: run a primary and a candidate model over the same inputs and judge the
difference. The Python twin of ``%%shadow``.

The body is a pipeline over one frozen ``ShadowSpec``; each stage is a function of its
own module and can be called alone:

* validate (:func:`.spec.validate`): option values checked, inputs parsed and sampled;
* resolve (:func:`.resolve.resolve`): refs -> both sides, the judge, the prompt; the cases;
* plan (:func:`.plan.plan`): adapters merged or per request; engines shared, together
  or one at a time;
* generate (:func:`.generate.generate`): one batch per side, same order, same sampling;
* compare (:func:`.compare.compare`): the per-case rows and their metrics;
* judge (:func:`.judge.ask_judge`): the judge model's preference per case, if asked;
* decide (:func:`.verdict.decide`): checks, verdict, aggregates and params -> the result;
* log (:func:`.log.log_result`): the MLflow run (kept in the home if MLflow fails);
* emit (:func:`.log.emit`): the ``ShadowRan`` event that lineage records.

Execution rules (vLLM facts measured on this project's machines) are in
:mod:`.generate` (batches) and :mod:`.plan` (engines and adapters).
"""

from __future__ import annotations

import time

from ...config import Settings
from .. import tracking
from .compare import compare
from .generate import generate
from .judge import ask_judge
from .log import emit, log_result
from .plan import plan
from .resolve import resolution_notes, resolve
from .result import ShadowResult
from .spec import validate
from .stats import Thresholds
from .verdict import decide


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
    started = time.time()
    spec = validate(
        inputs,
        primary=primary,
        candidate=candidate,
        prompt=prompt,
        n=n,
        sample_seed=sample_seed,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        judge=judge,
        name=name,
        system=system,
        response_format=response_format,
        primary_engine_args=primary_engine_args,
        candidate_engine_args=candidate_engine_args,
        engine_plan=engine_plan,
        memory_limit_gb=memory_limit_gb,
        thresholds=thresholds,
        backend=backend,
        log=log,
        cfg=cfg,
        adapter_mode=adapter_mode,
        **threshold_options,
    )
    resolved = resolve(spec)
    planned = plan(spec, resolved)
    generated = generate(planned, resolved.cases, spec.sampling)
    rows = compare(resolved, generated)
    rows = ask_judge(spec, resolved.judge, rows)
    result = decide(spec, resolved, planned, generated, rows)
    if spec.log:
        log_result(result, spec.cfg, started)
    result.warnings += resolution_notes(spec, resolved)
    emit(result)
    return result
