"""The one door to Ray: attach to a cluster or start a local one, quietly.

``--on ray`` work (backfills, shadow passes) runs its heavy part in Ray workers while
the kernel only drives it. Where it runs is ``Settings.ray_address``:

* empty: a local Ray is started for this process (all its CPUs) and stopped at exit;
* ``auto``: the cluster ``RAY_ADDRESS`` names, or the one ``ray start --head`` left
  running on this machine;
* ``ray://head:10001`` (Ray Client) or ``host:6379`` (the GCS of a cluster this
  machine belongs to).

A cluster on other machines cannot read this machine's files: :func:`check_reachable`
refuses, in one line and before connecting, work whose MLflow store or table is local.

Ray prints its start-up, its workers' output and Ray Data's progress bars wherever the
driver's streams go. None of it belongs in a cell: it goes to the engine log
(``Settings.log_file``), worker output stays in Ray's own session logs, and the caller
shows one progress bar of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import socket
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..config import Settings, settings
from ..errors import BadInput
from .engine_logs import engine_output, route_engine_logs
from .uris import public_uri

_lock = threading.Lock()
_current: Cluster | None = None
# Where `ray start --head` records the address of the cluster it started on this machine.
_CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
# A read task asks for a whole CPU; the actors must leave one, or a 2-core machine hangs
# with every CPU held by an actor waiting for input (measured on Ray 2.60).
READ_SLOT_CPUS = 1.0


# Most seconds an actor pool may take to start (a vLLM engine on CPU: ~1 minute).
ACTOR_START_LIMIT_S = 600
# Restarts of an actor (and retries of its task) before a pass gives up: one killed
# worker is survived, one that is OOM-killed every time is not retried forever.
ACTOR_RETRIES = 3


def retry_limits() -> dict:
    """``map_batches`` keyword arguments bounding restarts and retries (Ray Data's default is forever)."""
    return {"max_restarts": ACTOR_RETRIES, "max_task_retries": ACTOR_RETRIES}


def causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps, outermost first: Ray's ``.cause``, else ``__cause__``."""
    chain, seen = [], set()
    e = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        cause = getattr(e, "cause", None)
        e = cause if isinstance(cause, BaseException) else e.__cause__
    return chain


def one_line(error: BaseException) -> str:
    """What went wrong at the bottom of a Ray error, in one line without credentials.

    A worker's exception often reaches the driver only as traceback text inside Ray's
    (``RayTaskError``, ``ActorDiedError``) under a generic wrapper ("UDF failed to
    process a data block."): the first non-Ray ``Name: message`` line in that text is
    the worker's own exception. Otherwise the first line of the innermost message.
    """
    chain = causes(error)
    for e in chain:
        for line in _ANSI.sub("", str(e)).splitlines():
            found = _EXCEPTION_LINE.match(line)  # at column 0: code lines in a traceback are indented
            if found and not found[1].startswith("ray."):
                return public_uri(f"{found[1].rsplit('.', 1)[-1]}: {found[2].strip()}"[:300])
    for e in reversed(chain):
        lines = [x.strip() for x in _ANSI.sub("", str(e)).splitlines() if x.strip()]
        if lines:
            return public_uri(f"{type(e).__name__}: {lines[0]}"[:300])
    return type(error).__name__


# ``Name: message`` lines of a traceback Ray carried as text (the worker's exception).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RayNotInstalled(BadInput):
    """``--on ray`` without the ``ray`` extra."""


class RayUnreachable(BadInput):
    """No Ray cluster answers at the address given."""


@dataclass(frozen=True)
class Cluster:
    """A connected Ray cluster, as the work that uses it needs to know it."""

    address: str  # as the user gave it ("" for the local Ray this process started)
    cpus: float  # CPUs the cluster offers in total
    gpus: float
    local: bool  # on this machine: its workers read this machine's files
    dashboard_url: str | None
    started_here: bool  # this process started it (and stops it at exit)

    @property
    def label(self) -> str:
        """``local Ray (2 CPUs)`` / ``Ray at ray://head:10001 (64 CPUs)``, with the dashboard."""
        where = "local Ray" if self.started_here else f"Ray at {public_uri(self.address)}"
        text = f"{where} ({self.cpus:g} CPUs{f', {self.gpus:g} GPUs' if self.gpus else ''})"
        return f"{text} · dashboard {self.dashboard_url}" if self.dashboard_url else text

    def actor_cpus(self, concurrency: int) -> float:
        """CPUs each of ``concurrency`` actors asks for, leaving a slot for read tasks."""
        usable = max(self.cpus - READ_SLOT_CPUS, 0.25)
        return round(min(1.0, usable / max(concurrency, 1)), 3)

    def actor_threads(self, concurrency: int) -> int:
        """Torch threads one actor should use: its share of the cluster's CPUs (at least 1).

        Ray sets ``OMP_NUM_THREADS`` to a worker's whole CPUs (1 for a fraction), which
        would leave an embedder or engine on one thread where it has a core to itself.
        """
        return max(1, int(self.cpus // max(concurrency, 1))) if self.local else 0


def gpu_per_actor(cluster: Cluster) -> float:
    """GPUs an engine actor asks for: one where the cluster has them (Ray hides the GPUs
    from an actor that asked for none), else none."""
    return 1.0 if cluster.gpus >= 1 else 0.0


def installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray() -> None:
    if not installed():
        raise RayNotInstalled(
            "--on ray needs Ray: pip install 'llmops-magics[ray]' (or leave out --on ray to run in the kernel)"
        )


def resolve_address(address: str | None, cfg: Settings | None = None) -> str:
    """The address to use: ``address``, else ``Settings.ray_address``; ``""`` = start one here."""
    cfg = cfg or settings()
    return (address if address is not None else cfg.ray_address or "").strip()


def is_local(address: str) -> bool:
    """Whether the cluster at ``address`` runs on this machine (so it sees local paths)."""
    if address in ("", "local"):
        return True
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS") or running_here()
        return True if not found or found == "auto" else is_local(found)
    host = urlparse(address if "://" in address else f"ray://{address}").hostname or ""
    if host in _LOCAL_HOSTS or host.startswith("127."):
        return True
    try:
        return host in {socket.gethostname(), socket.getfqdn()} or socket.gethostbyname(host) in _own_ips()
    except OSError:
        return False


def check_reachable(address: str, *, tracking_uri: str | None = None, paths: tuple[str, ...] = ()) -> None:
    """Refuse work a remote cluster could not do: a local MLflow store or a local path.

    Called before connecting, so a wrong set-up costs nothing.
    """
    if is_local(address):
        return
    if tracking_uri is not None and _is_local_store(tracking_uri):
        raise BadInput(
            f"Ray at {public_uri(address)} runs on other machines, which cannot reach this machine's MLflow store "
            f"({_store_kind(tracking_uri)}): set LlmopsMagics.tracking_uri to a tracking server they reach "
            "(http://...), or run on a local Ray (ray_address = '')"
        )
    for path in paths:
        if path and "://" not in str(path):
            raise BadInput(
                f"Ray at {public_uri(address)} runs on other machines, which cannot read the local path "
                f"{Path(path).name!r}: "
                "put it where the cluster reaches it (--db s3://bucket/path for a table), "
                "or run on a local Ray (ray_address = '')"
            )


def connect(address: str | None = None, *, cfg: Settings | None = None) -> Cluster:
    """Attach to the cluster at ``address`` (see the module doc), starting a local one if
    none is named; once per process, reused by every later call with the same address."""
    global _current
    require_ray()
    cfg = cfg or settings()
    address = resolve_address(address, cfg)
    with _lock:
        import ray  # deferred: ray is an optional extra

        if _current is None and ray.is_initialized():
            raise BadInput(
                "this process is already connected to Ray by another ray.init(): call ray.shutdown() first, "
                "or leave --on ray out and run in the kernel"
            )
        if _current is not None:
            if ray.is_initialized() and _current.address == address:
                return _current
            if ray.is_initialized():
                ray.shutdown()  # another address asked for: one cluster per process
            _current = None
        _current = _start(address, cfg)
        return _current


def shutdown() -> None:
    """Disconnect (and stop a Ray this process started)."""
    global _current
    with _lock:
        if _current is None:
            return
        import ray

        if ray.is_initialized():
            with quiet(settings()):
                ray.shutdown()
        _current = None


def quiet_data(cfg: Settings | None = None):
    """Ray Data set up to say nothing in a cell: no progress bars of its own, its logs in the log file."""
    require_ray()
    import ray.data

    _route_ray_logs(cfg or settings())
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # An actor pool that can never be scheduled (the CPUs held elsewhere) would wait
    # forever: Ray Data's default is no limit. Engines start within minutes.
    ctx.wait_for_min_actors_s = ACTOR_START_LIMIT_S
    return ctx


def _start(address: str, cfg: Settings) -> Cluster:
    import ray

    started_here = address in ("", "local")
    kwargs: dict = {
        "log_to_driver": False,  # workers' prints stay in Ray's session logs
        "configure_logging": False,  # Ray's loggers go to our log file (_route_ray_logs)
        "ignore_reinit_error": True,
        "runtime_env": {"env_vars": _worker_env()},
    }
    if started_here:
        # "local" always starts a new Ray: without it ray.init() would attach to RAY_ADDRESS or
        # to any `ray start --head` running on this machine (another user's, a CI run's).
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=_object_store_bytes())
    else:
        kwargs["address"] = address
    with quiet(cfg):
        try:
            context = ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RayUnreachable(
                f"no Ray cluster answers at {public_uri(address)!r} ({one_line(e)}): "
                "start one (ray start --head), fix LlmopsMagics.ray_address, or leave it empty to start "
                "a local Ray; a cluster with token authentication also needs RAY_AUTH_TOKEN"
            ) from None
    _silence_error_thread()
    if started_here:
        atexit.register(shutdown)
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
    dashboard = getattr(context, "dashboard_url", None) or None
    if dashboard and "://" not in dashboard:
        dashboard = f"http://{dashboard}"
    return Cluster(address, cpus, gpus, is_local(address), dashboard, started_here)


class quiet:
    """Ray's own chatter (stdout, stderr, warnings, native writes) into the engine log, for
    the block: wrap every Ray call that starts or runs work. Yields the real console, for
    a progress bar of ours (``engine_logs.bar_target``)."""

    def __init__(self, cfg: Settings):
        self.cfg = cfg

    def __enter__(self):
        # The engine log may not be set up yet (no engine started in this process).
        route_engine_logs(self.cfg.log_file, verbose=self.cfg.verbose)
        _route_ray_logs(self.cfg)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # lancedb warns on every fork once loaded; Ray forks its raylet and GCS here.
        warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
        self._output = engine_output(verbose=self.cfg.verbose)
        return self._output.__enter__()

    def __exit__(self, *exc):
        try:
            self._output.__exit__(*exc)
        finally:
            self._warnings.__exit__(*exc)
        return False


def _silence_error_thread() -> None:
    """Keep Ray's driver-side error thread out of cells.

    It prints cluster events ("A worker died ...", retries) to ``sys.stdout`` from a
    thread started by ``ray.init``, outside any block of ours; a failure that matters
    still reaches the caller as the exception of the work it broke, and Ray's session
    logs keep the events. Ray offers no public switch (``log_to_driver`` covers worker
    output only): this is the flag its debugger uses for the same purpose.
    """
    import ray._private.worker as worker  # deferred: ray is optional

    if hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def _route_ray_logs(cfg: Settings) -> None:
    """Ray's and Ray Data's loggers write to the engine log, never to a cell."""
    if cfg.verbose:
        return
    path = Path(cfg.log_file).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in ("ray", "ray.data", "ray.train", "ray.serve"):
        logger = logging.getLogger(name)
        if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
            for h in list(logger.handlers):  # Ray's own stderr handler, or ours for another log file
                logger.removeHandler(h)
                h.close()
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)


def _worker_env() -> dict[str, str]:
    """What every worker process needs set before it imports an engine."""
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        # In-process vLLM engine core inside the actor (see engine_logs.route_engine_logs).
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
        "PYTHONWARNINGS": "ignore",
    }
    return env


def _object_store_bytes() -> int:
    """A local Ray's object store: a tenth of memory, between 256 MB and 2 GB (Ray's
    default of 30% competes with the embedder and engine for a laptop's memory)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 8 << 30
    return int(min(2 << 30, max(256 << 20, total // 10)))


def running_here() -> str | None:
    """The address of the cluster ``ray start --head`` left running on this machine, if any."""
    try:
        return _CURRENT_CLUSTER_FILE.read_text().strip() or None
    except OSError:
        return None


def _own_ips() -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return set()


def _is_local_store(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file", "sqlite")


def _store_kind(uri: str) -> str:
    return "a sqlite file" if uri.startswith("sqlite") else "a local folder"
