"""Runs written in a fixed number of calls, or kept on disk and written once later.

:func:`log_run` writes a run in a fixed number of calls; when MLflow fails, the whole run
(params, metrics, tables, real start and end times) is kept in ``<home>/runs-pending/``
and written by :func:`ship_pending` once MLflow answers again (the lineage shipper and
``%lineage sync`` call it). Each run carries a key tag, so a replay completes a
half-written run instead of writing a second one. Runs are written through
``MlflowClient`` with explicit run ids, never the fluent "active run", so a notebook's
own ``mlflow.start_run()`` is never disturbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...config import Settings, settings
from ...errors import TrackingError
from .budget import bounded_command, command
from .connection import EXPERIMENT, _run_experiments, client, experiment_id, terminate
from .errors import refused
from .links import LINKED_PROMPTS_TAG, linked_prompts_tag, model_ids, model_pairs
from .redact import public_uri
from .source import source_tags
from .user import current_user

RUN_KEY_TAG = "llmops.run_key"
PENDING_DIR = "runs-pending"


class RunKept(TrackingError):
    """A run could not be written now; it waits in the home's ``runs-pending/`` folder."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


@dataclass
class RunRecord:
    """Everything one run holds, so it can be written now or replayed later."""

    run_name: str
    tags: dict
    params: dict
    metrics: dict
    tables: dict = field(default_factory=dict)
    dicts: dict = field(default_factory=dict)
    experiment: str = EXPERIMENT
    start_ms: int = 0
    end_ms: int = 0
    status: str = "FINISHED"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    store: str = ""  # the redacted tracking URI it belongs to
    # Registered model versions the work used ([name, version] or a model id), linked as
    # the run's model inputs when it is written (now or on replay).
    models: list = field(default_factory=list)


@bounded_command
def log_run(
    *,
    run_name: str,
    tags: dict,
    params: dict,
    metrics: dict,
    tables: dict | None = None,
    dicts: dict | None = None,
    cfg: Settings | None = None,
    experiment: str = EXPERIMENT,
    start_time: float | None = None,
    end_time: float | None = None,
    status: str = "FINISHED",
    prompts=(),
    models=(),
) -> str:
    """Create one finished run in a fixed number of calls, whatever the data size.

    ``tables`` maps an artifact file name (``cases.json``) to a column dict (shown as a
    table in the MLflow UI); ``dicts`` maps an artifact file name (``report.json``) to
    any JSON-ready dict. ``start_time``/``end_time`` (seconds since the epoch) are those
    of the work the run records; ``status`` is ``FINISHED`` or ``FAILED``.

    ``prompts`` (``(name, version)`` pairs) and ``models`` (registered ``(name, version)``
    pairs, or ``LoggedModel`` ids) are what the work used: the run page lists each one as
    a link (see :mod:`.links`). The source of the work (notebook, cell: :mod:`.source`)
    is tagged too; ``tags`` given here win over both.

    Raises
    ------
    RunKept
        MLflow failed; the run waits in ``<home>/runs-pending/`` (the message says so).
    """
    cfg = cfg or settings()
    now = time.time()
    tags = {**origin_tags(cfg), **{k: str(v) for k, v in tags.items()}}
    tags.update(linked_prompts_tag(prompts, tags.get(LINKED_PROMPTS_TAG)))
    record = RunRecord(
        run_name=run_name,
        tags=tags,
        params={k: str(v)[:6000] for k, v in params.items()},
        metrics={k: float(v) for k, v in metrics.items() if v is not None},
        tables=dict(tables or {}),
        dicts=dict(dicts or {}),
        experiment=experiment,
        start_ms=int((start_time or end_time or now) * 1000),
        end_ms=int((end_time or now) * 1000),
        status=status,
        store=public_uri(cfg.resolved_tracking_uri),
        models=model_pairs(models),
    )
    try:
        return _write(record, cfg)
    except TrackingError as e:
        path = _keep(record, cfg)
        raise RunKept(f"{e}; the run is kept in {_shown(path, cfg)}", record.key) from None


def origin_tags(cfg: Settings | None = None) -> dict:
    """Who made a run and from where, as every run of ours says it: ``mlflow.user`` (the
    run page's "Created by", the MLflow user) and the notebook and cell (its "Source")."""
    return {"mlflow.user": current_user(cfg), **source_tags()}


def prompt_link_tags(name: str, version) -> dict:
    """The tag MLflow's own ``link_prompt_version_to_run`` writes (its UI then lists the run
    under the prompt version), set with the run's other tags: one call fewer, and a kept
    run keeps its link. For several prompts pass ``log_run(prompts=...)``."""
    return linked_prompts_tag([(name, version)])


