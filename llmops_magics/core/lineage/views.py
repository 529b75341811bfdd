"""The Python twins of ``%lineage`` and the objects they return.

``lineage_table()`` (``%lineage``), ``lineage_cell(key)`` (``%lineage cell N``),
``export_openlineage(path)`` (``%lineage export --openlineage PATH``) and
``lineage_sync()`` (``%lineage sync``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import settings
from ...errors import BadInput
from ..display import esc, html_table, text_table
from ..tracking import public_uri
from .derive import derive
from .openlineage import check_destination, export_events
from .record import LineageRecord, current_recorder
from .ship import ship_once
from .spool import read_records, spool_dir, spool_files

_COLUMNS = ["cell", "status", "duration_s", "summary", "source"]


def _row(r: LineageRecord) -> list:
    status = r.status if r.status == "ok" else f"error: {r.error_type}"
    summary = derive(r.events)["summary"]
    return [
        r.execution_count,
        status,
        f"{r.duration_s:.3f}",
        summary,
        r.source.strip().splitlines()[0][:60] if r.source.strip() else "",
    ]


@dataclass
class LineageTable:
    """This session's lineage records (``%lineage``)."""

    records: list[LineageRecord]
    pending: int = 0
    last_error: str | None = None

    def _footer(self) -> str:
        text = f"{len(self.records)} record(s) · {self.pending} waiting to ship"
        return text + (f" · last shipping error: {self.last_error}" if self.last_error else "")

    def _repr_mimebundle_(self, include=None, exclude=None):
        rows = [_row(r) for r in self.records]
        return {
            "text/plain": text_table(_COLUMNS, rows) + "\n" + self._footer(),
            "text/html": html_table(_COLUMNS, rows) + f"<div style='opacity:.7'>{esc(self._footer())}</div>",
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame([{**r.to_dict(), "summary": derive(r.events)["summary"]} for r in self.records])

    def plot(self):
        """Duration per cell (plotly), coloured by status, hover shows what the cell did."""
        import plotly.graph_objects as go

        colors = ["#d62728" if r.status == "error" else "#1f77b4" for r in self.records]
        fig = go.Figure(
            go.Bar(
                x=[r.execution_count for r in self.records],
                y=[r.duration_s for r in self.records],
                marker_color=colors,
                hovertext=[derive(r.events)["summary"] or "plain cell" for r in self.records],
            )
        )
        fig.update_layout(title="lineage: cell durations", xaxis_title="execution count", yaxis_title="seconds")
        return fig


@dataclass(frozen=True)
class SyncResult:
    """What ``%lineage sync`` did."""

    shipped: int
    pending: int
    session_runs: tuple[str, ...]
    tracking_uri: str
    error: str | None = None
    bad_lines: int = 0
    runs_shipped: int = 0
    runs_pending: int = 0

    def __str__(self) -> str:
        kept = f" · {self.runs_shipped} kept run(s) logged" if self.runs_shipped else ""
        bad = (
            f" · skipped {self.bad_lines} bad spool line(s) (copied to *.quarantine in the lineage folder)"
            if self.bad_lines
            else ""
        )
        if self.error:
            runs = f" and {self.runs_pending} kept run(s) in runs-pending" if self.runs_pending else ""
            return (
                f"{self.pending} lineage record(s) wait in the spool{runs} and will be shipped when MLflow "
                f"answers ({self.error}){kept}{bad}"
            )
        runs = ", ".join(r[:8] for r in self.session_runs) or "-"
        return (
            f"shipped {self.shipped} lineage record(s) to MLflow · {self.pending} waiting · "
            f"session run {runs}{kept}{bad}"
        )

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": str(self), "text/html": f"<div>{esc(self)}</div>"}


@dataclass(frozen=True)
class ExportResult:
    """Where ``%lineage export`` wrote and how much."""

    path: Path
    events: int
    records: int

    def __str__(self) -> str:
        return f"wrote {self.events} OpenLineage RunEvents ({self.records} cells) to {self.path}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": str(self), "text/html": f"<div>{esc(self)}</div>"}


def _recorder_or_raise():
    rec = current_recorder()
    if rec is None:
        raise BadInput("lineage is not recording in this process: run %load_ext llmops_magics first")
    return rec


def lineage_table() -> LineageTable:
    """This session's records, oldest first."""
    rec = _recorder_or_raise()
    last = rec.shipper.last if rec.shipper else None
    return LineageTable(list(rec.records), pending=last.pending if last else 0, last_error=last.error if last else None)


def lineage_cell(key: str | int) -> LineageRecord:
    """One record of this session, by execution count or cell id."""
    rec = _recorder_or_raise()
    found = rec.find(key)
    if found is None:
        counts = ", ".join(str(r.execution_count) for r in rec.records[-10:]) or "none yet"
        raise BadInput(f"no lineage record for cell {key!r}: give an execution count (recent: {counts}) or a cell id")
    return found


def lineage_sync() -> SyncResult:
    """Ship every spooled record (all sessions of the home) to MLflow now."""
    rec = current_recorder()
    report = rec.shipper.ship() if rec is not None and rec.shipper else ship_once(spool_dir(settings().home))
    return SyncResult(
        report.shipped,
        report.pending,
        tuple(dict.fromkeys(report.session_runs)),
        public_uri(settings().resolved_tracking_uri),
        report.error,
        report.bad_lines,
        report.runs_shipped,
        report.runs_pending,
    )


def export_openlineage(path: str | Path, *, all_sessions: bool = False) -> ExportResult:
    """Write this session's records (or every session in the home) as OpenLineage RunEvents."""
    # A bad destination is the user's first problem to hear about, records or not.
    check_destination(path)
    rec = current_recorder()
    if all_sessions or rec is None:
        files = spool_files(spool_dir(settings().home))
    else:
        rec.spool.sync()
        files = [rec.spool.path]
    records = [r for f in files for r in read_records(f, strict=True)]
    if not records:
        raise BadInput(f"no lineage records to export under {spool_dir(settings().home)}: run a cell first")
    out, n = export_events(records, path)
    return ExportResult(out, n, len(records))
