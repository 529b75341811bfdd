"""``watch()``: an app's MLflow traces over time. The Python twin of ``%llm_watch``.

A pipeline over one checked :class:`.spec.WatchSpec`; each stage is a small function:

* spec (:func:`.spec.validate`): every option checked, scorers loaded, before any read;
* ship (:func:`.spool.ship_pending`): scores an earlier watch spooled and never wrote;
* read (:func:`read`): trace infos of the window (and the baseline before it), spans only
  for traces the facts cache does not know or that still need a scorer call;
* plan (:func:`.scoring.plan_scores`): what is reused and what will be called, said in one
  line before any scorer runs;
* score (:func:`.scoring.score`): the scorer calls; new scores are spooled, then written to
  MLflow by a background thread;
* place (:func:`place`): buckets, the baseline, which buckets are tested;
* decay (:func:`decay_rows`): per scorer per bucket against the baseline (Holm across all),
  and volume, tokens, latency per bucket;
* drift (:func:`drift_rows`): the share of requests far from the baseline's, per bucket;
* canary (:func:`canary_checks`): with ``split``, each group against the control;
* changes (:func:`what_changed`): alias moves, notebook pins (lineage), versions and
  digests, on the time axis;
* flags (:func:`flags`): the flagged buckets, the first of each scorer naming what changed;
* log (:func:`log_watch`): one MLflow run in the app's experiment.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...backends.progress import progress_bar
from ...config import Settings
from ...errors import BadInput, TrackingError
from .. import tracking, viewers
from . import canary as canary_stats
from . import decay
from . import drift as drift_stats
from .changes import Change, alias_changes, explain, served_changes, served_names
from .observe import Observations, embeddings, read_window, request_texts, split_value
from .pin_changes import pin_changes
from .result import (
    COMPLETION_TOKENS,
    INPUT_DRIFT,
    LATENCY,
    PROMPT_TOKENS,
    REQUEST_CHARS,
    VOLUME,
    Flag,
    WatchResult,
)
from .scoring import plan_scores, score
from .spec import WatchSpec, validate
from .spool import ship_pending

PLOT_FILE = "watch_plot.html"
TABLE_FILE = "watch.json"
METRICS_PER_CALL = 1000  # MLflow's log_batch cap on metrics per call


@tracking.bounded_command
def watch(
    experiment: str,
    *,
    scorers=(),
    since: str = "7d",
    by: str = "day",
    baseline: str | None = None,
    filter: str | None = None,
    split: str | None = None,
    canary: str | None = None,
    margin: float = 0.05,
    n: int | None = None,
    sample_seed: int = 0,
    rescore: bool = False,
    max_scorer_calls: int | None = None,
    alpha: float = 0.05,
    drift: bool = True,
    log: bool = True,
    name: str | None = None,
    cfg: Settings | None = None,
) -> WatchResult:
    """Score an app's traces per time bucket against a baseline; flag drops, input drift and a worse canary.

    Parameters
    ----------
    experiment : str
        The app's MLflow experiment (name or id), whose traces are read.
    scorers : list
        MLflow Scorers, or ``"module:function"`` texts; each score is logged as feedback
        on its trace and reused by the next watch (by scorer name and code digest).
    since : str
        The watched window, ``[now - since, now)``: ``30d``, ``12h``.
    by : {"hour", "day", "week"}
        UTC calendar buckets.
    baseline : str, optional
        The baseline is this long before the window (``14d``); without it, the leading
        buckets holding a third of the window's traces.
    filter : str, optional
        MLflow trace filter, e.g. ``"tags.route = 'refunds'"``.
    split, canary : str, optional
        Canary: compare the groups of this trace tag / metadata key (``tags.variant``) over
        the window, unpaired; ``canary`` names the canary's value (default: each group
        against the largest). Verdicts in ``%%shadow``'s words, within ``margin``.
    n, sample_seed : int
        Watch a reproducible sample of ``n`` traces.
    rescore : bool
        Call the scorers even where an assessment of the same scorer exists.
    max_scorer_calls : int, optional
        Refuse a watch whose scorers would be called more often.
    alpha : float
        The chance of any false flag on stable traffic (Holm across buckets and scorers).
    drift : bool
        Measure input drift (embeds the requests with the default embedder).
    log : bool
        Record one MLflow run (params, per-bucket metrics, the table, the plot).

    Returns
    -------
    WatchResult
    """
    started = time.time()
    spec = validate(
        experiment,
        scorers=scorers,
        since=since,
        by=by,
        baseline=baseline,
        filter=filter,
        split=split,
        canary=canary,
        margin=margin,
        n=n,
        sample_seed=sample_seed,
        rescore=rescore,
        max_scorer_calls=max_scorer_calls,
        alpha=alpha,
        drift=drift,
        log=log,
        name=name,
        cfg=cfg,
    )
    backlog = ship_pending(spec.cfg)  # an earlier watch's unwritten scores, written in the background
    obs, plan = read(spec)
    scores = score(plan, obs.items, cfg=spec.cfg) if plan is not None else None
    values = dict(scores.values) if scores is not None else {}
    placed = place(spec, obs)
    rows, baselines, comparisons = decay_rows(spec, obs, placed, values)
    points = drift_rows(spec, obs, placed, rows) if spec.drift else []
    checks, groups, canary_notes = canary_checks(spec, obs, values)
    changes, change_notes = what_changed(spec, obs)
    cannot = _cannot_judge(spec, placed, comparisons, points, checks, values)
    result = WatchResult(
        name=spec.name,
        experiment=spec.experiment,
        buckets=placed.buckets,
        baseline=placed.text,
        tested=placed.tested,
        rows=rows,
        scorers=list(values),
        baselines=baselines,
        flags=flags(comparisons, points, placed, changes, obs, rows, level=1 - spec.alpha),
        changes=changes,
        canary=checks,
        groups=groups,
        params={**spec.params(), "by": spec.by},
        counts=_counts(obs, plan, scores, started),
        warnings=[*obs.notes, *(scores.errors if scores else ()), *canary_notes, *change_notes],
        writer=scores.writer if scores is not None else None,
        backlog=backlog if backlog is not None and backlog.total else None,
        judged=not cannot,
        cannot=cannot,
    )
    if spec.log:
        log_watch(result, spec, started)
    return result


# ---------------------------------------------------------------- read and plan


def read(spec: WatchSpec):
    """The window's observations and the scorers' plan (its summary shown before any call).

    Spans are fetched for traces the facts cache does not know; a trace it knows whose
    score cannot be reused needs its text too, so the window is read again for those
    (trace infos only, then the few spans): the plan needs the infos' assessments first.
    """

    def read_all(need_text=None) -> Observations:
        return read_window(
            spec.experiment,
            start_ms=spec.read_start_ms,
            end_ms=spec.end_ms,
            filter_string=spec.filter,
            n=spec.n,
            sample_seed=spec.sample_seed,
            need_text=need_text,
            cfg=spec.cfg,
        )

    obs = read_all()
    if not spec.scorers:
        return obs, None
    plan = _plan(spec, obs)
    if any(o.scorer_inputs is None and plan.needs(o.trace_id) for o in obs.items):
        obs = read_all(plan.needs)
        plan = _plan(spec, obs)
    # What the scorers will cost, said before anything runs (as %%shadow says it).
    progress_bar(total=0, desc=plan.summary, bar_format="{desc}", leave=True).close()
    return obs, plan


def _plan(spec: WatchSpec, obs: Observations):
    return plan_scores(obs.items, spec.scorers, rescore=spec.rescore, max_calls=spec.max_scorer_calls, cfg=spec.cfg)


# ---------------------------------------------------------------- buckets and the baseline


@dataclass(frozen=True)
class Placed:
    """Where each observation falls: its bucket (-1: the baseline before the window, or outside)."""

    buckets: list
    index: np.ndarray  # bucket per observation, -1 outside the window
    baseline: np.ndarray  # bool per observation: in the baseline
    tested: list[int]  # buckets compared with the baseline
    text: str  # what the baseline was, in words
    n_base: int = 0  # traces in the baseline


def place(spec: WatchSpec, obs: Observations) -> Placed:
    """Buckets of the window and the baseline: ``--baseline D`` before the window, else the
    leading buckets holding a third of the window's traces (:func:`.decay.baseline_buckets`)."""
    bkts = decay.buckets(spec.start_ms, spec.end_ms, spec.by)
    times = np.array([o.time_ms for o in obs.items], dtype=np.int64)
    inside = (times >= spec.start_ms) & (times < spec.end_ms)
    index = np.where(inside, decay.bucket_of(times, bkts), -1)
    if spec.baseline_start_ms is not None:
        base = (times >= spec.baseline_start_ms) & (times < spec.start_ms)
        text = f"the {spec.baseline} before the window ({int(base.sum()):,} traces)"
        return Placed(bkts, index, base, list(range(len(bkts))), text, int(base.sum()))
    counts = np.bincount(index[index >= 0], minlength=len(bkts)) if len(bkts) else np.array([], dtype=int)
    k = decay.baseline_buckets(list(counts))
    base = (index >= 0) & (index < k)
    if k:
        span = bkts[0].label if k == 1 else f"{bkts[0].label} .. {bkts[k - 1].label}"
        text = (
            f"the first {k} bucket{'s' if k > 1 else ''} ({span}, {int(base.sum()):,} traces: a third of the window's)"
        )
    else:
        text = "none: no traces in the window"
    return Placed(bkts, index, base, list(range(k, len(bkts))), text, int(base.sum()))


