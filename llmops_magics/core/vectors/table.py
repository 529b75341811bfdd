"""Embedded LanceDB tables: create one from texts, search it, and refuse mixed spaces.

What llmops knows about a table is kept in LanceDB field metadata (see
``backends/lance.py`` for why not schema-level metadata):

* on each vector column: ``llmops:embedder`` (the ``EmbedderSpec`` JSON) plus LanceDB's
  own conventions ``lancedb:tag:model`` and ``lancedb:status``
  (production / candidate / deprecated) so LanceDB tools show them too;
* on the text column: ``llmops:table`` (id column, text column, active vector column)
  and ``llmops:migration`` (the open migration's state, see ``state.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ...backends import lance
from ...backends.progress import progress_bar
from ...config import Settings, settings
from ...errors import BadInput
from .. import events
from ..display import esc, html_table, text_table
from ..paths import shown_path
from .embedders import Embedder, EmbedderSpec, get_embedder

TABLE_KEY = "llmops:table"
MIGRATION_KEY = "llmops:migration"
EMBEDDER_KEY = "llmops:embedder"


class MixedVectorSpaces(BadInput):
    """A query vector and a vector column come from different embedders."""

    def __init__(self, detail: str):
        super().__init__(f"mixed vector spaces: {detail}")


@dataclass(frozen=True)
class TableLayout:
    """Which column is what, as recorded on the table."""

    id_column: str
    text_column: str
    active_column: str


def layout(table) -> TableLayout:
    """Read the layout recorded by :func:`create_index` (or :func:`describe_table`)."""
    for name in table.schema.names:
        raw = lance.field_meta(table, name).get(TABLE_KEY)
        if raw:
            return TableLayout(**json.loads(raw))
    raise BadInput(
        f"table {table.name!r} has no llmops embedding metadata: build it with "
        "llmops_magics.create_index(...) or record its model with llmops_magics.describe_table(...)"
    )


def write_layout(table, lay: TableLayout) -> int:
    return lance.set_field_meta(table, lay.text_column, {TABLE_KEY: json.dumps(lay.__dict__)})


def column_spec(table, column: str) -> EmbedderSpec:
    """The embedder a vector column was built with."""
    if column not in table.schema.names:
        raise BadInput(f"table {table.name!r} has no column {column!r}: columns are {', '.join(table.schema.names)}")
    raw = lance.field_meta(table, column).get(EMBEDDER_KEY)
    if not raw:
        raise BadInput(f"column {column!r} of {table.name!r} records no embedding model")
    return EmbedderSpec.from_json(raw)


def vector_columns(table) -> dict[str, EmbedderSpec]:
    """Every vector column that records its embedder, in schema order."""
    out = {}
    for name in table.schema.names:
        raw = lance.field_meta(table, name).get(EMBEDDER_KEY)
        if raw:
            out[name] = EmbedderSpec.from_json(raw)
    return out


def vector_field(name: str, spec: EmbedderSpec, *, status: str, nullable: bool = True):
    import pyarrow as pa

    return pa.field(name, pa.list_(pa.float32(), spec.dimension), nullable=nullable, metadata=column_meta(spec, status))


def column_meta(spec: EmbedderSpec, status: str) -> dict[str, str]:
    return {
        EMBEDDER_KEY: spec.to_json(),
        "lancedb:tag:model": spec.ref,
        "lancedb:status": status,
        "lancedb:logical-column": "embedding",
    }


def check_space(column: str, spec: EmbedderSpec, *, query: EmbedderSpec | None = None, dimension: int | None = None):
    """Raise :class:`MixedVectorSpaces` unless a query fits the column's space."""
    if query is not None and query.digest != spec.digest:
        raise MixedVectorSpaces(
            f"column {column!r} was built with {spec.short}, the query embedder is {query.short}: "
            f"search with the column's model ({spec.ref}) or migrate the column (%lance_migrate)"
        )
    if dimension is not None and dimension != spec.dimension:
        raise MixedVectorSpaces(
            f"the query vector has {dimension} dimensions but column {column!r} holds "
            f"{spec.dimension}-d vectors from {spec.ref}: embed the query with {spec.ref}"
        )


