"""``shadow()``: run a primary and a candidate model over the same inputs and judge the
difference. The Python twin of ``%%shadow``.

The body is a pipeline over one frozen ``ShadowSpec``; each stage is a function of its
own module and can be called alone:

* validate (:func:`.spec.validate`): option values checked, inputs parsed and sampled;
* gather (:func:`.gather.gather`): cases from an app's traces, a dataset or an earlier run;
  the user's scorers checked and their calls counted (:func:`.scorers.preflight`);
* resolve (:func:`.resolve.resolve`): refs -> both sides, the judge, the prompt; the cases;
* plan (:func:`.plan.plan`): adapters merged or per request; engines shared, together
  or one at a time;
* generate (:func:`.generate.generate`): one batch per side, same order, same sampling;
  with ``on="ray"`` (:func:`.ray_generate.ray_generate`) each side is a Ray Data pass
  over batches the driver fixed;
* compare (:func:`.compare.compare`): the per-case rows and their metrics;
* replay (:func:`.recorded.replay`): a recorded primary's answers in place of a re-run,
  and how often the recorded model reproduces them;
* judge (:func:`.judge.ask_judge`): the judge model's preference per case, if asked;
* score (:func:`.scorers.score`): the user's MLflow scorers on both sides of every case;
* decide (:func:`.verdict.decide`): checks, verdict, aggregates and params -> the result;
* log (:func:`.log.log_result`): the MLflow run (kept in the home if MLflow fails) and
  one trace per generation (:func:`.traces.trace_shadow`);
* emit (:func:`.log.emit`): the ``ShadowRan`` event that lineage records.

Execution rules (vLLM facts measured on this project's machines) are in
:mod:`.generate` (batches) and :mod:`.plan` (engines and adapters).
"""

from __future__ import annotations

import dataclasses
import time

from ...backends.progress import progress_bar
from ...config import Settings
from .. import tracking
from . import scorers as scoring
from .compare import compare
from .cost import require_prices
from .gather import annotate, gather
from .generate import generate
from .inputs import candidate_prompt_column
from .judge import ask_judge
from .log import emit, log_result
from .plan import plan
from .ray_generate import check_models_reachable, ray_generate
from .recorded import read_against_reproduction, replay, sampling_warning
from .resolve import comparison_name, resolution_notes, resolve
from .result import ShadowResult
from .spec import validate
from .stats import Thresholds
from .verdict import decide