# ---------------------------------------------------------------- decay


def _row(bucket, measure: str, kind: str, role: str, **figures) -> dict:
    row = {
        "bucket": bucket.label,
        "start_ms": bucket.start_ms,
        "measure": measure,
        "kind": kind,
        "role": role,
        "n": 0,
        "estimate": None,
        "ci_low": None,
        "ci_high": None,
        "baseline": None,
        "diff": None,
        "diff_low": None,
        "diff_high": None,
        "adjusted_p": None,
        "flagged": False,
    }
    row.update({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()})
    return row


def _own(bucket, measure: str, role: str, values: Sequence) -> dict:
    """A bucket's own estimate and interval (baseline buckets, and traffic measures)."""
    present = [v for v in values if v is not None]
    if not present:
        return _row(bucket, measure, "mean", role)
    kind, est, ci = decay.interval(present)
    return _row(
        bucket,
        measure,
        kind,
        role,
        n=len(present),
        estimate=est,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
    )


def decay_rows(spec: WatchSpec, obs: Observations, placed: Placed, values: dict):
    """Per bucket: each scorer against the baseline (tested buckets) or alone (baseline
    buckets), and the traffic: requests, tokens, latency, request length."""
    items = obs.items
    tested = set(placed.tested)
    members = [np.flatnonzero(placed.index == b) for b in range(len(placed.buckets))]
    base_rows = np.flatnonzero(placed.baseline)
    comparisons = []
    for name, per_obs in values.items():
        base = [per_obs[i] for i in base_rows]
        for b in placed.tested:
            comparisons.append(decay.compare_bucket(name, b, base, [per_obs[i] for i in members[b]], alpha=spec.alpha))
    comparisons = decay.flag(comparisons, alpha=spec.alpha)
    by_key = {(c.name, c.bucket): c for c in comparisons}
    baselines = {}
    for name, per_obs in values.items():
        base = [per_obs[i] for i in base_rows if per_obs[i] is not None]
        baselines[name] = decay.interval(base) if base else ("rate", None, None)
    rows = []
    for b, bucket in enumerate(placed.buckets):
        role = "tested" if b in tested else "baseline"
        for name, per_obs in values.items():
            c = by_key.get((name, b))
            if c is None:
                rows.append(_own(bucket, name, role, [per_obs[i] for i in members[b]]))
                continue
            rows.append(
                _row(
                    bucket,
                    name,
                    c.kind,
                    role,
                    n=c.n,
                    estimate=c.estimate,
                    ci_low=c.ci[0] if c.ci else None,
                    ci_high=c.ci[1] if c.ci else None,
                    baseline=c.baseline_estimate,
                    diff=c.diff,
                    diff_low=c.diff_ci[0] if c.diff_ci else None,
                    diff_high=c.diff_ci[1] if c.diff_ci else None,
                    adjusted_p=c.adjusted_p,
                    flagged=c.flagged,
                )
            )
        rows.append(_row(bucket, VOLUME, "count", role, n=len(members[b]), estimate=float(len(members[b]))))
        for measure, get in (
            (PROMPT_TOKENS, lambda o: o.prompt_tokens),
            (COMPLETION_TOKENS, lambda o: o.completion_tokens),
            (LATENCY, lambda o: o.latency_s),
            (REQUEST_CHARS, lambda o: o.request_chars),
        ):
            got = [get(items[i]) for i in members[b]]
            if any(v is not None for v in got):
                rows.append(_own(bucket, measure, role, [None if v is None else float(v) for v in got]))
    return rows, baselines, comparisons


