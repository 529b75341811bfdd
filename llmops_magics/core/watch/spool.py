"""New scores kept on disk first, then written to MLflow by a background thread.

MLflow writes one assessment per call (about 400 a second on a local sqlite store), so
writing 10,000 scores would hold a watch for half a minute. Each new score is put in a
local spool first (``<home>/watch/scores.sqlite``: WAL, one transaction per batch),
and a daemon thread (:class:`AssessmentWriter`) logs them as MLflow feedback while the
watch goes on; what it has not written when the kernel dies is still on disk, and
:func:`ship_pending` writes it at the next watch.

* **Exactly once.** Every row carries its assessment id (``feedback.assessment_id`` of
  trace, name and scorer digest), fixed when it is spooled. A batch is marked *tried*
  before its calls: a tried row may have landed without an answer (a timeout, a kill),
  so it is looked up (``feedback_exists``) before it is sent again, and a refusal of a
  duplicate id is checked the same way and counts as written.
* **One failure stops it.** After the first MLflow failure the writer stops for this
  run and the rest stays spooled; its :meth:`~AssessmentWriter.status` says why.
* A row is keyed by a digest of the tracking URI (never the URI itself, which may hold
  credentials), so two stores never mix.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...config import Settings
from ...errors import TrackingError
from ..tracking import FeedbackTargetMissing, command, feedback_exists, log_feedback, unavailable
from ..tracking.feedback import ready

DIGEST_KEY = "llmops.scorer_digest"  # the assessment metadata key reuse is keyed by
BATCH = 64  # rows per transaction and per writer step: marks stay cheap, a kill loses no more than one batch's marks
KEEP_WRITTEN_S = 7 * 24 * 3600.0  # written rows are kept a week (what was sent, for a look), then pruned

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    store TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    value TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source_id TEXT NOT NULL,
    assessment_id TEXT NOT NULL,
    overrides TEXT,
    tried INTEGER NOT NULL DEFAULT 0,
    written INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL,
    PRIMARY KEY (store, trace_id, name, digest)
);
CREATE INDEX IF NOT EXISTS scores_unwritten ON scores (store, written);
"""

# Rows a live writer of this process holds: ship_pending leaves them to it.
_claimed: set[tuple[str, str, str, str]] = set()
_claimed_lock = threading.Lock()


