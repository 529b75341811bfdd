"""``--from-traces``: an app's MLflow traces as shadow cases.

Each trace whose root span holds a chat request (see :mod:`.shapes`) becomes a case;
its answer is the recorded side when ``--primary recorded``. A trace of another shape
is skipped and counted, and the note names the first one, so nothing goes missing
without a word. Traces our own ``%%llm`` wrote name the model, version, digest,
sampling and dtype in their root span, so the recorded side is known exactly.
"""

from __future__ import annotations

import json
import re
import time

from ...backends.progress import progress_bar
from ...config import Settings
from ...errors import BadInput
from ..tracking import trace_read
from ..tracking import trace_write as our
from . import redaction, shapes
from .recorded import Evidence, RecordedAnswer, RecordedModel, common_model

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_ms(since: str | None, now: float | None = None) -> int | None:
    """``7d``, ``12h``, ``30m`` -> the start of that window in ms since the epoch."""
    if since is None or since == "":
        return None
    m = _SINCE.match(str(since))
    if not m:
        raise BadInput(f"--since {since!r} is not a duration: give a number and a unit, e.g. 7d, 12h or 30m")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return int(((now if now is not None else time.time()) - seconds) * 1000)


def root_span(trace):
    spans = trace.data.spans if trace.data else []
    return next((s for s in spans if s.parent_id is None), spans[0] if spans else None)


def model_of(root) -> RecordedModel | None:
    """The model our own trace names in its root span attributes, else None."""
    attrs = root.attributes or {}
    ref = attrs.get(our.MODEL_REF)
    if not ref:
        return None
    sampling = _mapping(attrs.get(our.SAMPLING))
    version = attrs.get(our.MODEL_VERSION)
    label = attrs.get(our.MODEL) or (f"{ref}/{version}" if version else ref)
    return RecordedModel(
        label=str(label),
        ref=str(ref),
        version=str(version) if version else None,
        digest=attrs.get(our.MODEL_DIGEST),
        dtype=attrs.get(our.DTYPE),
        device=attrs.get(our.DEVICE),
        backend=attrs.get(our.BACKEND),
        engine_args=_mapping(attrs.get(our.ENGINE_ARGS)),
        sampling={k: v for k, v in sampling.items() if k in ("temperature", "max_tokens", "seed", "top_p")},
    )


def _mapping(value) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def from_traces(
    experiment: str,
    *,
    filter_string: str | None = None,
    since: str | None = None,
    need_answers: bool = False,
    redact_text: str | None = None,
    cfg: Settings,
) -> Evidence:
    """The chat requests (and, with ``need_answers``, the answers) an experiment's traces hold.

    Raises
    ------
    BadInput
        No such experiment, a filter MLflow rejects, or no trace of a readable shape.
    """
    redact = redaction.load(cfg.redact_text if redact_text is None else redact_text)
    start = since_ms(since)
    exp_id = trace_read.experiment_named(experiment, cfg)
    found = []  # (order, item, scorer inputs, answer, model)
    no_request, no_answer, seen = [], [], 0
    with progress_bar(desc=f"reading traces of {experiment}", unit="trace", leave=False) as bar:
        for trace in trace_read.read_traces(
            exp_id, filter_string=filter_string, since_ms=start, cfg=cfg, on_page=bar.update
        ):
            seen += 1
            trace_id = trace.info.trace_id
            root = root_span(trace)
            messages = shapes.chat_request(root.inputs) if root is not None else None
            if messages is None:
                no_request.append(trace_id)
                continue
            text = shapes.chat_response(root.outputs)
            if need_answers and text is None:
                no_answer.append(trace_id)
                continue
            messages = redaction.messages(redact, messages)
            prompt_tokens, completion_tokens = shapes.usage(root.outputs)
            latency = max(0.0, ((root.end_time_ns or 0) - (root.start_time_ns or 0)) / 1e9)
            found.append(
                (
                    _order(trace, root),
                    {"messages": list(messages), "trace_id": trace_id},
                    scorer_inputs(root.inputs, messages, redact),
                    RecordedAnswer(redact(text), latency, prompt_tokens, completion_tokens, trace_id)
                    if text is not None
                    else None,
                    model_of(root) or RecordedModel(label="app", sampling=shapes.sampling(root.inputs)),
                )
            )
    # Recording order: the requests of one batch (our own traces) share a start time and
    # keep their place in the batch, so a re-run sends them in the same order.
    found.sort(key=lambda f: f[0])
    items, inputs, answers, models = ([f[i] for f in found] for i in range(1, 5))
    notes = []
    where = f"experiment {experiment}" + (f" matching {filter_string!r}" if filter_string else "")
    where += f" since {since}" if since else ""
    if no_request:
        notes.append(
            f"skipped {len(no_request)} traces with no chat request: first trace id {no_request[0]} "
            "(a messages list, a messages/prompt mapping or one text argument is read)"
        )
    if no_answer:
        notes.append(
            f"skipped {len(no_answer)} traces with no readable response: first trace id {no_answer[0]} "
            "(a chat completion, a string or a content/text/answer mapping is read)"
        )
    if not items:
        detail = f" ({notes[0]})" if notes else ""
        raise BadInput(f"no usable traces in {where}: read {seen}{detail}; check the experiment, --filter and --since")
    model, note = common_model(models, "recorded")
    if note:
        notes.append(note)
    return Evidence(
        source=f"{len(items)} traces of {where}",
        items=tuple(items),
        answers=tuple(answers) if need_answers else None,
        expectations=tuple(None for _ in items),
        scorer_inputs=tuple(inputs),
        model=model,
        notes=tuple(notes),
    )


def _order(trace, root) -> tuple:
    case = (trace.info.tags or {}).get(our.CASE_TAG, "")
    return (root.start_time_ns or 0, int(case) if str(case).isdigit() else 0)


def scorer_inputs(raw, messages, redact):
    """What a scorer sees as the case's inputs: the app's own argument mapping when it
    was one (redacted), else the request text."""
    if isinstance(raw, dict) and "messages" not in raw:
        return {k: redact(v) if isinstance(v, str) else v for k, v in raw.items()}
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]
