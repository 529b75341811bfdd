"""An app's traces over a window, as observations a watch can bucket, score and compare.

Reading is staged by cost (measured on 10,000 traces of a sqlite store): every trace
info of the window first (no spans: ~1 s, assessments, tags and metadata included), then
``--n`` keeps a reproducible sample, then spans are fetched in chunks only for the
traces the facts cache (:mod:`.facts`) knows nothing about, or whose text the scorers
still need. A second watch over the same window reads no spans at all.

Each trace's request and response pass the ``redact_text`` hook before anything else
sees them; the facts cache keeps numbers and names only, never text. A trace of no
readable chat shape is skipped and counted, and one note names the first one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...backends.default_models import embedding_model_dir
from ...backends.engine_logs import route_engine_logs
from ...backends.progress import progress_bar
from ...config import DEFAULT_EMBEDDING_REF, Settings
from ...errors import BadInput
from ...version import __version__
from ..evidence import redaction, shapes
from ..evidence.traces import model_of, root_span, scorer_inputs
from ..tracking import command, trace_read
from ..tracking import trace_write as our
from ..vectors.embedders import get_embedder
from . import facts as cache_file
from .drift import unit

# Observation.served key -> the root-span attribute our own traces carry it in.
_SERVED = {
    "model": our.MODEL,
    "model_ref": our.MODEL_REF,
    "model_version": our.MODEL_VERSION,
    "model_digest": our.MODEL_DIGEST,
    "prompt": our.PROMPT,
    "prompt_version": our.PROMPT_VERSION,
    "prompt_digest": our.PROMPT_DIGEST,
    "adapter": our.ADAPTER,
    "adapter_digest": our.ADAPTER_DIGEST,
}
# Trace metadata MLflow fills with a preview of the request and response: production text,
# unredacted, so never a --split key.
_TEXT_METADATA = ("mlflow.traceInputs", "mlflow.traceOutputs")
_SPLIT_PREFIXES = ("tags.", "metadata.", "attributes.")
_FACTS_VERSION = 1


@dataclass(frozen=True)
class Observation:
    """One trace as a watch sees it.

    Attributes
    ----------
    trace_id : str
    time_ms : int
        When the trace started (ms since the epoch).
    request, response : str or None
        The redacted request (the last user message) and response; None when the facts
        came from the cache and the text was not needed, or the response is unreadable.
    scorer_inputs : object
        What a scorer gets as ``inputs`` (as ``%shadow --from-traces`` gives it); None
        when the text was not loaded.
    request_chars : int
        Length of the redacted request.
    prompt_tokens, completion_tokens : int or None
    latency_s : float or None
    served : Mapping[str, str]
        What served it, from our root-span attributes: ``model`` (label, e.g. chat/2),
        ``model_ref``, ``model_name``, ``model_version``, ``model_digest``, ``prompt``,
        ``prompt_version``, ``prompt_digest``, ``adapter``, ``adapter_digest``.
    keys : Mapping[str, str]
        ``tags.<k>``, ``metadata.<k>`` and ``attributes.llmops.<k>`` values (``--split``).
    assessments : tuple
        The trace's valid ``mlflow.entities.Feedback`` assessments, for reuse.
    """

    trace_id: str
    time_ms: int
    request: str | None
    response: str | None
    scorer_inputs: object
    request_chars: int
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    served: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    assessments: tuple = ()


def split_value(obs: Observation, key: str) -> str | None:
    """The value of ``--split KEY`` for one observation, None when the trace has none.

    ``tags.variant``, ``metadata.variant`` and ``attributes.llmops.model_version`` are
    exact; a bare key (``variant``, ``llmops.model_version``) tries tags, then metadata,
    then attributes.
    """
    if key.startswith(_SPLIT_PREFIXES):
        return obs.keys.get(key)
    for prefix in _SPLIT_PREFIXES:
        value = obs.keys.get(prefix + key)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Observations:
    """What :func:`read_window` read.

    Attributes
    ----------
    items : tuple of Observation
        Oldest first.
    start_ms, end_ms : int
        The window read, ``[start_ms, end_ms)``.
    spans_read : int
        Traces whose spans were fetched this time (0 when the facts cache knew them all).
    skipped : int
        Traces with no readable chat request.
    notes : tuple of str
        One line per kind of thing left out or worth knowing.
    seconds : float
    """

    items: tuple[Observation, ...]
    start_ms: int
    end_ms: int
    spans_read: int
    skipped: int
    notes: tuple[str, ...]
    seconds: float


def read_window(
    experiment: str,
    *,
    start_ms: int,
    end_ms: int | None = None,
    filter_string: str | None = None,
    n: int | None = None,
    sample_seed: int = 0,
    need_text: Callable[[str], bool] | None = None,
    cfg: Settings,
) -> Observations:
    """Every finished trace of the experiment that started in ``[start_ms, end_ms)``, oldest first.

    Parameters
    ----------
    experiment : str
        The app's experiment, by name or id.
    start_ms, end_ms : int
        The window, ms since the epoch; ``end_ms`` None is now.
    filter_string : str, optional
        MLflow's trace filter (``--filter``).
    n : int, optional
        Keep a reproducible sample of ``n`` traces (seeded by ``sample_seed``, in time
        order), drawn before any span is read.
    need_text : callable, optional
        ``need_text(trace_id)`` True: the request and response of that trace are loaded
        even when the facts cache knows it (the scorers still have to see it).
    cfg : Settings

    Raises
    ------
    BadInput
        No such experiment, a filter MLflow rejects, or ``n`` below 1.
    TrackingError
        MLflow refused or did not answer a page or a chunk within its time.
    """
    t0 = time.perf_counter()
    if n is not None and n < 1:
        raise BadInput(f"--n {n} is not a number of traces: give 1 or more")
    hook = cfg.redact_text or ""
    redact = redaction.load(hook)
    end_ms = int(end_ms if end_ms is not None else time.time() * 1000)
    notes: list[str] = []
    with command(cfg):
        exp_id = trace_read.experiment_named(experiment, cfg)
        infos = _window_infos(experiment, exp_id, start_ms, end_ms, filter_string, cfg)
        running = [i.trace_id for i in infos if not cache_file.is_finished(i.state)]
        if running:
            notes.append(f"left out {len(running)} traces still in progress: first trace id {running[0]}")
            infos = [i for i in infos if cache_file.is_finished(i.state)]
        infos = _sample(infos, n, sample_seed)
        store = cache_file.store_key(cfg)
        with cache_file.open_cache(cfg) as cache:
            known = cache.facts(store, [i.trace_id for i in infos])
            # Facts of an older reader, or lengths measured under another redaction hook: read again.
            known = {t: f for t, f in known.items() if (f.get("v"), f.get("redact")) == (_FACTS_VERSION, hook)}
            wanted = [
                i.trace_id
                for i in infos
                if i.trace_id not in known or (need_text is not None and need_text(i.trace_id))
            ]
            loaded = _load(experiment, wanted, redact, cfg)
            cache.put_facts(store, ((t, {**f, "redact": hook}) for t, (f, _) in loaded.items()))
            notes.extend(cache.notes)
    items, no_request, gone = [], [], []
    for info in infos:
        f, texts = loaded.get(info.trace_id) or (known.get(info.trace_id), None)
        if f is None:
            gone.append(info.trace_id)
        elif not f.get("request"):
            no_request.append(info.trace_id)
        else:
            items.append(_observation(info, f, texts))
    if no_request:
        notes.insert(
            0,
            f"skipped {len(no_request)} traces with no chat request: first trace id {no_request[0]} "
            "(a messages list, a messages/prompt mapping or one text argument is read)",
        )
    if gone:
        notes.append(f"left out {len(gone)} traces deleted while reading: first trace id {gone[0]}")
    return Observations(
        items=tuple(items),
        start_ms=int(start_ms),
        end_ms=end_ms,
        spans_read=len(loaded),
        skipped=len(no_request),
        notes=tuple(notes),
        seconds=time.perf_counter() - t0,
    )


def embeddings(items: Sequence[Observation], *, cfg: Settings) -> np.ndarray:
    """Unit vectors of the items' request texts in the default embedder's space.

    Cached per (trace, embedder digest) in the facts cache: the embedder is loaded only
    when some request has no cached vector, and a request not in memory is fetched.

    Returns
    -------
    np.ndarray
        float32, shape ``(len(items), dimension)``, rows in the items' order.
    """
    ref = DEFAULT_EMBEDDING_REF
    store = cache_file.store_key(cfg)
    ids = [o.trace_id for o in items]
    identity = _embedder_identity()
    with cache_file.open_cache(cfg) as cache:
        seen = cache.embedder(ref, identity)
        vectors = cache.vectors(store, seen[0], ids) if seen else {}
        missing = [o for o in dict((o.trace_id, o) for o in items).values() if o.trace_id not in vectors]
        if missing or seen is None:
            # The engine log takes the library's warnings and bars (none reach a cell).
            route_engine_logs(cfg.log_file, verbose=cfg.verbose)
            emb = get_embedder(ref, cfg=cfg)
            digest, dimension = emb.spec.digest, emb.spec.dimension
            cache.put_embedder(ref, identity, digest, dimension)
            if seen is None or seen[0] != digest:
                vectors = cache.vectors(store, digest, ids)
                missing = [o for o in missing if o.trace_id not in vectors]
            if missing:
                texts = {o.trace_id: o.request for o in missing if o.request is not None}
                absent = [o.trace_id for o in missing if o.request is None]
                if absent:
                    texts.update(request_texts(absent, cfg=cfg))
                fresh = unit(emb.embed([texts.get(o.trace_id, "") for o in missing]))
                new = {o.trace_id: v for o, v in zip(missing, fresh)}
                cache.put_vectors(store, digest, new.items())
                vectors.update(new)
        else:
            dimension = seen[1]
    if not ids:
        return np.zeros((0, dimension), dtype=np.float32)
    return unit(np.stack([vectors[t] for t in ids]))


def request_texts(trace_ids: Sequence[str], *, cfg: Settings) -> dict[str, str]:
    """Redacted request texts (the last user message) of a few traces, read from their spans.

    A trace that is gone or holds no chat request is left out.
    """
    redact = redaction.load(cfg.redact_text)
    out = {}
    with command(cfg):
        for trace in trace_read.fetch_spans(list(trace_ids), cfg=cfg):
            _, texts = _from_spans(trace, redact)
            if texts is not None:
                out[trace.info.trace_id] = texts[0]
    return out


# --- reading -------------------------------------------------------------------------------


def _window_infos(experiment: str, exp_id: str, start_ms: int, end_ms: int, filter_string, cfg: Settings) -> list:
    with progress_bar(desc=f"reading traces of {experiment}", unit="trace", leave=False) as bar:
        infos = list(
            trace_read.read_trace_infos(
                exp_id, start_ms=start_ms, end_ms=end_ms, filter_string=filter_string, cfg=cfg, on_page=bar.update
            )
        )
    # The store orders by start only: ties (one batch of our own traces) keep the batch's
    # order, so a sample drawn from the same window is the same sample.
    return sorted(infos, key=lambda i: (i.request_time, _case(i), i.trace_id))


def _case(info) -> int:
    case = (info.tags or {}).get(our.CASE_TAG, "")
    return int(case) if str(case).isdigit() else 0


def _sample(infos: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(infos):
        return infos
    keep = np.sort(np.random.default_rng(seed).choice(len(infos), size=n, replace=False))
    return [infos[i] for i in keep]


def _load(experiment: str, trace_ids: list[str], redact, cfg: Settings) -> dict[str, tuple]:
    """trace id -> (facts, (request, response, scorer inputs) or None) for traces read now."""
    out = {}
    if not trace_ids:
        return out
    with progress_bar(total=len(trace_ids), desc=f"reading spans of {experiment}", unit="trace", leave=False) as bar:
        for trace in trace_read.fetch_spans(trace_ids, cfg=cfg, on_chunk=bar.update):
            out[trace.info.trace_id] = _from_spans(trace, redact)
    return out


def _from_spans(trace, redact) -> tuple[dict, tuple | None]:
    """The facts a trace's spans hold, and its redacted texts (None without a chat request)."""
    root = root_span(trace)
    messages = shapes.chat_request(root.inputs) if root is not None else None
    if messages is None:
        return {"v": _FACTS_VERSION, "request": False}, None
    messages = redaction.messages(redact, messages)
    users = [m["content"] for m in messages if m["role"] == "user"]
    request = users[-1] if users else messages[-1]["content"]
    response = shapes.chat_response(root.outputs)
    response = redact(response) if response is not None else None
    attrs = root.attributes or {}
    prompt_tokens, completion_tokens = _tokens(attrs, root.outputs)
    start, end = root.start_time_ns, root.end_time_ns
    found = {
        "v": _FACTS_VERSION,
        "request": True,
        "request_chars": len(request),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_s": max(0.0, (end - start) / 1e9) if start and end else None,
        "served": _served(root),
        "attributes": {k: _as_text(v) for k, v in attrs.items() if k.startswith("llmops.")},
    }
    return found, (request, response, scorer_inputs(root.inputs, messages, redact))