@tracking.bounded_command
def shadow(
    inputs=None,
    *,
    primary: str | None = None,
    candidate: str | None = None,
    prompt: str | None = None,
    candidate_prompt: str | None = None,
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
    from_traces: str | None = None,
    trace_filter: str | None = None,
    since: str | None = None,
    from_dataset: str | None = None,
    baseline: str | None = None,
    baseline_side: str = "candidate",
    scorers=(),
    max_scorer_calls: int | None = None,
    prices: dict | None = None,
    on: str = "kernel",
    address: str | None = None,
    concurrency: int | None = None,
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
        ``primary="recorded"`` (with ``from_traces``): the primary side is the answer
        each trace recorded, not a re-run.
    prompt : str, optional
        A prompt ref; inputs then fill its template variables, and its response
        format (a JSON schema) turns on the format-validity check.
    candidate_prompt : str, optional
        Another version of ``prompt`` for the candidate (``summarize/3`` against
        ``prompt="summarize@production"``): the same inputs fill each side's version;
        ``candidate`` then defaults to the primary's model.
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
        Record one MLflow run (params, metrics, per-case table) and one MLflow trace per
        generation, linked to it.
    from_traces : str, optional
        An MLflow experiment (name or id) whose traces are the cases (the app's
        production history); ``trace_filter`` (MLflow's trace filter syntax) and
        ``since`` (``7d``, ``12h``) select them, ``n`` samples them.
    from_dataset : str, optional
        An MLflow evaluation dataset: its inputs fill ``prompt``'s variables (or hold
        a ``messages``/``question``/``prompt`` request); its expectations go to the scorers.
    baseline, baseline_side
        An earlier shadow run whose ``baseline_side`` answers (``candidate`` or
        ``primary``) are the primary side: today's candidate against what was recorded.
    scorers : list of mlflow.genai.scorers.Scorer
        Run on both sides of every case; each is one more quality check.
    max_scorer_calls : int, optional
        Refuse a run whose scorers would be called more often (``Settings.max_scorer_calls``).
    prices : dict, optional
        Model ref (or label, or name) -> price, over ``Settings.prices``:
        ``"0.15/1M in,0.60/1M out"`` or ``"2.50/h"`` (serving hardware). The result shows
        each side's cost of 1,000 requests; ``max_cost_ratio=1.5`` fails the verdict when
        the candidate costs more than 1.5x the primary (lower 95% bound).
    on : str
        ``kernel`` (default: generate in this process) or ``ray``: each side one Ray Data
        pass on the cluster at ``address`` (default ``Settings.ray_address``; none: a local
        Ray started for the session), ``concurrency`` generator actors per side (default
        1: a vLLM engine per actor is memory-heavy). Same batches, result and MLflow run as
        the kernel path; a remote cluster needs a tracking server and model folders it reaches.

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
        candidate_prompt=candidate_prompt,
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
        from_traces=from_traces,
        trace_filter=trace_filter,
        since=since,
        from_dataset=from_dataset,
        baseline=baseline,
        baseline_side=baseline_side,
        scorers=scorers,
        max_scorer_calls=max_scorer_calls,
        prices=prices,
        on=on,
        address=address,
        concurrency=concurrency,
        **threshold_options,
    )
    spec = gather(spec)
    # Scorers are refused, and their calls counted against the limit, before any generation.
    scorer_set = (
        scoring.preflight(spec.scorers, len(spec.indices), spec.max_scorer_calls, thresholds=spec.thresholds)
        if spec.scorers
        else None
    )
    if scorer_set is not None:  # what the scorers will cost, said before anything runs
        progress_bar(total=0, desc=scorer_set.summary, bar_format="{desc}", leave=True).close()
    resolved = resolve(spec)
    named = comparison_name(resolved) if spec.name is None else None
    if named:  # two prompt versions: the name says which
        spec = dataclasses.replace(spec, name=named)
    require_prices(spec.prices, (resolved.primary, resolved.candidate), spec.thresholds)  # before any generation
    if spec.on == "ray":  # a remote cluster cannot read this machine's model folders: said before any merge
        check_models_reachable(spec.address, (resolved.primary, resolved.candidate), spec.cfg)
    planned = plan(spec, resolved)
    if spec.on == "ray":
        generated = ray_generate(
            planned, resolved.cases, spec.sampling, address=spec.address, concurrency=spec.concurrency, cfg=spec.cfg
        )
    else:
        generated = generate(planned, resolved.cases, spec.sampling)
    reproduction = None
    if spec.recorded:
        generated, reproduction = replay(
            generated, planned.primary, spec.evidence, resolved.cases, spec.thresholds.alpha
        )
    rows = annotate(compare(resolved, generated), spec)
    rows = candidate_prompt_column(rows, resolved.cases)
    rows = ask_judge(spec, resolved.judge, rows)
    outcome = scoring.score(scorer_set, resolved.cases, rows, thresholds=spec.thresholds) if scorer_set else None
    if outcome is not None:
        rows = outcome.rows
    result = decide(spec, resolved, planned, generated, rows, scorer_checks=outcome.checks if outcome else ())
    if reproduction is not None:
        read_against_reproduction(result, reproduction)
    result.warnings += _notes(spec, resolved, planned, scorer_set, outcome)
    if spec.log:
        log_result(result, spec.cfg, started, messages=[c.messages for c in resolved.cases])
    emit(result)
    return result


def _notes(spec, resolved, planned, scorer_set, outcome) -> list[str]:
    """What qualifies the comparison: how refs resolved, what the source skipped, sampling
    that differs between a recording and the new side, scorer calls and failures."""
    notes = resolution_notes(spec, resolved)
    if spec.evidence is not None:
        notes += list(spec.evidence.notes)
        if spec.recorded:
            warning = sampling_warning(planned.primary.recorded, spec.sampling)
            notes += [warning] if warning else []
    if scorer_set is not None:
        notes.append(scorer_set.summary)
    if outcome is not None:
        notes += list(outcome.warnings)
    return notes
