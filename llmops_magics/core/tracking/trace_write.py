"""Generations written as MLflow traces: many at once, in a few calls, none lost silently.

MLflow's own path (``@mlflow.trace``, ``start_span``) exports each finished trace in two
calls (``log_spans`` + ``start_trace``) through an asynchronous queue that discards traces
when it is full ("Trace export queue is full", seen with 2,000 traces in a loop), and
only logs the loss. This door skips the tracer and its queue: each generation becomes a
finished root span (``mlflow.entities.Span``) built here, and the tracking store writes
them in batches:

* ``log_spans`` takes spans of many traces in one call and creates their trace infos
  (the sqlite store in one transaction; a server through one OTLP request);
* ``link_traces_to_run`` links them to the run, 100 traces per call (MLflow's cap,
  ``MAX_TRACE_LINKS_PER_REQUEST``, on the sqlite store and on a server alike).
  ``mlflow.search_traces(run_id=...)`` finds a trace by this link or by the
  ``mlflow.sourceRun`` metadata, which only ``start_trace`` (one call per trace) sets.

So N traces cost ``2 ceil(N / 100)`` calls (a write and a link per 100), not ``2 N``;
each call is bounded by ``mlflow_timeout_s`` (:func:`.budget.call_alone`), a server
that does not answer ends the command's use of MLflow at once, and every trace that a
failed call did not write is counted in the :class:`TraceReport`, with one line saying why.

The root span follows what MLflow's UI and trace readers expect of a chat model call:
type ``CHAT_MODEL``, inputs ``{"messages": [...]}`` (OpenAI chat shape), outputs an
OpenAI-style chat completion, token usage in ``mlflow.chat.tokenUsage``, the model in
``mlflow.llm.model``, trace tags as ``mlflow.traceTag.<key>`` attributes (the store turns
them into tags), and this project's facts as ``llmops.*`` attributes (names below).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...config import Settings, settings
from ...errors import TrackingError
from .budget import call_alone, command, unavailable
from .connection import EXPERIMENT, client, experiment_of
from .connection import experiment_id as named_experiment
from .redact import describe

# Root-span attributes this project writes: the contract with whoever reads a trace back.
MODEL = "llmops.model"  # the label: name/version for a registered model
MODEL_REF = "llmops.model_ref"  # what the user typed: default, chat@champion, a folder
MODEL_VERSION = "llmops.model_version"  # registered version, absent otherwise
MODEL_DIGEST = "llmops.model_digest"  # sha256 of the base weights
REGISTRY_DIGEST = "llmops.registry_digest"  # manifest digest of a registered version
ADAPTER = "llmops.adapter"  # adapter folder, absent without one
ADAPTER_DIGEST = "llmops.adapter_digest"
PROMPT = "llmops.prompt"  # registered prompt name
PROMPT_VERSION = "llmops.prompt_version"
PROMPT_DIGEST = "llmops.prompt_digest"
SAMPLING = "llmops.sampling"  # {"max_tokens", "temperature", "seed", "top_p", ...}
ENGINE_ARGS = "llmops.engine_args"  # the engine options the side was served with
BACKEND = "llmops.backend"
DTYPE = "llmops.dtype"
DEVICE = "llmops.device"
PROMPT_TOKENS = "llmops.prompt_tokens"
COMPLETION_TOKENS = "llmops.completion_tokens"
LATENCY_S = "llmops.latency_s"
FINISH_REASON = "llmops.finish_reason"

# Trace tags every writer sets (``llmops.role``: primary / candidate / llm / adapter side).
KIND_TAG = "llmops.kind"
ROLE_TAG = "llmops.role"
CASE_TAG = "llmops.case"

SPAN_TYPE = "CHAT_MODEL"
# Traces per call: MLflow links at most 100 traces to a run per call
# (mlflow.store.tracking.MAX_TRACE_LINKS_PER_REQUEST), and a span write must finish within
# its own MLflow budget (10 s by default) while a server spends 4-20 ms per trace (500 in
# one request took over 10 s on 2 busy cores); 100 also keeps a sqlite write lock short.
TRACES_PER_CALL = 100


@dataclass(frozen=True)
class GenerationTrace:
    """One generation, ready to be written as a one-span MLflow trace.

    Attributes
    ----------
    name : str
        The trace (and root span) name shown in the MLflow UI.
    messages : list of dict
        The request, ``{"role", "content"}`` each (the root span's inputs).
    response : str
        The generated text (the root span's outputs, as a chat completion).
    attributes : dict
        Root span attributes, keys as named in this module (see
        :func:`generation_attributes`); any JSON-ready value.
    start_ns, end_ns : int
        When the generation started and ended, nanoseconds since the epoch.
    tags : dict
        Trace tags (``llmops.role``, ``llmops.case``, ...); values become strings.
    trace_id : str, optional
        A pre-assigned id (``new_trace_id()``), so a table can name the trace before it
        is written; a fresh one otherwise.
    """

    name: str
    messages: Sequence[Mapping]
    response: str
    attributes: Mapping = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    tags: Mapping = field(default_factory=dict)
    trace_id: str | None = None


@dataclass
class TraceReport:
    """What one :func:`write_traces` did.

    Attributes
    ----------
    trace_ids : list of str or None
        One per given trace, same order; None where the trace was not written.
    written, failed : int
        Traces stored, and traces not stored (``written + failed`` is the number given).
    seconds : float
        Wall time of the writing, MLflow calls included.
    note : str or None
        One line when something was not written or not linked, e.g.
        ``3 of 128 traces could not be written: <first error>``.
    unlinked : int
        Traces stored but not linked to the run (found in the experiment, not by run).
    calls : int
        Blocking MLflow calls made to write and link (finding the experiment aside).
    """

    trace_ids: list[str | None]
    written: int
    failed: int
    seconds: float
    note: str | None = None
    unlinked: int = 0
    calls: int = 0


def new_trace_id() -> str:
    """A fresh MLflow trace id (``tr-`` and 32 hex digits, from a random OpenTelemetry id)."""
    return f"tr-{_nonzero_bits(128):032x}"


def generation_attributes(
    *,
    model: str,
    model_ref: str = "",
    model_version=None,
    model_digest: str = "",
    registry_digest: str | None = None,
    adapter: str = "",
    adapter_digest: str = "",
    prompt: str | None = None,
    prompt_version=None,
    prompt_digest: str | None = None,
    sampling: Mapping | None = None,
    engine_args: Mapping | None = None,
    serving: Mapping | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    latency_s: float | None = None,
    finish_reason: str | None = None,
) -> dict:
    """The ``llmops.*`` root-span attributes of one generation (empty values left out).

    ``serving`` is what the engine really ran with: ``{"backend", "dtype", "device"}``.
    """
    serving = serving or {}
    values = {
        MODEL: model,
        MODEL_REF: model_ref,
        MODEL_VERSION: str(model_version) if model_version not in (None, "") else None,
        MODEL_DIGEST: model_digest,
        REGISTRY_DIGEST: registry_digest,
        ADAPTER: adapter,
        ADAPTER_DIGEST: adapter_digest,
        PROMPT: prompt,
        PROMPT_VERSION: str(prompt_version) if prompt_version not in (None, "") else None,
        PROMPT_DIGEST: prompt_digest,
        SAMPLING: dict(sampling) if sampling is not None else None,
        ENGINE_ARGS: dict(engine_args) if engine_args is not None else None,
        BACKEND: serving.get("backend"),
        DTYPE: serving.get("dtype"),
        DEVICE: serving.get("device"),
        PROMPT_TOKENS: prompt_tokens,
        COMPLETION_TOKENS: completion_tokens,
        LATENCY_S: latency_s,
        FINISH_REASON: finish_reason,
    }
    return {k: v for k, v in values.items() if v is not None and v != ""}


def write_traces(
    traces: Sequence[GenerationTrace],
    *,
    experiment_id: str | None = None,
    run_id: str | None = None,
    cfg: Settings | None = None,
) -> TraceReport:
    """Write generations as MLflow traces, linked to ``run_id``, in a few calls.

    Parameters
    ----------
    traces : sequence of GenerationTrace
        The generations, in any number.
    experiment_id : str, optional
        Where the traces go; default the run's experiment, else ``llmops-magics``.
    run_id : str, optional
        The run to link every trace to (``mlflow.search_traces(run_id=...)`` finds them).
    cfg : Settings, optional
        Tracking URI and MLflow time budget; the settings in force by default.

    Returns
    -------
    TraceReport
        Never raises for an MLflow failure: what was not written is counted, and
        ``note`` says why in one line.
    """
    cfg = cfg or settings()
    t0 = time.perf_counter()
    traces = list(traces)
    if not traces:
        return TraceReport([], 0, 0, 0.0)
    ids = [t.trace_id or new_trace_id() for t in traces]
    written: list[str | None] = [None] * len(traces)
    errors: list[str] = []
    calls = unlinked = 0
    with command(cfg):
        try:
            store, exp = _destination(experiment_id, run_id, cfg)
        except TrackingError as e:
            errors.append(str(e))
        except Exception as e:  # the store could not even be set up: nothing is written
            errors.append(describe(e))
        else:
            spans = [_root_span(t, i) for t, i in zip(traces, ids)]
            # Written and linked chunk by chunk: a failure midway leaves what was written linked.
            for lo in range(0, len(spans), TRACES_PER_CALL):
                if reason := unavailable():  # given up in this command: no call at all
                    errors.append(reason)
                    break
                chunk, chunk_ids = spans[lo : lo + TRACES_PER_CALL], ids[lo : lo + TRACES_PER_CALL]
                calls += 1
                if not _attempt("write traces", lambda c=chunk: store.log_spans(exp, c), cfg, errors):
                    continue
                written[lo : lo + len(chunk)] = chunk_ids
                if run_id:
                    calls += 1
                    linked = _attempt(
                        "link traces", lambda c=chunk_ids: store.link_traces_to_run(c, run_id), cfg, errors
                    )
                    unlinked += 0 if linked else len(chunk_ids)
    n_written = sum(i is not None for i in written)
    report = TraceReport(written, n_written, len(traces) - n_written, time.perf_counter() - t0)
    report.unlinked, report.calls = unlinked, calls
    report.note = _note(report, len(traces), run_id, errors)
    return report


def _destination(experiment_id: str | None, run_id: str | None, cfg: Settings):
    """The tracking store and the experiment id the traces go to."""
    c = client(cfg)
    exp = experiment_id or experiment_of(run_id)
    if exp is None and run_id:
        try:
            exp = c.get_run(run_id).info.experiment_id
        except TrackingError:
            raise
        except Exception as e:
            raise TrackingError(f"the run {run_id} could not be read: {describe(e)}") from e
    exp = exp or named_experiment(EXPERIMENT, cfg)
    # The store's own batch calls (log_spans, link_traces_to_run) are public on every
    # tracking store; MlflowClient has no batch equivalent, only the exporter's per-trace path.
    return c.raw._tracking_client.store, exp


def _attempt(what: str, fn, cfg: Settings, errors: list[str]) -> bool:
    """Run one bounded call; on failure keep its one-line reason and say False.

    Each call has ``mlflow_timeout_s`` of its own (as each page of a trace read does):
    a large write is not cut short by one command's budget, while a server that does not
    answer fails the first call within its time and the rest skip it at once.
    """
    try:
        call_alone(what, fn, cfg)
        return True
    except TrackingError as e:
        errors.append(str(e))
    except NotImplementedError as e:  # a server older than MLflow 3.4 takes no spans
        errors.append(f"the tracking store does not accept spans ({describe(e)})")
    except Exception as e:
        errors.append(describe(e))
    return False


def _note(report: TraceReport, n: int, run_id: str | None, errors: list[str]) -> str | None:
    """One line: how many traces were lost or left unlinked, and the first reason."""
    if not errors:
        return None
    parts = []
    if report.failed:
        parts.append(f"{report.failed} of {n} traces could not be written")
    if report.unlinked:
        parts.append(f"{report.unlinked} of {n} traces were written but not linked to run {run_id}")
    return f"{'; '.join(parts) or 'traces'}: {errors[0]}"


def _nonzero_bits(k: int) -> int:
    return secrets.randbits(k) or 1


def _b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode("ascii")


def _completion(t: GenerationTrace, trace_id: str) -> dict:
    """The response as an OpenAI chat completion (what MLflow's UI and trace readers parse)."""
    a = t.attributes
    prompt_tokens, completion_tokens = a.get(PROMPT_TOKENS), a.get(COMPLETION_TOKENS)
    out = {
        "id": f"chatcmpl-{trace_id.removeprefix('tr-')}",
        "object": "chat.completion",
        "created": int(t.end_ns // 1_000_000_000),
        "model": a.get(MODEL, ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": t.response},
                "finish_reason": a.get(FINISH_REASON) or "stop",
            }
        ],
    }
    if prompt_tokens is not None or completion_tokens is not None:
        p, c = int(prompt_tokens or 0), int(completion_tokens or 0)
        out["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    return out


def _root_span(t: GenerationTrace, trace_id: str):
    """A finished root span of a one-span trace, as the tracking store takes it."""
    from mlflow.entities import Span  # deferred: mlflow takes seconds to import; only writers need it

    otel_trace_id = int(trace_id.removeprefix("tr-"), 16)
    end_ns = t.end_ns or time.time_ns()
    start_ns = min(t.start_ns or end_ns, end_ns)
    completion = _completion(t, trace_id)
    attributes = {
        "mlflow.traceRequestId": trace_id,
        "mlflow.spanType": SPAN_TYPE,
        "mlflow.spanInputs": {"messages": [dict(m) for m in t.messages]},
        "mlflow.spanOutputs": completion,
        **({"mlflow.llm.model": completion["model"]} if completion["model"] else {}),
        **dict(t.attributes),
        **{f"mlflow.traceTag.{k}": str(v) for k, v in t.tags.items()},
        "mlflow.traceTag.mlflow.traceName": t.name,
    }
    if usage := completion.get("usage"):
        attributes["mlflow.chat.tokenUsage"] = {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
        }
    return Span.from_dict(
        {
            "trace_id": _b64(otel_trace_id, 16),
            "span_id": _b64(_nonzero_bits(64), 8),
            "parent_span_id": None,
            "name": t.name,
            "start_time_unix_nano": start_ns,
            "end_time_unix_nano": end_ns,
            "events": [],
            "status": {"code": "STATUS_CODE_OK", "message": ""},
            # Span attributes are stored JSON-encoded, as MLflow's own spans keep them.
            "attributes": {k: json.dumps(v, default=str, ensure_ascii=False) for k, v in attributes.items()},
        }
    )