def normalize_rows(data, *, id_column: str, text_column: str, start_id: int | None = 0) -> list[dict]:
    """Texts, dicts or a DataFrame -> row dicts with a text, and an id from ``start_id`` on.

    With ``start_id=None`` rows given without an id keep none: the caller allocates them.
    """
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        data = data.to_dict("records")
    if isinstance(data, str):
        data = [data]
    rows = []
    for i, item in enumerate(data):
        row = {text_column: item} if isinstance(item, str) else dict(item)
        if not isinstance(row.get(text_column), str):
            raise BadInput(f"row {i} has no string {text_column!r}: give texts or dicts with a {text_column!r} key")
        if start_id is not None:
            row.setdefault(id_column, start_id + i)
        rows.append(row)
    if not rows:
        raise BadInput("no rows given: pass a list of texts or of dicts with a text")
    ids = [r[id_column] for r in rows if id_column in r]
    if len(set(ids)) != len(ids):
        raise BadInput(f"{id_column!r} values repeat: every row needs its own id")
    return rows


def embed_texts(embedder: Embedder, texts: Sequence[str], *, batch: int = 256, desc: str | None = None):
    """Embed in batches with a progress bar; one float32 array."""
    import numpy as np

    parts = []
    bar = progress_bar(
        total=len(texts), desc=desc or f"embedding with {embedder.spec.ref}", disable=len(texts) <= batch
    )
    for i in range(0, len(texts), batch):
        parts.append(embedder.embed(texts[i : i + batch], batch_size=min(batch, 64)))
        bar.update(len(parts[-1]))
    bar.close()
    return np.concatenate(parts) if parts else np.zeros((0, embedder.spec.dimension), np.float32)


def vectors_array(vectors, dimension: int):
    import numpy as np
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dimension)


@dataclass
class IndexResult:
    """What :func:`create_index` built."""

    table: str
    uri: str
    rows: int
    column: str
    embedder: EmbedderSpec
    version: int

    def _repr_mimebundle_(self, include=None, exclude=None):
        text = (
            f"table {self.table} · {self.rows} rows · column {self.column} · "
            f"{self.embedder.short} · version {self.version}"
        )
        return {"text/plain": text, "text/html": f"<div class='llmops-lance'>{esc(text)}</div>"}


def create_index(
    table: str,
    data,
    *,
    embedder: str = "default-embedding",
    db: str | None = None,
    column: str = "vector",
    text_column: str = "text",
    id_column: str = "id",
    mode: str = "create",
    batch: int = 256,
    cfg: Settings | None = None,
) -> IndexResult:
    """Create a LanceDB table of texts with their vectors, recording the embedding model.

    Parameters
    ----------
    table : str
        Table name.
    data : list of str, list of dict, or DataFrame
        Texts, or rows with a ``text_column`` (and optionally ``id_column`` and any
        other columns). Ids default to 0..n-1.
    embedder : str
        An embedder ref (see :mod:`llmops_magics.core.vectors.embedders`).
    db : str, optional
        LanceDB URI; ``<home>/lancedb`` by default.
    mode : str
        ``create`` (fails if the table exists) or ``overwrite``.
    """
    import pyarrow as pa

    if mode not in ("create", "overwrite"):
        raise BadInput(f"mode must be 'create' or 'overwrite', got {mode!r}")
    _check_names(column, text_column, id_column)
    cfg = cfg or settings()
    conn = lance.connect(db, cfg)
    if mode == "create" and table in lance.table_names(conn):
        raise BadInput(f"table {table!r} already exists at {conn.uri}: pass mode='overwrite' or pick another name")
    rows = normalize_rows(data, id_column=id_column, text_column=text_column)
    emb = get_embedder(embedder, cfg=cfg)
    vectors = embed_texts(emb, [r[text_column] for r in rows], batch=batch)
    arrow = pa.Table.from_pylist(rows)
    if column in arrow.column_names:
        raise BadInput(f"rows already have a {column!r} column: pick another --column name")
    arrow = arrow.append_column(
        vector_field(column, emb.spec, status="production"), vectors_array(vectors, emb.spec.dimension)
    )
    lay = TableLayout(id_column, text_column, column)
    fields = [
        f.with_metadata({TABLE_KEY: json.dumps(lay.__dict__)}) if f.name == text_column else f for f in arrow.schema
    ]
    arrow = arrow.cast(pa.schema(fields))
    t = conn.create_table(table, arrow, mode=mode)
    events.emit(events.TableWritten(table=table, uri=shown_path(conn.uri), version_after=t.version, rows=len(rows)))
    return IndexResult(table, str(conn.uri), len(rows), column, emb.spec, t.version)


