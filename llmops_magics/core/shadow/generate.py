"""The generate stage: both sides answer every case, under the engine plan.

Greedy outputs on vLLM depend on what else is in the batch, so each side runs ALL
cases as ONE batch, in the same order, with the same sampling and seed (a model
compared with itself therefore gives zero differing cases), and the two sides are
never mixed in one batch (measured slower, and it changes outputs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...backends.base import GenerationRequest, GenerationResult, Generator, Sampling
from ..generation import engines
from .inputs import Case
from .plan import Plan
from .sides import ROLES, Side


@dataclass(frozen=True)
class Generated:
    """Both sides' answers in case order, and how each side was served."""

    primary: list[GenerationResult]
    candidate: list[GenerationResult]
    serving: dict  # role -> {"backend", "dtype", "device"} its engine really ran with
    batch_s: dict  # role -> seconds its batch took
    seconds: float  # both sides, engine starts included


@dataclass(frozen=True)
class SideBatch:
    """One side's batch: its answers, the engine that ran it, and how long it took."""

    results: list[GenerationResult]
    generator: Generator
    serving: dict
    seconds: float


def generate(plan: Plan, cases: tuple[Case, ...] | list[Case], sampling: Sampling) -> Generated:
    """Generate both sides under ``plan``."""
    t0 = time.perf_counter()
    if not plan.primary.regenerate:  # a recorded primary that cannot be re-run: its answers come later
        batch = _answer(plan.candidate, list(cases), sampling)
        return Generated(
            primary=[],
            candidate=batch.results,
            serving={"primary": {}, "candidate": batch.serving},
            batch_s={"primary": 0.0, "candidate": batch.seconds},
            seconds=time.perf_counter() - t0,
        )
    batches = run_sides(plan.primary, plan.candidate, list(cases), sampling, plan.engines)
    return Generated(
        primary=batches["primary"].results,
        candidate=batches["candidate"].results,
        serving={role: batches[role].serving for role in ROLES},
        batch_s={role: batches[role].seconds for role in ROLES},
        seconds=time.perf_counter() - t0,
    )


def run_sides(primary: Side, candidate: Side, cases: list[Case], sampling: Sampling, plan: str) -> dict:
    """Generate both sides under the engine plan; returns each side's batch by role."""
    first, second = primary, candidate
    if plan == "one-at-a-time" and candidate.is_loaded and not primary.is_loaded:
        first, second = candidate, primary  # start with the engine already up
    batches = {first.role: _answer(first, cases, sampling)}
    if plan == "one-at-a-time":
        released = batches[first.role].generator
        engines.release(released)
        if released.backend != "transformers":
            # In-process vLLM engines share process-global parallel state that closing
            # one tears down ("pipeline model parallel group is not initialized"):
            # a survivor must be restarted, not reused.
            engines.release_if_loaded(second.serve_path, second.cfg, backend=second.backend)
    batches[second.role] = _answer(second, cases, sampling)
    return batches


def _answer(side: Side, cases: list[Case], sampling: Sampling) -> SideBatch:
    engine = engines.get_engine(side.serve_path, side.cfg, backend=side.backend, label=side.model.label)
    # Each side's own request: with a candidate prompt version the two differ (issue 20).
    requests = [GenerationRequest(c.messages_for(side.role), sampling, side.serve_adapter) for c in cases]
    # One batch per side, same order on both sides: batch composition changes outputs.
    t0 = time.perf_counter()
    results = engine.generator.generate(requests, progress=f"{side.role}: {side.model.label}")
    return SideBatch(results, engine.generator, engine.serving(), time.perf_counter() - t0)
