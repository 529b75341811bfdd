"""Backfill on Ray: the embedder in Ray workers, every commit in the kernel.

The kernel path (``backfill.py``) embeds and commits in one process. Here the rows
that need a vector are read through Ray Data (``read_lance`` on the table's dataset,
at one version: the same snapshot the kernel path reads), embedded by a pool of
actors that each load the target column's embedder once, and streamed back to the
driver, which commits them ``batch`` rows at a time with the very conditional merge
the kernel path uses (:func:`lance.fill_where_unchanged`). So everything the kernel
path guarantees holds here too:

* a row edited or dual-written while this runs is never reverted (the merge only
  touches rows still as read), and stays stale for the next pass;
* a run killed at any point (driver or worker) and run again ends with exactly one
  vector per row: only whole merges commit, and the next read skips what they filled;
* only lancedb writes the table: Ray Data reads it (pylance 13 is the Lance lancedb
  0.40 embeds), so two Lance versions never commit to it;
* the kernel holds a batch or two at a time and no model: its memory stays flat.

A worker whose embedder loads with another digest than the column records refuses to
start (:class:`EmbedderDigestMismatch`): vectors from two spaces never mix in a column.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...backends import lance, ray_cluster
from ...backends.engine_logs import bar_target
from ...backends.progress import progress_bar
from ...config import Settings
from ...errors import BadInput, LlmopsError
from .backfill import REINDEX_ROWS, Filled
from .embedders import EmbedderSpec, get_embedder
from .table import MixedVectorSpaces, TableLayout, vectors_array

# Embedder actors when --concurrency is not given: two keep both sides of a 2-core
# laptop busy (each gets half a CPU beside Ray Data's read slot); a bigger cluster
# asks for more with --concurrency.
DEFAULT_CONCURRENCY = 2
# Batches Ray Data may hold ready for the driver beyond the one being committed.
PREFETCH_BATCHES = 1
# Texts one forward pass embeds inside an actor (the kernel path's figure).
EMBED_BATCH = 64


class EmbedderDigestMismatch(MixedVectorSpaces):
    """A Ray worker's embedder is not the one the target column was built with."""


class BackfillError(LlmopsError):
    """A Ray backfill stopped on a cluster or worker failure; what it committed stays."""


@dataclass(frozen=True)
class RayFill:
    """One Ray backfill pass, as data: what to read, how to embed it, where it commits."""

    dataset_uri: str
    version: int
    read_columns: tuple[str, ...]
    where: str
    layout: TableLayout
    column: str
    digest_column: str
    spec: EmbedderSpec
    batch: int
    concurrency: int


def check_concurrency(value) -> int | None:
    """``--concurrency`` as a whole number of actors (at least 1); ``None`` passes."""
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1 or str(number) != str(value).strip():
        raise BadInput(f"--concurrency {value}: need a whole number of embedder actors, at least 1 (e.g. 2)")
    return number


def dataset_uri(table) -> str:
    """Where the Lance dataset behind a lancedb table lives (what Ray Data reads)."""
    return str(table.uri)


class EmbedderActor:
    """One per Ray worker: loads the column's embedder once, then embeds batch after batch.

    Runs in Ray's worker processes (``ray::MapWorker(MapBatches(EmbedderActor))``).
    """

    def __init__(
        self, spec_json: str, text_column: str, column: str, digest_column: str, threads: int, cfg: Settings | None
    ):
        if threads:
            # Ray sets OMP_NUM_THREADS=1 for a fractional CPU; the actor's share is wider.
            import torch  # deferred: only a worker embeds

            torch.set_num_threads(threads)
        recorded = EmbedderSpec.from_json(spec_json)
        self.emb = get_embedder(recorded.ref, cfg=cfg)
        if self.emb.spec.digest != recorded.digest:
            raise EmbedderDigestMismatch(
                f"a Ray worker loads {recorded.ref} with digest {self.emb.spec.digest[:12]} but column {column!r} "
                f"records digest {recorded.digest[:12]}: install the same model on every worker, "
                "or roll back and start again"
            )
        self.text_column, self.column, self.digest_column = text_column, column, digest_column

    def __call__(self, rows):
        import pyarrow as pa  # deferred: pyarrow comes with lancedb, loaded where rows are

        texts = rows.column(self.text_column).to_pylist()
        vectors = self.emb.embed(texts, batch_size=min(len(texts), EMBED_BATCH) or 1)
        rows = rows.append_column(self.column, vectors_array(vectors, self.emb.spec.dimension))
        return rows.append_column(self.digest_column, pa.array([lance.text_digest(x) for x in texts], pa.binary()))


def open_cluster(address: str, cfg: Settings) -> ray_cluster.Cluster:
    """Connect to the cluster (Ray's start-up goes to the engine log, not the cell)."""
    return ray_cluster.connect(address, cfg=cfg)