def _shown(path: Path, cfg: Settings) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write(record: RunRecord, cfg: Settings, *, replay: bool = False) -> str:
    """Write ``record`` as one run; on replay, complete the run its key names if one exists."""
    c = client(cfg)
    exp = experiment_id(record.experiment, cfg)
    run_id = None
    try:
        if replay:
            found = c.search_runs([exp], filter_string=f"tags.`{RUN_KEY_TAG}` = '{record.key}'", max_results=1)
            run_id = found[0].info.run_id if found else None
        have_params: dict = {}
        if run_id is None:
            run = c.create_run(
                exp, run_name=record.run_name, start_time=record.start_ms, tags={**record.tags, RUN_KEY_TAG: record.key}
            )
            run_id = run.info.run_id
        else:
            have_params = c.get_run(run_id).data.params
        table_tag = [{"path": name, "type": "table"} for name in record.tables]
        log_batch(
            c,
            run_id,
            metrics=[(k, v, record.end_ms, 0) for k, v in record.metrics.items()],
            params={k: v for k, v in record.params.items() if k not in have_params},
            tags={"mlflow.loggedArtifacts": json.dumps(table_tag)} if table_tag else None,
        )
        linked = model_ids(c, record.models, cfg.resolved_tracking_uri) if record.models else []
        if linked:
            from mlflow.entities import LoggedModelInput  # mlflow is heavy: imported where used, like log_batch

            # One call for all models; the store merges by key, so a replay adds no second copy.
            c.log_inputs(run_id, datasets=None, models=[LoggedModelInput(m) for m in linked])
        for name, columns in record.tables.items():
            # Written whole, not with log_table: log_table appends to an existing table,
            # and a replay must leave one copy of each row.
            c.log_text(run_id, _table_json(columns), name)
        for name, data in record.dicts.items():
            c.log_dict(run_id, data, name)
        # Live, the run ends once it is written (the user waited for that too); a replay
        # keeps the end of the work it records, however long after the outage it lands.
        terminate(c, run_id, record.status, record.end_ms if replay else max(record.end_ms, _now_ms()))
        _run_experiments[run_id] = exp
        return run_id
    except TrackingError:
        if run_id is not None:
            with contextlib.suppress(Exception):  # best effort; the kept copy completes it later
                terminate(c, run_id, "FAILED", record.end_ms)
        raise
    except Exception as e:
        if run_id is not None:
            with contextlib.suppress(Exception):
                terminate(c, run_id, "FAILED", record.end_ms)
        raise refused(e, cfg) from e


def _now_ms() -> int:
    return int(time.time() * 1000)


def log_batch(c, run_id: str, *, metrics=(), params: dict | None = None, tags: dict | None = None) -> None:
    """One ``log_batch`` call from plain values: ``metrics`` as ``(key, value, timestamp_ms, step)``.

    The MLflow entity classes stay behind this door; callers hand over numbers and strings.
    """
    from mlflow.entities import Metric, Param, RunTag

    c.log_batch(
        run_id,
        metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def _table_json(columns: dict) -> str:
    names = list(columns)
    rows = list(zip(*(columns[n] for n in names))) if names else []
    return json.dumps({"columns": names, "data": [list(r) for r in rows]}, default=str)


def pending_dir(cfg: Settings) -> Path:
    return cfg.home / PENDING_DIR


def _keep(record: RunRecord, cfg: Settings) -> Path:
    folder = pending_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.key}.json"
    tmp = folder / f".{record.key}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(asdict(record), f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


@dataclass
class PendingReport:
    """What one replay of kept runs did."""

    shipped: int = 0
    pending: int = 0
    bad: int = 0
    error: str | None = None


def ship_pending(cfg: Settings | None = None) -> PendingReport:
    """Write every kept run of this store to MLflow, each exactly once; oldest first."""
    cfg = cfg or settings()
    report = PendingReport()
    folder = pending_dir(cfg)
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    store = public_uri(cfg.resolved_tracking_uri)
    with command(cfg):
        for path in files:
            with _claimed(path) as f:
                if f is None:
                    continue  # another process is writing it now, or has written it
                try:
                    record = RunRecord(**json.loads(f.read()))
                except (ValueError, TypeError, OSError):
                    # Unreadable: set aside so it never blocks the others, counted in the report.
                    with contextlib.suppress(OSError):
                        os.replace(path, path.with_suffix(".bad"))
                    report.bad += 1
                    continue
                if record.store != store:
                    continue  # kept for another tracking URI: shipped when that one is in force
                if report.error:
                    report.pending += 1
                    continue
                try:
                    _write(record, cfg, replay=True)
                    path.unlink(missing_ok=True)  # before the lock is let go: no second writer
                    report.shipped += 1
                except TrackingError as e:
                    report.error = str(e)
                    report.pending += 1
    return report


@contextlib.contextmanager
def _claimed(path: Path):
    """The kept run's file, open and exclusively locked; None if another process holds it
    or it is gone. Two kernels on one home then never replay the same run at once."""
    import fcntl

    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        yield None
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield None
            return
        yield f
