"""Lineage: one record per executed cell, written ahead, shipped to MLflow later.

The IPython edge calls :meth:`LineageRecorder.begin_cell` and :meth:`end_cell` from
its ``pre_run_cell`` / ``post_run_cell`` hooks; in between, core functions announce what
they did through :mod:`events` and the recorder keeps those events for the cell. A
plain cell costs a redaction pass, a digest, one JSON line and one ``write``: no MLflow
call and no fsync on the cell's path (see :mod:`lineage_spool`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ...config import settings
from ...errors import LlmopsError
from .. import events, tracking
from ..paths import shown_path
from ..tracking.redact import first_line, redact, redact_obj, secret_env_values
from .derive import derive
from .render import record_html, record_text
from .ship import Shipper
from .spool import Spool, spool_dir

MIME = "application/vnd.llmops.lineage+json"
# 2: generation events carry per-generation digests, sampling, serving and hardware (verify).
BUNDLE_VERSION = 2


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class LineageRecord:
    """What one executed cell was and did (every string already redacted)."""

    record_id: str
    session_id: str
    notebook: str | None
    cell_id: str | None
    execution_count: int
    status: str
    error_type: str | None
    error: str | None
    started: str
    duration_s: float
    source: str
    source_digest: str
    pins: list = field(default_factory=list)
    context: dict = field(default_factory=dict)
    events: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> LineageRecord:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        # Shallow on purpose: dataclasses.asdict deep-copies and cost 40 µs a plain cell.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @property
    def did_llm_work(self) -> bool:
        return bool(self.events)

    def derived(self) -> dict:
        """Prompts, models, runs, tokens, tables, shadow and adapter checks from the events."""
        return derive(self.events)

    def bundle(self) -> dict:
        """The ``application/vnd.llmops.lineage+json`` payload (version 2; readers accept 1)."""
        d = self.derived()
        return {
            "version": BUNDLE_VERSION,
            "record_id": self.record_id,
            "session_id": self.session_id,
            "notebook": self.notebook,
            "cell_id": self.cell_id,
            "execution_count": self.execution_count,
            "status": self.status,
            "error_type": self.error_type,
            "started": self.started,
            "duration_s": self.duration_s,
            "prompts": d["prompts"],
            "models": d["models"],
            "runs": d["runs"],
            "pins": self.pins,
            "tokens": d["tokens"],
            "latency_s": d["latency_s"],
            "tables": d["tables"],
            "shadow": d["shadow"],
            "adapter_checks": d["adapter_checks"],
            "aliases": d["aliases"],
            "registry": d["registry"],
            "events": self.events,
            "summary": d["summary"],
            # Where this kernel's MLflow UI is: the lab links there unless its own setting says otherwise.
            "ui_url": settings().ui_url or None,
        }

    def text_line(self) -> str:
        summary = self.derived()["summary"]
        return f"lineage: {summary}" if summary else f"lineage: cell {self.execution_count} · {self.status}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {MIME: self.bundle(), "text/plain": record_text(self), "text/html": record_html(self)}


class LineageRecorder:
    """Turns cells into records: spool first, then (in the background) MLflow.

    Parameters
    ----------
    home : Path, optional
        Home whose ``lineage/`` folder holds the spool (default: settings' home).
    notebook : str, optional
        Notebook path, when the frontend tells it.
    fsync : str, optional
        ``background`` (fsync off the cell's path, before shipping) or ``cell``;
        default ``LLMOPS_LINEAGE_FSYNC`` or ``background``.
    ship : bool
        Start the background shipper to MLflow.
    """

    def __init__(
        self, home: Path | None = None, *, notebook: str | None = None, fsync: str | None = None, ship: bool = True
    ):
        self.session_id = uuid.uuid4().hex
        # Records travel (MLflow, OpenLineage, saved outputs): the notebook as people share its path.
        self.notebook = shown_path(notebook) if notebook else notebook
        self.home = Path(home) if home is not None else settings().home
        fsync = fsync or os.environ.get("LLMOPS_LINEAGE_FSYNC") or "background"
        self.spool = Spool(spool_dir(self.home), self.session_id, fsync=fsync)
        self.records: list[LineageRecord] = []
        self._cell: dict | None = None
        self._orphans: list[dict] = []
        self._lock = threading.Lock()
        events.subscribe(self._on_event)
        # A kernel shut down without %unload_ext still makes its tail durable.
        atexit.register(self.spool.sync)
        self.shipper = None
        self.preload_error: str | None = None
        if ship:
            try:
                # Before the shipper thread exists: it must never be first to import
                # mlflow or create the store (see tracking.preload).
                tracking.preload()
            except Exception as e:  # a damaged store: cells still run, the shipper reports it
                self.preload_error = tracking.describe(e) if not isinstance(e, LlmopsError) else str(e)
            self.shipper = Shipper(self.spool)
            self.shipper.start()

    def begin_cell(self, source: str, cell_id: str | None = None) -> None:
        self._cell = {
            "source": source,
            "cell_id": cell_id,
            "t0": time.time(),
            "p0": time.perf_counter(),
            "events": self._orphans,
        }
        self._orphans = []

    def _on_event(self, event: events.Event) -> None:
        target = self._cell["events"] if self._cell is not None else self._orphans
        target.append(event.to_record())

    def end_cell(self, execution_count: int | None, error: BaseException | None = None) -> LineageRecord | None:
        """Close the cell: build its record, redact it, append it to the spool.

        Returns None for a cell that never began (the one that loaded the extension).
        """
        cell = self._cell
        if cell is None:
            return None
        self._cell = None
        duration = time.perf_counter() - cell["p0"]
        secrets = secret_env_values()
        source = cell["source"] or ""
        try:
            context = events.context() if events._context else {}
        except Exception as e:  # a provider's failure is noted, never fatal to the record
            context = {"context_error": f"{type(e).__name__}: {e}"}
        pins = context.pop("pins", None) or []
        record = LineageRecord(
            record_id=uuid.uuid4().hex,
            session_id=self.session_id,
            notebook=self.notebook,
            cell_id=cell["cell_id"],
            execution_count=int(execution_count or 0),
            status="error" if error is not None else "ok",
            error_type=type(error).__name__ if error is not None else None,
            error=redact(first_line(error), secrets) if error is not None else None,
            started=_iso(cell["t0"]),
            duration_s=round(duration, 6),
            source=redact(source, secrets),
            source_digest="sha256:" + hashlib.sha256(source.encode()).hexdigest(),
            pins=redact_obj(list(pins), secrets) if pins else [],
            context=redact_obj(context, secrets) if context else {},
            events=redact_obj(cell["events"], secrets) if cell["events"] else [],
        )
        self.spool.append(record.to_dict())
        with self._lock:
            self.records.append(record)
        if self.shipper is not None:
            self.shipper.notify()
        return record

    def find(self, key: str | int) -> LineageRecord | None:
        """This session's record by execution count or cell id (latest wins)."""
        key = str(key)
        for r in reversed(self.records):
            if str(r.execution_count) == key or r.cell_id == key or r.record_id == key:
                return r
        return None

    def close(self, ship_timeout_s: float = 5.0) -> None:
        events.unsubscribe(self._on_event)
        atexit.unregister(self.spool.sync)
        if self.shipper is not None:
            self.shipper.stop(ship_timeout_s)
        self.spool.close()


_recorder: LineageRecorder | None = None


def start_recording(**kwargs) -> LineageRecorder:
    """Start (or return) this process's recorder; see :class:`LineageRecorder`."""
    global _recorder
    if _recorder is None:
        _recorder = LineageRecorder(**kwargs)
    return _recorder


def stop_recording(ship_timeout_s: float = 5.0) -> None:
    """Stop recording; one last shipping try, bounded by ``ship_timeout_s``."""
    global _recorder
    if _recorder is not None:
        _recorder.close(ship_timeout_s)
        _recorder = None


def current_recorder() -> LineageRecorder | None:
    return _recorder


def default_notebook() -> str | None:
    """The notebook path a Jupyter server tells the kernel (``JPY_SESSION_NAME``)."""
    return os.environ.get("JPY_SESSION_NAME") or None