# ---------------------------------------------------------------- input drift


@dataclass(frozen=True)
class DriftFound:
    point: object  # drift.DriftPoint
    bucket: int  # index into the window's buckets
    examples: tuple[str, ...]


def drift_rows(spec: WatchSpec, obs: Observations, placed: Placed, rows: list) -> list[DriftFound]:
    """The share of each tested bucket's requests far from every baseline request (adds an
    ``input drift`` row per tested bucket), with the most typical far requests as examples."""
    base_rows = list(np.flatnonzero(placed.baseline))
    if len(base_rows) < 2 or not placed.tested:
        return []
    per_bucket = [list(np.flatnonzero(placed.index == b)) for b in placed.tested]
    base_pick, bucket_picks = drift_stats.drift_sample(per_bucket, base_rows, seed=spec.sample_seed)
    wanted = sorted(set(base_pick).union(*map(set, bucket_picks)))
    vectors = embeddings([obs.items[i] for i in wanted], cfg=spec.cfg)
    row_of = {i: k for k, i in enumerate(wanted)}
    base_vectors = vectors[[row_of[i] for i in base_pick]]
    bucket_vectors = [vectors[[row_of[i] for i in pick]] if pick else vectors[:0] for pick in bucket_picks]
    chars = [[obs.items[i].request_chars for i in pick] for pick in bucket_picks]
    points = drift_stats.input_drift(base_vectors, bucket_vectors, chars, alpha=spec.alpha)
    found = []
    for point, b, pick in zip(points, placed.tested, bucket_picks):
        ids = [obs.items[pick[j]].trace_id for j in point.examples] if point.flagged else []
        texts = request_texts(ids, cfg=spec.cfg) if ids else {}
        found.append(DriftFound(point, b, tuple(texts.get(t, "") for t in ids)))
        bucket = placed.buckets[b]
        rows.append(
            _row(
                bucket,
                INPUT_DRIFT,
                "rate",
                "tested",
                n=point.n,
                estimate=point.far_share,
                ci_low=point.ci[0],
                ci_high=point.ci[1],
                baseline=0.05,
                diff=point.far_share - 0.05,
                adjusted_p=point.adjusted_p,
                flagged=point.flagged,
            )
        )
    return found


