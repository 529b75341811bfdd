"""The write-ahead spool: one JSONL file per kernel session under ``<home>/lineage/``.

A record is written with one ``os.write`` on an ``O_APPEND`` descriptor before anything
else happens to it: once that call returns the line is in the operating system, so a
kernel killed right after the cell keeps it. ``fsync`` (about 4 ms on this disk, ten
times the budget of a plain cell) runs on the background syncer by default and before
any record is shipped; ``fsync="cell"`` does it on the cell's path instead.

Next to ``<session>.jsonl`` lies ``<session>.acked``: ids of records MLflow has. It is
only a shortcut: shipping merges by record id, so a lost ack line costs a re-upload,
never a duplicate.

A line that is not a record (torn, binary, oversized, valid JSON of the wrong shape,
a second copy of a record id) is skipped and copied once to ``<session>.quarantine``
with its reason, and its position noted in ``<session>.skipped``: one bad line never
stops the records around it, in this file or any other.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

from ...errors import ConfigError

SPOOL_SUFFIX = ".jsonl"
ACK_SUFFIX = ".acked"
QUARANTINE_SUFFIX = ".quarantine"
SKIPPED_SUFFIX = ".skipped"
# Far above any real cell's record (sources are cut at this size before they get here).
MAX_LINE_BYTES = 8 << 20
# Fields every record has, and the types they must have.
_REQUIRED = {"record_id": str, "session_id": str, "started": str}
_OPTIONAL = {
    "execution_count": (int, type(None)),
    "events": list,
    "pins": list,
    "context": dict,
    "status": (str, type(None)),
    "duration_s": (int, float, type(None)),
    "source": (str, type(None)),
    "notebook": (str, type(None)),
    "cell_id": (str, type(None)),
}


def spool_dir(home: Path) -> Path:
    return Path(home) / "lineage"


class Spool:
    """Append-only JSONL file of one session's records."""

    def __init__(self, directory: Path, session_id: str, *, fsync: str = "background"):
        if fsync not in ("background", "cell"):
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


def problem(obj, *, strict: bool = True) -> str | None:
    """Why a parsed spool line is not a record, or None when it is one.

    ``strict=False`` asks only for a dict with a record id (what the spool itself needs);
    shipping and export need every field a cell's record has.
    """
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a record"
    for name, kind in (_REQUIRED if strict else {"record_id": str}).items():
        if name not in obj:
            return f"no {name}"
        if not isinstance(obj[name], kind) or not obj[name]:
            return f"{name} is a {type(obj[name]).__name__}, not a {kind.__name__}"
    if not strict:
        return None
    for name, kind in _OPTIONAL.items():
        value = obj.get(name)
        if name in obj and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{name} has the wrong type ({type(value).__name__})"
    try:
        datetime.fromisoformat(obj["started"])
    except ValueError:
        return "started is not an ISO time"
    return None


def _lines(path: Path):
    """``(line number, raw bytes)`` of a spool file; an oversized line is yielded cut short."""
    with open(path, "rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := f.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # skip the remainder of a giant line without holding it
                yield number, None
                continue
            yield number, raw


def scan(path: Path, *, strict: bool = True) -> tuple[list[dict], list[tuple[int, str, bytes]]]:
    """Records of one spool file, and its bad lines as ``(line number, reason, start of line)``.

    A torn last line (power loss mid-write) is not counted as bad while it may still be
    completed by the writer: only a line that ends in a newline, or is not the last, is.
    """
    records, bad, seen = [], [], set()
    try:
        lines = list(_lines(path))
    except FileNotFoundError:
        return [], []
    for i, (number, raw) in enumerate(lines):
        last = i == len(lines) - 1
        if raw is None:
            bad.append((number, f"line longer than {MAX_LINE_BYTES} bytes", b""))
            continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            if last and not raw.endswith(b"\n"):
                continue  # still being written, or torn by a crash: never a record
            bad.append((number, "not JSON (torn or binary)", raw[:200]))
            continue
        why = problem(obj, strict=strict)
        if why is None and obj["record_id"] in seen:
            why = "duplicate record id"
        if why is not None:
            bad.append((number, why, raw[:200]))
            continue
        seen.add(obj["record_id"])
        records.append(obj)
    return records, bad


def read_records(path: Path, *, strict: bool = False) -> list[dict]:
    """The records of one spool file (bad lines are skipped; see :func:`scan` and :func:`problem`)."""
    return scan(path, strict=strict)[0]


def quarantine(path: Path, bad: list[tuple[int, str, bytes]]) -> list[tuple[int, str, bytes]]:
    """Copy bad lines not seen before to ``<session>.quarantine``; returns the new ones."""
    skipped_file = path.with_suffix(SKIPPED_SUFFIX)
    try:
        known = set(skipped_file.read_text().split())
    except FileNotFoundError:
        known = set()
    new = [b for b in bad if str(b[0]) not in known]
    if not new:
        return []
    with open(path.with_suffix(QUARANTINE_SUFFIX), "a", encoding="utf-8") as q:
        for number, why, head in new:
            q.write(json.dumps({"line": number, "reason": why, "start": head.decode("utf-8", "replace")}) + "\n")
    with open(skipped_file, "a") as f:
        f.write("".join(f"{number}\n" for number, _, _ in new))
    return new


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


def pending(directory: Path, bad_lines: list | None = None) -> dict[Path, list[dict]]:
    """Records not yet acknowledged by MLflow, per spool file (all sessions in the home).

    Bad lines are skipped and quarantined; each newly quarantined line is appended to
    ``bad_lines`` as ``(file name, line number, reason)`` when a list is given.
    """
    out = {}
    seen: set[str] = set()  # a record id is shipped once, whichever file holds it
    for path in spool_files(directory):
        done = acked_ids(path)
        records, bad = scan(path)
        todo = []
        for r in records:
            if r["record_id"] in seen:
                bad.append((-1, f"duplicate record id {r['record_id'][:12]} (also in another spool file)", b""))
                continue
            seen.add(r["record_id"])
            if r["record_id"] not in done:
                todo.append(r)
        new = quarantine(path, [b for b in bad if b[0] >= 0])
        if bad_lines is not None:
            bad_lines.extend((path.name, n, why) for n, why, _ in new)
        if todo:
            out[path] = todo
    return out