def store_key(cfg: Settings) -> str:
    """The spool's name for the tracking store: a digest of its URI (credentials never stored)."""
    return hashlib.sha256(cfg.resolved_tracking_uri.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SpooledScore:
    """One score as spooled: what the writer logs as one MLflow feedback."""

    trace_id: str
    name: str
    digest: str
    value: object
    source_type: str
    source_id: str
    assessment_id: str
    overrides: str | None = None
    tried: bool = False

    def key(self, store: str) -> tuple[str, str, str, str]:
        return (store, self.trace_id, self.name, self.digest)


class ScoreSpool:
    """The local score spool of one home (a sqlite file; one connection per thread).

    Parameters
    ----------
    cfg : Settings
        Its home holds the file; its tracking URI keys the rows.
    """

    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self.store = store_key(cfg)
        self.path = Path(cfg.home) / "watch" / "scores.sqlite"
        self.note: str | None = None
        self._local = threading.local()
        self._open()

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a commit survives a killed process
            self._local.conn = conn
        return conn

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connect().executescript(_SCHEMA)
            self._connect().execute("SELECT count(*) FROM scores").fetchone()
        except sqlite3.DatabaseError as e:  # not a database (a torn copy, another program's file)
            self._local.conn = None
            aside = self.path.with_name(f"scores.sqlite.broken-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            self.note = (
                f"the score spool was unreadable ({e}): moved aside to {aside.name}; "
                "scores it held unwritten are scored again"
            )
            self._connect().executescript(_SCHEMA)

    @contextlib.contextmanager
    def _transaction(self):
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------------ rows

    def add(self, rows: Sequence[SpooledScore], *, replace: bool = False) -> None:
        """Spool new scores in one transaction; ``replace`` (a rescore) overwrites an unwritten twin."""
        if not rows:
            return
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        now = time.time()
        with self._transaction() as conn:
            conn.executemany(
                f"{verb} INTO scores (store, trace_id, name, digest, value, source_type, source_id, "
                "assessment_id, overrides, tried, written, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                [
                    (
                        self.store,
                        r.trace_id,
                        r.name,
                        r.digest,
                        json.dumps(r.value),
                        r.source_type,
                        r.source_id,
                        r.assessment_id,
                        r.overrides,
                        now,
                    )
                    for r in rows
                ],
            )

    def unwritten(self, trace_ids: Iterable[str] | None = None, *, written_too: bool = False) -> list[SpooledScore]:
        """This store's scores not yet in MLflow (of these traces, or all), oldest first.

        ``written_too`` adds the rows already written (kept a week): a watch that read its
        traces while an earlier watch's writer was still writing finds those scores in
        neither the traces it read nor the unwritten rows, and would score them again.
        """
        rows = self._connect().execute(
            "SELECT trace_id, name, digest, value, source_type, source_id, assessment_id, overrides, tried "
            "FROM scores WHERE store = ? AND written <= ? ORDER BY at, rowid",
            (self.store, 1 if written_too else 0),
        )
        wanted = set(trace_ids) if trace_ids is not None else None
        return [
            SpooledScore(t, n, d, json.loads(v), st, si, a, o, bool(tr))
            for t, n, d, v, st, si, a, o, tr in rows
            if wanted is None or t in wanted
        ]

    def _mark(self, column: str, rows: Sequence[SpooledScore]) -> None:
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(
                f"UPDATE scores SET {column} = 1 WHERE store = ? AND trace_id = ? AND name = ? AND digest = ?",
                [r.key(self.store) for r in rows],
            )

    def mark_tried(self, rows: Sequence[SpooledScore]) -> None:
        """About to be sent: from now on, maybe in MLflow already."""
        self._mark("tried", rows)

    def mark_written(self, rows: Sequence[SpooledScore]) -> None:
        """In MLflow (confirmed, or found there)."""
        self._mark("written", rows)

    def drop(self, rows: Sequence[SpooledScore]) -> None:
        """Rows that can never be written (their trace is gone)."""
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(
                "DELETE FROM scores WHERE store = ? AND trace_id = ? AND name = ? AND digest = ?",
                [r.key(self.store) for r in rows],
            )

    def counts(self) -> tuple[int, int]:
        """(written, not written) rows of this store."""
        got = dict(
            self._connect()
            .execute("SELECT written, count(*) FROM scores WHERE store = ? GROUP BY written", (self.store,))
            .fetchall()
        )
        return int(got.get(1, 0)), int(got.get(0, 0))

    def prune(self, older_than_s: float = KEEP_WRITTEN_S) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM scores WHERE written = 1 AND at < ?", (time.time() - older_than_s,))


# ---------------------------------------------------------------------- the writer


