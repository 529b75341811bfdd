"""Pin changes made in notebook sessions, read from the lineage shipped to MLflow.

``%llm_pin`` / ``pin(...)`` / ``load_lock(...)`` announce a ``Pinned`` event; the lineage
recorder keeps it in the cell's record, and the shipper writes each notebook session as
one run of the ``llmops-lineage`` experiment holding ``lineage/records.jsonl``. A flag can
then say "model chat was pinned to 2 in session eval.ipynb just before".

Bounded on purpose: one search for the newest ``max_sessions`` sessions that overlap the
window, then one artifact read per session, all under one MLflow budget. Events carry no
time of their own: a pin's time is its cell's start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ...config import Settings
from ...errors import LlmopsError
from .. import events, tracking
from ..lineage.ship import EXPERIMENT, RECORDS_FILE
from .changes import Change, minute

NOTEBOOK_TAG = "llmops.lineage.notebook"


@dataclass(frozen=True)
class _Pin:
    at_ms: int
    order: tuple  # (cell start, execution count, event index): the order pins happened in
    session: str  # the run id: pins are compared within a session first
    label: str  # how the session is named in the text
    kind: str
    name: str
    version: str
    alias: str | None
    source: str | None


def pin_changes(
    names: dict[str, set[str]], start_ms: int, end_ms: int, cfg: Settings, *, max_sessions: int = 50
) -> tuple[list[Change], list[str]]:
    """Pins of the named models and prompts made in ``[start_ms, end_ms]`` in notebook sessions.

    Parameters
    ----------
    names : dict
        ``{"model": {...}, "prompt": {...}}`` as :func:`.changes.served_names` returns.
    start_ms, end_ms : int
        The window (ms since the epoch, UTC), both ends included.
    cfg : Settings
        Where MLflow is.
    max_sessions : int
        The newest sessions overlapping the window that are read (one artifact read each).

    Returns
    -------
    tuple of (list of Change, list of str)
        One ``Change`` (kind ``pin``, source ``lineage``) per pin that moved a name to a
        version other than the one it was pinned to just before in that session (a session's
        first pin of a name: the one of the session read before it, when the same it is no
        change); oldest first. Notes: one line each for an MLflow failure, an absent lineage
        experiment, sessions left unread, unreadable lines. Never raises for MLflow.
    """
    wanted = {(kind, str(name)) for kind in ("model", "prompt") for name in names.get(kind, ())}
    if not wanted or end_ms < start_ms:
        return [], []
    pins: list[_Pin] = []
    notes: list[str] = []
    bad = read = 0
    runs: list = []
    try:
        with tracking.command(cfg):
            client = tracking.client(cfg)
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:
                return [], []  # no notebook session shipped lineage: no pins to read, nothing to say
            runs = client.search_runs(
                [experiment.experiment_id],
                # A session's run ends at its last cell's start, so it overlaps the window
                # exactly when it started before the window's end and ended after its start.
                filter_string=(
                    "tags.`llmops.kind` = 'lineage-session' "
                    f"AND attributes.start_time <= {int(end_ms)} AND attributes.end_time >= {int(start_ms)}"
                ),
                max_results=max_sessions,
                order_by=["attributes.start_time DESC"],
            )
            for run in runs:
                text = tracking.read_artifact(run.info.run_id, RECORDS_FILE, cfg)
                read += 1
                found, skipped = _session_pins(run, text or "", wanted)
                pins += found
                bad += skipped
    except LlmopsError as e:
        notes.append(_partial(read, len(runs), str(e)))
    except Exception as e:  # an answered failure: the watch goes on without pins
        notes.append(_partial(read, len(runs), tracking.describe(e)))
    if len(runs) >= max_sessions:
        notes.append(f"notebook pins read from the newest {max_sessions} lineage sessions of the window only")
    if bad:
        notes.append(f"skipped {bad} unreadable lineage line(s) while reading notebook pins")
    return _moves(pins, start_ms, end_ms), notes


def _partial(read: int, total: int, why: str) -> str:
    done = f" (read {read} of {total} sessions)" if read else ""
    return f"notebook pins not read{done}: {why}"


def _session_pins(run, text: str, wanted: set) -> tuple[list[_Pin], int]:
    """The wanted pins one session's ``records.jsonl`` holds, and how many lines were unreadable."""
    notebook = (run.data.tags or {}).get(NOTEBOOK_TAG) or ""
    label = Path(notebook).name if notebook else run.info.run_id[:8]
    out: list[_Pin] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            at = _ms(record["started"])
            count = int(record.get("execution_count") or 0)
            evs = record.get("events") or []
            if at is None or not isinstance(evs, list):
                raise ValueError("not a lineage record")
        except (ValueError, TypeError, KeyError, AttributeError):
            bad += 1
            continue
        for i, raw in enumerate(evs):
            e = events.parse(raw)
            if not isinstance(e, events.Pinned) or (e.registry, str(e.name)) not in wanted:
                continue
            out.append(
                _Pin(
                    at_ms=at,
                    order=(at, count, i),
                    session=run.info.run_id,
                    label=label,
                    kind=e.registry,
                    name=str(e.name),
                    version=str(e.version),
                    alias=e.alias,
                    source=e.source,
                )
            )
    return out, bad


def _ms(iso) -> int | None:
    try:
        when = datetime.fromisoformat(str(iso))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the recorder writes UTC
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _moves(pins: list[_Pin], start_ms: int, end_ms: int) -> list[Change]:
    """The pins that changed something, in time order; pins before the window set the state only."""
    in_session: dict[tuple, str] = {}  # (session, kind, name) -> version pinned now
    latest: dict[tuple, _Pin] = {}  # (kind, name) -> the latest pin of any session
    out: list[Change] = []
    for p in sorted(pins, key=lambda p: (p.order, p.session)):
        key = (p.kind, p.name)
        before = in_session.get((p.session, *key))
        elsewhere = latest.get(key)
        in_session[(p.session, *key)] = p.version
        latest[key] = p
        if before is not None:
            if before == p.version:
                continue  # the same pin again (a cell run twice)
            was = f" (was {before})"
        elif elsewhere is not None and elsewhere.session != p.session:
            if elsewhere.version == p.version:
                continue  # a new session loading the same pins (a lockfile)
            was = f" (was {elsewhere.version} in session {elsewhere.label})"
        else:
            was = ""
        if not start_ms <= p.at_ms <= end_ms:
            continue
        how = f" via {p.name}@{p.alias}" if p.alias else ""
        how += f" from {p.source}" if p.source else ""
        out.append(
            Change(
                at_ms=p.at_ms,
                kind="pin",
                subject=f"{p.kind} {p.name}",
                text=f"{p.kind} {p.name}: pinned to {p.version}{was}{how} · session {p.label} · {minute(p.at_ms)}",
                source="lineage",
            )
        )
    return out
