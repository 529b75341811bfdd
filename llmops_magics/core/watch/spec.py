"""``WatchSpec``: every option of a watch, checked before any trace is read.

A bad value (a duration that is not one, ``--canary`` without ``--split``, a scorer that
cannot be loaded) is one line here, before MLflow is asked anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...config import Settings, settings
from ...errors import BadInput
from ..options import OptionError, check, duration_ms
from ..tracking import redact
from .scoring import load_scorer


@dataclass(frozen=True)
class WatchSpec:
    """One watch, its values checked.

    Attributes
    ----------
    experiment : str
        The app's MLflow experiment (name or id).
    scorers : tuple
        MLflow Scorers (``module:function`` texts already loaded).
    start_ms, end_ms : int
        The watched window ``[now - since, now)``.
    baseline_start_ms : int or None
        With ``baseline``: the baseline is ``[baseline_start_ms, start_ms)``; without it the
        leading buckets holding a third of the window's traces are the baseline.
    """

    experiment: str
    scorers: tuple
    since: str
    by: str
    start_ms: int
    end_ms: int
    baseline: str | None
    baseline_start_ms: int | None
    filter: str | None
    split: str | None
    canary: str | None
    margin: float
    n: int | None
    sample_seed: int
    rescore: bool
    max_scorer_calls: int | None
    alpha: float
    drift: bool
    log: bool
    name: str
    cfg: Settings

    @property
    def read_start_ms(self) -> int:
        """Where reading starts: the baseline's start when it comes before the window."""
        return self.baseline_start_ms if self.baseline_start_ms is not None else self.start_ms

    def params(self) -> dict:
        """The options as MLflow params of the watch's run."""
        return {
            "experiment": self.experiment,
            "since": self.since,
            "by": self.by,
            "baseline": self.baseline or "first third of the window",
            # a filter may quote a secret (tags.api_key = '...'): params are public in MLflow
            "filter": redact(self.filter) if self.filter else "",
            "split": self.split or "",
            "canary": self.canary or "",
            "margin": self.margin,
            "n": self.n if self.n is not None else "all",
            "sample_seed": self.sample_seed,
            "rescore": self.rescore,
            "alpha": self.alpha,
            "drift": self.drift,
            "scorers": ",".join(scorer_name(s) for s in self.scorers),
        }


def scorer_name(scorer) -> str:
    """The name a scorer's checks carry (its ``name``, else its function's)."""
    return str(getattr(scorer, "name", None) or getattr(scorer, "__name__", None) or type(scorer).__name__)


def validate(
    experiment,
    *,
    scorers=(),
    since="7d",
    by="day",
    baseline=None,
    filter=None,
    split=None,
    canary=None,
    margin=0.05,
    n=None,
    sample_seed=0,
    rescore=False,
    max_scorer_calls=None,
    alpha=0.05,
    drift=True,
    log=True,
    name=None,
    cfg=None,
    now_ms: int | None = None,
) -> WatchSpec:
    """Check every option of :func:`watch` (see there) and load ``module:function`` scorers.

    Raises
    ------
    OptionError, BadInput
        One line naming the option, before anything is read.
    """
    if not isinstance(experiment, str) or not experiment.strip():
        raise BadInput("give the app's MLflow experiment (name or id), e.g. support-app")
    values = check(by=by, margin=margin, alpha=alpha, n=n, sample_seed=sample_seed, max_scorer_calls=max_scorer_calls)
    window = duration_ms("since", since)
    back = duration_ms("baseline", baseline) if baseline is not None else None
    if canary is not None and not split:
        raise OptionError("canary", canary, "needs split (the key whose value names the canary)", "'v2'")
    if split is not None and (not isinstance(split, str) or not split.strip()):
        raise OptionError("split", split, "must be a trace tag or metadata key", "tags.variant")
    if filter is not None and not isinstance(filter, str):
        raise OptionError("filter", filter, "must be an MLflow trace filter", "\"tags.route = 'refunds'\"")
    loaded = _scorers(scorers)
    if split and not loaded:
        raise BadInput("--split compares the groups by their scores: give at least one --scorer")
    end = int(time.time() * 1000) if now_ms is None else int(now_ms)
    start = end - window
    return WatchSpec(
        experiment=experiment.strip(),
        scorers=loaded,
        since=str(since),
        by=values["by"],
        start_ms=start,
        end_ms=end,
        baseline=str(baseline) if baseline is not None else None,
        baseline_start_ms=start - back if back is not None else None,
        filter=filter or None,
        split=split.strip() if split else None,
        canary=str(canary) if canary is not None else None,
        margin=values["margin"],
        n=values["n"],
        sample_seed=values["sample_seed"],
        rescore=bool(rescore),
        max_scorer_calls=values["max_scorer_calls"],
        alpha=values["alpha"],
        drift=bool(drift),
        log=bool(log),
        name=name or f"watch {experiment.strip()}",
        cfg=cfg or settings(),
    )


def _scorers(scorers) -> tuple:
    if scorers is None:
        return ()
    if isinstance(scorers, str) or not isinstance(scorers, (list, tuple)):
        scorers = [scorers]
    loaded = tuple(load_scorer(s) if isinstance(s, str) else s for s in scorers)
    names = [scorer_name(s) for s in loaded]
    twice = sorted({x for x in names if names.count(x) > 1})
    if twice:
        raise BadInput(f"two scorers are named {twice[0]!r}: each scorer's checks need a name of their own")
    return loaded
