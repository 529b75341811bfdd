"""The one door to MLflow: client, time budget, run writing, kept runs, redaction.

* **Bounded.** MLflow's REST client retries for minutes when a server is down (about
  245 s measured). Every call made through :func:`client` counts against one budget per
  command (``Settings.mlflow_timeout_s``, 10 s by default): a remote store is pinged
  first, each call runs with what is left of the budget, and after the first failure
  the rest of the command skips MLflow at once. A command is whatever runs inside
  :func:`command` (each magic's twin opens one); a call outside any gets a budget of its own.
* **Nothing lost.** :func:`log_run` writes a run in a fixed number of calls; when MLflow
  fails, the whole run (params, metrics, tables, real start and end times) is kept in
  ``<home>/runs-pending/`` and written by :func:`ship_pending` once MLflow answers again
  (the lineage shipper and ``%lineage sync`` call it). Each run carries a key tag, so a
  replay completes a half-written run instead of writing a second one.
* **Foreground imports.** :func:`preload` imports what background threads will use and
  creates the store before any thread starts: importing mlflow from two threads at once
  fails at random ("partially initialized module 'mlflow.tracking'").
* Runs are written through ``MlflowClient`` with explicit run ids, never the fluent
  "active run", so a notebook's own ``mlflow.start_run()`` is never disturbed.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Settings, settings
from ..errors import TrackingError

EXPERIMENT = "llmops-magics"
RUN_KEY_TAG = "llmops.run_key"
PENDING_DIR = "runs-pending"
# The first call of a command to a remote store pings it with at most this long.
PING_S = 3.0
_lock = threading.Lock()
_clients: dict[str, object] = {}
_experiments: dict[tuple[str, str], str] = {}
# Experiment of each run written from this process: a result's link to the MLflow UI
# needs it, and a display must never call MLflow (it would hang while MLflow is down).
_run_experiments: dict[str, str] = {}


class MlflowUnavailable(TrackingError):
    """MLflow did not answer within the command's budget (refused, silent, or too slow)."""


class RunKept(TrackingError):
    """A run could not be written now; it waits in the home's ``runs-pending/`` folder."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------- redaction and messages


def public_uri(uri: str) -> str:
    """The URI without credentials (``user:password@``), safe for messages, lockfiles and logs."""
    return re.sub(r"//[^/@]*@", "//", uri)


def first_line(e: BaseException) -> str:
    """The first line of an error's message, cut at 300 characters, URI passwords removed."""
    text = str(e).strip()
    return public_uri(text.splitlines()[0][:300]) if text else ""


def describe(e: BaseException) -> str:
    """``TypeName: first line``: how an outside error is told in one line."""
    return f"{type(e).__name__}: {first_line(e)}" if first_line(e) else type(e).__name__


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


# ---------------------------------------------------------------- the budget


@dataclass
class _Budget:
    limit_s: float
    spent_s: float = 0.0
    failed: str | None = None
    pinged: bool = False

    @property
    def left_s(self) -> float:
        return max(0.0, self.limit_s - self.spent_s)


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("llmops_mlflow_budget", default=None)


@contextlib.contextmanager
def command(cfg: Settings | None = None):
    """One command's MLflow budget; nested commands share the outermost one."""
    if _budget.get() is not None:
        yield _budget.get()
        return
    token = _budget.set(_Budget((cfg or settings()).mlflow_timeout_s))
    try:
        yield _budget.get()
    finally:
        _budget.reset(token)


