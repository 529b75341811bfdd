"""What a call did, announced to whoever listens (the lineage recorder and the pins listen).

Core functions emit small typed events; they never know who records them, which keeps
lineage out of core's import graph and costs nothing when nobody listens. Each event is
a frozen dataclass, so a reader (``lineage.derive``) can only read fields that an
emitter sets.

Two dict forms, both stable contracts:

* :meth:`Event.payload`: what a listener's code reads (an alias move's registry kind keeps
  its historical key, ``payload()["kind"] == "prompt"``).
* :meth:`Event.to_record`: what a lineage record stores, ``{"kind": <event kind>, ...}``;
  the registry kind is stored as ``registry`` there, so it never hides the event kind
  (it did while events were free dicts: alias, pin and model events never reached a
  cell's lineage). :func:`parse` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event; ``kind`` names it in records and to listeners."""

    kind: ClassVar[str] = ""
    # Fields a listener reads under another (historical) name.
    listener_names: ClassVar[dict[str, str]] = {}

    def _items(self):
        for f in fields(self):
            yield f.name.rstrip("_"), getattr(self, f.name)  # ``from_`` is stored as "from"

    def payload(self) -> dict:
        """The listener's view: fields by name, a few under their historical names."""
        return {self.listener_names.get(k, k): v for k, v in self._items()}

    def to_record(self) -> dict:
        """The lineage record's view: ``{"kind": <event kind>, **fields}``."""
        return {"kind": self.kind, **dict(self._items())}


@dataclass(frozen=True, kw_only=True)
class Generation(Event):
    """``llm()`` answered: which model, served how, which prompt version, tokens, run."""

    kind: ClassVar[str] = "generation"
    model: str
    model_ref: str | None = None
    model_digest: str | None = None
    backend: str | None = None
    dtype: str | None = None
    device: str | None = None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float | None = None
    prompt: dict | None = None  # {"name", "version", "digest"} of a registered prompt
    run_id: str | None = None
    run_key: str | None = None
    experiment_id: str | None = None
    # Per generation, for ``llmops-magics verify`` (bundle version 2; absent in version 1):
    # what went in and came out (sha256 each, in prompt order) and everything that decides it.
    input_digests: list | tuple | None = None
    output_digests: list | tuple | None = None
    sampling: dict | None = None
    engine_args: dict | None = None
    engine_version: str | None = None  # "vllm 0.11.0", "transformers 4.57.1"
    base_digest: str | None = None  # the served base weights, as on disk
    adapter: str | None = None
    adapter_digest: str | None = None
    hardware: dict | None = None  # {"device", "name", "class"}: the ISA class or GPU model


@dataclass(frozen=True, kw_only=True)
class PromptRegistered(Event):
    kind: ClassVar[str] = "prompt_registered"
    name: str
    version: int | str
    digest: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelRegistered(Event):
    kind: ClassVar[str] = "model_registered"
    listener_names: ClassVar[dict[str, str]] = {"model_kind": "kind"}
    name: str
    version: int | str
    model_kind: str  # "base" or "adapter"
    digest: str | None = None
    base_digest: str | None = None
    adapter_digest: str | None = None


@dataclass(frozen=True, kw_only=True)
class AliasMoved(Event):
    kind: ClassVar[str] = "alias"
    listener_names: ClassVar[dict[str, str]] = {"registry": "kind"}
    registry: str  # "prompt" or "model"
    name: str
    alias: str
    from_: int | str | None = None
    to: int | str | None = None
    user: str | None = None
    run_id: str | None = None  # the run that justified the move (a shadow run for a promotion)
    promotion: bool = False  # put there by the promotion gate
    forced_why: str | None = None  # moved with --force: the reason given

    def _items(self):
        # A plain move reads as it always did; the promotion fields appear when they say something.
        for key, value in super()._items():
            if key in ("run_id", "promotion", "forced_why") and not value:
                continue
            yield key, value


@dataclass(frozen=True, kw_only=True)
class Pinned(Event):
    kind: ClassVar[str] = "pin"
    listener_names: ClassVar[dict[str, str]] = {"registry": "kind"}
    registry: str  # "prompt" or "model"
    name: str
    version: int | str
    alias: str | None = None
    digest: str | None = None
    source: str | None = None  # the lockfile the pin was loaded from


@dataclass(frozen=True, kw_only=True)
class PinsChecked(Event):
    kind: ClassVar[str] = "pin_check"
    pins: int
    drift: list | tuple = ()


@dataclass(frozen=True, kw_only=True)
class ShadowRan(Event):
    kind: ClassVar[str] = "shadow"
    name: str
    verdict: str
    primary: str
    candidate: str
    change: str | None = None  # unchanged | changed | inconclusive (the verdict is quality)
    source: str | None = None  # where the cases came from, when not typed in
    n_cases: int = 0
    primary_label: str | None = None
    candidate_label: str | None = None
    prompt: Any = None
    differing_cases: int = 0
    engine_plan: str | None = None
    serving: dict | None = None
    run_id: str | None = None
    run_key: str | None = None
    # For ``llmops-magics verify``: each case's request and each side's answers (sha256).
    input_digests: list | tuple | None = None
    output_digests: dict | None = None  # {"primary": [...], "candidate": [...]}
    hardware: dict | None = None
    candidate_prompt: str | None = None  # a prompt comparison's candidate version ("summarize/3")
    # Each side's registry, weight and prompt digests ("primary_model_digest": ...), as its params say.
    digests: dict | None = None


@dataclass(frozen=True, kw_only=True)
class AdapterChecked(Event):
    kind: ClassVar[str] = "adapter_check"
    adapter: str
    base: str
    verdict: str
    findings: int = 0
    run_id: str | None = None
    run_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class MigrationStep(Event):
    kind: ClassVar[str] = "migration_step"
    table: str
    uri: str | None = None
    step: str
    version_before: int | None = None
    version_after: int | None = None
    run_id: str | None = None
    run_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class TableWritten(Event):
    """Rows written to a Lance table (an index build, or an add during a migration)."""

    kind: ClassVar[str] = "lance_write"
    table: str
    uri: str | None = None
    rows: int
    version_before: int | None = None
    version_after: int | None = None


EVENTS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        Generation,
        PromptRegistered,
        ModelRegistered,
        AliasMoved,
        Pinned,
        PinsChecked,
        ShadowRan,
        AdapterChecked,
        MigrationStep,
        TableWritten,
    )
}


def parse(record: dict) -> Event | None:
    """The typed event of a stored record dict; None for a kind or shape this version
    does not know (records written by other versions are read, never trusted)."""
    cls = EVENTS.get(record.get("kind")) if isinstance(record, dict) else None
    if cls is None:
        return None
    names = {f.name.rstrip("_"): f.name for f in fields(cls)}
    try:
        return cls(**{names[k]: v for k, v in record.items() if k in names})
    except TypeError:  # a required field missing
        return None


_listeners: list[Callable[[Event], None]] = []


def subscribe(fn: Callable[[Event], None]) -> None:
    if fn not in _listeners:
        _listeners.append(fn)


def unsubscribe(fn: Callable[[Event], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def emit(event: Event) -> None:
    for fn in list(_listeners):
        fn(event)


# Context providers: named functions whose value describes "the state now" (e.g. the
# pins in force). Lineage calls them when it records a cell; they must be cheap.
_context: dict[str, Callable[[], object]] = {}


def provide_context(name: str, fn: Callable[[], object]) -> None:
    _context[name] = fn


def context() -> dict:
    return {name: fn() for name, fn in list(_context.items())}
