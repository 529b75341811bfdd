"""LanceDB access: connections by URI, field metadata, versions, tags, keyed writes.

LanceDB 0.40 exposes no call that rewrites a table's schema-level metadata after
creation, but it does update per-field metadata as its own committed version
(``update_field_metadata``). So everything llmops records about a table lives in
field metadata: it is versioned with the data, restored with it, and seen by every
process that opens the table.
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from ..config import Settings, settings
from ..errors import BadInput

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, writers fall back to random ids
    fcntl = None

_lock = threading.Lock()
_connections: dict[str, object] = {}


def default_uri(cfg: Settings | None = None) -> str:
    """``<home>/lancedb``: the embedded database next to the MLflow store."""
    cfg = cfg or settings()
    return str((cfg.home / "lancedb").resolve())


def connect(uri: str | None = None, cfg: Settings | None = None):
    """A LanceDB connection for ``uri`` (a folder, ``s3://...``, ``db://...``), cached."""
    uri = str(uri) if uri else default_uri(cfg)
    with _lock:
        if uri not in _connections:
            import lancedb

            if "://" not in uri:
                Path(uri).mkdir(parents=True, exist_ok=True)
            _connections[uri] = lancedb.connect(uri)
        return _connections[uri]


def table_names(db) -> list[str]:
    return list(db.list_tables().tables)


def open_table(db, name: str):
    """Open ``name`` at its latest version; a clear error names the tables that exist."""
    try:
        return db.open_table(name)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        names = table_names(db)
        known = ", ".join(names) if names else "none yet: create one with llmops_magics.create_index(...)"
        raise BadInput(f"no LanceDB table {name!r} at {db.uri}: tables are {known}") from e


def latest(table):
    """The same table at its newest version (another process may have written)."""
    table.checkout_latest()
    return table


def field_meta(table, column: str) -> dict[str, str]:
    """A field's metadata as ``str -> str``."""
    meta = table.schema.field(column).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def set_field_meta(table, column: str, updates: dict[str, str | None]) -> int:
    """Merge ``updates`` into a field's metadata (``None`` deletes a key); one new version."""
    return set_fields_meta(table, {column: updates})


def set_fields_meta(table, updates: dict[str, dict[str, str | None]]) -> int:
    """:func:`set_field_meta` on several fields in ONE commit: readers see all or none."""
    table.update_field_metadata(*({"path": c, "metadata": u} for c, u in updates.items()))
    return table.version


def create_tag(table, name: str, version: int | None = None) -> str:
    table.tags.create(name, version if version is not None else table.version)
    return name


def tags(table) -> dict[str, int]:
    return {name: info["version"] for name, info in table.tags.list().items()}


def restore(table, version_or_tag: int | str) -> int:
    """Make ``version_or_tag`` the newest version (a new version; history is kept)."""
    table.restore(version_or_tag)
    return table.version


def quote(column: str) -> str:
    """``column`` as an identifier inside a Lance SQL expression: the one way a column
    name enters a filter, a ``where``, a merge condition or a function call.

    Lance parses these with DataFusion, where an unquoted ``vec-2`` reads as ``vec - 2``
    and ``body text`` as two words; a backtick-quoted name is taken as it is (measured
    on LanceDB 0.40, in filters, merge conditions and ``sha256(...)``). Everything else
    LanceDB takes by name (``select([...])``, ``merge_insert(on)``,
    ``vector_column_name``, index columns, field metadata paths) gets the plain name:
    quoted there, it would name another column.
    """
    return "`" + check_column_name(column) + "`"


def check_column_name(column: str, *, key: bool = False) -> str:
    """``column`` if Lance 0.40 can address it everywhere llmops uses it; else ``BadInput``.

    Measured on LanceDB 0.40: a top-level name with ``.`` is refused when the column is
    made; one with a backtick can be made but no filter, index or metadata update can
    name it (doubling it inside backticks does not help); and ``merge_insert`` on a key
    with a ``"`` fails to find its own key. ``key`` applies that last rule too.
    """
    bad = [c for c in ".`" + ('"' if key else "") if c in column]
    if not column or bad:
        what = "an empty name" if not column else f"{bad[0]!r} in its name"
        role = "an id column" if key else "a column"
        raise BadInput(f"LanceDB cannot use {column!r} as {role} ({what}): pick another name")
    return column


def is_null(column: str) -> str:
    """Rows whose ``column`` holds no value."""
    return f"{quote(column)} IS NULL"


def tag_name(*parts: str) -> str:
    """A tag name from ``parts`` joined by ``-``; characters tags refuse become ``_``.

    Lance tags may hold only alphanumerics, ``.``, ``-`` and ``_``, while a column name
    in a tag (``llmops-<column>-start-v3``) may hold anything else.
    """
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in "-".join(parts))