# ---------------------------------------------------------------- canary


def canary_checks(spec: WatchSpec, obs: Observations, values: dict):
    """With ``split``: each check's canary group(s) against the control, unpaired, Holm across checks."""
    if not spec.split:
        return [], {}, []
    keys = [split_value(o, spec.split) for o in obs.items]
    in_window = [i for i, o in enumerate(obs.items) if spec.start_ms <= o.time_ms < spec.end_ms and keys[i] is not None]
    groups: dict[str, list[int]] = {}
    for i in in_window:
        groups.setdefault(keys[i], []).append(i)
    notes = []
    missing = sum(1 for i, o in enumerate(obs.items) if spec.start_ms <= o.time_ms < spec.end_ms and keys[i] is None)
    if missing:
        notes.append(f"{missing:,} traces carry no {spec.split}: left out of the canary comparison")
    sizes = {k: len(v) for k, v in groups.items()}
    if len(groups) < 2:
        notes.append(f"--split {spec.split}: {len(groups)} group(s) in the window, nothing to compare")
        return [], sizes, notes
    if spec.canary is not None and spec.canary not in groups:
        raise BadInput(
            f"--canary {spec.canary}: no trace in the window carries {spec.split} = {spec.canary!r} "
            f"(have {', '.join(sorted(groups))})"
        )
    control, canaries = canary_stats.pick_control(sizes, spec.canary)
    checks = []
    for label in canaries:
        for name, per_obs in values.items():
            checks.append(
                canary_stats.compare_groups(
                    name,
                    [per_obs[i] for i in groups[control]],
                    [per_obs[i] for i in groups[label]],
                    control_label=control,
                    canary_label=label,
                    margin=spec.margin,
                    alpha=spec.alpha,
                    seed=spec.sample_seed,
                )
            )
    return canary_stats.group_verdicts(checks, alpha=spec.alpha), sizes, notes


