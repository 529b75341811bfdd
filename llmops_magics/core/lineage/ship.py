"""Ship spooled lineage records to MLflow, off the cell's path.

Shape in MLflow: one run per notebook session in the ``llmops-lineage`` experiment,
holding

- ``lineage/cells.json``: one row per cell, a table the MLflow UI shows as a table;
- ``lineage/records.jsonl``: the full records (events, pins, redacted source);
- metrics ``cell_duration_s`` / ``cell_completion_tokens`` with step = execution count;
- the runs a cell produced (generation, shadow, ...) are tagged
  ``llmops.lineage.session_run_id`` / ``llmops.lineage.cell`` / ``llmops.lineage.record_id``
  and listed in the table's ``runs`` column: links both ways.

Idempotent by record id: a batch merges into what the run already holds, so a replay
after an outage, a lost acknowledgement or a second shipper never doubles a record.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ...config import Settings, settings
from ...errors import TrackingError
from .. import tracking
from ..paths import shown_path
from .derive import derive
from .spool import Spool, mark_acked, pending, problem

RECORDS_FILE = "lineage/records.jsonl"
TABLE_FILE = "lineage/cells.json"
SESSION_TAG = "llmops.lineage.session_id"
EXPERIMENT = "llmops-lineage"

_log = logging.getLogger("llmops_magics.lineage")
# A background thread's log lines would land in whatever cell runs next.
_log.propagate = False


@dataclass
class ShipReport:
    """What one shipping round did."""

    shipped: int = 0
    pending: int = 0
    session_runs: list[str] = field(default_factory=list)
    error: str | None = None
    bad_lines: int = 0  # spool lines newly skipped and quarantined this round
    runs_shipped: int = 0  # kept runs written to MLflow this round
    runs_pending: int = 0


def _route_log(home: Path) -> None:
    if not _log.handlers:
        (home / "logs").mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(home / "logs" / "lineage.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)


@contextmanager
def _file_lock(spool_path: Path):
    # Two kernels on one home may both replay an old spool; one at a time per file.
    with open(spool_path.with_suffix(".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_known: dict[tuple[str, str], dict[str, dict]] = {}  # (tracking uri, run id) -> records


def _session_run(client, exp_id: str, record: dict) -> str:
    sid = record["session_id"]
    found = client.search_runs([exp_id], filter_string=f"tags.`{SESSION_TAG}` = '{sid}'", max_results=1)
    if found:
        return found[0].info.run_id
    # Older spools hold the absolute path JupyterLab gave the kernel.
    notebook = shown_path(record.get("notebook") or "")
    name = f"lineage · {Path(notebook).name if notebook else 'session'} · {sid[:8]}"
    tags = {
        SESSION_TAG: sid,
        "llmops.kind": "lineage-session",
        "llmops.lineage.notebook": notebook,
        "mlflow.source.name": notebook or "notebook session",
        "mlflow.source.type": "NOTEBOOK",
        "mlflow.loggedArtifacts": json.dumps([{"path": TABLE_FILE, "type": "table"}]),
        "mlflow.note.content": (
            "Lineage of one notebook session: `lineage/cells.json` has one row per cell, "
            "`lineage/records.jsonl` the full records. Runs made by its cells carry the tag "
            "`llmops.lineage.session_run_id` = this run's id."
        ),
    }
    run = client.create_run(exp_id, run_name=name, tags=tags, start_time=_ms(record["started"]))
    return run.info.run_id


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _existing(client, cfg: Settings, run_id: str) -> dict[str, dict]:
    key = (cfg.resolved_tracking_uri, run_id)
    if key not in _known:
        records: dict[str, dict] = {}
        text = tracking.read_artifact(run_id, RECORDS_FILE, cfg)
        for line in (text or "").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a damaged artifact line: the spool still has the record
            if problem(r) is None:
                records[r["record_id"]] = r
        _known[key] = records
    return _known[key]


# What a person reads first in the run's table; the rest follows for tools and audits.
_LEAD = ("cell", "status", "summary", "source", "duration_s")
_REST = (
    "started",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "error_type",
    "cell_id",
    "source_digest",
    "record_id",
)
# Columns that say nothing in most sessions: left out when no row fills them.
_SPARSE = {"error_type", "cell_id", "runs", "prompt_tokens", "completion_tokens"}


def _row(r: dict) -> dict:
    d = derive(r.get("events") or [])
    source = (r.get("source") or "").strip()
    return {
        "cell": r.get("execution_count"),
        "status": r.get("status") if r.get("status") != "error" else f"error: {r.get('error_type') or ''}".strip(),
        "summary": d["summary"],
        "source": source[:2000],
        "duration_s": r.get("duration_s"),
        "started": r.get("started"),
        "runs": " ".join(x["run_id"] for x in d["runs"]),
        "prompt_tokens": d["tokens"]["prompt"] or None,
        "completion_tokens": d["tokens"]["completion"] or None,
        "error_type": r.get("error_type"),
        "cell_id": r.get("cell_id"),
        "source_digest": r.get("source_digest"),
        "record_id": r.get("record_id"),
    }


def _table(records: list[dict]) -> dict:
    """``lineage/cells.json``: one row per cell, led by what a person scans for."""
    rows = [_row(r) for r in records]
    columns = [*_LEAD] + [c for c in _REST if c not in _SPARSE or any(row[c] not in (None, "") for row in rows)]
    return {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}


def _ship_session(client, cfg: Settings, exp_id: str, records: list[dict]) -> tuple[str, int]:
    run_id = _session_run(client, exp_id, records[0])
    have = _existing(client, cfg, run_id)
    new = [r for r in records if r["record_id"] not in have]
    if new:
        merged = dict(have)
        merged.update({r["record_id"]: r for r in new})
        ordered = sorted(merged.values(), key=lambda r: (r.get("started") or "", r.get("execution_count") or 0))
        client.log_text(run_id, "".join(json.dumps(r, default=str) + "\n" for r in ordered), RECORDS_FILE)
        client.log_dict(run_id, _table(ordered), TABLE_FILE)
        metrics = []
        for r in new:
            ts, step = _ms(r["started"]), int(r.get("execution_count") or 0)
            metrics.append(("cell_duration_s", float(r.get("duration_s") or 0.0), ts, step))
            tokens = derive(r.get("events") or [])["tokens"]["completion"]
            if tokens:
                metrics.append(("cell_completion_tokens", float(tokens), ts, step))
        tracking.log_batch(client, run_id, metrics=metrics)
        _link_children(client, run_id, new)
        client.set_tag(run_id, "llmops.lineage.cells", str(len(ordered)))
        tracking.terminate(client, run_id, "FINISHED", max(_ms(r["started"]) for r in ordered))
        _known[(cfg.resolved_tracking_uri, run_id)] = merged
    return run_id, len(new)


def _link_children(client, session_run: str, records: list[dict]) -> None:
    for r in records:
        for e in r.get("events") or []:
            child = e.get("run_id")
            if not child or child == session_run:
                continue
            try:
                client.set_tag(child, "llmops.lineage.session_run_id", session_run)
                client.set_tag(child, "llmops.lineage.record_id", r["record_id"])
                client.set_tag(child, "llmops.lineage.cell", str(r.get("execution_count")))
            except Exception as e:
                # A run deleted or kept in another store must not hold the records back.
                _log.warning("could not tag run %s with its lineage: %s", child, _safe_error(e))


def ship_once(directory: Path, cfg: Settings | None = None) -> ShipReport:
    """Ship every unacknowledged record under ``directory`` (all sessions of a home), and
    every run kept while MLflow was down. One MLflow budget for the whole round."""
    cfg = cfg or settings()
    _route_log(cfg.home)
    report = ShipReport()
    bad: list = []
    todo = pending(directory, bad)
    report.bad_lines = len(bad)
    if bad:
        _log.warning(
            "skipped %d bad lineage spool line(s), copied to *.quarantine: %s",
            len(bad),
            "; ".join(f"{f}:{n} {why}" for f, n, why in bad[:5]),
        )
    report.pending = sum(len(v) for v in todo.values())
    with tracking.command(cfg):
        try:
            kept = tracking.ship_pending(cfg)
            report.runs_shipped, report.runs_pending = kept.shipped, kept.pending
            if kept.error:
                raise TrackingError(kept.error)
            if not todo:
                return report
            client = tracking.client(cfg)
            exp_id = tracking.experiment_id(EXPERIMENT, cfg=cfg)
            for path, records in todo.items():
                with _file_lock(path) as mine:
                    if not mine:
                        continue
                    by_session: dict[str, list[dict]] = {}
                    for r in records:
                        by_session.setdefault(r["session_id"], []).append(r)
                    for session_records in by_session.values():
                        run_id, n = _ship_session(client, cfg, exp_id, session_records)
                        report.session_runs.append(run_id)
                        report.shipped += n
                    mark_acked(path, [r["record_id"] for r in records])
                    report.pending -= len(records)
        except Exception as e:  # the spool keeps everything; say why and try later
            report.error = _safe_error(e)
    return report


def _safe_error(e: Exception) -> str:
    if isinstance(e, TrackingError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


class Shipper:
    """Background thread: fsync soon after each append, ship in batches, back off on outages.

    Parameters
    ----------
    spool : Spool
        The session's spool (its folder holds every session of the home).
    batch_s : float
        How long to gather cells before a shipping round.
    max_backoff_s : float
        Longest wait between tries while MLflow is unreachable.
    """

    def __init__(self, spool: Spool, *, batch_s: float = 1.0, max_backoff_s: float = 30.0):
        self.spool = spool
        self.batch_s = batch_s
        self.max_backoff_s = max_backoff_s
        self.last: ShipReport = ShipReport()
        self._wake = threading.Event()
        self._stop = False
        self._ship_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llmops-lineage-shipper", daemon=True)
        _route_log(spool.directory.parent)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def ship(self) -> ShipReport:
        """One shipping round now, in the calling thread (``%lineage sync``)."""
        with self._ship_lock:
            self.spool.sync()  # never ship what is not durable here first
            report = ship_once(self.spool.directory)
            if report.error:
                _log.warning(
                    "lineage shipping failed, %d record(s) wait in the spool: %s", report.pending, report.error
                )
            elif report.shipped:
                _log.info("shipped %d lineage record(s)", report.shipped)
            self.last = report
            return report

    def _run(self) -> None:
        # Whatever goes wrong in one round, the thread lives on to try the next.
        while not self._stop:
            try:
                self._loop()
            except Exception as e:
                _log.exception("lineage shipper round failed: %s", _safe_error(e))
                time.sleep(self.max_backoff_s)

    def _loop(self) -> None:
        backoff = self.batch_s
        due = time.monotonic()  # replay what earlier sessions left right away
        while not self._stop:
            woke = self._wake.wait(max(0.0, due - time.monotonic()) if due else None)
            if self._stop:
                break
            if woke:
                self._wake.clear()
                self.spool.sync()
                if not due:
                    due = time.monotonic() + self.batch_s
                continue
            report = self.ship()
            if report.error:
                backoff = min(self.max_backoff_s, backoff * 2)
                due = time.monotonic() + backoff
            else:
                backoff = self.batch_s
                due = 0.0 if not (report.pending or report.runs_pending) else time.monotonic() + self.batch_s

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)
        if timeout_s > 0:
            done = threading.Event()

            def last_round():
                try:
                    self.ship()
                finally:
                    done.set()

            # Bounded: records not shipped now stay in the spool for the next session.
            threading.Thread(target=last_round, daemon=True).start()
            done.wait(timeout_s)
