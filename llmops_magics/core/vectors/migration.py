"""Move a LanceDB table's vectors to a new embedding model, step by step.

``plan -> start -> backfill -> index -> shadow -> cutover -> finish``, with ``rollback``
and ``status`` at any point. The state lives in the table (field metadata, see
``vector_table.py``), so any process that opens the table sees the open migration,
and the state is versioned and restored with the data.

Why the steps are safe:

* ``start`` tags the current version (kept for history) and adds two nullable columns:
  the new vector and ``<column>__src``, the sha256 of the text each vector was computed
  from. A vector whose digest no longer matches its row's text is *stale*.
* ``backfill`` reads the rows whose new vector is null or stale, from one snapshot, and
  writes each batch with a merge that only touches rows whose other columns are still
  as read: a rerun after a crash picks up where the last committed batch ended, a row
  dual-written by ``add`` or edited in the meantime is never overwritten, and an edit
  made after a row was embedded makes it stale, so the next pass embeds it again. Each
  batch (vectors and digests) is one atomic LanceDB commit, found through an index on
  the id column so memory follows the batch, not the table. ``index`` and ``cutover``
  refuse while any row is empty or stale.
* ``cutover`` only flips which column is active (metadata, one commit); ``finish`` is
  the one step that destroys anything, and it asks first.
* ``rollback`` before cutover never restores an old version (that would revert every
  update and delete made since ``start``): it drops the two new columns in one commit,
  then puts back the state from before ``start``. A kill between the two leaves an
  open migration whose column is gone, which ``rollback`` run again completes.
* ``add`` gives every row an id no other row has, even with several processes adding
  at once (see ``Migration.add``).
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import queue
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

from ...backends import lance
from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from .. import events, options, tracking
from ..display import esc, html_table, text_table, warnings_block
from .embedders import EmbedderSpec, get_embedder
from .table import (
    MIGRATION_KEY,
    TABLE_KEY,
    MixedVectorSpaces,
    TableLayout,
    column_spec,
    embed_texts,
    layout,
    normalize_rows,
    vector_columns,
    vector_field,
    vectors_array,
)

STEPS = ("plan", "start", "backfill", "index", "shadow", "cutover", "rollback", "finish", "status")
OPEN = ("started", "cut_over")
# Rows a backfill merge rewrites fall outside the id index and every later merge scans
# them; rebuilding the index this often keeps that scan (and its memory) bounded.
REINDEX_ROWS = 16384
DIGEST_SUFFIX = "__src"
# How often add re-embeds when a migration step changed the columns under it, and
# looks again for free ids when the ones it picked turned out taken.
ADD_TRIES = 3
# Each add is one small fragment outside the id index, and every later add's lookups
# and merge open each of them: measured on LanceDB 0.40, single-row adds took 89 ms
# each over the first 250 and 505 ms by the 1,000th. Rebuilding the index costs
# 0.15-0.25 s at 100,000-1,000,000 rows, so rebuilding this often keeps adds flat.
ADD_REINDEX_ROWS = 128


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
    # What did not happen, in one line each (e.g. the MLflow run was kept for later).
    warnings: list = field(default_factory=list)
    run_key: str | None = None

    def _rows(self) -> list[list]:
        return [[k, v] for k, v in self.details.items()]

    def _repr_mimebundle_(self, include=None, exclude=None):
        head = f"{self.step} {self.table}: {self.summary}"
        foot = f"version {self.version_before} -> {self.version_after}" + (
            f" · run {self.run_id[:8]}" if self.run_id else ""
        )
        warn_text, warn_html = warnings_block(self.warnings)
        text = head + "\n" + (text_table(["", ""], self._rows()) + "\n" if self.details else "") + foot + warn_text
        html = (
            f"<div class='llmops-migrate'><b>{esc(head)}</b>"
            + (html_table(["", ""], self._rows()) if self.details else "")
            + f"<div style='opacity:.7'>{esc(foot)}</div>{warn_html}</div>"
        )
        return {"text/plain": text, "text/html": html}


def _step(method):
    """A migration step: one MLflow budget for all its calls, and its start time for its run."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        self._started = time.time()
        with tracking.command(self.cfg):
            return method(self, *args, **kwargs)

    return run


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
        self._started: float | None = None

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

    def _write_state(self, state: dict | None) -> None:
        """Record ``state`` (``None``: no migration) in one commit."""
        lance.set_field_meta(self.table, self.layout.text_column, {MIGRATION_KEY: json.dumps(state) if state else None})

    def _open_state(self, *allowed: str, resume: str | None = None) -> dict:
        """The open migration, if in one of ``allowed``; ``resume`` names the step that
        may pick up after that step's own interrupted run (see :func:`_interrupted`)."""
        state = self.state
        allowed = allowed or OPEN
        if state.get("status") not in allowed:
            now = state.get("status") or "none"
            hint = {
                "none": "start one with %lance_migrate start TABLE --to EMBEDDER",
                "finished": "the last migration finished; start a new one",
                "started": "run backfill and cutover first",
                "cut_over": "it was already cut over",
            }.get(now, "")
            raise BadInput(f"{self.name!r} has no migration in state {'/'.join(allowed)} (now: {now}): {hint}")
        pending = _interrupted(state, self._fresh().schema.names)
        if pending and pending != resume:
            raise BadInput(
                f"a {pending} of {self.name!r} was interrupted before it finished: "
                f"run %lance_migrate {pending} {self.name} again to complete it"
            )
        return state

    def _progress(self, t, state: dict) -> tuple[int, int]:
        """(empty, stale) rows of the new column; stale: embedded from a text since edited."""
        col, dig = state["to_column"], _digest_column(state)
        empty = t.count_rows(f"{lance.quote(col)} IS NULL")
        if dig not in t.schema.names:  # started before digests were kept: no row can be trusted
            return empty, t.count_rows() - empty
        stale = t.count_rows(f"{lance.quote(col)} IS NOT NULL AND {lance.stale(dig, layout(t).text_column)}")
        return empty, stale

    def _require_complete(self, t, state: dict, step: str) -> None:
        empty, stale = self._progress(t, state)
        col = state["to_column"]
        if empty:
            raise BadInput(f"{empty} rows of {col!r} are still empty: run backfill before {step}")
        if stale:
            raise BadInput(
                f"{stale} rows of {col!r} are stale (their text changed after they were embedded): "
                f"run backfill before {step}"
            )

    def _record(
        self,
        step: str,
        before: int,
        summary: str,
        details: dict,
        metrics: dict | None = None,
        tables: dict | None = None,
    ) -> StepResult:
        after = self._fresh().version
        result = StepResult(self.name, step, before, after, summary, details)
        if self.log:
            try:
                result.run_id = self._log(step, before, after, details, metrics, tables)
            except TrackingError as e:  # the Lance commit is done: the step stands, its run waits
                result.warnings.append(str(e))
                result.run_key = getattr(e, "key", None)
        events.emit(
            events.MigrationStep(
                table=self.name,
                uri=str(self.db.uri),
                step=step,
                version_before=before,
                version_after=after,
                run_id=result.run_id,
                run_key=result.run_key,
            )
        )
        return result

    def _log(self, step: str, before: int, after: int, details: dict, metrics: dict | None, tables: dict | None):
        return tracking.log_run(
            run_name=f"lance_migrate {step} {self.name}",
            tags={
                "llmops.kind": "lance_migrate",
                "llmops.table": self.name,
                "llmops.step": step,
                "llmops.lancedb_uri": str(self.db.uri),
            },
            params={
                "version_before": before,
                "version_after": after,
                **{k: v for k, v in details.items() if not isinstance(v, float)},
            },
            metrics={
                k: v
                for k, v in {**(metrics or {}), **details}.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            },
            tables=tables,
            cfg=self.cfg,
            start_time=self._started,
        )

    # -- steps -----------------------------------------------------------------------
    @_step
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
        steps = [
            f"start --to {to} (tag v{before}, add column {column})",
            f"backfill ({rows} rows, about {estimate:.0f} s)",
            "index" + ("" if rows >= 5000 else " (skipped: brute force is exact below 5000 rows)"),
            "shadow --queries ...",
            "cutover",
            "finish --yes (drops " + lay.active_column + ")",
        ]
        details = {
            "from": current.short,
            "to": emb.spec.short,
            "rows": rows,
            "embed_rate_per_s": round(rate, 1),
            "model_load_s": round(load_s, 2),
            "estimate_backfill_s": round(estimate, 1),
            "steps": " -> ".join(steps),
        }
        return self._record(
            "plan",
            before,
            f"{rows} rows from {current.ref} to {emb.spec.ref}, backfill about {estimate:.0f} s",
            details,
        )

    @_step
    def start(self, to: str, *, column: str | None = None) -> StepResult:
        """Tag the current version and add nullable columns for the new model's vectors and their sources."""
        t = self._fresh()
        state = self.state
        if state.get("status") in OPEN:
            raise BadInput(
                f"{self.name!r} already has an open migration to {state['to']['ref']}: finish or roll it back first"
            )
        previous = {k: v for k, v in state.items() if k != "previous"} or None
        lay = layout(t)
        emb = get_embedder(to, cfg=self.cfg)
        current = column_spec(t, lay.active_column)
        if emb.spec.digest == current.digest:
            raise BadInput(f"column {lay.active_column!r} is already built with {emb.spec.short}: nothing to migrate")
        column = column or f"vector_{_slug(emb.spec.ref)}"
        digest = column + DIGEST_SUFFIX
        for name in (column, digest):
            if name in t.schema.names:
                raise BadInput(f"column {name!r} already exists in {self.name!r}: pass --column NAME")
        before = t.version
        start_tag = lance.create_tag(t, f"llmops-{column}-start-v{before}", before)
        # State first: a kill before the columns land leaves an open migration with no
        # column, which rollback clears, rather than orphan columns no step knows about.
        self._write_state(
            {
                "status": "started",
                "from_column": lay.active_column,
                "from": json.loads(current.to_json()),
                "to_column": column,
                "digest_column": digest,
                "to": json.loads(emb.spec.to_json()),
                "start_tag": start_tag,
                "start_version": before,
                "started_at": time.time(),
                "previous": previous,
            }
        )
        t.add_columns([vector_field(column, emb.spec, status="candidate"), lance.digest_field(digest, column)])
        return self._record(
            "start",
            before,
            f"added {column} for {emb.spec.short}; start tagged {start_tag}",
            {"column": column, "start_tag": start_tag, "rows": t.count_rows()},
        )

    def _target(self, state: dict):
        emb = get_embedder(state["to"]["ref"], cfg=self.cfg)
        recorded = EmbedderSpec(**state["to"])
        if emb.spec.digest != recorded.digest:
            raise MixedVectorSpaces(
                f"{state['to_column']!r} is being built with {recorded.short} but "
                f"{recorded.ref} now loads as {emb.spec.short}: roll back and start again"
            )
        return emb

    @_step
    def backfill(self, batch: int = 256, *, max_batches: int | None = None, progress: bool = True) -> StepResult:
        """Embed the rows whose new vector is null or stale, ``batch`` rows per commit.

        Resumable: rerun after any crash and only the rows still null or stale are
        embedded; a row whose text was edited after it was embedded is embedded again.
        Embedding the next batch overlaps with writing the previous one (one batch in
        flight at most, so memory stays bounded).
        """
        if batch < 1:
            raise BadInput(f"--batch must be at least 1, got {batch}")
        state = self._open_state()
        t = self._fresh()
        lay = layout(t)
        col, dig = state["to_column"], _digest_column(state)
        emb = self._target(state)
        before = t.version
        if dig not in t.schema.names:  # a migration started by an older llmops_magics
            t.add_columns([lance.digest_field(dig, col)])
        todo_where = lance.needs_embedding(col, dig, lay.text_column)
        todo = t.count_rows(todo_where)
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
                    n = lance.fill_where_unchanged(t, lay.id_column, col, dig, item)
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
            # Whole rows (all but the two new columns): the merge writes a row back only
            # if nothing in it changed since this snapshot, see lance.fill_where_unchanged.
            others = [c for c in t.schema.names if c not in (col, dig)]
            reader = t.search().where(todo_where).select(others).to_batches(batch)
            for rb in reader:
                if failure or (max_batches is not None and batches >= max_batches):
                    break
                if rb.num_rows == 0:
                    continue
                pending.put(_embedded_batch(t, rb, lay.text_column, col, dig, emb, batch))
                batches += 1
        finally:
            pending.put(None)
            thread.join()
            bar.close()
        if failure:
            raise failure[0]
        elapsed = time.perf_counter() - t0
        left = self._fresh().count_rows(todo_where)
        details = {
            "column": col,
            "rows_embedded": written["rows"],
            "rows_changed_meanwhile": written["skipped"],
            "commits": written["commits"],
            "rows_left": left,
            "seconds": round(elapsed, 2),
            "rows_per_s": round(written["rows"] / elapsed, 1) if elapsed > 0 else 0.0,
        }
        summary = f"{written['rows']} rows embedded, {left} left" + ("" if left else ": ready for shadow and cutover")
        if written["skipped"]:
            summary += (
                f"; {written['skipped']} rows changed while this ran were left as they are now: "
                "run backfill again to embed their new text"
            )
        return self._record("backfill", before, summary, details)

    @_step
    def index(self, *, min_rows: int = 5000, index_type: str = "IVF_PQ") -> StepResult:
        """Build an ANN index on the new column once the table is big enough for one to pay."""
        state = self._open_state()
        t = self._fresh()
        col = state["to_column"]
        before = t.version
        rows = t.count_rows()
        self._require_complete(t, state, "index")
        if rows < max(min_rows, 256):
            return self._record(
                "index",
                before,
                f"skipped: {rows} rows is below {max(min_rows, 256)}; "
                "brute-force search is exact and fast at this size",
                {"column": col, "rows": rows},
            )
        dim = state["to"]["dimension"]
        sub = next((d for d in (dim // 16, dim // 8, dim // 4) if d and dim % d == 0), 1)
        parts = max(1, int(math.sqrt(rows)))
        t0 = time.perf_counter()
        t.create_index(
            metric=state["to"]["metric"],
            vector_column_name=col,
            num_partitions=parts,
            num_sub_vectors=sub,
            index_type=index_type,
            replace=True,
        )
        details = {
            "column": col,
            "rows": rows,
            "index_type": index_type,
            "num_partitions": parts,
            "num_sub_vectors": sub,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return self._record("index", before, f"{index_type} on {col} ({parts} partitions)", details)

    @_step
    def shadow(self, queries, *, k: int = 10, labels=None):
        """Run ``queries`` on the old and the new column and compare the rankings."""
        from .ranking import shadow_compare

        state = self._open_state()
        t = self._fresh()
        before = t.version
        report = shadow_compare(self, t, state, queries, k=k, labels=labels)
        step = self._record(
            "shadow", before, report.summary, report.headline(), tables={"shadow_queries.json": report.per_query()}
        )
        report.run_id, report.version, report.warnings = step.run_id, before, step.warnings
        return report

    @_step
    def cutover(self) -> StepResult:
        """Make the new column the one searches use, and tag that version."""
        state = self._open_state("started")
        t = self._fresh()
        before = t.version
        col, old = state["to_column"], state["from_column"]
        self._require_complete(t, state, "cutover")
        # Named for the version this commit makes (unless another writer commits first).
        tag = f"llmops-{col}-cutover-v{before + 1}"
        self._switch(t, col, old, {**state, "status": "cut_over", "cutover_tag": tag, "cutover_at": time.time()})
        lance.create_tag(t, tag, t.version)
        return self._record(
            "cutover",
            before,
            f"searches now use {col} ({state['to']['ref']}); tagged {tag}",
            {"active_column": col, "previous_column": old, "tag": tag},
        )

    def _switch(self, t, active: str, other: str, state: dict) -> None:
        """Make ``active`` the searched column and record ``state``, in one commit: a kill
        leaves the table wholly before or wholly after the switch."""
        lay = layout(t)
        new_layout = TableLayout(lay.id_column, lay.text_column, active)
        lance.set_fields_meta(
            t,
            {
                lay.text_column: {TABLE_KEY: json.dumps(new_layout.__dict__), MIGRATION_KEY: json.dumps(state)},
                active: {"lancedb:status": "production"},
                other: {"lancedb:status": "deprecated" if state["status"] == "cut_over" else "candidate"},
            },
        )

    @_step
    def rollback(self) -> StepResult:
        """Undo: switch back after cutover; before it, drop the new columns.

        Every write made since ``start`` (inserts, updates, deletes) is kept: no old
        version is restored. Before cutover this takes two commits (drop the columns,
        then put back the state from before ``start``); if it is killed between them,
        run it again and it completes.
        """
        state = self._open_state(resume="rollback")
        t = self._fresh()
        before = t.version
        if state["status"] == "cut_over":
            self._switch(
                t,
                state["from_column"],
                state["to_column"],
                {**state, "status": "started", "rolled_back_at": time.time()},
            )
            return self._record(
                "rollback",
                before,
                f"searches use {state['from_column']} again; "
                f"{state['to_column']} kept (cutover again, or rollback again to drop it)",
                {"active_column": state["from_column"]},
            )
        mine = [c for c in (state["to_column"], _digest_column(state)) if c in t.schema.names]
        if mine:
            t.drop_columns(mine)
        self._write_state(state.get("previous"))
        summary = (
            f"dropped {', '.join(mine)}" if mine else "completed an interrupted rollback"
        ) + "; every row written since start kept"
        return self._record("rollback", before, summary, {"dropped_columns": ", ".join(mine), "rows": t.count_rows()})

    @_step
    def finish(self, *, confirm: bool = False) -> StepResult:
        """Drop the old vector column after cutover. Irreversible except by restoring a tag."""
        state = self._open_state("cut_over", resume="finish")
        old = state["from_column"]
        if not confirm:
            raise BadInput(
                f"finish drops column {old!r} of {self.name!r} for good: confirm with --yes (or finish(confirm=True))"
            )
        t = self._fresh()
        before = t.version
        # The digest column goes too: once the old column is gone nothing reads it.
        gone = [c for c in (old, _digest_column(state)) if c in t.schema.names]
        if gone:
            t.drop_columns(gone)
        self._write_state({**state, "status": "finished", "finished_at": time.time()})
        return self._record(
            "finish",
            before,
            f"dropped {old}; migration to {state['to']['ref']} finished",
            {"dropped_column": old, "active_column": state["to_column"]},
        )

    def status(self) -> StepResult:
        """Where the migration stands: columns, their models, how full they are, tags."""
        t = self._fresh()
        lay = layout(t)
        state = self.state
        details = {"rows": t.count_rows(), "active_column": lay.active_column, "migration": state.get("status", "none")}
        pending = _interrupted(state, t.schema.names) if state.get("status") in OPEN else None
        if pending:
            details["interrupted"] = f"a {pending} did not finish: run it again"
        for name, spec in vector_columns(t).items():
            filled = details["rows"] - t.count_rows(f"{lance.quote(name)} IS NULL")
            status = lance.field_meta(t, name).get("lancedb:status", "")
            details[f"column {name}"] = f"{spec.short} · {status} · {filled}/{details['rows']} filled"
        if state.get("status") in OPEN and not pending:
            details["stale_rows"] = self._progress(t, state)[1]
            details[f"column {state['to_column']}"] += f", {details['stale_rows']} stale"
        for key in ("start_tag", "cutover_tag"):
            if state.get(key):
                details[key] = state[key]
        return StepResult(self.name, "status", t.version, t.version, f"migration {details['migration']}", details)

    # -- writes while a migration is open ---------------------------------------------
    def add(self, rows) -> int:
        """Append rows, embedding them for every vector column (both while a migration is open).

        Rows without an id get one no other row has, and a given id already in the
        table is refused (``BadInput``), also when several processes add at once.
        Returns the table version after the write.
        """
        lay = layout(self._fresh())
        items = normalize_rows(rows, id_column=lay.id_column, text_column=lay.text_column, start_id=None)
        texts = [r[lay.text_column] for r in items]
        for _ in range(ADD_TRIES):
            t = self._fresh()
            shape = _columns(t)
            vectors = self._embed_for(t, texts)  # the slow part, outside the lock
            with lance.write_lock(self.db, self.name) as counter:
                t = self._fresh()
                if _columns(t) == shape:
                    return self._insert(t, lay, items, vectors, counter)
            # A migration step added or dropped a column meanwhile: embed for the new set.
        raise BadInput(f"the columns of {self.name!r} kept changing while adding rows: add them again")

    def _embed_for(self, t, texts: list[str]) -> dict:
        """Vectors for every vector column, and the text digests its source column records."""
        import pyarrow as pa

        cols = {}
        for name, spec in vector_columns(t).items():
            emb = get_embedder(spec.ref, cfg=self.cfg)
            if emb.spec.digest != spec.digest:
                raise MixedVectorSpaces(
                    f"column {name!r} was built with {spec.short}, but {spec.ref} now loads as {emb.spec.short}"
                )
            cols[name] = vectors_array(embed_texts(emb, texts), spec.dimension)
        for vec, dig in _digest_columns(t).items():
            if vec in cols:  # dual writes record their source like backfill does, or they would read as stale
                cols[dig] = pa.array([lance.text_digest(x) for x in texts], pa.binary())
        return cols

    def _insert(self, t, lay: TableLayout, items: list[dict], vectors: dict, counter) -> int:
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
            raise BadInput(f"ids already in {self.name!r}: {sorted(clash)[:5]}; use new ids")
        self._assign_ids(t, key, items, given, counter)
        before = t.version
        added = lance.insert_new(t, key, _as_table(t, items, vectors))
        events.emit(
            events.TableWritten(
                table=self.name, uri=str(self.db.uri), version_before=before, version_after=t.version, rows=added
            )
        )
        if added < len(items):
            raise BadInput(
                f"{len(items) - added} of {len(items)} rows were not added to {self.name!r}: "
                "another writer used their ids at the same moment; add them again with new ids"
            )
        return t.version

    def _assign_ids(self, t, key: str, items: list[dict], given: list, counter) -> None:
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
        raise BadInput(f"could not find free ids in {self.name!r}: give every row an {key!r}")

    def search(self, text: str, *, k: int = 10, column: str | None = None):
        """Search one column (the active one by default) with that column's own model."""
        from .table import search

        return search(self.name, text, k=k, db=str(self.db.uri), column=column, cfg=self.cfg)


def _digest_column(state: dict) -> str:
    return state.get("digest_column") or state["to_column"] + DIGEST_SUFFIX


def _digest_columns(t) -> dict[str, str]:
    """vector column -> the column recording the digest of the text each vector came from."""
    out = {}
    for f in t.schema:  # one schema read: each t.schema is a call into LanceDB
        of = (f.metadata or {}).get(lance.DIGEST_OF.encode())
        if of:
            out[of.decode()] = f.name
    return out


def _interrupted(state: dict, columns) -> str | None:
    """The step whose kill left ``state`` naming a column that is gone: run it again."""
    if state.get("status") == "started" and state.get("to_column") not in columns:
        return "rollback"
    if state.get("status") == "cut_over" and state.get("from_column") not in columns:
        return "finish"
    return None


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


def _embedded_batch(t, rb, text_column: str, col: str, dig: str, emb, batch: int):
    """A snapshot batch with its new vectors and the digests of the texts they came from."""
    import pyarrow as pa

    texts = rb.column(text_column).to_pylist()
    vectors = emb.embed(texts, batch_size=min(batch, 64))
    rows = pa.Table.from_batches([rb])
    rows = rows.append_column(t.schema.field(col), vectors_array(vectors, emb.spec.dimension))
    rows = rows.append_column(t.schema.field(dig), pa.array([lance.text_digest(x) for x in texts], pa.binary()))
    return rows.select(t.schema.names)


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


def migration(table: str, *, db: str | None = None, log: bool = True, cfg: Settings | None = None) -> Migration:
    """The Python twin of ``%lance_migrate``: a :class:`Migration` of ``table``."""
    return Migration(table, db=db, log=log, cfg=cfg)


def run_step(step: str, table: str, *, db: str | None = None, **values):
    """Run one ``%lance_migrate`` subcommand (the magic's single entry point).

    Option values are checked (``core/options``) before the table is opened.
    """
    if step not in STEPS:
        raise BadInput(f"unknown step {step!r}: choose one of {', '.join(STEPS)}")
    checked = options.check(**{k: v for k, v in values.items() if k in options.RULES})
    return getattr(Migration(table, db=db), step)(**{**values, **checked})
