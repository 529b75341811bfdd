"""Move a LanceDB table's vectors to a new embedding model, step by step.

``plan -> start -> backfill -> index -> shadow -> cutover -> finish``, with ``rollback``
and ``status`` at any point. The state lives in the table (field metadata, see
``vector_table.py``), so any process that opens the table sees the open migration,
and the state is versioned and restored with the data.

Why the steps are safe:

* ``start`` tags the current version (the rollback point) before adding the new
  nullable column, so ``rollback`` before cutover is one ``restore`` of that tag.
* ``backfill`` reads only rows whose new vector is null, from one snapshot, and writes
  each batch with a merge that only fills rows still null and otherwise unchanged: a
  rerun after a crash picks up where the last committed batch ended, and a row
  dual-written by ``add`` or edited in the meantime is never overwritten. Each batch is
  one atomic LanceDB commit, found through an index on the id column so memory follows
  the batch, not the table.
* ``cutover`` only flips which column is active (metadata); ``finish`` is the one step
  that destroys anything, and it asks first.
"""

from __future__ import annotations

import json
import math
import queue
import re
import threading
import time
from dataclasses import dataclass, field

from ..backends import lance
from ..config import Settings, settings
from ..errors import BadInput
from . import events, tracking
from .display import esc, html_table, text_table
from .embedders import EmbedderSpec, get_embedder
from .vector_table import (
    MIGRATION_KEY, MixedVectorSpaces, TableLayout, column_spec, embed_texts, layout,
    normalize_rows, vector_columns, vector_field, vectors_array, write_layout,
)

STEPS = ("plan", "start", "backfill", "index", "shadow", "cutover", "rollback", "finish", "status")
OPEN = ("started", "cut_over")
# Rows a backfill merge rewrites fall outside the id index and every later merge scans
# them; rebuilding the index this often keeps that scan (and its memory) bounded.
REINDEX_ROWS = 16384


@dataclass
class StepResult:
    """What one migration step did, with the table versions around it."""

    table: str
    step: str
    version_before: int
    version_after: int
    summary: str
    details: dict = field(default_factory=dict)
    run_id: str | None = None

    def _rows(self) -> list[list]:
        return [[k, v] for k, v in self.details.items()]

    def _repr_mimebundle_(self, include=None, exclude=None):
        head = f"{self.step} {self.table}: {self.summary}"
        foot = f"version {self.version_before} -> {self.version_after}" + (f" · run {self.run_id[:8]}" if self.run_id else "")
        text = head + "\n" + (text_table(["", ""], self._rows()) + "\n" if self.details else "") + foot
        html = (f"<div class='llmops-migrate'><b>{esc(head)}</b>"
                + (html_table(["", ""], self._rows()) if self.details else "")
                + f"<div style='opacity:.7'>{esc(foot)}</div></div>")
        return {"text/plain": text, "text/html": html}


