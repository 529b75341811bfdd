"""One MLflow budget per command: ping first, bounded calls, give up once.

MLflow's REST client retries for minutes when a server is down (about 245 s measured).
Every call made through :func:`call` counts against one budget per command
(``Settings.mlflow_timeout_s``, 10 s by default): a remote store is pinged first, each
call runs with what is left of the budget, and after the first failure the rest of the
command skips MLflow at once. A command is whatever runs inside :func:`command` (each
magic's twin opens one); a call outside any gets a budget of its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
import time
from dataclasses import dataclass

from ...config import Settings, settings
from ...errors import TrackingError
from .redact import public_uri

# The first call of a command to a remote store pings it with at most this long.
PING_S = 3.0


class MlflowUnavailable(TrackingError):
    """MLflow did not answer within the command's budget (refused, silent, or too slow)."""


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


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
ADVICE = (
    "start it or check LlmopsMagics.tracking_uri; what this command wrote is kept "
    "and %lineage sync sends it once MLflow answers"
)


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
        raise MlflowUnavailable(f"MLflow at {public_uri(uri)} does not answer ({type(e).__name__}): {ADVICE}") from None


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


def call_alone(what: str, fn, cfg: Settings | None = None):
    """One call with a budget of its own: a long read (pages of traces) bounds each page
    by ``mlflow_timeout_s`` instead of sharing one budget across all of them.

    A command that has already given MLflow up still skips it at once.
    """
    cfg = cfg or settings()
    outer = _budget.get()
    if outer is not None and outer.failed:
        raise MlflowUnavailable(outer.failed)
    # The server was pinged once in this command already: each page need not ping again.
    token = _budget.set(_Budget(cfg.mlflow_timeout_s, pinged=bool(outer is not None and outer.pinged)))
    try:
        return call(what, fn, cfg)
    except MlflowUnavailable as e:
        if outer is not None:
            outer.failed = str(e)
        raise
    finally:
        inner = _budget.get()
        _budget.reset(token)
        if outer is not None and inner is not None and inner.pinged:
            outer.pinged = True
