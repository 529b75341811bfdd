"""The embedded sqlite MLflow store: created whole or not at all, and repaired when broken.

MLflow builds a new sqlite store in place, running about a hundred schema migrations
over about a second; a process killed in that second leaves a ``mlflow.db`` with
``_alembic_tmp_*`` tables that MLflow will never open again. So the store is built
under a temporary name and linked into place only when complete: the final name
either does not exist or holds a whole store. A half-built store found anyway (made
by an older version of this package, or an MLflow upgrade killed midway) is moved
aside and rebuilt when it holds nothing; otherwise :func:`health` names the exact fix.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ...errors import TrackingError

# Tables whose rows are a user's work: a broken store holding any of them is not ours to move.
_DATA_TABLES = ("runs", "registered_models", "model_versions", "trace_info", "logged_models")


@dataclass(frozen=True)
class StoreHealth:
    """What a sqlite store file is: ``missing``, ``ok``, ``broken`` (holding no work) or ``damaged``."""

    state: str
    detail: str = ""
    fix: str = ""


def sqlite_path(uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` URI, or None for any other store."""
    # SQLAlchemy's form: sqlite:///relative/path or sqlite:////absolute/path.
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    if path in ("", ":memory:"):
        return None
    return Path(path)


def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def health(path: Path) -> StoreHealth:
    """Inspect a store file with sqlite alone (MLflow would try to migrate it)."""
    path = Path(path)
    if not path.exists():
        return StoreHealth("missing")
    try:
        with open(path, "rb") as f:
            header = f.read(16)
        if header and header != b"SQLite format 3\x00":
            return StoreHealth("broken", "not an sqlite database")
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            rows = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in _DATA_TABLES if t in tables}
            revision = (
                (con.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0]
                if "alembic_version" in tables
                else None
            )
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return StoreHealth("broken", f"sqlite cannot read it ({e})")
    leftovers = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if not leftovers and revision == _head_revision():
        return StoreHealth("ok")
    why = (
        f"an interrupted schema migration left {', '.join(leftovers)}"
        if leftovers
        else f"its schema is at {revision or 'no'} revision, not {_head_revision()}"
    )
    work = sum(rows.values())
    if not work:
        return StoreHealth("broken", why)
    held = ", ".join(f"{n} {t}" for t, n in rows.items() if n)
    return StoreHealth("damaged", f"{why}; it holds {held}", _fix(path, tables, leftovers))


def _fix(path: Path, tables: set, leftovers: list[str]) -> str:
    # An interrupted batch migration copies T into _alembic_tmp_T, drops T, renames the
    # copy: if T is gone the copy is the data, else the copy is the stray one.
    steps = []
    for tmp in leftovers:
        original = tmp.removeprefix("_alembic_tmp_")
        steps.append(f"DROP TABLE {tmp};" if original in tables else f"ALTER TABLE {tmp} RENAME TO {original};")
    sql = " ".join(steps)
    backup = f"cp {path} {path}.bak"
    repair = f"sqlite3 {path} '{sql}' && " if sql else ""
    return f"{backup} && {repair}mlflow db upgrade sqlite:///{path}"


def ensure(path: Path, artifact_root: str) -> None:
    """Make sure ``path`` holds a whole, current store; build it atomically if missing.

    Raises
    ------
    TrackingError
        When the file holds work but cannot be opened, with the command that fixes it.
    """
    path = Path(path)
    state = health(path)
    if state.state == "ok":
        return
    if state.state == "damaged":
        raise TrackingError(f"the MLflow store {path} is damaged ({state.detail}): fix it with: {state.fix}")
    if state.state == "broken":
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)  # nothing of value inside; kept for a post-mortem
    _build(path, artifact_root)


def _build(path: Path, artifact_root: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(path)
    tmp = path.with_name(f".{path.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root)
        store.engine.dispose()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            # link, not rename: a store another process linked first is never overwritten.
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            if leftover.exists():
                leftover.unlink()
    _fsync_dir(path.parent)


def _remove_stale_builds(path: Path) -> None:
    # A build killed midway leaves its temporary file; its pid says whether it still runs.
    for f in path.parent.glob(f".{path.name}.building-*"):
        try:
            pid = int(f.name.split("building-")[1].split("-")[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            f.unlink(missing_ok=True)
        except PermissionError:  # another user's live process
            pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
