"""Reading traces: an app's production history, paged and bounded.

Traces are read a page at a time (``search_traces`` with a page token), each page
bounded by ``Settings.mlflow_timeout_s`` on its own, so reading thousands of traces is
not cut short by one command's budget while a silent server still fails within one
page's time. Spans come with each page: one call per page, never one per trace.

A watch over thousands of traces reads trace infos only (:func:`read_trace_infos`, about
ten times faster) and fetches spans in chunks for the traces it needs (:func:`fetch_spans`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...config import Settings, settings
from ...errors import BadInput, LlmopsError
from .budget import call, call_alone, is_remote
from .connection import client
from .errors import error_code, is_not_found, mlflow_errors, refused

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
    where = window_clause(since_ms, None, filter_string)
    yield from _pages(experiment_id, where, filter_string, page_size, True, cfg or settings(), on_page)


def get_trace(trace_id: str, cfg: Settings | None = None):
    """One trace with its spans and assessments (bounded like every call)."""
    cfg = cfg or settings()
    store = client(cfg).raw
    with mlflow_errors(f"read trace {trace_id}", cfg):
        return call("read trace", lambda: store.get_trace(trace_id, display=False), cfg)


def _short(e: BaseException) -> str:
    text = " ".join(str(getattr(e, "message", e)).split())
    return text if len(text) <= 160 else text[:159] + "…"


# --- A window of an app's traces, read fast: infos first, spans only where needed ----------
#
# Measured on a sqlite store (10,000 one-span traces): search_traces with spans reads them
# in 9-12 s, without spans in 1.2 s (assessments, tags and metadata included), and the
# store's batch_get_traces fetches the spans of 500 given traces in 0.14 s. So a watch reads
# every trace info, then fetches spans only for the traces it knows nothing about yet.

# Spans fetched per call: a server sends each trace's spans in one response, so a chunk
# stays well inside one call's time; the embedded store reads 500 in a fraction of a second.
SPAN_CHUNK = 500
REMOTE_SPAN_CHUNK = 100
# Span locations MLflow keeps in the tracking store itself (TraceTagKey.SPANS_LOCATION).
_STORE_LOCATIONS = ("TRACKING_STORE", "ARCHIVE_REPO")


def window_clause(start_ms: int | None, end_ms: int | None, filter_string: str | None = None) -> str | None:
    """The trace filter of ``filter_string`` within ``[start_ms, end_ms)`` (either end open)."""
    clauses = [f"({filter_string})" if " or " in filter_string.lower() else filter_string] if filter_string else []
    if start_ms is not None:
        clauses.append(f"trace.timestamp_ms >= {int(start_ms)}")
    if end_ms is not None:
        clauses.append(f"trace.timestamp_ms < {int(end_ms)}")
    return " AND ".join(clauses) or None


def read_trace_infos(
    experiment_id: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    filter_string: str | None = None,
    page_size: int = PAGE_SIZE,
    cfg: Settings | None = None,
    on_page: Callable[[int], None] | None = None,
) -> Iterator:
    """The infos of every matching trace that started in ``[start_ms, end_ms)``, oldest first.

    No spans are read: each info carries the trace's id, start, state, duration, tags,
    metadata and assessments. Each page is bounded on its own, as in :func:`read_traces`.

    Parameters
    ----------
    experiment_id : str
    start_ms, end_ms : int, optional
        The window, ms since the epoch; the end is excluded.
    filter_string : str, optional
        MLflow's trace filter syntax, e.g. ``tags.route = 'refunds'``.
    on_page : callable, optional
        Called with the number of infos of each page as it arrives (progress).

    Yields
    ------
    mlflow.entities.TraceInfo

    Raises
    ------
    BadInput
        The filter does not parse.
    TrackingError
        MLflow refused or did not answer a page within its time.
    """
    where = window_clause(start_ms, end_ms, filter_string)
    for trace in _pages(experiment_id, where, filter_string, page_size, False, cfg or settings(), on_page):
        yield trace.info


def _pages(experiment_id, where, filter_string, page_size, include_spans, cfg, on_page) -> Iterator:
    """Every trace matching ``where``, oldest first, a bounded call per page."""
    mlflow_client = client(cfg).raw
    token = None
    while True:

        def page(token=token):
            return mlflow_client.search_traces(
                locations=[experiment_id],
                filter_string=where,
                max_results=page_size,
                order_by=["timestamp_ms ASC"],
                page_token=token,
                include_spans=include_spans,
            )

        got = _search_page(page, filter_string, cfg)
        if on_page is not None:
            on_page(len(got))
        yield from got
        token = got.token
        if not token or not len(got):
            return


def fetch_spans(
    trace_ids,
    *,
    cfg: Settings | None = None,
    chunk: int | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Iterator:
    """The whole traces (spans included) of ``trace_ids``, a chunk per bounded call.

    The tracking store's ``batch_get_traces`` reads a chunk in one call; a store without
    it, or a trace whose spans live in the artifact repository, is read with ``get_trace``
    one trace at a time. A trace that no longer exists is left out.

    Parameters
    ----------
    trace_ids : sequence of str
    chunk : int, optional
        Traces per call (500 on a local store, 100 on a server by default).
    on_chunk : callable, optional
        Called with the number of traces asked for in each chunk as it is done (progress).

    Yields
    ------
    mlflow.entities.Trace
        In no particular order.

    Raises
    ------
    TrackingError
        MLflow refused or did not answer a chunk within its time.
    """
    cfg = cfg or settings()
    ids = list(dict.fromkeys(trace_ids))
    if not ids:
        return
    size = chunk or (REMOTE_SPAN_CHUNK if is_remote(cfg.resolved_tracking_uri) else SPAN_CHUNK)
    mlflow_client = client(cfg).raw
    # The store's batch read is public on every tracking store (MlflowClient has none).
    store = mlflow_client._tracking_client.store
    batch = getattr(store, "batch_get_traces", None)
    for lo in range(0, len(ids), size):
        part = ids[lo : lo + size]
        found = _batch(batch, part, cfg) if batch is not None else None
        if found is None:  # no batch read on this store: one trace at a time
            batch, found = None, []
        by_id = {t.info.trace_id: t for t in found}
        for trace_id in part:
            trace = by_id.get(trace_id)
            if batch is None or (trace is not None and not trace.data.spans and _spans_elsewhere(trace.info)):
                trace = _one_trace(mlflow_client, trace_id, cfg)
            # Left out of a batch read: the trace is gone (a single read would retry for seconds).
            if trace is not None:
                yield trace
        if on_chunk is not None:
            on_chunk(len(part))


def _search_page(page, filter_string: str | None, cfg: Settings):
    """One bounded page of a trace search; a filter MLflow rejects is the user's one line."""
    try:
        return call_alone("read traces", page, cfg)
    except LlmopsError:
        raise
    except Exception as e:
        if error_code(e) == "INVALID_PARAMETER_VALUE" and filter_string:
            raise BadInput(
                f"--filter {filter_string!r} is not a trace filter MLflow accepts ({_short(e)}): "
                "e.g. \"tags.route = 'refunds'\" or \"trace.status = 'OK'\""
            ) from None
        raise refused(e, cfg, "read traces") from e


def _batch(batch, ids: list[str], cfg: Settings) -> list | None:
    """One bounded batch read; None when the store has no batch read after all."""
    try:
        return list(call_alone("read spans", lambda: batch(ids, None), cfg) or [])
    except LlmopsError:
        raise
    except NotImplementedError:
        return None
    except Exception as e:
        if error_code(e) in ("NOT_IMPLEMENTED", "ENDPOINT_NOT_FOUND"):
            return None
        raise refused(e, cfg, "read spans") from e


def _spans_elsewhere(info) -> bool:
    """Whether a trace's spans live outside the tracking store (the artifact repository)."""
    return (info.tags or {}).get("mlflow.trace.spansLocation") not in _STORE_LOCATIONS


def _one_trace(mlflow_client, trace_id: str, cfg: Settings):
    """One whole trace, or None when it is gone (display=False: no trace widget in a cell)."""
    try:
        return call_alone("read trace", lambda: mlflow_client.get_trace(trace_id, display=False), cfg)
    except LlmopsError:
        raise
    except Exception as e:
        if is_not_found(e):
            return None
        raise refused(e, cfg, "read trace") from e
