"""The write-ahead spool: one JSONL file per kernel session under ``<home>/lineage/``.

A record is written with one ``os.write`` on an ``O_APPEND`` descriptor before anything
else happens to it: once that call returns the line is in the operating system, so a
kernel killed right after the cell keeps it. ``fsync`` (about 4 ms on this disk, ten
times the budget of a plain cell) runs on the background syncer by default and before
any record is shipped; ``fsync="cell"`` does it on the cell's path instead.

Next to ``<session>.jsonl`` lies ``<session>.acked``: ids of records MLflow has. It is
only a shortcut: shipping merges by record id, so a lost ack line costs a re-upload,
never a duplicate.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

SPOOL_SUFFIX = ".jsonl"
ACK_SUFFIX = ".acked"


def spool_dir(home: Path) -> Path:
    return Path(home) / "lineage"


class Spool:
    """Append-only JSONL file of one session's records."""

    def __init__(self, directory: Path, session_id: str, *, fsync: str = "background"):
        if fsync not in ("background", "cell"):
            from ..errors import ConfigError

            raise ConfigError(f"lineage fsync must be 'background' or 'cell', got {fsync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{session_id}{SPOOL_SUFFIX}"
        self.fsync_mode = fsync
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._dirty = False
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        """Write one record as one line; fsync now only in ``cell`` mode."""
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        # One write call: O_APPEND keeps the line whole even if another writer appends.
        os.write(self._fd, line)
        if self.fsync_mode == "cell":
            os.fsync(self._fd)
        else:
            self._dirty = True

    def sync(self) -> None:
        """Make everything appended so far durable (the syncer and the shipper call this)."""
        with self._lock:
            if self._dirty and self._fd >= 0:
                self._dirty = False
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                if self._dirty:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def read_records(path: Path) -> list[dict]:
    """Records of one spool file; a torn last line (power loss mid-write) is skipped."""
    records = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    records.append(json.loads(raw))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return records


def acked_ids(spool_path: Path) -> set[str]:
    ack = spool_path.with_suffix(ACK_SUFFIX)
    try:
        return set(ack.read_text().split())
    except FileNotFoundError:
        return set()


def mark_acked(spool_path: Path, ids: list[str]) -> None:
    with open(spool_path.with_suffix(ACK_SUFFIX), "a") as f:
        f.write("".join(f"{i}\n" for i in ids))


def spool_files(directory: Path) -> list[Path]:
    d = Path(directory)
    return sorted(d.glob(f"*{SPOOL_SUFFIX}"), key=lambda p: p.stat().st_mtime) if d.is_dir() else []


def pending(directory: Path) -> dict[Path, list[dict]]:
    """Records not yet acknowledged by MLflow, per spool file (all sessions in the home)."""
    out = {}
    for path in spool_files(directory):
        done = acked_ids(path)
        todo = [r for r in read_records(path) if r.get("record_id") not in done]
        if todo:
            out[path] = todo
    return out