class AssessmentWriter:
    """Writes spooled scores to MLflow as feedback, in a daemon thread.

    Parameters
    ----------
    spool : ScoreSpool
    cfg : Settings
    batch : int
        Rows per step (one ``tried`` and one ``written`` transaction each).

    Attributes
    ----------
    written : int
        Scores MLflow holds now (confirmed, or found there after a lost answer).
    total : int
        Scores handed to this writer.
    dropped : int
        Scores whose trace is gone from MLflow (removed from the spool).
    error : str or None
        Why it stopped early (the rest stays spooled for :func:`ship_pending`).
    """

    def __init__(self, spool: ScoreSpool, *, cfg: Settings, batch: int = BATCH):
        self.spool, self.cfg, self.batch = spool, cfg, max(1, int(batch))
        self.written = self.total = self.dropped = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._done = threading.Event()
        self._started_at: float | None = None
        self._last_at: float | None = None
        self._thread: threading.Thread | None = None
        self._mine: set[tuple[str, str, str, str]] = set()

    # ------------------------------------------------------------------ feeding

    def put(self, rows: Sequence[SpooledScore]) -> None:
        """Hand over rows already in the spool; starts the thread on first use."""
        if not rows:
            return
        keys = {r.key(self.spool.store) for r in rows}
        with _claimed_lock:
            _claimed.update(keys)
        self._mine |= keys
        self.total += len(rows)
        self._queue.put(list(rows))
        if self._thread is None:
            ready(self.cfg)  # MLflow's tracing client built here: a background import races the foreground one
            self._thread = threading.Thread(target=self._loop, name="llmops-watch-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """No more rows will come: the thread ends once it has written what it holds."""
        self._closed = True
        self._queue.put(None)
        if self._thread is None:
            self._done.set()

    # ------------------------------------------------------------------ reading

    @property
    def rate(self) -> float:
        """Scores written per second while writing (0 before the first)."""
        if not self.written or self._started_at is None or self._last_at is None:
            return 0.0
        return self.written / max(self._last_at - self._started_at, 1e-6)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for the writer; True when every score was written."""
        if not self._closed:
            self.close()
        self._done.wait(timeout)
        return self.written + self.dropped == self.total and self.error is None

    def status(self) -> str:
        """One line: what was written, at what rate, and what waits for later and why."""
        done, total = self.written, self.total
        line = f"wrote {done:,} of {total:,} scores to MLflow ({self.rate:,.0f}/s)"
        if self.dropped:
            line += f"; {self.dropped:,} dropped: their traces are no longer in MLflow"
        left = total - done - self.dropped
        if self.error is not None:
            line += f"; {left:,} kept to write later: {self.error}"
        elif left and not self._done.is_set():
            line += f"; writing the other {left:,}"
        return line

    # ------------------------------------------------------------------ work

    def _loop(self) -> None:
        try:
            with command(self.cfg):  # one command for the thread's life: a remote store is pinged once
                self._drain()
        finally:
            with _claimed_lock:  # what it could not write is ship_pending's now
                _claimed.difference_update(self._mine)
            self._done.set()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.write(item)
                except Exception as e:  # the spool file itself failed (disk full...): say so, never a traceback
                    self.error = f"the score spool failed ({type(e).__name__}: {e})"

    def write(self, rows: Sequence[SpooledScore]) -> int:
        """Write rows in batches in the calling thread; stops at the first failure. Returns rows written.

        All calls form one command (a remote store is pinged once), each bounded by
        ``mlflow_timeout_s`` on its own: a slow server may take minutes over a backlog,
        while one that stops answering stops the writer within one call's time.
        """
        before = self.written
        with command(self.cfg):
            for lo in range(0, len(rows), self.batch):
                if self.error is not None:
                    break
                self._write_batch(rows[lo : lo + self.batch])
        return self.written - before

    def _write_batch(self, rows: Sequence[SpooledScore]) -> None:
        if self._started_at is None:
            self._started_at = time.monotonic()
        self.spool.mark_tried([r for r in rows if not r.tried])
        landed: list[SpooledScore] = []
        gone: list[SpooledScore] = []
        for r in rows:
            try:
                if self._send(r):
                    landed.append(r)
                    self.written += 1
                    self._last_at = time.monotonic()
            except FeedbackTargetMissing:
                gone.append(r)
                self.dropped += 1
            except TrackingError as e:
                self.error = str(e)
                break
        self.spool.mark_written(landed)
        self.spool.drop(gone)

    def _send(self, r: SpooledScore) -> bool:
        """Log one score; True once MLflow holds it (sent now, or found there)."""
        if r.tried and feedback_exists(r.trace_id, r.assessment_id, self.cfg, own_budget=True):
            return True
        try:
            log_feedback(
                r.trace_id,
                name=r.name,
                value=r.value,
                source_id=r.source_id,
                source_type=r.source_type,
                metadata={DIGEST_KEY: r.digest},
                assessment_id=r.assessment_id,
                overrides=r.overrides,
                cfg=self.cfg,
                own_budget=True,
            )
        except FeedbackTargetMissing:
            if r.overrides is None:
                raise
            # The feedback a rescore replaces is gone (deleted in the UI): log the new one on its own.
            return self._send(dataclasses.replace(r, overrides=None))
        except TrackingError:
            # A refused duplicate id is a copy that landed before (a lost answer, a replay).
            if feedback_exists(r.trace_id, r.assessment_id, self.cfg, own_budget=True):
                return True
            raise
        return True


def ship_pending(cfg: Settings) -> int:
    """Write the scores an earlier watch spooled and did not write (it died, or MLflow was away).

    Rows a live writer of this process still holds are left to it. Call at the start of a
    watch, before reading assessments, so what was scored before is found there. It
    writes with MLflow budgets of its own (one per call), and does nothing when the
    calling command has already given MLflow up.

    Parameters
    ----------
    cfg : Settings

    Returns
    -------
    int
        Scores written now (the rest, after a failure, stays spooled for the next call).
    """
    spool = ScoreSpool(cfg)
    with _claimed_lock:
        rows = [r for r in spool.unwritten() if r.key(spool.store) not in _claimed]
    if rows and unavailable() is None:
        ready(cfg)
        writer = AssessmentWriter(spool, cfg=cfg)
        writer.total = len(rows)
        # A command of its own, as the background writer has: a long backlog must not use
        # up the calling command's MLflow budget.
        contextvars.Context().run(writer.write, rows)
        written = writer.written
    else:
        written = 0
    spool.prune()
    return written
