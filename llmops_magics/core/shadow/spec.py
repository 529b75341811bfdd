"""``ShadowSpec``: the arguments of one ``shadow()`` call, checked, as one frozen value.

:func:`validate` is the first stage of the pipeline: every option value is checked (by
the rules of :mod:`..options`, shared with ``llm()`` and the magics) and the inputs are
parsed and sampled before any model is resolved or engine started, so a bad value
costs nothing and reads as one line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...backends import ray_cluster
from ...backends.base import Sampling
from ...config import Settings, settings
from ...errors import BadInput
from .. import options
from ..cost import check_prices
from ..evidence.recorded import Evidence
from .inputs import parse_inputs, sample_indices
from .stats import Thresholds


@dataclass(frozen=True)
class ShadowSpec:
    """What one comparison was asked to do, every value checked.

    ``items`` are the parsed inputs and ``indices`` the ones compared (all of them,
    or a reproducible sample of ``n``); the other fields are ``shadow()``'s arguments,
    converted by their option rules. Refs stay as the user gave them: resolving them
    is the next stage.
    """

    items: tuple
    indices: tuple[int, ...]
    primary: str
    candidate: str
    sampling: Sampling
    thresholds: Thresholds
    cfg: Settings
    prompt: str | None = None
    # A second version of the prompt for the candidate (issue 20): the same inputs fill
    # both; ``candidate`` is then the primary's model unless one was given.
    candidate_prompt: str | None = None
    n: int | None = None
    sample_seed: int = 0
    judge: str | None = None
    name: str | None = None
    system: str | None = None
    response_format: dict | None = None
    primary_engine_args: dict = field(default_factory=dict)
    candidate_engine_args: dict = field(default_factory=dict)
    engine_plan: str = "auto"
    memory_limit_gb: float | None = None
    backend: str | None = None
    log: bool = True
    adapter_mode: str = "auto"
    # Cases from elsewhere (issue 18): an app's traces, an evaluation dataset, an earlier run.
    from_traces: str | None = None
    trace_filter: str | None = None
    since: str | None = None
    from_dataset: str | None = None
    baseline: str | None = None
    baseline_side: str = "candidate"
    scorers: tuple = ()
    max_scorer_calls: int | None = None
    evidence: Evidence | None = None  # filled by the gather stage
    prices: dict = field(default_factory=dict)  # ref -> price text: Settings.prices under prices=
    # Where the sides are generated (issue 21): ``kernel`` (this process) or ``ray`` (a Ray
    # cluster at ``address``, default ``Settings.ray_address``, ``concurrency`` actors per side).
    on: str = "kernel"
    address: str | None = None
    concurrency: int | None = None

    @property
    def recorded(self) -> bool:
        """Whether the primary side is a recording (a trace's answer, an earlier run's side)."""
        return self.primary == RECORDED

    @property
    def source(self) -> str | None:
        """Which outside source the cases come from, if any."""
        for name in ("from_traces", "from_dataset", "baseline"):
            if getattr(self, name) is not None:
                return name
        return None


# ``--on``: where the sides are generated; ``--concurrency``: generator actors per side on Ray.
ON_RULE = options.Rule("choice", "ray", choices=("kernel", "ray"))
CONCURRENCY_RULE = options.Rule("whole", "2", low=1)

# ``--primary recorded``: the primary's answers are the recorded ones, not a re-run.
RECORDED = "recorded"
BASELINE_SIDES = ("candidate", "primary")


def validate(
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
) -> ShadowSpec:
    """Check ``shadow()``'s arguments and parse its inputs into a :class:`ShadowSpec`.

    Takes exactly the arguments of :func:`~.run.shadow`.

    Raises
    ------
    OptionError
        An option value out of its rule (``n=0``, ``engine_plan="fast"``, an unknown
        serving option or threshold).
    BadInput
        No inputs, or inputs that do not parse; a ``candidate_prompt`` without ``prompt``;
        no ``candidate`` and no ``candidate_prompt``; ``on="ray"`` without Ray installed,
        or with a remote cluster that could not reach the MLflow store.
    """
    # The order of the checks is the order of the messages a user meets.
    sampling = options.sampling(max_tokens, temperature, seed)
    checked = options.check(
        n=n,
        sample_seed=sample_seed,
        memory_limit_gb=memory_limit_gb,
        engine_plan=engine_plan,
        adapter_mode=adapter_mode,
    )
    primary_engine_args = options.check_engine_args(primary_engine_args, "primary_engine_args")
    candidate_engine_args = options.check_engine_args(candidate_engine_args, "candidate_engine_args")
    thresholds = checked_thresholds(thresholds, threshold_options)
    primary = check_sources(inputs, primary, from_traces, from_dataset, baseline, baseline_side, trace_filter, since)
    if prompt is not None and (from_traces is not None or baseline is not None):
        raise BadInput(
            f"{'--from-traces' if from_traces is not None else '--baseline'} replays whole recorded requests: "
            "drop --prompt (it fills the variables of typed or --from-dataset inputs)"
        )
    candidate = check_candidate(primary, candidate, prompt, candidate_prompt)
    cfg = cfg or settings()
    prices = {**check_prices(cfg.prices, what="LlmopsMagics.prices"), **check_prices(prices)}
    on, address, concurrency = check_placement(on, address, concurrency, cfg)
    max_scorer_calls = options.check(max_scorer_calls=max_scorer_calls)["max_scorer_calls"]
    if max_scorer_calls is None:
        max_scorer_calls = cfg.max_scorer_calls
    # Cases from a source are read by the gather stage (it needs MLflow); typed inputs now.
    outside = any(x is not None for x in (from_traces, from_dataset, baseline))
    items = [] if outside else parse_inputs(inputs)
    indices = sample_indices(len(items), checked["n"], checked["sample_seed"])
    return ShadowSpec(
        items=tuple(items),
        indices=tuple(indices),
        primary=primary,
        candidate=candidate,
        sampling=sampling,
        thresholds=thresholds,
        cfg=cfg,
        prompt=prompt,
        candidate_prompt=candidate_prompt,
        n=checked["n"],
        sample_seed=checked["sample_seed"],
        judge=judge,
        name=name,
        system=system,
        response_format=response_format,
        primary_engine_args=primary_engine_args,
        candidate_engine_args=candidate_engine_args,
        engine_plan=checked["engine_plan"],
        memory_limit_gb=checked["memory_limit_gb"],
        backend=backend,
        log=log,
        adapter_mode=checked["adapter_mode"],
        from_traces=from_traces,
        trace_filter=trace_filter,
        since=since,
        from_dataset=from_dataset,
        baseline=baseline,
        baseline_side=baseline_side,
        scorers=tuple(scorers or ()),
        max_scorer_calls=max_scorer_calls,
        prices=prices,
        on=on,
        address=address,
        concurrency=concurrency,
    )


def check_placement(on, address, concurrency, cfg: Settings) -> tuple[str, str | None, int | None]:
    """``on``, ``address`` and ``concurrency`` checked; for Ray, refused before any work
    when Ray is missing or a remote cluster could not reach the MLflow store (the model
    folders are checked once the models are resolved)."""
    on = ON_RULE.coerce("on", "kernel" if on is None else on)
    concurrency = None if concurrency is None else CONCURRENCY_RULE.coerce("concurrency", concurrency)
    if address is not None and not isinstance(address, str):
        raise BadInput(f"address={address!r}: must be a Ray address (auto, ray://head:10001, host:6379)")
    if on == "kernel":
        if address is not None or concurrency is not None:
            given = "--address" if address is not None else "--concurrency"
            raise BadInput(f"{given} places work on Ray: add --on ray (or drop {given})")
        return on, None, None
    ray_cluster.require_ray()
    resolved = ray_cluster.resolve_address(address, cfg)
    ray_cluster.check_reachable(resolved, tracking_uri=cfg.resolved_tracking_uri)
    return on, address, concurrency


def check_sources(inputs, primary, from_traces, from_dataset, baseline, baseline_side, trace_filter, since) -> str:
    """The primary ref once the case sources agree with each other; one line when they do not."""
    sources = (("--from-traces", from_traces), ("--from-dataset", from_dataset), ("--baseline", baseline))
    given = [flag for flag, value in sources if value is not None]
    if len(given) > 1:
        raise BadInput(f"{given[0]} and {given[1]} both give the cases: choose one")
    if given and inputs is not None and not (isinstance(inputs, str) and not inputs.strip()):
        raise BadInput(f"{given[0]} gives the cases: drop the typed inputs (or --inputs)")
    if (trace_filter is not None or since is not None) and from_traces is None:
        raise BadInput("--filter and --since select traces: add --from-traces EXPERIMENT")
    if baseline is not None:
        if baseline_side not in BASELINE_SIDES:
            raise BadInput(f"--baseline-side {baseline_side!r}: choose candidate or primary (whose answers to replay)")
        if primary not in (None, RECORDED):
            raise BadInput(
                f"--baseline replays an earlier run's answers as the primary: drop --primary {primary} "
                "(compare it as --candidate)"
            )
        return RECORDED
    if primary is None:
        raise BadInput("--primary is required (a model ref, or 'recorded' with --from-traces)")
    if primary == RECORDED and from_traces is None:
        raise BadInput(
            "--primary recorded needs recorded answers: add --from-traces EXPERIMENT, or use --baseline RUN_ID"
        )
    return primary


def check_candidate(primary: str, candidate: str | None, prompt: str | None, candidate_prompt: str | None) -> str:
    """The candidate's model ref: as given, or the primary's when only the prompt differs."""
    if candidate_prompt is not None:
        if not str(candidate_prompt).strip():
            raise BadInput("--candidate-prompt is empty: give a prompt version, e.g. summarize/3")
        if prompt is None:
            raise BadInput(
                f"--candidate-prompt {candidate_prompt} compares prompt versions: "
                "add --prompt (the version the primary uses, e.g. summarize@production)"
            )
    if candidate is not None:
        return candidate
    if candidate_prompt is None:
        raise BadInput("--candidate is required (a model ref), or --candidate-prompt to compare prompt versions")
    if primary == RECORDED:
        raise BadInput("--candidate is required when the primary is recorded")
    return primary


def checked_thresholds(thresholds: Thresholds | None, values: dict) -> Thresholds:
    """``thresholds`` (default :class:`Thresholds`) with each field checked, then
    ``values`` (single fields given as options) checked and laid over it."""
    base = thresholds or Thresholds()
    base = dataclasses.replace(base, **options.check_thresholds(base.as_dict()))
    if not values:
        return base
    given = options.check_thresholds(values)
    # Per-scorer margins add to the base's instead of replacing them.
    margins = {**base.scorer_margins, **given.pop("scorer_margins", {})}
    return dataclasses.replace(base, **given, scorer_margins=margins)