def _slug(ref: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", ref.rsplit("/", 1)[-1]).strip("_").lower() or "model"


class Migration:
    """An embedding migration of one LanceDB table; every step is also a ``%lance_migrate`` subcommand.

    Parameters
    ----------
    table : str
        The table name.
    db : str, optional
        Any URI LanceDB accepts; ``<home>/lancedb`` by default.
    log : bool
        Record each step as an MLflow run (default True).
    """

    def __init__(self, table: str, *, db: str | None = None, log: bool = True, cfg: Settings | None = None):
        self.cfg = cfg or settings()
        self.name = table
        self.db = lance.connect(db, self.cfg)
        self.table = lance.open_table(self.db, table)
        self.log = log

    # -- state -----------------------------------------------------------------------
    def _fresh(self):
        return lance.latest(self.table)

    @property
    def layout(self) -> TableLayout:
        return layout(self._fresh())

    @property
    def state(self) -> dict:
        """The migration state recorded on the table (``{}`` when none ever ran)."""
        t = self._fresh()
        raw = lance.field_meta(t, layout(t).text_column).get(MIGRATION_KEY)
        return json.loads(raw) if raw else {}

    def _write_state(self, state: dict) -> None:
        lance.set_field_meta(self.table, self.layout.text_column, {MIGRATION_KEY: json.dumps(state)})

    def _open_state(self, *allowed: str) -> dict:
        state = self.state
        allowed = allowed or OPEN
        if state.get("status") not in allowed:
            now = state.get("status") or "none"
            hint = {"none": "start one with %lance_migrate start TABLE --to EMBEDDER",
                    "finished": "the last migration finished; start a new one",
                    "started": "run backfill and cutover first", "cut_over": "it was already cut over"}.get(now, "")
            raise BadInput(f"{self.name!r} has no migration in state {'/'.join(allowed)} (now: {now}): {hint}")
        return state

    def _record(self, step: str, before: int, summary: str, details: dict, metrics: dict | None = None,
                tables: dict | None = None) -> StepResult:
        after = self._fresh().version
        result = StepResult(self.name, step, before, after, summary, details)
        if self.log:
            result.run_id = tracking.log_run(
                run_name=f"lance_migrate {step} {self.name}",
                tags={"llmops.kind": "lance_migrate", "llmops.table": self.name, "llmops.step": step,
                      "llmops.lancedb_uri": str(self.db.uri)},
                params={"version_before": before, "version_after": after,
                        **{k: v for k, v in details.items() if not isinstance(v, float)}},
                metrics={k: v for k, v in {**(metrics or {}), **details}.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)},
                tables=tables, cfg=self.cfg,
            )
        events.emit("migration_step", {"table": self.name, "uri": str(self.db.uri), "step": step,
                                       "version_before": before, "version_after": after, "run_id": result.run_id})
        return result

    # -- steps -----------------------------------------------------------------------
    def plan(self, to: str, *, sample: int = 64) -> StepResult:
        """The steps, the row count and a time estimate from a measured embedding speed."""
        t = self._fresh()
        lay = layout(t)
        before = t.version
        rows = t.count_rows()
        load_t0 = time.perf_counter()
        emb = get_embedder(to, cfg=self.cfg)
        load_s = time.perf_counter() - load_t0
        current = column_spec(t, lay.active_column)
        if emb.spec.digest == current.digest:
            raise BadInput(f"column {lay.active_column!r} is already built with {emb.spec.short}: nothing to migrate")
        texts = t.search().select([lay.text_column]).limit(max(1, sample)).to_arrow()[lay.text_column].to_pylist()
        emb.embed(texts[:2])  # first call pays one-time set-up; the rate must not include it
        t0 = time.perf_counter()
        emb.embed(texts)
        rate = len(texts) / max(time.perf_counter() - t0, 1e-9)
        estimate = rows / rate if rate else float("nan")
        column = f"vector_{_slug(emb.spec.ref)}"
        steps = [f"start --to {to} (tag v{before}, add column {column})",
                 f"backfill ({rows} rows, about {estimate:.0f} s)",
                 "index" + ("" if rows >= 5000 else " (skipped: brute force is exact below 5000 rows)"),
                 "shadow --queries ...", "cutover", "finish --yes (drops " + lay.active_column + ")"]
        details = {"from": current.short, "to": emb.spec.short, "rows": rows, "embed_rate_per_s": round(rate, 1),
                   "model_load_s": round(load_s, 2), "estimate_backfill_s": round(estimate, 1),
                   "steps": " -> ".join(steps)}
        return self._record("plan", before, f"{rows} rows from {current.ref} to {emb.spec.ref}, backfill about {estimate:.0f} s", details)

    def start(self, to: str, *, column: str | None = None) -> StepResult:
        """Tag the current version (the rollback point) and add a nullable column for the new model."""
        t = self._fresh()
        state = self.state
        if state.get("status") in OPEN:
            raise BadInput(f"{self.name!r} already has an open migration to {state['to']['ref']}: "
                           "finish or roll it back first")
        lay = layout(t)
        emb = get_embedder(to, cfg=self.cfg)
        current = column_spec(t, lay.active_column)
        if emb.spec.digest == current.digest:
            raise BadInput(f"column {lay.active_column!r} is already built with {emb.spec.short}: nothing to migrate")
        column = column or f"vector_{_slug(emb.spec.ref)}"
        if column in t.schema.names:
            raise BadInput(f"column {column!r} already exists in {self.name!r}: pass --column NAME")
        before = t.version
        start_tag = lance.create_tag(t, f"llmops-{column}-start-v{before}", before)
        t.add_columns(vector_field(column, emb.spec, status="candidate"))
        self._write_state({"status": "started", "from_column": lay.active_column, "from": json.loads(current.to_json()),
                           "to_column": column, "to": json.loads(emb.spec.to_json()), "start_tag": start_tag,
                           "start_version": before, "started_at": time.time()})
        return self._record("start", before, f"added {column} for {emb.spec.short}; rollback point {start_tag}",
                            {"column": column, "start_tag": start_tag, "rows": t.count_rows()})

    def _target(self, state: dict):
        emb = get_embedder(state["to"]["ref"], cfg=self.cfg)
        recorded = EmbedderSpec(**state["to"])
        if emb.spec.digest != recorded.digest:
            raise MixedVectorSpaces(f"{state['to_column']!r} is being built with {recorded.short} but "
                                    f"{recorded.ref} now loads as {emb.spec.short}: roll back and start again")
        return emb

    def backfill(self, batch: int = 256, *, max_batches: int | None = None, progress: bool = True) -> StepResult:
        """Embed the rows whose new vector is still null, ``batch`` rows per commit.

        Resumable: rerun after any crash and only the rows still null are embedded.
        Embedding the next batch overlaps with writing the previous one (one batch in
        flight at most, so memory stays bounded).
        """
        if batch < 1:
            raise BadInput(f"--batch must be at least 1, got {batch}")
        state = self._open_state()
        t = self._fresh()
        lay = layout(t)
        col = state["to_column"]
        emb = self._target(state)
        before = t.version
        todo = t.count_rows(f"{lance.quote(col)} IS NULL")
        from tqdm.auto import tqdm

        bar = tqdm(total=todo, desc=f"backfill {self.name}.{col}", disable=not progress or todo == 0)
        lance.key_index(t, lay.id_column)
        pending: queue.Queue = queue.Queue(maxsize=1)
        written = {"rows": 0, "skipped": 0, "commits": 0, "since_index": 0}
        failure: list[BaseException] = []

        def writer():
            while (item := pending.get()) is not None:
                if failure:
                    continue
                try:
                    if written["since_index"] >= REINDEX_ROWS:
                        lance.key_index(t, lay.id_column, rebuild=True)
                        written["since_index"] = 0
                    n = lance.fill_where_unchanged(t, lay.id_column, col, item)
                    written["rows"] += n
                    written["skipped"] += item.num_rows - n
                    written["commits"] += 1
                    written["since_index"] += item.num_rows
                    bar.update(item.num_rows)
                except BaseException as e:  # surfaced in the caller's thread below
                    failure.append(e)

        thread = threading.Thread(target=writer, name="llmops-backfill-writer", daemon=True)
        thread.start()
        t0 = time.perf_counter()
        batches = 0
        try:
            # Whole rows (all but the new column): the merge writes a row back only if
            # nothing in it changed since this snapshot, see lance.fill_where_unchanged.
            others = [c for c in t.schema.names if c != col]
            reader = t.search().where(f"{lance.quote(col)} IS NULL").select(others).to_batches(batch)
            for rb in reader:
                if failure or (max_batches is not None and batches >= max_batches):
                    break
                if rb.num_rows == 0:
                    continue
                import pyarrow as pa

                vectors = emb.embed(rb.column(lay.text_column).to_pylist(), batch_size=min(batch, 64))
                rows = pa.Table.from_batches([rb]).append_column(t.schema.field(col),
                                                                 vectors_array(vectors, emb.spec.dimension))
                pending.put(rows.select(t.schema.names))
                batches += 1
        finally:
            pending.put(None)
            thread.join()
            bar.close()
        if failure:
            raise failure[0]
        elapsed = time.perf_counter() - t0
        left = self._fresh().count_rows(f"{lance.quote(col)} IS NULL")
        details = {"column": col, "rows_embedded": written["rows"], "rows_changed_meanwhile": written["skipped"],
                   "commits": written["commits"], "rows_left": left, "seconds": round(elapsed, 2),
                   "rows_per_s": round(written["rows"] / elapsed, 1) if elapsed > 0 else 0.0}
        summary = f"{written['rows']} rows embedded, {left} left" + ("" if left else ": ready for shadow and cutover")
        if written["skipped"]:
            summary += (f"; {written['skipped']} rows changed while this ran were left as they are now: "
                        "run backfill again to embed their new text")
        return self._record("backfill", before, summary, details)

    def index(self, *, min_rows: int = 5000, index_type: str = "IVF_PQ") -> StepResult:
        """Build an ANN index on the new column once the table is big enough for one to pay."""
        state = self._open_state()
        t = self._fresh()
        col = state["to_column"]
        before = t.version
        rows = t.count_rows()
        left = t.count_rows(f"{col} IS NULL")
        if left:
            raise BadInput(f"{left} rows of {col!r} are still empty: run backfill before index")
        if rows < max(min_rows, 256):
            return self._record("index", before, f"skipped: {rows} rows is below {max(min_rows, 256)}; "
                                "brute-force search is exact and fast at this size", {"column": col, "rows": rows})
        dim = state["to"]["dimension"]
        sub = next((d for d in (dim // 16, dim // 8, dim // 4) if d and dim % d == 0), 1)
        parts = max(1, int(math.sqrt(rows)))
        t0 = time.perf_counter()
        t.create_index(metric=state["to"]["metric"], vector_column_name=col, num_partitions=parts,
                       num_sub_vectors=sub, index_type=index_type, replace=True)
        details = {"column": col, "rows": rows, "index_type": index_type, "num_partitions": parts,
                   "num_sub_vectors": sub, "seconds": round(time.perf_counter() - t0, 2)}
        return self._record("index", before, f"{index_type} on {col} ({parts} partitions)", details)

    def shadow(self, queries, *, k: int = 10, labels=None):
        """Run ``queries`` on the old and the new column and compare the rankings."""
        from .migration_shadow import shadow_compare

        state = self._open_state()
        t = self._fresh()
        before = t.version
        report = shadow_compare(self, t, state, queries, k=k, labels=labels)
        step = self._record("shadow", before, report.summary, report.headline(), tables={"shadow_queries.json": report.per_query()})
        report.run_id, report.version = step.run_id, before
        return report

    def cutover(self) -> StepResult:
        """Make the new column the one searches use, and tag that version."""
        state = self._open_state("started")
        t = self._fresh()
        before = t.version
        col, old = state["to_column"], state["from_column"]
        left = t.count_rows(f"{col} IS NULL")
        if left:
            raise BadInput(f"{left} rows of {col!r} are still empty: run backfill before cutover")
        lay = layout(t)
        write_layout(t, TableLayout(lay.id_column, lay.text_column, col))
        lance.set_field_meta(t, col, {"lancedb:status": "production"})
        lance.set_field_meta(t, old, {"lancedb:status": "deprecated"})
        tag = f"llmops-{col}-cutover-v{t.version}"
        self._write_state({**state, "status": "cut_over", "cutover_tag": tag, "cutover_at": time.time()})
        lance.create_tag(t, tag, self._fresh().version)
        return self._record("cutover", before, f"searches now use {col} ({state['to']['ref']}); tagged {tag}",
                            {"active_column": col, "previous_column": old, "tag": tag})

    def rollback(self) -> StepResult:
        """Undo: switch back after cutover, or restore the start tag before it.

        Rows written with ``add`` since ``start`` are kept (re-added without the new
        column) so a rollback never loses data written during the migration.
        """
        state = self._open_state()
        t = self._fresh()
        before = t.version
        if state["status"] == "cut_over":
            lay = layout(t)
            write_layout(t, TableLayout(lay.id_column, lay.text_column, state["from_column"]))
            lance.set_field_meta(t, state["from_column"], {"lancedb:status": "production"})
            lance.set_field_meta(t, state["to_column"], {"lancedb:status": "candidate"})
            self._write_state({**state, "status": "started", "rolled_back_at": time.time()})
            return self._record("rollback", before, f"searches use {state['from_column']} again; "
                                f"{state['to_column']} kept (cutover again, or rollback again to drop it)",
                                {"active_column": state["from_column"]})
        lay = layout(t)
        old = lance.snapshot(self.db, self.name, state["start_tag"])
        old_ids = set(old.search().select([lay.id_column]).to_arrow()[lay.id_column].to_pylist())
        keep_cols = [n for n in t.schema.names if n != state["to_column"]]
        now_ids = t.search().select([lay.id_column]).to_arrow()[lay.id_column].to_pylist()
        new_ids = [i for i in now_ids if i not in old_ids]
        added = None
        if new_ids:  # only the rows written since start are read back, not the whole table
            where = f"{lay.id_column} IN ({', '.join(_sql_literal(i) for i in new_ids)})"
            added = t.search().where(where).select(keep_cols).to_arrow()
        lance.restore(t, state["start_tag"])
        kept = added.num_rows if added is not None else 0
        if kept:
            t.add(added.cast(self._fresh().schema))
        return self._record("rollback", before, f"restored {state['start_tag']}" +
                            (f"; kept {kept} rows added since start" if kept else ""),
                            {"restored_tag": state["start_tag"], "rows_kept": kept})

    def finish(self, *, confirm: bool = False) -> StepResult:
        """Drop the old vector column after cutover. Irreversible except by restoring a tag."""
        state = self._open_state("cut_over")
        old = state["from_column"]
        if not confirm:
            raise BadInput(f"finish drops column {old!r} of {self.name!r} for good: "
                           "confirm with --yes (or finish(confirm=True))")
        t = self._fresh()
        before = t.version
        t.drop_columns([old])
        self._write_state({**state, "status": "finished", "finished_at": time.time()})
        return self._record("finish", before, f"dropped {old}; migration to {state['to']['ref']} finished",
                            {"dropped_column": old, "active_column": state["to_column"]})

    def status(self) -> StepResult:
        """Where the migration stands: columns, their models, how full they are, tags."""
        t = self._fresh()
        lay = layout(t)
        state = self.state
        details = {"rows": t.count_rows(), "active_column": lay.active_column,
                   "migration": state.get("status", "none")}
        for name, spec in vector_columns(t).items():
            filled = details["rows"] - t.count_rows(f"{name} IS NULL")
            status = lance.field_meta(t, name).get("lancedb:status", "")
            details[f"column {name}"] = f"{spec.short} · {status} · {filled}/{details['rows']} filled"
        for key in ("start_tag", "cutover_tag"):
            if state.get(key):
                details[key] = state[key]
        return StepResult(self.name, "status", t.version, t.version, f"migration {details['migration']}", details)

    # -- writes while a migration is open ---------------------------------------------
    def add(self, rows) -> int:
        """Append rows, embedding them for every vector column (both while a migration is open).

        Returns the table version after the write.
        """
        import pyarrow as pa

        t = self._fresh()
        lay = layout(t)
        ids = t.search().select([lay.id_column]).to_arrow()[lay.id_column].to_pylist()
        start = (max(ids) + 1) if ids and all(isinstance(i, int) for i in ids) else len(ids)
        rows = normalize_rows(rows, id_column=lay.id_column, text_column=lay.text_column, start_id=start)
        clash = set(ids) & {r[lay.id_column] for r in rows}
        if clash:
            raise BadInput(f"ids already in {self.name!r}: {sorted(clash)[:5]}; use new ids")
        texts = [r[lay.text_column] for r in rows]
        cols = {}
        for name, spec in vector_columns(t).items():
            emb = get_embedder(spec.ref, cfg=self.cfg)
            if emb.spec.digest != spec.digest:
                raise MixedVectorSpaces(f"column {name!r} was built with {spec.short}, but {spec.ref} now loads as {emb.spec.short}")
            cols[name] = vectors_array(embed_texts(emb, texts), spec.dimension)
        data = pa.Table.from_pylist([{k: v for k, v in r.items() if k not in cols} for r in rows])
        for name, arr in cols.items():
            data = data.append_column(name, arr)
        for f in t.schema:
            if f.name not in data.column_names:
                data = data.append_column(f.name, pa.nulls(len(rows), f.type))
        before = t.version
        t.add(data.select(t.schema.names).cast(t.schema))
        events.emit("lance_write", {"table": self.name, "uri": str(self.db.uri), "version_before": before,
                                    "version_after": t.version, "rows": len(rows)})
        return t.version

    def search(self, text: str, *, k: int = 10, column: str | None = None):
        """Search one column (the active one by default) with that column's own model."""
        from .vector_table import search

        return search(self.name, text, k=k, db=str(self.db.uri), column=column, cfg=self.cfg)


def _sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def migration(table: str, *, db: str | None = None, log: bool = True, cfg: Settings | None = None) -> Migration:
    """The Python twin of ``%lance_migrate``: a :class:`Migration` of ``table``."""
    return Migration(table, db=db, log=log, cfg=cfg)


def run_step(step: str, table: str, *, db: str | None = None, **options):
    """Run one ``%lance_migrate`` subcommand (the magic's single entry point)."""
    if step not in STEPS:
        raise BadInput(f"unknown step {step!r}: choose one of {', '.join(STEPS)}")
    return getattr(Migration(table, db=db), step)(**options)