# ---------------------------------------------------------------- changes and flags


def what_changed(spec: WatchSpec, obs: Observations) -> tuple[list[Change], list[str]]:
    """Alias moves in the registry, notebook pins shipped to lineage, and the versions/digests
    the traces carry, oldest first."""
    names = served_names(obs.items)
    moves, notes = alias_changes(names, spec.read_start_ms, spec.end_ms, spec.cfg)
    pins, pin_notes = pin_changes(names, spec.read_start_ms, spec.end_ms, spec.cfg)
    changes = sorted([*moves, *pins, *served_changes(obs.items)], key=lambda c: c.at_ms)
    return changes, notes + pin_notes


def flags(
    comparisons, points: list[DriftFound], placed: Placed, changes, obs, rows, *, level: float = 0.95
) -> list[Flag]:
    """The flagged buckets, oldest first; each scorer's first flag names what changed just before."""
    out = []
    named = set()
    for c in sorted((c for c in comparisons if c.flagged), key=lambda c: (c.bucket, c.name)):
        first = c.name not in named
        named.add(c.name)
        out.append(
            Flag(
                bucket=placed.buckets[c.bucket].label,
                scorer=c.name,
                estimate=c.estimate,
                baseline=c.baseline_estimate,
                diff=c.diff,
                diff_ci=c.diff_ci,
                adjusted_p=c.adjusted_p,
                changes=explain(c.bucket, placed.buckets, changes) if first else (),
                level=level,
            )
        )
    first_drift = True
    for found in points:
        p = found.point
        if not p.flagged:
            continue
        out.append(
            Flag(
                bucket=placed.buckets[found.bucket].label,
                scorer=INPUT_DRIFT,
                estimate=p.far_share,
                baseline=0.05,
                diff=p.far_share - 0.05,
                diff_ci=tuple(p.ci),
                adjusted_p=p.adjusted_p,
                changes=explain(found.bucket, placed.buckets, changes) if first_drift else (),
                examples=found.examples,
                level=level,
            )
        )
        first_drift = False
    return out