def _tokens(attrs: Mapping, outputs) -> tuple[int | None, int | None]:
    ours = attrs.get(our.PROMPT_TOKENS), attrs.get(our.COMPLETION_TOKENS)
    if any(v is not None for v in ours):
        return tuple(int(v) if v is not None else None for v in ours)
    if isinstance(outputs, Mapping) and isinstance(outputs.get("usage"), Mapping):
        return shapes.usage(outputs)
    return None, None


def _served(root) -> dict[str, str]:
    attrs = root.attributes or {}
    served = {key: _as_text(attrs[name]) for key, name in _SERVED.items() if attrs.get(name) not in (None, "")}
    model = model_of(root)
    if model is not None:
        served["model"] = model.label
        name = _registered_name(model.label, model.ref, model.version)
        if name:
            served["model_name"] = name
    return served


def _registered_name(label: str, ref: str, version: str | None) -> str | None:
    """The registered model a trace's model label or ref names (``chat/2`` -> ``chat``)."""
    if version and label.endswith(f"/{version}"):
        return label[: -len(version) - 1] or None
    ref = ref.removeprefix("models:/")
    if "@" in ref and "/" not in ref.partition("@")[0]:
        return ref.partition("@")[0] or None
    return None


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _observation(info, f: Mapping, texts: tuple | None) -> Observation:
    from mlflow.entities import Feedback  # deferred: mlflow takes seconds to import; the store has it loaded by now

    keys = {f"tags.{k}": str(v) for k, v in (info.tags or {}).items()}
    keys.update((f"metadata.{k}", str(v)) for k, v in (info.trace_metadata or {}).items() if k not in _TEXT_METADATA)
    keys.update((f"attributes.{k}", v) for k, v in f.get("attributes", {}).items())
    latency = f.get("latency_s")
    if latency is None and info.execution_duration is not None:
        latency = info.execution_duration / 1000
    request, response, inputs = texts if texts is not None else (None, None, None)
    tokens = f.get("prompt_tokens"), f.get("completion_tokens")
    if tokens == (None, None):
        tokens = _recorded_usage(info)
    return Observation(
        trace_id=info.trace_id,
        time_ms=int(info.request_time),
        request=request,
        response=response,
        scorer_inputs=inputs,
        request_chars=int(f["request_chars"]),
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        latency_s=latency,
        served=dict(f.get("served", {})),
        keys=keys,
        assessments=tuple(a for a in info.assessments or () if isinstance(a, Feedback) and a.valid is not False),
    )


def _recorded_usage(info) -> tuple[int | None, int | None]:
    """Token counts MLflow summed over a trace's spans into its metadata (autologged apps)."""
    try:
        usage = json.loads((info.trace_metadata or {}).get("mlflow.trace.tokenUsage") or "null")
        return int(usage["input_tokens"]), int(usage["output_tokens"])
    except (ValueError, TypeError, KeyError):
        return None, None


# --- embeddings ----------------------------------------------------------------------------


def _embedder_identity() -> str:
    """The default embedder's files as they are now (names, sizes, times) and this release.

    Its digest is known only once it is loaded (seconds); the cache remembers the digest
    seen with the same files, so cached vectors are found without loading it.
    """
    folder = Path(embedding_model_dir())
    files = sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    )
    text = json.dumps({"release": __version__, "folder": str(folder), "files": files})
    return hashlib.sha256(text.encode()).hexdigest()[:32]
