"""Move a LanceDB table's vectors to a new embedding model, step by step.

``plan -> start -> backfill -> index -> shadow -> cutover -> finish``, with ``rollback``
and ``status`` at any point. This module is the state machine: each step checks the
state the table records (``state.py``), does its one thing and records itself (an
MLflow run and a ``MigrationStep`` event). The work lives beside it: ``backfill.py``
(where a backfill commits), ``ranking.py`` (the shadow comparison), ``dual_write.py``
(adding rows while a migration is open).

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
  at once (see ``dual_write.py``).

Column names reach Lance SQL only through ``backends.lance.quote``, so any name Lance
can hold (``vec-2``, ``body text``, ``Doc-Id``) works in every step.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time

from ...backends import lance, ray_cluster
from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from .. import events, options, tracking
from ..paths import shown_path
from .backfill import fill, rows_left
from .dual_write import add_rows
from .embedders import EmbedderSpec, get_embedder
from .ranking import ShadowReport, shadow_compare
from .ray_backfill import check_concurrency, fill_on_ray, open_cluster, plan_fill
from .results import StepResult
from .state import (
    DIGEST_SUFFIX,
    OPEN,
    digest_column,
    empty_and_stale,
    interrupted,
    open_state,
    read_state,
    require_complete,
    write_state,
)
from .table import (
    MIGRATION_KEY,
    TABLE_KEY,
    MixedVectorSpaces,
    SearchResult,
    TableLayout,
    column_spec,
    layout,
    vector_columns,
    vector_field,
)
from .table import search as search_table

STEPS = ("plan", "start", "backfill", "index", "shadow", "cutover", "rollback", "finish", "status")


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
        return read_state(self._fresh())

    def _open_state(self, *allowed: str, resume: str | None = None) -> dict:
        return open_state(self._fresh(), self.name, allowed or OPEN, resume=resume)

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
                uri=shown_path(self.db.uri),
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
                # A local table as people share it (<home>/lancedb); object-store URIs unchanged.
                "llmops.lancedb_uri": shown_path(str(self.db.uri), cfg=self.cfg),
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
            end_time=time.time(),  # the step's work ends here: the run spans it, not its write
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
        state = read_state(t)
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
        # Checked before anything is written: Lance would refuse the name only once the
        # state is recorded, leaving a migration that rollback has to clear.
        column = lance.check_column_name(column or f"vector_{_slug(emb.spec.ref)}")
        digest = column + DIGEST_SUFFIX
        for name in (column, digest):
            if name in t.schema.names:
                raise BadInput(f"column {name!r} already exists in {self.name!r}: pass --column NAME")
        before = t.version
        start_tag = lance.create_tag(t, lance.tag_name("llmops", column, "start", f"v{before}"), before)
        # State first: a kill before the columns land leaves an open migration with no
        # column, which rollback clears, rather than orphan columns no step knows about.
        write_state(
            t,
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
            },
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
    def backfill(
        self,
        batch: int = 256,
        *,
        max_batches: int | None = None,
        progress: bool = True,
        on: str = "kernel",
        address: str | None = None,
        concurrency: int | None = None,
    ) -> StepResult:
        """Embed the rows whose new vector is null or stale, ``batch`` rows per commit.

        Resumable: rerun after any crash and only the rows still null or stale are
        embedded; a row whose text was edited after it was embedded is embedded again.
        Embedding the next batch overlaps with writing the previous one (one batch in
        flight at most, so memory stays bounded).

        Parameters
        ----------
        batch : int
            Rows per commit.
        max_batches : int, optional
            Stop after this many commits.
        progress : bool
            Show a progress bar (rows committed).
        on : {"kernel", "ray"}
            Where the embedding runs: in this process (default), or in Ray workers while
            this process commits (``ray_backfill.py``), with the same guarantees.
        address : str, optional
            Ray only: the cluster (``auto``, ``ray://head:10001``, ``host:port``); default
            ``Settings.ray_address``, else a local Ray started for this process.
        concurrency : int, optional
            Ray only: embedder actors (default ``ray_backfill.DEFAULT_CONCURRENCY``, 2).
        """
        if batch < 1:
            raise BadInput(f"--batch must be at least 1, got {batch}")
        ray = self._ray_target(on, address, concurrency)  # refused here, before any work
        state = self._open_state()
        t = self._fresh()
        lay = layout(t)
        col, dig = state["to_column"], digest_column(state)
        # On Ray the workers load the embedder (and check its digest): the kernel never does.
        emb = self._target(state) if ray is None else None
        before = t.version
        if dig not in t.schema.names:  # a migration started by an older llmops_magics
            t.add_columns([lance.digest_field(dig, col)])
        desc = f"backfill {self.name}.{col}"
        extra, where = {}, ""
        if ray is None:
            done = fill(t, lay, col, dig, emb, batch=batch, max_batches=max_batches, progress=progress, desc=desc)
        else:
            cluster = open_cluster(ray[0], self.cfg)
            job = plan_fill(t, lay, col, dig, column_spec(t, col), batch=batch, concurrency=ray[1])
            done = fill_on_ray(t, job, cluster, cfg=self.cfg, max_batches=max_batches, progress=progress, desc=desc)
            extra = {"on": "ray", "ray_concurrency": job.concurrency, "workers": job.concurrency}
            extra["ray_cluster"] = cluster.label
            where = f" on {cluster.label}"
        left = rows_left(self._fresh(), lay, col, dig)
        details = {
            "column": col,
            "rows_embedded": done.rows,
            "rows_changed_meanwhile": done.skipped,
            "commits": done.commits,
            "rows_left": left,
            "seconds": round(done.seconds, 2),
            "rows_per_s": round(done.rows / done.seconds, 1) if done.seconds > 0 else 0.0,
            **extra,
        }
        summary = f"{done.rows} rows embedded{where}, {left} left" + ("" if left else ": ready for shadow and cutover")
        if done.skipped:
            summary += (
                f"; {done.skipped} rows changed while this ran were left as they are now: "
                "run backfill again to embed their new text"
            )
        return self._record("backfill", before, summary, details)

    def _ray_target(self, on: str, address: str | None, concurrency) -> tuple[str, int | None] | None:
        """``(address, concurrency)`` for a backfill on Ray, ``None`` on the kernel; every
        refusal (bad option, no Ray, a remote cluster that cannot reach our files) is here."""
        if on not in ("kernel", "ray"):
            raise BadInput(f"--on {on}: choose kernel (the default) or ray")
        if on == "kernel":
            if address is not None or concurrency is not None:
                given = "--address" if address is not None else "--concurrency"
                raise BadInput(f"{given} needs --on ray (the kernel backfill runs in this process)")
            return None
        concurrency = check_concurrency(concurrency)
        ray_cluster.require_ray()
        address = ray_cluster.resolve_address(address, self.cfg)
        ray_cluster.check_reachable(
            address,
            tracking_uri=self.cfg.resolved_tracking_uri if self.log else None,
            paths=(str(self.db.uri),),
        )
        return address, concurrency

    @_step
    def index(self, *, min_rows: int = 5000, index_type: str = "IVF_PQ") -> StepResult:
        """Build an ANN index on the new column once the table is big enough for one to pay."""
        state = self._open_state()
        t = self._fresh()
        col = state["to_column"]
        before = t.version
        rows = t.count_rows()
        require_complete(t, state, "index")
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
    def shadow(self, queries, *, k: int = 10, labels=None) -> ShadowReport:
        """Run ``queries`` on the old and the new column and compare the rankings."""
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
        require_complete(t, state, "cutover")
        # Named for the version this commit makes (unless another writer commits first).
        tag = lance.tag_name("llmops", col, "cutover", f"v{before + 1}")
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
        mine = [c for c in (state["to_column"], digest_column(state)) if c in t.schema.names]
        if mine:
            t.drop_columns(mine)
        write_state(self._fresh(), state.get("previous"))
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
        gone = [c for c in (old, digest_column(state)) if c in t.schema.names]
        if gone:
            t.drop_columns(gone)
        write_state(self._fresh(), {**state, "status": "finished", "finished_at": time.time()})
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
        state = read_state(t)
        details = {"rows": t.count_rows(), "active_column": lay.active_column, "migration": state.get("status", "none")}
        pending = interrupted(state, t.schema.names) if state.get("status") in OPEN else None
        if pending:
            details["interrupted"] = f"a {pending} did not finish: run it again"
        for name, spec in vector_columns(t).items():
            filled = details["rows"] - t.count_rows(lance.is_null(name))
            status = lance.field_meta(t, name).get("lancedb:status", "")
            details[f"column {name}"] = f"{spec.short} · {status} · {filled}/{details['rows']} filled"
        if state.get("status") in OPEN and not pending:
            details["stale_rows"] = empty_and_stale(t, state)[1]
            details[f"column {state['to_column']}"] += f", {details['stale_rows']} stale"
        for key in ("start_tag", "cutover_tag"):
            if state.get(key):
                details[key] = state[key]
        return StepResult(self.name, "status", t.version, t.version, f"migration {details['migration']}", details)

    # -- reads and writes while a migration is open -------------------------------------
    def add(self, rows) -> int:
        """Append rows, embedding them for every vector column (both while a migration is open).

        Rows without an id get one no other row has, and a given id already in the
        table is refused (``BadInput``), also when several processes add at once.
        Returns the table version after the write.
        """
        return add_rows(self.table, self.db, self.name, rows, self.cfg)

    def search(self, text: str, *, k: int = 10, column: str | None = None) -> SearchResult:
        """Search one column (the active one by default) with that column's own model."""
        return search_table(self.name, text, k=k, db=str(self.db.uri), column=column, cfg=self.cfg)


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