def key_index(table, key: str, *, rebuild: bool = False) -> None:
    """Make sure ``key`` has a scalar index, so a merge on it finds its rows by lookup.

    Without one, every ``merge_insert`` scans and joins the whole table: measured at
    100,000 rows of 384-d vectors, that held 1.3-1.6 GB per merge however small the
    batch. Rows a merge rewrites land outside the index (new fragments) and are scanned
    again by the next merge, so a long run asks for ``rebuild`` now and then. An index
    the user made on ``key`` (another type, another name) is used as it is.
    """
    from lancedb.index import BTree

    mine = indices_on(table, key)
    if mine and not (rebuild and mine[0].index_type == "BTree"):
        return
    table.create_index(key, config=BTree(), replace=True, **({"name": mine[0].name} if mine else {}))


def unindexed_rows(table, key: str) -> int:
    """Rows of ``key`` outside its index (read from the index's statistics, not counted)."""
    mine = indices_on(table, key)
    stats = table.index_stats(mine[0].name) if mine else None
    return stats.num_unindexed_rows if stats else table.count_rows()


def indices_on(table, column: str) -> list:
    """The indices of ``table`` on ``column`` alone.

    ``list_indices`` names columns as field paths, backtick-quoted where the name needs
    it (``doc-id`` comes back as ```doc-id```): compared as they come, such an index
    would never be found and would be rebuilt on every call.
    """
    return [ix for ix in table.list_indices() if [field_name(c) for c in ix.columns] == [column]]


def field_name(path: str) -> str:
    """A top-level column's name from a Lance field path: ```doc-id``` -> ``doc-id``."""
    if len(path) >= 2 and path[0] == path[-1] == "`":
        return path[1:-1].replace("``", "`")
    return path


def text_digest(text: str) -> bytes:
    """sha256 of ``text``'s UTF-8 bytes: what Lance's SQL ``sha256(column)`` gives for it."""
    return hashlib.sha256(text.encode("utf-8")).digest()


# Field metadata naming the vector column whose source texts a digest column records.
DIGEST_OF = "llmops:source-digest-of"


def digest_field(name: str, of: str):
    import pyarrow as pa

    return pa.field(name, pa.binary(), nullable=True, metadata={DIGEST_OF: of})


def needs_embedding(column: str, digest_column: str, text_column: str) -> str:
    """Rows whose ``column`` is empty, or was computed from a text other than the current one."""
    return f"{is_null(column)} OR {stale(digest_column, text_column)}"


def stale(digest_column: str, text_column: str) -> str:
    """Rows whose recorded source digest is missing or no longer matches their text.

    Lance evaluates ``sha256`` in the scan, so finding them reads no text into Python.
    """
    d = quote(digest_column)
    return f"({d} IS NULL OR {d} != sha256({quote(text_column)}))"


def stale_vectors(column: str, digest_column: str, text_column: str) -> str:
    """Rows that hold a vector in ``column``, computed from a text other than their current one."""
    return f"{quote(column)} IS NOT NULL AND {stale(digest_column, text_column)}"