def bounded_command(fn):
    """Run ``fn`` as one command: all its MLflow calls share one budget (its ``cfg=`` is used)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with command(kwargs.get("cfg")):
            return fn(*args, **kwargs)

    return wrapper


def unavailable() -> str | None:
    """Why MLflow was given up on in the current command (None while it answers)."""
    budget = _budget.get()
    return budget.failed if budget is not None else None


# What to do, said with every "MLflow does not answer".
ADVICE = ("start it or check LlmopsMagics.tracking_uri; what this command wrote is kept "
          "and %lineage sync sends it once MLflow answers")


def _give_up(budget: _Budget, cfg: Settings, why: str) -> MlflowUnavailable:
    budget.failed = f"MLflow at {public_uri(cfg.resolved_tracking_uri)} {why}: {ADVICE}"
    return MlflowUnavailable(budget.failed)


def ping(cfg: Settings | None = None, timeout_s: float = PING_S) -> None:
    """Fail fast when a tracking server does not answer (MLflow itself retries for minutes)."""
    cfg = cfg or settings()
    uri = cfg.resolved_tracking_uri
    if not is_remote(uri) or uri.startswith("databricks"):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except requests.RequestException as e:
        raise MlflowUnavailable(
            f"MLflow at {public_uri(uri)} does not answer ({type(e).__name__}): {ADVICE}") from None


def _bounded(fn, timeout_s: float):
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s``; raises TimeoutError."""
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            done.set()

    # A call that outlives its budget is abandoned (its thread ends when MLflow's own
    # retries do); a run it may still create is completed by the kept copy's replay.
    threading.Thread(target=work, name="llmops-mlflow-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


def call(what: str, fn, cfg: Settings | None = None):
    """Run one MLflow call under the current command's budget.

    Raises
    ------
    MlflowUnavailable
        MLflow was already given up on in this command, or does not answer now.
    Exception
        Whatever MLflow raised for a call it did answer (not found, refused...).
    """
    cfg = cfg or settings()
    with command(cfg) as budget:
        if budget.failed:
            raise MlflowUnavailable(budget.failed)
        remote = is_remote(cfg.resolved_tracking_uri)
        t0 = time.monotonic()
        try:
            if remote and not budget.pinged:
                try:
                    ping(cfg, timeout_s=min(PING_S, max(budget.left_s, 0.1)))
                except MlflowUnavailable as e:
                    budget.failed = str(e)
                    raise
                budget.pinged = True
            if not remote:
                return fn()
            if budget.left_s <= 0:
                raise _give_up(budget, cfg, f"used this command's {budget.limit_s:g} s budget")
            try:
                return _bounded(fn, budget.left_s)
            except TimeoutError:
                raise _give_up(budget, cfg, f"did not answer {what} within {budget.limit_s:g} s") from None
        finally:
            budget.spent_s += time.monotonic() - t0


class BoundedClient:
    """An ``MlflowClient`` whose every method call goes through :func:`call`."""

    def __init__(self, inner, cfg: Settings):
        self._inner, self._cfg = inner, cfg

    @property
    def raw(self):
        """The MlflowClient itself, for attributes that are not calls."""
        return self._inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def bounded(*args, **kwargs):
            return call(name, lambda: attr(*args, **kwargs), self._cfg)

        return bounded


# ---------------------------------------------------------------- the client


def _artifact_root(cfg: Settings) -> str:
    return (cfg.home / "artifacts").resolve().as_uri()


def _quiet_mlflow_loggers() -> None:
    # Schema set-up of a new sqlite store logs at INFO into the cell, and the retries
    # of a call abandoned by its budget log warnings later, into whatever cell runs then.
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    retries = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _NotOurThreads) for f in retries.filters):
        retries.addFilter(_NotOurThreads())


class _NotOurThreads(logging.Filter):
    def filter(self, record):
        return not record.threadName.startswith("llmops-")


