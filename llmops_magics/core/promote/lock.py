"""One alias mover at a time: MLflow 3.17 has no conditional alias write.

* **A local store** (sqlite, a folder): an exclusive ``fcntl`` lock on a file beside the
  sqlite file (or in the home), held while the alias is re-read, set and read back.
  Every process on the machine that shares the store shares the file.
* **A tracking server**: a lease tag on the registered model / prompt
  (``llmops.alias_lease.<alias>`` -> ``{owner, until}``). Write the lease, wait a moment
  (longer than two writes apart take to land), re-read: still ours? Another mover's live
  lease, or ours overwritten, is a race lost. The lease ends at ``until`` if its holder died.

Either way the caller re-reads the alias inside the lock (still the version the gate
checked?) and reads it back after the write; the loser gets :class:`AliasRace`, one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path

from ...config import Settings
from ...errors import AliasRace
from ..paths import shown_path
from ..registry.base import RegistryKind
from ..tracking import client, is_remote, mlflow_errors
from ..tracking.errors import error_code
from ..tracking.store import sqlite_path

LEASE_PREFIX = "llmops.alias_lease."
# Seconds a lease holds before another mover may take it (a holder that died). Longer than
# MLflow's own HTTP retries (about 245 s): a write of ours that timed out here may still land
# while they run, and must not land inside another mover's lease.
LEASE_S = 300.0
# Seconds between writing the lease and reading it back: two movers writing within this
# of each other both see the later one's lease, so exactly one goes on.
SETTLE_S = 1.0
# Seconds to wait for a local lock another process holds before giving up.
WAIT_S = 30.0


def lock_path(cfg: Settings) -> Path:
    """The lock file of a local store: beside its sqlite file, else in the home."""
    db = sqlite_path(cfg.resolved_tracking_uri)
    return db.with_name(db.name + ".alias.lock") if db is not None else cfg.home / "alias.lock"


@contextlib.contextmanager
def alias_lock(kind: RegistryKind, name: str, alias: str, cfg: Settings):
    """Hold the right to move ``alias`` of ``name`` (file lock or lease, by store).

    Raises
    ------
    AliasRace
        When another mover holds it (a lease) or held it past :data:`WAIT_S` (a file lock).
    """
    if is_remote(cfg.resolved_tracking_uri):
        with _lease(kind, name, alias, cfg):
            yield
    else:
        with _file_lock(kind, name, alias, cfg):
            yield


@contextlib.contextmanager
def _file_lock(kind: RegistryKind, name: str, alias: str, cfg: Settings):
    import fcntl  # POSIX only, like the kernels this runs in

    path = lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AliasRace(
                        f"another process has been moving an alias of this store for {WAIT_S:g} s "
                        f"({shown_path(path, cfg=cfg)}): {kind.name} {name}@{alias} was not moved"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _lease(kind: RegistryKind, name: str, alias: str, cfg: Settings):
    key = LEASE_PREFIX + alias
    mine = secrets.token_hex(8)
    c = client(cfg)
    with mlflow_errors(f"take the lease on {name}@{alias}", cfg):
        held = _read_lease(kind, c, name, key)
        if held and held.get("owner") != mine and float(held.get("until", 0)) > time.time():
            raise AliasRace(f"another promotion of {kind.name} {name}@{alias} is under way: nothing moved")
        try:
            kind._set_tag(c, name, key, json.dumps({"owner": mine, "until": time.time() + LEASE_S}))
        except Exception as e:
            # Two first writes of one tag at once: the server's store may refuse the second
            # (a unique-key error on its sqlite); the lease is then the other mover's.
            if not error_code(e) or _read_lease(kind, c, name, key).get("owner") in (None, mine):
                raise
            raise AliasRace(
                f"another promotion of {kind.name} {name}@{alias} took the lease at the same time: nothing moved"
            ) from None
        time.sleep(SETTLE_S)
        held = _read_lease(kind, c, name, key)
    if not held or held.get("owner") != mine:
        raise AliasRace(
            f"another promotion of {kind.name} {name}@{alias} took the lease at the same time: nothing moved"
        )
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a lease left behind ends by itself at "until"
            # Released only while still ours: never another mover's lease taken since.
            if _read_lease(kind, c, name, key).get("owner") == mine:
                kind._set_tag(c, name, key, json.dumps({"owner": "", "until": 0}))


def _read_lease(kind: RegistryKind, c, name: str, key: str) -> dict:
    tags = kind._tags(c, name) or {}
    try:
        return json.loads(tags.get(key) or "{}")
    except ValueError:
        return {}
