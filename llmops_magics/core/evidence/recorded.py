"""``Evidence``: cases taken from what already happened, and the answers recorded for them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecordedAnswer:
    """An answer that was given once (by the app, or by a side of an earlier run)."""

    text: str
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trace_id: str | None = None


@dataclass(frozen=True)
class RecordedModel:
    """What produced the recorded answers, as far as the recording says.

    ``ref`` is what can be resolved again for the reproduction baseline (None when the
    recording does not name a model this project can load); ``sampling`` holds the
    recorded ``temperature``/``max_tokens``/``seed`` when known.
    """

    label: str
    ref: str | None = None
    version: str | None = None
    digest: str | None = None
    dtype: str | None = None
    device: str | None = None
    backend: str | None = None
    engine_args: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)

    @property
    def temperature(self) -> float | None:
        t = self.sampling.get("temperature")
        try:
            return None if t is None else float(t)
        except (TypeError, ValueError):
            return None

    @property
    def key(self) -> str:
        """Equal for recordings of the same model under the same settings."""
        return json.dumps(
            [self.ref, self.version, self.digest, self.dtype, self.engine_args, self.sampling], default=str
        )

    def describe(self) -> str:
        """One line: the model, its version/dtype and sampling, as recorded."""
        parts = [self.label]
        if self.dtype:
            parts.append(f"{self.dtype} on {self.device or '?'}")
        samp = ", ".join(f"{k}={v}" for k, v in sorted(self.sampling.items()) if k != "model")
        if samp:
            parts.append(samp)
        return " · ".join(parts)


@dataclass(frozen=True)
class Evidence:
    """Cases from a source, aligned by position.

    ``items`` are shadow inputs (dicts with ``messages`` or template variables);
    ``answers`` the recorded answer of each (None when the source records none);
    ``expectations`` and ``scorer_inputs`` go to the user's scorers.
    """

    source: str
    items: tuple
    answers: tuple | None = None
    expectations: tuple = ()
    scorer_inputs: tuple = ()
    model: RecordedModel | None = None
    notes: tuple[str, ...] = ()


def common_model(models: list[RecordedModel], fallback: str) -> tuple[RecordedModel, str | None]:
    """The one model that answered every case, or a description and a note saying they differ.

    Only our own traces name a model this project can load (``ref``); an app's own traces
    at most name the model they asked for (an OpenAI-style request's ``model``).
    """
    ours = [m for m in models if m.ref]
    if ours and len(ours) == len(models):
        counts = Counter(m.key for m in ours)
        if len(counts) == 1:
            return ours[0], None
        top_key, n = counts.most_common(1)[0]
        top = next(m for m in ours if m.key == top_key)
        return (
            RecordedModel(label=f"{fallback} ({len(counts)} models)"),
            f"the recorded answers came from {len(counts)} different models or settings "
            f"(most often {top.describe()}, {n} of {len(models)}): no reproduction baseline",
        )
    names = {m.sampling.get("model") for m in models if m.sampling.get("model")}
    label = f"{fallback} ({names.pop()})" if len(names) == 1 else fallback
    temperatures = {m.sampling.get("temperature") for m in models}
    sampling = {"temperature": temperatures.pop()} if len(temperatures) == 1 and None not in temperatures else {}
    return RecordedModel(label=label, sampling=sampling), None
