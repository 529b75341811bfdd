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
* **Never in the way.** :func:`ship_pending` hands an earlier watch's backlog to a
  background writer and returns at once. A spool file that is not a database is moved
  aside with its log (``scores.sqlite.corrupt-<ts>``, ``-wal``, ``-shm``) and rebuilt; a
  spool locked past the timeout or broken under us costs only keeping: the scores are
  still computed and used, and :attr:`ScoreSpool.notes` says so in one line.
* A row is keyed by the facts cache's store key (a digest of the public tracking URI,
  never the URI itself, which may hold credentials), so two stores never mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ...config import Settings
from ...errors import TrackingError
from ..paths import shown_path
from ..tracking import FeedbackTargetMissing, command, feedback_exists, log_feedback, unavailable
from ..tracking.feedback import ready
from .facts import store_key

DIGEST_KEY = "llmops.scorer_digest"  # the assessment metadata key reuse is keyed by
BUSY_TIMEOUT_S = 30.0  # another kernel may hold the write lock for one batch (milliseconds)
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
_T = TypeVar("_T")

# Rows a live writer of this process holds: ship_pending leaves them to it.
_claimed: set[tuple[str, str, str, str]] = set()
_claimed_lock = threading.Lock()


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

    Every operation is guarded: a file locked past the timeout, unwritable, or broken
    under us gives the operation's empty answer and one line in :attr:`notes`, never a
    sqlite traceback; a file that is not a database is moved aside and rebuilt.

    Parameters
    ----------
    cfg : Settings
        Its home holds the file; its tracking URI keys the rows.

    Attributes
    ----------
    notes : list of str
        One line per thing the user should know (a rebuilt file, scores not kept).
    """

    def __init__(self, cfg: Settings):
        self.cfg = cfg
        self.store = store_key(cfg)
        self.path = Path(cfg.home) / "watch" / "scores.sqlite"
        self.notes: list[str] = []
        self._local = threading.local()
        self._generation = 0  # bumped by a rebuild: every thread's connection to the old file is dropped
        self._usable = True
        self._lock = threading.Lock()
        self._open()

    @property
    def note(self) -> str | None:
        """The notes as one line (None when there are none)."""
        return "; ".join(self.notes) or None

    def _say(self, line: str) -> None:
        with self._lock:
            if line not in self.notes:
                self.notes.append(line)

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", -1) == self._generation:
            return conn
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._local.conn = None
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a commit survives a killed process
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.generation = conn, self._generation
        return conn

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check(self._connect())
        except OSError as e:
            self._unusable(e)
        except sqlite3.OperationalError as e:  # locked past the timeout, unwritable folder
            # A garbage write-ahead log beside the file reads as a "disk I/O error" when sqlite
            # tries to replay it: that is a broken spool to move aside, not a busy one.
            if "disk i/o error" in str(e).lower() and self.path.exists():
                self._rebuild(e)
            else:
                self._unusable(e)
        except sqlite3.DatabaseError as e:  # not a database (a torn copy, another program's file)
            self._rebuild(e)

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        conn.executescript(_SCHEMA)
        # A header that reads but pages that do not: found now, not by a later write.
        if conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("database disk image is malformed")

    def _unusable(self, error: BaseException) -> None:
        self._usable = False
        self._say(
            f"score spool unavailable: {shown_path(self.path)} ({_one_line(error)}): new scores are used, not kept"
        )

    def _rebuild(self, error: BaseException) -> None:
        """Move the broken file and its log aside (a stale log must not replay into the new file); start empty."""
        with self._lock:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
                self._local.conn = None
            self._generation += 1
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}"
            )
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    self.path.with_name(self.path.name + suffix).rename(aside.with_name(aside.name + suffix))
        try:
            self._check(self._connect())
        except (sqlite3.Error, OSError) as e:
            self._unusable(e)
            return
        self._say(
            f"the score spool {shown_path(self.path)} was unreadable ({_one_line(error)}): moved aside to "
            f"{aside.name} and rebuilt; scores it held unwritten are scored again"
        )

    def _guarded(self, what: str, fn: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        """Run one spool operation; a busy or broken file gives ``default`` and a note, never a traceback."""
        if not self._usable:
            return default
        try:
            return fn(self._connect())
        except sqlite3.OperationalError as e:  # locked past the timeout, disk full, folder gone
            self._say(f"score spool unavailable: could not {what} ({_one_line(e)}): new scores are used, not kept")
        except sqlite3.DatabaseError as e:  # broken under us
            self._rebuild(e)
        return default

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------------ rows

    def add(self, rows: Sequence[SpooledScore], *, replace: bool = False) -> bool:
        """Spool new scores in one transaction; ``replace`` (a rescore) overwrites an unwritten twin.

        Returns False when the spool could not keep them (see :attr:`notes`).
        """
        if not rows:
            return True
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        now = time.time()
        values = [
            (self.store, r.trace_id, r.name, r.digest, json.dumps(r.value), r.source_type, r.source_id,
             r.assessment_id, r.overrides, now)
            for r in rows
        ]  # fmt: skip

        def insert(conn) -> bool:
            with self._transaction(conn):
                conn.executemany(
                    f"{verb} INTO scores (store, trace_id, name, digest, value, source_type, source_id, "
                    "assessment_id, overrides, tried, written, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                    values,
                )
            return True

        return self._guarded("keep new scores", insert, False)

    def unwritten(self, trace_ids: Iterable[str] | None = None, *, written_too: bool = False) -> list[SpooledScore]:
        """This store's scores not yet in MLflow (of these traces, or all), oldest first.

        ``written_too`` adds the rows already written (kept a week): a watch that read its
        traces while an earlier watch's writer was still writing finds those scores in
        neither the traces it read nor the unwritten rows, and would score them again.
        An unusable spool gives none (those traces are scored again).
        """
        wanted = set(trace_ids) if trace_ids is not None else None

        def read(conn) -> list[SpooledScore]:
            rows = conn.execute(
                "SELECT trace_id, name, digest, value, source_type, source_id, assessment_id, overrides, tried "
                "FROM scores WHERE store = ? AND written <= ? ORDER BY at, rowid",
                (self.store, 1 if written_too else 0),
            )
            return [
                SpooledScore(t, n, d, json.loads(v), st, si, a, o, bool(tr))
                for t, n, d, v, st, si, a, o, tr in rows
                if wanted is None or t in wanted
            ]

        return self._guarded("read spooled scores", read, [])

    def _change(self, what: str, sql: str, rows: Sequence[SpooledScore]) -> None:
        if not rows:
            return

        def run(conn) -> None:
            with self._transaction(conn):
                conn.executemany(sql, [r.key(self.store) for r in rows])

        self._guarded(what, run, None)

    def _mark(self, column: str, rows: Sequence[SpooledScore]) -> None:
        where = "WHERE store = ? AND trace_id = ? AND name = ? AND digest = ?"
        self._change(f"mark scores {column}", f"UPDATE scores SET {column} = 1 {where}", rows)

    def mark_tried(self, rows: Sequence[SpooledScore]) -> None:
        """About to be sent: from now on, maybe in MLflow already."""
        self._mark("tried", rows)

    def mark_written(self, rows: Sequence[SpooledScore]) -> None:
        """In MLflow (confirmed, or found there)."""
        self._mark("written", rows)

    def drop(self, rows: Sequence[SpooledScore]) -> None:
        """Rows that can never be written (their trace is gone)."""
        where = "WHERE store = ? AND trace_id = ? AND name = ? AND digest = ?"
        self._change("drop scores", f"DELETE FROM scores {where}", rows)

    def counts(self) -> tuple[int, int]:
        """(written, not written) rows of this store ((0, 0) when the spool is unusable)."""

        def read(conn) -> tuple[int, int]:
            got = dict(
                conn.execute("SELECT written, count(*) FROM scores WHERE store = ? GROUP BY written", (self.store,))
            )
            return int(got.get(1, 0)), int(got.get(0, 0))

        return self._guarded("count spooled scores", read, (0, 0))

    def prune(self, older_than_s: float = KEEP_WRITTEN_S) -> None:
        """Forget written rows older than ``older_than_s`` seconds."""

        def run(conn) -> None:
            with self._transaction(conn):
                conn.execute("DELETE FROM scores WHERE written = 1 AND at < ?", (time.time() - older_than_s,))

        self._guarded("prune written scores", run, None)


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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


def ship_pending(cfg: Settings) -> AssessmentWriter:
    """Hand the scores an earlier watch spooled and did not write to a background writer.

    Returns at once: writing never holds up reading and scoring (a 10,000-score backlog
    takes half a minute on a local store, minutes on a slow server). Rows a live writer of
    this process already holds are left to it; the rows handed over are claimed, so a
    second call while this writer runs does not send them twice, and the next plan finds
    them in the spool (reused, not scored again). Tried rows are looked up before they
    are sent again. Nothing is handed over when the calling command has already given
    MLflow up.

    Parameters
    ----------
    cfg : Settings

    Returns
    -------
    AssessmentWriter
        The writer of the backlog (closed: it ends once its rows are written or MLflow
        fails). Its ``total`` is how many rows were handed over (0: nothing to write);
        ``wait(timeout)`` waits for them, ``written`` / ``status()`` say how it went;
        after a failure the rest stays spooled for the next call. Spool problems are in
        ``writer.spool.notes``.
    """
    spool = ScoreSpool(cfg)
    writer = AssessmentWriter(spool, cfg=cfg)
    if unavailable() is None:
        with _claimed_lock:  # filtered and claimed at once: two calls never hand over one row twice
            rows = [r for r in spool.unwritten() if r.key(spool.store) not in _claimed]
            _claimed.update(r.key(spool.store) for r in rows)
        writer.put(rows)  # its thread runs a command of its own: the caller's MLflow budget stays the caller's
    spool.prune()
    writer.close()
    return writer
