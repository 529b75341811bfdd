"""Reading traces: an app's production history, paged and bounded.

Traces are read a page at a time (``search_traces`` with a page token), each page
bounded by ``Settings.mlflow_timeout_s`` on its own, so reading thousands of traces is
not cut short by one command's budget while a silent server still fails within one
page's time. Spans come with each page: one call per page, never one per trace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...config import Settings, settings
from ...errors import BadInput, LlmopsError
from .budget import call, call_alone
from .connection import client
from .errors import error_code, mlflow_errors, refused

PAGE_SIZE = 500


def experiment_named(experiment: str, cfg: Settings | None = None) -> str:
    """The id of the experiment ``experiment`` (a name or an id); BadInput when there is none."""
    cfg = cfg or settings()
    c = client(cfg)
    with mlflow_errors(f"look up experiment {experiment!r}", cfg):
        found = c.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            try:
                found = c.get_experiment(experiment)
            except Exception as e:  # an id that names nothing reads as "no such experiment" below
                if error_code(e) not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                    raise
    if found is None:
        raise BadInput(f"no MLflow experiment named {experiment!r}: give the name or id your app traces into")
    return found.experiment_id


def read_traces(
    experiment_id: str,
    *,
    filter_string: str | None = None,
    since_ms: int | None = None,
    page_size: int = PAGE_SIZE,
    cfg: Settings | None = None,
    on_page: Callable[[int], None] | None = None,
) -> Iterator:
    """Every trace of an experiment that matches, oldest first, with its spans.

    Parameters
    ----------
    experiment_id : str
    filter_string : str, optional
        MLflow's trace filter syntax, e.g. ``tags.route = 'refunds'``.
    since_ms : int, optional
        Only traces that started at or after this time (ms since the epoch).
    on_page : callable, optional
        Called with the number of traces of each page as it arrives (progress).

    Raises
    ------
    BadInput
        The filter does not parse.
    TrackingError
        MLflow refused or did not answer a page within its time.
    """
    cfg = cfg or settings()
    clauses = [f"({filter_string})" if " or " in filter_string.lower() else filter_string] if filter_string else []
    if since_ms is not None:
        clauses.append(f"trace.timestamp_ms >= {int(since_ms)}")
    where = " AND ".join(clauses) or None
    store = client(cfg).raw
    token = None
    while True:

        def page(token=token):
            return store.search_traces(
                locations=[experiment_id],
                filter_string=where,
                max_results=page_size,
                order_by=["timestamp_ms ASC"],
                page_token=token,
                include_spans=True,
            )

        try:
            got = call_alone("read traces", page, cfg)
        except LlmopsError:
            raise
        except Exception as e:
            if error_code(e) == "INVALID_PARAMETER_VALUE" and filter_string:
                raise BadInput(
                    f"--filter {filter_string!r} is not a trace filter MLflow accepts ({_short(e)}): "
                    "e.g. \"tags.route = 'refunds'\" or \"trace.status = 'OK'\""
                ) from None
            raise refused(e, cfg, "read traces") from e
        if on_page is not None:
            on_page(len(got))
        yield from got
        token = got.token
        if not token or not len(got):
            return


def get_trace(trace_id: str, cfg: Settings | None = None):
    """One trace with its spans and assessments (bounded like every call)."""
    cfg = cfg or settings()
    store = client(cfg).raw
    with mlflow_errors(f"read trace {trace_id}", cfg):
        return call("read trace", lambda: store.get_trace(trace_id), cfg)


def _short(e: BaseException) -> str:
    text = " ".join(str(getattr(e, "message", e)).split())
    return text if len(text) <= 160 else text[:159] + "…"