def client(cfg: Settings | None = None) -> BoundedClient:
    """The MLflow client for the configured tracking and registry URI, bounded in time.

    The embedded sqlite store is created here, whole or not at all (see :mod:`mlflow_store`).
    """
    cfg = cfg or settings()
    uri = cfg.resolved_tracking_uri
    with _lock:
        if uri not in _clients:
            _quiet_mlflow_loggers()
            from . import mlflow_store

            path = mlflow_store.sqlite_path(uri)
            if path is not None:
                cfg.home.mkdir(parents=True, exist_ok=True)
                mlflow_store.ensure(path, _artifact_root(cfg))
            from mlflow.tracking import MlflowClient

            _clients[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return BoundedClient(_clients[uri], cfg)


# Modules MLflow imports lazily inside the calls the shipper and the bounded client make
# (searches, run writes, artifact reads, REST auth): imported up front, in the foreground.
_LAZY_MODULES = (
    "mlflow.entities", "mlflow.entities.entity_type", "mlflow.models", "mlflow.artifacts",
    "mlflow.tracking.fluent", "mlflow.utils.search_logged_model_utils", "mlflow.utils.rest_utils",
    "mlflow.tracking.request_auth.registry", "mlflow.tracking.request_header.registry",
    "mlflow.store.artifact.artifact_repository_registry", "mlflow.store.artifact.local_artifact_repo",
    "mlflow.store.artifact.runs_artifact_repo", "mlflow.store.artifact.http_artifact_repo",
    "mlflow.store.artifact.mlflow_artifacts_repo", "mlflow.store.tracking.rest_store",
    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.rest_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)


def preload(cfg: Settings | None = None) -> None:
    """Import what background threads use and create the store, in the calling thread.

    Call before starting a thread that talks to MLflow (the lineage shipper).
    """
    import importlib

    cfg = cfg or settings()
    for name in ("requests", *_LAZY_MODULES):
        with contextlib.suppress(ImportError):  # a module another MLflow version lacks
            importlib.import_module(name)
    c = client(cfg)
    c.raw._tracking_client.store  # noqa: B018  (the store object and its imports, built now)
    c.raw._get_registry_client().store  # noqa: B018


# ---------------------------------------------------------------- experiments and runs


def experiment_of(run_id: str | None) -> str | None:
    """The experiment of a run this process wrote (no MLflow call), else None."""
    return _run_experiments.get(run_id) if run_id else None


@bounded_command
def experiment_id(name: str = EXPERIMENT, cfg: Settings | None = None) -> str:
    """Id of ``name``, created on first use (artifacts under the home for sqlite)."""
    cfg = cfg or settings()
    key = (cfg.resolved_tracking_uri, name)
    if key in _experiments:
        return _experiments[key]
    c = client(cfg)
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            exp_id = exp.experiment_id
        else:
            location = _artifact_root(cfg) if not is_remote(cfg.resolved_tracking_uri) else None
            exp_id = c.create_experiment(name, artifact_location=location)
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"MLflow at {public_uri(cfg.resolved_tracking_uri)} refused: {describe(e)}") from e
    _experiments[key] = exp_id
    return exp_id


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
) -> str:
    """Create one finished run in a fixed number of calls, whatever the data size.

    ``tables`` maps an artifact file name (``cases.json``) to a column dict (shown as a
    table in the MLflow UI); ``dicts`` maps an artifact file name (``report.json``) to
    any JSON-ready dict. ``start_time``/``end_time`` (seconds since the epoch) are those
    of the work the run records; ``status`` is ``FINISHED`` or ``FAILED``.

    Raises
    ------
    RunKept
        MLflow failed; the run waits in ``<home>/runs-pending/`` (the message says so).
    """
    cfg = cfg or settings()
    now = time.time()
    record = RunRecord(
        run_name=run_name, tags={k: str(v) for k, v in tags.items()},
        params={k: str(v)[:6000] for k, v in params.items()},
        metrics={k: float(v) for k, v in metrics.items() if v is not None},
        tables=dict(tables or {}), dicts=dict(dicts or {}), experiment=experiment,
        start_ms=int((start_time or end_time or now) * 1000), end_ms=int((end_time or now) * 1000),
        status=status, store=public_uri(cfg.resolved_tracking_uri),
    )
    try:
        return _write(record, cfg)
    except TrackingError as e:
        path = _keep(record, cfg)
        raise RunKept(f"{e}; the run is kept in {_shown(path, cfg)}", record.key) from None