def fill_where_unchanged(table, key: str, column: str, digest_column: str, rows) -> int:
    """Set ``column`` and its source digest on the rows matching ``rows`` by ``key``, in one commit.

    ``rows`` are whole rows as read from a snapshot, with the new vector and the digest
    of the text it was computed from. A row is written only if every other column
    (its text above all) still equals the snapshot and it does not already hold a
    vector of that same text: a row edited meanwhile is left as it is now (and stays
    stale, for the next pass), so no concurrent write is ever reverted. Returns how
    many rows were written.
    """
    mine = (key, column, digest_column)
    same = [
        f"(target.{quote(c)} = source.{quote(c)} OR (target.{quote(c)} IS NULL AND source.{quote(c)} IS NULL))"
        for c in rows.column_names
        if c not in mine
    ]
    d = quote(digest_column)
    needed = f"(target.{quote(column)} IS NULL OR target.{d} IS NULL OR target.{d} != source.{d})"
    where = " AND ".join([needed, *same])
    return table.merge_insert(key).when_matched_update_all(where=where).execute(rows).num_updated_rows


def insert_new(table, key: str, rows) -> int:
    """Insert the rows of ``rows`` whose ``key`` is not in the table yet; returns how many.

    One merge on the key, so a key already present is never written twice by this
    call. Two such merges racing from two processes can still both insert the same
    key (measured on LanceDB 0.40: 3-9 duplicates in 300 racing keys), which is why
    callers on a local table hold :func:`write_lock` around it.
    """
    return table.merge_insert(key).when_not_matched_insert_all().execute(rows).num_inserted_rows


def existing_keys(table, key: str, values: list) -> list:
    """Which of ``values`` are already in ``key`` (a lookup of those keys, not a scan of the column)."""
    found = []
    for i in range(0, len(values), 1024):  # a bounded IN list per query, however big the add
        where = f"{quote(key)} IN ({', '.join(sql_literal(v) for v in values[i : i + 1024])})"
        found += table.search().where(where).select([key]).to_arrow()[key].to_pylist()
    return found


def max_key(table, key: str):
    """The largest ``key``, streamed a batch at a time (``None`` for an empty table)."""
    import pyarrow.compute as pc

    best = None
    for rb in table.search().select([key]).to_batches(65536):
        top = pc.max(rb.column(key)).as_py() if rb.num_rows else None
        best = top if best is None or (top is not None and top > best) else best
    return best


def sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def local_folder(db) -> Path | None:
    """The folder of a local database; ``None`` for object stores and LanceDB Cloud."""
    uri = str(db.uri)
    uri = uri[len("file://") :] if uri.startswith("file://") else uri
    return None if "://" in uri else Path(uri)


@contextmanager
def write_lock(db, name: str):
    """Hold an exclusive OS lock for writers of local table ``name``; yields an :class:`IdCounter`.

    Yields ``None`` where no lock can be had (object stores, LanceDB Cloud, systems
    without ``fcntl``). The kernel drops the lock when its holder dies, SIGKILL
    included, so a killed writer never blocks the next one.
    """
    folder = local_folder(db)
    if folder is None or fcntl is None:
        yield None
        return
    # Next to the table, not inside it: Lance owns the dataset folder's contents.
    fd = os.open(folder / f"{name}.lance.llmops-ids", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield IdCounter(fd)
    finally:
        os.close(fd)  # releases the lock


class IdCounter:
    """The next free auto id of a table, kept in its lock file (read and written under the lock)."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self) -> int | None:
        """The recorded next id; ``None`` if none was ever recorded or the file is torn."""
        raw = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
        return int(raw) if raw.isdigit() else None

    def write(self, value: int) -> None:
        # A write torn by a crash reads back as None or as a smaller number: the caller
        # re-seeds from the table in the first case and finds the clash in the second.
        data = f"{value}\n".encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))
        os.fsync(self.fd)


def snapshot(db, name: str, version_or_tag: int | str):
    """A read-only handle on an older version of ``name``."""
    old = db.open_table(name)
    old.checkout(version_or_tag)
    return old
