"""``ShadowSpec``: the arguments of one ``shadow()`` call, checked, as one frozen value.

:func:`validate` is the first stage of the pipeline: every option value is checked (by
the rules of :mod:`..options`, shared with ``llm()`` and the magics) and the inputs are
parsed and sampled before any model is resolved or engine started, so a bad value
costs nothing and reads as one line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...backends.base import Sampling
from ...config import Settings, settings
from .. import options
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


def validate(
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
) -> ShadowSpec:
    """Check ``shadow()``'s arguments and parse its inputs into a :class:`ShadowSpec`.

    Takes exactly the arguments of :func:`~.run.shadow`.

    Raises
    ------
    OptionError
        An option value out of its rule (``n=0``, ``engine_plan="fast"``, an unknown
        serving option or threshold).
    BadInput
        No inputs, or inputs that do not parse.
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
    items = parse_inputs(inputs)
    indices = sample_indices(len(items), checked["n"], checked["sample_seed"])
    return ShadowSpec(
        items=tuple(items),
        indices=tuple(indices),
        primary=primary,
        candidate=candidate,
        sampling=sampling,
        thresholds=thresholds,
        cfg=cfg or settings(),
        prompt=prompt,
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
    )


def checked_thresholds(thresholds: Thresholds | None, values: dict) -> Thresholds:
    """``thresholds`` (default :class:`Thresholds`) with each field checked, then
    ``values`` (single fields given as options) checked and laid over it."""
    base = thresholds or Thresholds()
    base = dataclasses.replace(base, **options.check_thresholds(dataclasses.asdict(base)))
    return dataclasses.replace(base, **options.check_thresholds(values)) if values else base