def prompt_link_tags(name: str, version) -> dict:
    """The tag MLflow's own ``link_prompt_version_to_run`` writes (its UI then lists the run
    under the prompt version), set with the run's other tags: one call fewer, and a kept
    run keeps its link."""
    return {"mlflow.linkedPrompts": json.dumps([{"name": name, "version": str(version)}])}


def _shown(path: Path, cfg: Settings) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write(record: RunRecord, cfg: Settings, *, replay: bool = False) -> str:
    """Write ``record`` as one run; on replay, complete the run its key names if one exists."""
    from mlflow.entities import Metric, Param, RunTag

    c = client(cfg)
    exp = experiment_id(record.experiment, cfg)
    run_id = None
    try:
        if replay:
            found = c.search_runs([exp], filter_string=f"tags.`{RUN_KEY_TAG}` = '{record.key}'", max_results=1)
            run_id = found[0].info.run_id if found else None
        have_params: dict = {}
        if run_id is None:
            run = c.create_run(exp, run_name=record.run_name, start_time=record.start_ms,
                               tags={**record.tags, RUN_KEY_TAG: record.key})
            run_id = run.info.run_id
        else:
            have_params = c.get_run(run_id).data.params
        table_tag = [{"path": name, "type": "table"} for name in record.tables]
        tags = [RunTag("mlflow.loggedArtifacts", json.dumps(table_tag))] if table_tag else []
        c.log_batch(
            run_id,
            metrics=[Metric(k, v, record.end_ms, 0) for k, v in record.metrics.items()],
            params=[Param(k, v) for k, v in record.params.items() if k not in have_params],
            tags=tags,
        )
        for name, columns in record.tables.items():
            # Written whole, not with log_table: log_table appends to an existing table,
            # and a replay must leave one copy of each row.
            c.log_text(run_id, _table_json(columns), name)
        for name, data in record.dicts.items():
            c.log_dict(run_id, data, name)
        terminate(c, run_id, record.status, record.end_ms)
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
        raise TrackingError(f"MLflow at {public_uri(cfg.resolved_tracking_uri)} refused: {describe(e)}") from e


def _table_json(columns: dict) -> str:
    names = list(columns)
    rows = list(zip(*(columns[n] for n in names))) if names else []
    return json.dumps({"columns": names, "data": [list(r) for r in rows]}, default=str)


def terminate(c: BoundedClient, run_id: str, status: str, end_ms: int | None = None) -> None:
    """End a run without ``set_terminated``'s extra ``get_run`` and its "View run at" print
    (which would show the raw tracking URI, credentials included, in a cell)."""
    from mlflow.entities import RunStatus

    store = c.raw._tracking_client.store
    call("terminate run", lambda: store.update_run_info(
        run_id, run_status=RunStatus.from_string(status), end_time=end_ms or int(time.time() * 1000),
        run_name=None), c._cfg)


def read_artifact(run_id: str, path: str, cfg: Settings | None = None) -> str | None:
    """The text of one artifact of a run, or None when the run has no such file.

    The repository's single-file download: the client's ``download_artifacts`` draws a
    progress bar (from a background thread it lands in a user's cell) and its switch is
    a process-wide environment variable.
    """
    import tempfile

    cfg = cfg or settings()
    c = client(cfg)
    folder = path.rpartition("/")[0]
    if path not in {a.path for a in c.list_artifacts(run_id, folder or None)}:
        return None
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    artifact_uri = c.get_run(run_id).info.artifact_uri
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "artifact")

        def download():
            repo = get_artifact_repository(artifact_uri, tracking_uri=cfg.resolved_tracking_uri)
            repo._download_file(path, local)

        call(f"download {path}", download, cfg)
        return Path(local).read_text(encoding="utf-8")


# ---------------------------------------------------------------- kept runs


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
