"""The MLflow client: created once per store, every call bounded, artifacts read quietly.

* The embedded sqlite store is created whole or not at all (:mod:`.store`).
* **Foreground imports.** :func:`preload` imports what background threads will use and
  creates the store before any thread starts: importing mlflow from two threads at once
  fails at random ("partially initialized module 'mlflow.tracking'").
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from ...config import Settings, settings
from ...errors import TrackingError
from . import store as mlflow_store
from .budget import bounded_command, call, is_remote
from .errors import refused

EXPERIMENT = "llmops-magics"
_lock = threading.Lock()
_clients: dict[str, object] = {}
_experiments: dict[tuple[str, str], str] = {}
# Experiment of each run written from this process: a result's link to the MLflow UI
# needs it, and a display must never call MLflow (it would hang while MLflow is down).
_run_experiments: dict[str, str] = {}


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
    "mlflow.entities",
    "mlflow.tracing.client",
    "mlflow.entities.entity_type",
    "mlflow.models",
    "mlflow.artifacts",
    "mlflow.tracking.fluent",
    "mlflow.utils.search_logged_model_utils",
    "mlflow.utils.rest_utils",
    "mlflow.tracking.request_auth.registry",
    "mlflow.tracking.request_header.registry",
    "mlflow.store.artifact.artifact_repository_registry",
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.store.artifact.runs_artifact_repo",
    "mlflow.store.artifact.http_artifact_repo",
    "mlflow.store.artifact.mlflow_artifacts_repo",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.rest_store",
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
        raise refused(e, cfg) from e
    _experiments[key] = exp_id
    return exp_id


def terminate(c: BoundedClient, run_id: str, status: str, end_ms: int | None = None) -> None:
    """End a run without ``set_terminated``'s extra ``get_run`` and its "View run at" print
    (which would show the raw tracking URI, credentials included, in a cell)."""
    from mlflow.entities import RunStatus

    store = c.raw._tracking_client.store
    call(
        "terminate run",
        lambda: store.update_run_info(
            run_id, run_status=RunStatus.from_string(status), end_time=end_ms or int(time.time() * 1000), run_name=None
        ),
        c._cfg,
    )


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
