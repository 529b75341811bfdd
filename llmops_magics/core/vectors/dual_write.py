"""Adding rows to a table, a migration open or not: every vector column embedded, ids unique.

While a migration is open a new row gets both vectors (and the digest of its text, so
it never reads as stale); otherwise it would be a hole backfill has to come back for.
Several processes may add at once: see :func:`insert` for why no id is ever given twice.
"""

from __future__ import annotations

import numbers
import secrets
import uuid

from ...backends import lance
from ...config import Settings
from ...errors import BadInput
from .. import events
from ..paths import shown_path
from .embedders import get_embedder
from .table import MixedVectorSpaces, TableLayout, embed_texts, layout, normalize_rows, vector_columns, vectors_array

# How often add re-embeds when a migration step changed the columns under it, and
# looks again for free ids when the ones it picked turned out taken.
ADD_TRIES = 3
# Each add is one small fragment outside the id index, and every later add's lookups
# and merge open each of them: measured on LanceDB 0.40, single-row adds took 89 ms
# each over the first 250 and 505 ms by the 1,000th. Rebuilding the index costs
# 0.15-0.25 s at 100,000-1,000,000 rows, so rebuilding this often keeps adds flat.
ADD_REINDEX_ROWS = 128


def add_rows(t, db, name: str, rows, cfg: Settings) -> int:
    """Append ``rows`` to table ``t`` (named ``name`` in ``db``), embedded for every vector column.

    Rows without an id get one no other row has, and a given id already in the
    table is refused (``BadInput``), also when several processes add at once.
    Returns the table version after the write.
    """
    lay = layout(lance.latest(t))
    items = normalize_rows(rows, id_column=lay.id_column, text_column=lay.text_column, start_id=None)
    texts = [r[lay.text_column] for r in items]
    for _ in range(ADD_TRIES):
        shape = _columns(lance.latest(t))
        vectors = _embed_for(t, texts, cfg)  # the slow part, outside the lock
        with lance.write_lock(db, name) as counter:
            if _columns(lance.latest(t)) == shape:
                return insert(t, db, name, lay, items, vectors, counter)
        # A migration step added or dropped a column meanwhile: embed for the new set.
    raise BadInput(f"the columns of {name!r} kept changing while adding rows: add them again")


def _embed_for(t, texts: list[str], cfg: Settings) -> dict:
    """Vectors for every vector column, and the text digests its source column records."""
    import pyarrow as pa

    cols = {}
    for name, spec in vector_columns(t).items():
        emb = get_embedder(spec.ref, cfg=cfg)
        if emb.spec.digest != spec.digest:
            raise MixedVectorSpaces(
                f"column {name!r} was built with {spec.short}, but {spec.ref} now loads as {emb.spec.short}"
            )
        cols[name] = vectors_array(embed_texts(emb, texts), spec.dimension)
    for vec, dig in _digest_columns(t).items():
        if vec in cols:  # dual writes record their source like backfill does, or they would read as stale
            cols[dig] = pa.array([lance.text_digest(x) for x in texts], pa.binary())
    return cols


def insert(t, db, name: str, lay: TableLayout, items: list[dict], vectors: dict, counter) -> int:
    """Give ids, then insert only rows whose id is new; runs under the table's write lock.

    Why this is safe with several writers: on a local table the lock serializes
    allocation, the clash check and the insert across processes (a SIGKILLed holder
    releases it), and auto ids come from a counter in the lock file, so they stay
    small and in order like create_index's. On an object store (s3://, gs://,
    LanceDB Cloud) no lock is shared and a lock service would be one more thing to
    run, so auto ids are random 63-bit numbers: an id drawn that is already in the
    table is found by the check and drawn again, and two writers drawing the same
    one at the same instant has odds near 1 in 10^18 per pair of rows. The insert
    is a merge on the id, which never inserts an id already committed; two merges
    racing with the SAME id can both land (LanceDB 0.40 does not detect it), so
    given ids are only race-free on a local table.
    """
    key = lay.id_column
    # The clash checks and the merge then look ids up instead of scanning.
    lance.key_index(t, key, rebuild=lance.unindexed_rows(t, key) >= ADD_REINDEX_ROWS)
    given = [r[key] for r in items if key in r]
    clash = lance.existing_keys(t, key, given)
    if clash:
        raise BadInput(f"ids already in {name!r}: {sorted(clash)[:5]}; use new ids")
    _assign_ids(t, name, key, items, given, counter)
    before = t.version
    added = lance.insert_new(t, key, _as_table(t, items, vectors))
    events.emit(
        events.TableWritten(
            table=name, uri=shown_path(db.uri), version_before=before, version_after=t.version, rows=added
        )
    )
    if added < len(items):
        raise BadInput(
            f"{len(items) - added} of {len(items)} rows were not added to {name!r}: "
            "another writer used their ids at the same moment; add them again with new ids"
        )
    return t.version


def _assign_ids(t, name: str, key: str, items: list[dict], given: list, counter) -> None:
    auto = [r for r in items if key not in r]
    if not auto:
        return
    floor = max((int(i) + 1 for i in given if isinstance(i, numbers.Integral)), default=0)
    for attempt in range(ADD_TRIES):
        ids = _new_ids(t, key, len(auto), counter, floor, reseed=attempt > 0)
        if not set(ids) & (set(given) | set(lance.existing_keys(t, key, ids))):
            for r, i in zip(auto, ids):
                r[key] = i
            return
        # Written past the counter by another writer (or a random clash): look again.
    raise BadInput(f"could not find free ids in {name!r}: give every row an {key!r}")


def _new_ids(t, key: str, n: int, counter, floor: int, *, reseed: bool) -> list:
    """``n`` fresh ids: uuids for text ids, the lock file's counter for local integer ids,
    random ones where no lock is shared."""
    import pyarrow as pa

    typ = t.schema.field(key).type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return [uuid.uuid4().hex for _ in range(n)]
    if not pa.types.is_integer(typ):
        raise BadInput(f"{key!r} holds {typ}: give every row an id (auto ids are integers or uuid strings)")
    if counter is None:
        bits = typ.bit_width - (1 if pa.types.is_signed_integer(typ) else 0)
        return [secrets.randbits(bits) for _ in range(n)]
    start = None if reseed else counter.read()
    if start is None:  # first add, a torn counter file, or ids written past it by others
        top = lance.max_key(t, key)
        start = max(counter.read() or 0, (top + 1) if top is not None else 0)
    start = max(start, floor)
    counter.write(start + n)
    return list(range(start, start + n))


def _digest_columns(t) -> dict[str, str]:
    """vector column -> the column recording the digest of the text each vector came from."""
    out = {}
    for f in t.schema:  # one schema read: each t.schema is a call into LanceDB
        of = (f.metadata or {}).get(lance.DIGEST_OF.encode())
        if of:
            out[of.decode()] = f.name
    return out


def _as_table(t, items: list[dict], vectors: dict):
    """Row dicts plus their vector columns as an Arrow table of ``t``'s schema (nulls elsewhere)."""
    import pyarrow as pa

    data = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in vectors} for r in items])
    for name, arr in vectors.items():
        data = data.append_column(name, arr)
    for f in t.schema:
        if f.name not in data.column_names:
            data = data.append_column(f.name, pa.nulls(len(items), f.type))
    return data.select(t.schema.names).cast(t.schema)


def _columns(t) -> list:
    return [(f.name, str(f.type)) for f in t.schema]