def plan_fill(t, lay: TableLayout, column: str, digest_column: str, spec: EmbedderSpec, *, batch: int, concurrency):
    """The pass over ``t`` at its current version: rows whose ``column`` is null or stale."""
    others = tuple(c for c in t.schema.names if c not in (column, digest_column))
    return RayFill(
        dataset_uri=dataset_uri(t),
        version=t.version,
        read_columns=others,
        where=lance.needs_embedding(column, digest_column, lay.text_column),
        layout=lay,
        column=column,
        digest_column=digest_column,
        spec=spec,
        batch=batch,
        concurrency=concurrency or DEFAULT_CONCURRENCY,
    )


def fill_on_ray(
    t,
    job: RayFill,
    cluster: ray_cluster.Cluster,
    *,
    cfg: Settings,
    max_batches: int | None = None,
    progress: bool = True,
    desc: str = "backfill",
) -> Filled:
    """Run ``job`` on ``cluster`` and commit its vectors to ``t``, ``job.batch`` rows per commit.

    Returns what was written, as the kernel path's :func:`backfill.fill` does.

    Raises
    ------
    EmbedderDigestMismatch
        A worker's embedder has another digest than the column records (nothing written).
    BackfillError
        Ray failed otherwise (a worker that kept dying, a lost cluster): one line with
        the root cause; the rows committed before stay, and a rerun goes on from there.
    """
    todo = t.count_rows(job.where)
    done = Filled()
    if todo == 0:
        return done
    lance.key_index(t, job.layout.id_column)
    schema = t.schema
    t0 = time.perf_counter()
    with ray_cluster.quiet(cfg) as console:
        bar = progress_bar(
            total=todo, desc=f"{desc} on {cluster.label}", disable=not progress, unit="rows", **bar_target(console)
        )
        batches = _embedded_batches(job, cluster, cfg)
        try:
            since_index = 0
            for rows in batches:
                if max_batches is not None and done.commits >= max_batches:
                    break
                if since_index >= REINDEX_ROWS:
                    lance.key_index(t, job.layout.id_column, rebuild=True)
                    since_index = 0
                rows = rows.select(schema.names).cast(schema)
                n = lance.fill_where_unchanged(t, job.layout.id_column, job.column, job.digest_column, rows)
                done.rows += n
                done.skipped += rows.num_rows - n
                done.commits += 1
                since_index += rows.num_rows
                bar.update(rows.num_rows)
        except Exception as e:
            refused = _digest_refusal(e)
            if refused is not None:
                raise refused from None
            if isinstance(e, LlmopsError):
                raise  # ours, already one line
            raise BackfillError(
                f"Ray backfill failed: {ray_cluster.one_line(e)} ({done.rows} rows committed, run it again to go on)"
            ) from None
        finally:
            _close(batches)  # stops the pipeline (and its actors) when max_batches or an error cut it short
            bar.close()
    done.seconds = time.perf_counter() - t0
    return done


def _embedded_batches(job: RayFill, cluster: ray_cluster.Cluster, cfg: Settings):
    """Ray Data's stream of embedded rows, ``job.batch`` at a time, as pyarrow tables."""
    import ray.data  # deferred: ray is an optional extra, needed only on this path

    ray_cluster.quiet_data(cfg)
    ds = ray.data.read_lance(
        job.dataset_uri, version=job.version, columns=list(job.read_columns), filter=job.where
    ).map_batches(
        EmbedderActor,
        batch_size=job.batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=job.concurrency),
        num_cpus=cluster.actor_cpus(job.concurrency),
        # A killed worker's actor comes back and its batch is retried (the pass
        # finishes), but only so often.
        **ray_cluster.retry_limits(),
        fn_constructor_kwargs={
            "spec_json": job.spec.to_json(),
            "text_column": job.layout.text_column,
            "column": job.column,
            "digest_column": job.digest_column,
            "threads": cluster.actor_threads(job.concurrency),
            # A remote worker resolves its own home (model cache); a local one shares ours.
            "cfg": cfg if cluster.local else None,
        },
    )
    return iter(ds.iter_batches(batch_size=job.batch, batch_format="pyarrow", prefetch_batches=PREFETCH_BATCHES))


def _close(batches) -> None:
    close = getattr(batches, "close", None)
    if close is not None:
        close()


def _digest_refusal(error: BaseException) -> EmbedderDigestMismatch | None:
    """The worker's refusal inside whatever Ray wrapped it in, as one line."""
    for e in ray_cluster.causes(error):
        if isinstance(e, EmbedderDigestMismatch):
            return EmbedderDigestMismatch(str(e).removeprefix("mixed vector spaces: "))
    # The refusal is raised in the actor's __init__, and Ray reports a failed creation
    # task as an ActorDiedError that keeps the worker's exception only as traceback text
    # (measured on Ray 2.60): there the type never reaches the driver, the text does.
    marker = "mixed vector spaces: a Ray worker loads"
    text = str(error)
    if marker in text:
        line = text[text.index(marker) :].splitlines()[0]
        return EmbedderDigestMismatch(line.removeprefix("mixed vector spaces: "))
    return None
