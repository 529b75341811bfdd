"""Where a backfill commits: embed the rows that need it, one merge commit per batch.

The rows come from one snapshot, whole (every column but the two new ones), and each
batch is written back with :func:`lance.fill_where_unchanged`: a row is only written if
nothing in it changed since the snapshot, so a concurrent edit is never reverted and a
rerun after a crash picks up at the first batch that did not commit. Embedding the next
batch overlaps with writing the previous one, one batch in flight at most, so memory
follows the batch size, not the table.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

from ...backends import lance
from ...backends.progress import progress_bar
from .table import TableLayout, vectors_array

# Rows a backfill merge rewrites fall outside the id index and every later merge scans
# them; rebuilding the index this often keeps that scan (and its memory) bounded.
REINDEX_ROWS = 16384


@dataclass
class Filled:
    """What one backfill pass wrote."""

    rows: int = 0
    # Rows read from the snapshot but changed by another writer before their merge.
    skipped: int = 0
    commits: int = 0
    seconds: float = 0.0


def fill(
    t,
    lay: TableLayout,
    column: str,
    digest_column: str,
    emb,
    *,
    batch: int,
    max_batches: int | None = None,
    progress: bool = True,
    desc: str = "backfill",
) -> Filled:
    """Embed the rows of ``t`` whose ``column`` is null or stale, ``batch`` rows per commit."""

    todo_where = lance.needs_embedding(column, digest_column, lay.text_column)
    todo = t.count_rows(todo_where)
    bar = progress_bar(total=todo, desc=desc, disable=not progress or todo == 0)
    lance.key_index(t, lay.id_column)
    pending: queue.Queue = queue.Queue(maxsize=1)
    done = Filled()
    since_index = 0
    failure: list[BaseException] = []

    def writer():
        nonlocal since_index
        while (item := pending.get()) is not None:
            if failure:
                continue
            try:
                if since_index >= REINDEX_ROWS:
                    lance.key_index(t, lay.id_column, rebuild=True)
                    since_index = 0
                n = lance.fill_where_unchanged(t, lay.id_column, column, digest_column, item)
                done.rows += n
                done.skipped += item.num_rows - n
                done.commits += 1
                since_index += item.num_rows
                bar.update(item.num_rows)
            except BaseException as e:  # surfaced in the caller's thread below
                failure.append(e)

    thread = threading.Thread(target=writer, name="llmops-backfill-writer", daemon=True)
    thread.start()
    t0 = time.perf_counter()
    batches = 0
    try:
        others = [c for c in t.schema.names if c not in (column, digest_column)]
        for rb in t.search().where(todo_where).select(others).to_batches(batch):
            if failure or (max_batches is not None and batches >= max_batches):
                break
            if rb.num_rows == 0:
                continue
            pending.put(_embedded_batch(t, rb, lay.text_column, column, digest_column, emb, batch))
            batches += 1
    finally:
        pending.put(None)
        thread.join()
        bar.close()
    if failure:
        raise failure[0]
    done.seconds = time.perf_counter() - t0
    return done


def rows_left(t, lay: TableLayout, column: str, digest_column: str) -> int:
    """Rows of ``t`` a backfill would still embed."""
    return t.count_rows(lance.needs_embedding(column, digest_column, lay.text_column))


def _embedded_batch(t, rb, text_column: str, column: str, digest_column: str, emb, batch: int):
    """A snapshot batch with its new vectors and the digests of the texts they came from."""
    import pyarrow as pa

    texts = rb.column(text_column).to_pylist()
    vectors = emb.embed(texts, batch_size=min(batch, 64))
    rows = pa.Table.from_batches([rb])
    rows = rows.append_column(t.schema.field(column), vectors_array(vectors, emb.spec.dimension))
    rows = rows.append_column(
        t.schema.field(digest_column), pa.array([lance.text_digest(x) for x in texts], pa.binary())
    )
    return rows.select(t.schema.names)
