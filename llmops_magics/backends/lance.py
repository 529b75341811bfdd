"""LanceDB access: connections by URI, field metadata, versions, tags and restore.

LanceDB 0.40 exposes no call that rewrites a table's schema-level metadata after
creation, but it does update per-field metadata as its own committed version
(``update_field_metadata``). So everything llmops records about a table lives in
field metadata: it is versioned with the data, restored with it, and seen by every
process that opens the table.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..config import Settings, settings
from ..errors import BadInput

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
    table.update_field_metadata({"path": column, "metadata": updates})
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
    """``column`` as a Lance SQL identifier: reserved words (``group``) and odd names included."""
    return "`" + column.replace("`", "``") + "`"


def key_index(table, key: str, *, rebuild: bool = False) -> None:
    """Make sure ``key`` has a scalar index, so a merge on it finds its rows by lookup.

    Without one, every ``merge_insert`` scans and joins the whole table: measured at
    100,000 rows of 384-d vectors, that held 1.3-1.6 GB per merge however small the
    batch. Rows a merge rewrites land outside the index (new fragments) and are scanned
    again by the next merge, so a long run asks for ``rebuild`` now and then. An index
    the user made on ``key`` (another type, another name) is used as it is.
    """
    from lancedb.index import BTree

    mine = [ix for ix in table.list_indices() if list(ix.columns) == [key]]
    if mine and not (rebuild and mine[0].index_type == "BTree"):
        return
    table.create_index(key, config=BTree(), replace=True, **({"name": mine[0].name} if mine else {}))


def fill_where_unchanged(table, key: str, column: str, rows) -> int:
    """Set ``column`` on the rows matching ``rows`` by ``key``, in one atomic commit.

    ``rows`` are whole rows as read from a snapshot. A row is written only if its
    ``column`` is still null and every other column still equals the snapshot: a row
    filled meanwhile (a dual write) or edited meanwhile is left as it is now, so no
    concurrent write is ever reverted. Returns how many rows were written.
    """
    same = [f"(target.{quote(c)} = source.{quote(c)} OR (target.{quote(c)} IS NULL AND source.{quote(c)} IS NULL))"
            for c in rows.column_names if c not in (key, column)]
    where = " AND ".join([f"target.{quote(column)} IS NULL", *same])
    return table.merge_insert(key).when_matched_update_all(where=where).execute(rows).num_updated_rows


def snapshot(db, name: str, version_or_tag: int | str):
    """A read-only handle on an older version of ``name``."""
    old = db.open_table(name)
    old.checkout(version_or_tag)
    return old
