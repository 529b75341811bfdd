"""MLflow access: the embedded sqlite store by default, any tracking URI otherwise.

Runs are written through ``MlflowClient`` with explicit run ids, never the fluent
"active run", so a notebook's own ``mlflow.start_run()`` is never disturbed.
"""

from __future__ import annotations

import threading

from ..config import Settings, settings
from ..errors import TrackingError

EXPERIMENT = "llmops-magics"
_lock = threading.Lock()
_clients: dict[str, object] = {}


def client(cfg: Settings | None = None):
    """An ``MlflowClient`` for the configured tracking and registry URI."""
    cfg = cfg or settings()
    uri = cfg.resolved_tracking_uri
    with _lock:
        if uri not in _clients:
            if uri.startswith("sqlite:"):
                cfg.home.mkdir(parents=True, exist_ok=True)
            import logging

            # Schema set-up of a new sqlite store logs at INFO into the cell: not news.
            for name in ("mlflow.store.db.utils", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            _clients[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return _clients[uri]


def ping(cfg: Settings | None = None, timeout_s: float = 3.0) -> None:
    """Fail fast when a tracking server does not answer (MLflow itself retries for minutes)."""
    cfg = cfg or settings()
    uri = cfg.resolved_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except requests.RequestException as e:
        raise TrackingError(f"no MLflow server answers at {uri}: {type(e).__name__}") from e


def experiment_id(name: str = EXPERIMENT, cfg: Settings | None = None) -> str:
    """Id of ``name``, created on first use (artifacts under the home for sqlite)."""
    c = client(cfg)
    cfg = cfg or settings()
    try:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if cfg.resolved_tracking_uri.startswith("sqlite:"):
            location = (cfg.home / "artifacts").resolve().as_uri()
        return c.create_experiment(name, artifact_location=location)
    except Exception as e:
        raise TrackingError(f"MLflow at {cfg.resolved_tracking_uri} refused: {type(e).__name__}: {_first_line(e)}") from e


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


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
) -> str:
    """Create one finished run in a fixed number of calls, whatever the data size.

    ``tables`` maps an artifact file name (``cases.json``) to a column dict;
    ``dicts`` maps an artifact file name (``report.json``) to any JSON-ready dict.
    """
    from mlflow.entities import Metric, Param, RunTag

    c = client(cfg)
    exp = experiment_id(experiment, cfg)
    try:
        run = c.create_run(exp, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        run_id = run.info.run_id
        import time

        now = int(time.time() * 1000)
        c.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        )
        for name, data in (tables or {}).items():
            c.log_table(run_id, data=data, artifact_file=name)
        for name, data in (dicts or {}).items():
            c.log_dict(run_id, data, name)
        c.set_terminated(run_id)
        return run_id
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(
            f"MLflow at {(cfg or settings()).resolved_tracking_uri} refused: {type(e).__name__}: {_first_line(e)}"
        ) from e