def _cannot_judge(spec: WatchSpec, placed: Placed, comparisons, points, checks, values: dict) -> str:
    """Why nothing could be compared ('' when something was): a watch that tested nothing
    must not read as "nothing flagged"."""
    if any(c.p_worse is not None for c in comparisons):
        return ""
    if any(f.point.p_value is not None for f in points) or any(g.p_value is not None for g in checks):
        return ""
    hint = "give --baseline 14d or a longer --since / a smaller --by"
    in_window = int((placed.index >= 0).sum())
    if not in_window:
        why = f"no traces in the last {spec.since}"
        hint = "give a longer --since or check --filter"
    elif spec.baseline_start_ms is not None and placed.n_base == 0:
        why = f"no traces in the baseline (the {spec.baseline} before the window)"
        hint = "give a longer --baseline, or drop it to use the window's first third"
    elif not placed.tested or all(not (placed.index == b).any() for b in placed.tested):
        why = f"every trace is in the baseline ({placed.text}), no bucket is left to test"
    elif not values and not spec.drift:
        why = "no scorer and --no-drift: nothing to measure"
        hint = "give --scorer or leave drift on"
    elif values and not any(
        any(per[i] is not None for i in np.flatnonzero(placed.baseline)) for per in values.values()
    ):
        why = "the baseline has no scores"
    else:
        why = "too few scored traces in the baseline or the tested buckets to compare"
    return f"cannot judge: {why}; {hint}"


def _counts(obs: Observations, plan, scores, started: float) -> dict:
    return {
        "traces": len(obs.items),
        "spans_read": obs.spans_read,
        "skipped": obs.skipped,
        "scores_reused": plan.reused if plan is not None else 0,
        "scorer_calls": scores.called if scores is not None else 0,
        "seconds": round(time.time() - started, 2),
    }


# ---------------------------------------------------------------- the MLflow run


def log_watch(result: WatchResult, spec: WatchSpec, started: float) -> None:
    """One run in the app's experiment: params, summary metrics, the table, then each
    measure per bucket (metric history, the bucket's start as its time, its index as the
    step) and the plot as an HTML page. When MLflow fails the run waits in the home (its
    history and plot are not kept: ``log_run`` keeps tables and dicts only)."""
    table = {k: [r.get(k) for r in result.rows] for k in (result.rows[0] if result.rows else {})}
    try:
        result.run_id = tracking.log_run(
            run_name=spec.name,
            tags={"llmops.kind": "watch", "llmops.flagged": str(result.flagged).lower(), "llmops.app": spec.experiment},
            params={**spec.params(), **{f"count.{k}": v for k, v in result.counts.items()}},
            metrics={
                "flags": len(result.flags),
                "traces": result.counts.get("traces", 0),
                "scorer_calls": result.counts.get("scorer_calls", 0),
                "scores_reused": result.counts.get("scores_reused", 0),
                # split values are user data ("v2 (beta)!"): MLflow refuses a whole batch over one bad key
                **{_metric_key(f"canary_diff.{g.name}.{g.canary}"): g.diff for g in result.canary},
            },
            tables={TABLE_FILE: table},
            cfg=spec.cfg,
            experiment=spec.experiment,
            start_time=started,
            end_time=time.time(),
        )
    except TrackingError as e:  # the watch stands; the run waits in the home
        result.warnings.append(str(e))
        return
    try:
        _history_and_plot(result, spec.cfg)
    except TrackingError as e:
        result.warnings.append(f"the run's per-bucket metrics or plot were not written: {e}")


def _history_and_plot(result: WatchResult, cfg: Settings) -> None:
    index = {b.label: i for i, b in enumerate(result.buckets)}
    history = [
        (_metric_key(r["measure"]), r["estimate"], r["start_ms"], index[r["bucket"]])
        for r in result.rows
        if r["estimate"] is not None
    ]
    c = tracking.client(cfg)
    for lo in range(0, len(history), METRICS_PER_CALL):
        tracking.log_batch(c, result.run_id, metrics=history[lo : lo + METRICS_PER_CALL])
    c.log_text(result.run_id, viewers.show("watch_plot", result).html(), PLOT_FILE)


def _metric_key(measure: str) -> str:
    """An MLflow metric key (alphanumerics, ``_ - . /``; spaces as ``_``) from any text."""
    return re.sub(r"[^A-Za-z0-9_\-./]", "_", measure.replace(" ", "_"))