def describe_table(
    table: str,
    *,
    column: str,
    embedder: str,
    text_column: str = "text",
    id_column: str = "id",
    db: str | None = None,
    cfg: Settings | None = None,
) -> EmbedderSpec:
    """Record which model built an existing vector column (for tables made without llmops).

    The caller vouches for it; the dimension is checked against the column's type.
    """
    _check_names(column, text_column, id_column)
    cfg = cfg or settings()
    t = lance.open_table(lance.connect(db, cfg), table)
    emb = get_embedder(embedder, cfg=cfg)
    typ = t.schema.field(column).type if column in t.schema.names else None
    size = getattr(typ, "list_size", None)
    if size != emb.spec.dimension:
        raise MixedVectorSpaces(
            f"column {column!r} holds {size}-d vectors but {emb.spec.short} makes {emb.spec.dimension}-d ones"
        )
    lance.set_field_meta(t, column, column_meta(emb.spec, "production"))
    write_layout(t, TableLayout(id_column, text_column, column))
    return emb.spec


def _check_names(column: str, text_column: str, id_column: str) -> None:
    """Refuse, before anything is written, a name some later step could not address."""
    for name in (column, text_column):
        lance.check_column_name(name)
    lance.check_column_name(id_column, key=True)


@dataclass
class SearchResult:
    """Nearest rows for one query, with the column and model used."""

    query: str
    column: str
    embedder: EmbedderSpec
    rows: list[dict] = field(default_factory=list)
    version: int = 0

    @property
    def ids(self) -> list:
        return [r["id"] for r in self.rows]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def _repr_mimebundle_(self, include=None, exclude=None):
        headers = ["rank", "id", "text", "distance"]
        body = [[i + 1, r["id"], r["text"], f"{r['_distance']:.4f}"] for i, r in enumerate(self.rows)]
        caption = f"column {self.column} · {self.embedder.short} · version {self.version}"
        return {
            "text/plain": text_table(headers, body) + "\n" + caption,
            "text/html": html_table(headers, body) + f"<div style='opacity:.7'>{esc(caption)}</div>",
        }


def search_column(t, lay: TableLayout, column: str, vector, *, k: int, where: str | None = None) -> list[dict]:
    """Nearest ``k`` rows of ``column`` (rows whose vector is still null never match)."""
    spec = column_spec(t, column)
    check_space(column, spec, dimension=len(vector))
    q = t.search(vector, vector_column_name=column).distance_type(spec.metric).limit(k)
    if where:
        q = q.where(where, prefilter=True)
    arrow = q.select([lay.id_column, lay.text_column, "_distance"]).to_arrow()
    return [
        {"id": r[lay.id_column], "text": r[lay.text_column], "_distance": r["_distance"]} for r in arrow.to_pylist()
    ]


def search(
    table: str,
    text: str,
    *,
    k: int = 10,
    db: str | None = None,
    column: str | None = None,
    embedder: str | None = None,
    where: str | None = None,
    cfg: Settings | None = None,
) -> SearchResult:
    """Search with the model the (active) vector column was built with.

    Parameters
    ----------
    table, text : str
        The table and the query text.
    k : int
        How many rows.
    column : str, optional
        A vector column; the table's active column by default.
    embedder : str, optional
        Embed the query with this embedder instead: refused ("mixed vector spaces")
        unless it is the column's own model.
    """
    if k < 1:
        raise BadInput(f"k must be at least 1, got {k}")
    cfg = cfg or settings()
    t = lance.latest(lance.open_table(lance.connect(db, cfg), table))
    lay = layout(t)
    column = column or lay.active_column
    spec = column_spec(t, column)
    emb = get_embedder(embedder or spec.ref, cfg=cfg)
    check_space(column, spec, query=emb.spec)
    rows = search_column(t, lay, column, emb.embed([text])[0], k=k, where=where)
    return SearchResult(text, column, spec, rows, t.version)


def search_vector(
    table: str,
    vector: Iterable[float],
    *,
    k: int = 10,
    column: str | None = None,
    db: str | None = None,
    cfg: Settings | None = None,
) -> SearchResult:
    """Search with a vector you embedded yourself; its dimension is checked against the column."""
    cfg = cfg or settings()
    t = lance.latest(lance.open_table(lance.connect(db, cfg), table))
    lay = layout(t)
    column = column or lay.active_column
    vector = list(vector)
    rows = search_column(t, lay, column, vector, k=k)
    return SearchResult("<vector>", column, column_spec(t, column), rows, t.version)
