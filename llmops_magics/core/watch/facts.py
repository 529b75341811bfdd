"""What a watch learnt from each trace's spans, kept on disk so the next watch reads no spans.

A finished trace (state OK or ERROR) never changes, so the facts read from its spans
(request length, tokens, latency, what served it, its ``llmops.*`` attributes) and the
embedding of its request are kept in one sqlite file, ``<home>/watch/facts.sqlite``,
per tracking store and trace. No request or response text is kept, only numbers and
names. The store is keyed by a digest of its public URI, never the URI (it may hold a
password).

sqlite's write-ahead log and a busy timeout let two kernels read and write the same file
at once; each write is one transaction, so a killed writer leaves the file readable. A
file that is not a readable sqlite database is moved aside (``facts.sqlite.corrupt-<ts>``)
and rebuilt empty, with one note saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ...backends.uris import public_uri
from ...config import Settings
from ..paths import shown_path

FILE = "facts.sqlite"
SCHEMA = 1
# Another kernel may hold the write lock while it stores a batch (milliseconds).
BUSY_TIMEOUT_S = 30.0
# Ids per query: well under sqlite's bound on bound parameters (999 before 3.32).
_IDS_PER_QUERY = 900
_FINISHED = ("OK", "ERROR")

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS facts (store TEXT NOT NULL, trace_id TEXT NOT NULL, facts TEXT NOT NULL, "
    "PRIMARY KEY (store, trace_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS vectors (store TEXT NOT NULL, trace_id TEXT NOT NULL, embedder TEXT NOT NULL, "
    "vector BLOB NOT NULL, PRIMARY KEY (store, trace_id, embedder)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS embedders (ref TEXT NOT NULL, identity TEXT NOT NULL, digest TEXT NOT NULL, "
    "dimension INTEGER NOT NULL, PRIMARY KEY (ref, identity))",
)


def store_key(cfg: Settings) -> str:
    """Which tracking store a cached trace came from: a digest of its URI without credentials."""
    return hashlib.sha256(public_uri(cfg.resolved_tracking_uri).encode()).hexdigest()[:16]


def is_finished(state) -> bool:
    """Whether a trace in this state (a ``TraceState`` or its name) will not change any more."""
    return str(getattr(state, "value", state)) in _FINISHED


class FactsCache:
    """The facts file of one home, open for one read; use as a context manager.

    Attributes
    ----------
    path : Path
    notes : list of str
        One line per thing the reader should know (a corrupt file rebuilt, a cache
        that could not be used this time).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.notes: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._open()

    # -- opening, and rebuilding a broken file ------------------------------------------
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.OperationalError as e:  # locked past the timeout, unwritable folder
            # A garbage write-ahead log beside the file reads as a "disk I/O error" when sqlite
            # replays it: a broken cache to move aside, not a busy one.
            if "disk i/o error" in str(e).lower() and self.path.exists():
                self._rebuild(e)
                return
            self._db = None
            self.notes.append(f"the watch facts cache {shown_path(self.path)} is not usable now ({e}): spans are read")
        except sqlite3.DatabaseError as e:
            self._rebuild(e)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with _transaction(db):
                for statement in _TABLES:
                    db.execute(statement)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
            # A header that reads but pages that do not: found by a quick check, not at random later.
            if db.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            return db
        except BaseException:
            db.close()
            raise

    def _rebuild(self, error: BaseException) -> None:
        """Move the unreadable file (and its log) aside and start an empty one."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        aside = self.path.with_name(
            f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**6}"
        )
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                self.path.with_name(self.path.name + suffix).rename(aside.with_name(aside.name + suffix))
        try:
            self._db = self._connect()
        except sqlite3.Error as e:
            self.notes.append(
                f"the watch facts cache {shown_path(self.path)} could not be rebuilt ({e}): spans are read"
            )
            return
        self.notes.append(
            f"the watch facts cache {shown_path(self.path)} was unreadable ({error}): "
            f"moved aside to {aside.name} and rebuilt; spans are read again once"
        )

    def _guarded(self, fn, default):
        """Run one cache operation; a file broken under us is rebuilt, a busy one skipped."""
        if self._db is None:
            return default
        try:
            return fn(self._db)
        except sqlite3.OperationalError as e:
            self.notes.append(f"the watch facts cache {shown_path(self.path)} was busy ({e}): some facts not cached")
            return default
        except sqlite3.DatabaseError as e:
            self._rebuild(e)
            return default

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> FactsCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- facts ----------------------------------------------------------------------------
    def facts(self, store: str, trace_ids: Sequence[str]) -> dict[str, dict]:
        """The cached facts of those traces that have them, by trace id."""

        def read(db):
            out = {}
            for part in _parts(trace_ids):
                marks = ",".join("?" * len(part))
                rows = db.execute(
                    f"SELECT trace_id, facts FROM facts WHERE store = ? AND trace_id IN ({marks})", (store, *part)
                )
                out.update((trace_id, json.loads(text)) for trace_id, text in rows)
            return out

        return self._guarded(read, {})

    def put_facts(self, store: str, rows: Iterable[tuple[str, Mapping]]) -> int:
        """Keep the facts of finished traces (one transaction); returns how many were written."""
        rows = [(store, trace_id, json.dumps(dict(f), sort_keys=True, default=str)) for trace_id, f in rows]

        def write(db):
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)", rows)
            return len(rows)

        return self._guarded(write, 0) if rows else 0

    # -- embeddings -----------------------------------------------------------------------
    def vectors(self, store: str, embedder: str, trace_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached request embeddings (float32) of those traces that have one for ``embedder``."""

        def read(db):
            out = {}
            for part in _parts(trace_ids):
                marks = ",".join("?" * len(part))
                rows = db.execute(
                    f"SELECT trace_id, vector FROM vectors WHERE store = ? AND embedder = ? AND trace_id IN ({marks})",
                    (store, embedder, *part),
                )
                out.update((trace_id, np.frombuffer(blob, dtype=np.float32)) for trace_id, blob in rows)
            return out

        return self._guarded(read, {})

    def put_vectors(self, store: str, embedder: str, rows: Iterable[tuple[str, np.ndarray]]) -> int:
        """Keep request embeddings of finished traces (one transaction)."""
        rows = [(store, t, embedder, np.asarray(v, dtype=np.float32).tobytes()) for t, v in rows]

        def write(db):
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
            return len(rows)

        return self._guarded(write, 0) if rows else 0

    def embedder(self, ref: str, identity: str) -> tuple[str, int] | None:
        """(digest, dimension) of an embedder seen before with the same files, else None."""
        row = self._guarded(
            lambda db: db.execute(
                "SELECT digest, dimension FROM embedders WHERE ref = ? AND identity = ?", (ref, identity)
            ).fetchone(),
            None,
        )
        return (row[0], int(row[1])) if row else None

    def put_embedder(self, ref: str, identity: str, digest: str, dimension: int) -> None:
        def write(db):
            with _transaction(db):
                db.execute("INSERT OR REPLACE INTO embedders VALUES (?, ?, ?, ?)", (ref, identity, digest, dimension))

        self._guarded(write, None)


def open_cache(cfg: Settings) -> FactsCache:
    """The facts cache of ``cfg.home`` (created on first use)."""
    return FactsCache(cfg.home / "watch" / FILE)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection):
    # BEGIN IMMEDIATE takes the write lock up front, so a busy file waits on the timeout
    # instead of failing midway through a batch.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # the original error is the one worth raising
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _parts(ids: Sequence[str]):
    ids = list(ids)
    for lo in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[lo : lo + _IDS_PER_QUERY]
