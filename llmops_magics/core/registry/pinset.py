"""Pins as data: one pinned version (:class:`Pin`) and the set in force (:class:`PinSet`).

Immutable values with their views (table, drift messages, lockfile content); holding
them, pinning and checking is :mod:`.pins`, reading and writing the file is :mod:`.lockfile`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...config import settings
from ..display import esc, html_table, text_table
from ..tracking import public_uri
from .common import now_iso, short, who
from .kinds import kind_of
from .lockfile import LOCK_FORMAT
from .manifest import ModelRef
from .prompts import PromptRef

# What the lockfile records about a pin besides the version, from whoever knows it (how
# the engines of this kernel serve a model: see .serving). Each gives a dict per pin.
_LOCK_DETAILS: list[Callable[[Pin], dict]] = []


def add_lock_detail(detail: Callable[[Pin], dict]) -> None:
    """Record ``detail(pin)`` (a dict merged into the pin's entry) in every lockfile written."""
    if detail not in _LOCK_DETAILS:
        _LOCK_DETAILS.append(detail)


@dataclass(frozen=True)
class Pin:
    """One pinned prompt or model version and what was known when it was pinned."""

    kind: str
    name: str
    version: int
    alias: str | None
    digest: str
    store: str
    pinned_at: str
    alias_now: int | None = None
    # The version, under the field named for its kind (see pins.make_pin).
    prompt: PromptRef | None = None
    model: ModelRef | None = None
    stats: tuple = ()  # ((path, (size, mtime_ns)), ...) of model files at pin time
    changed: tuple = ()  # files a verification found changed

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def ref(self) -> PromptRef | ModelRef | None:
        """The pinned version, whichever kind it is."""
        return self.prompt if self.prompt is not None else self.model

    def messages(self) -> list[str]:
        """What drifted, in words; empty when nothing did. Cheap: no registry call."""
        out = []
        if self.alias and self.alias_now != self.version:
            now = "is unset" if self.alias_now is None else f"now points to {self.alias_now}"
            out.append(f"{self.alias} {now}; you are pinned to {self.version}")
        if self.changed:
            out.append(f"weights of {self.label} changed on disk since registration ({', '.join(self.changed)})")
        elif self.stats and dict(self.stats) != kind_of(self.kind).file_stats(self.ref):
            out.append(f"files of {self.label} were touched on disk since the pin (%llm_pin --check verifies)")
        return out

    def as_context(self) -> dict:
        msgs = self.messages()
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "alias_now": self.alias_now,
            "digest": self.digest,
            "drift": bool(msgs),
            "message": "; ".join(msgs),
        }


@dataclass(frozen=True)
class PinSet:
    """The pins in force (immutable; changes make a new set)."""

    pins: tuple = ()

    _HEADERS = ["kind", "name", "pinned", "from alias", "alias now", "digest", "flags"]

    def get(self, kind: str, name: str) -> Pin | None:
        return next((p for p in self.pins if p.kind == kind and p.name == name), None)

    def with_pin(self, pin: Pin) -> PinSet:
        rest = tuple(p for p in self.pins if (p.kind, p.name) != (pin.kind, pin.name))
        return PinSet(tuple(sorted(rest + (pin,), key=lambda p: (p.kind, p.name))))

    def without(self, kind: str, name: str) -> PinSet:
        return PinSet(tuple(p for p in self.pins if (p.kind, p.name) != (kind, name)))

    def drift(self) -> list[Pin]:
        """Pins whose alias moved or whose files changed (from what is known, no registry call)."""
        return [p for p in self.pins if p.messages()]

    def lock(self) -> dict:
        """The lockfile content: every pin with the digest it must still have."""
        return {
            "llmops_lock": LOCK_FORMAT,
            "created_at": now_iso(),
            "created_by": who(),
            "tracking_uri": public_uri(self.pins[0].store)
            if self.pins
            else public_uri(settings().resolved_tracking_uri),
            "pins": [
                {
                    "kind": p.kind,
                    "name": p.name,
                    "version": p.version,
                    "alias": p.alias,
                    "digest": p.digest,
                    "store": public_uri(p.store),
                    **{k: v for detail in _LOCK_DETAILS for k, v in detail(p).items()},
                    # The whole version, so refs resolve from the lockfile while the
                    # registry is unreachable (see locked()).
                    "ref": None if p.ref is None else kind_of(p.kind).to_data(p.ref),
                }
                for p in self.pins
            ],
        }

    def __len__(self) -> int:
        return len(self.pins)

    def _rows(self) -> list[list]:
        rows = []
        for p in self.pins:
            flags = "; ".join(p.messages()) or "ok"
            rows.append(
                [
                    p.kind,
                    p.name,
                    p.version,
                    p.alias or "",
                    "" if p.alias_now is None else p.alias_now,
                    short(p.digest),
                    flags,
                ]
            )
        return rows

    def to_pandas(self):
        import pandas as pd  # deferred: pandas is heavy and only this view needs it

        return pd.DataFrame(self._rows(), columns=self._HEADERS)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not self.pins:
            text = "no pins: %llm_pin prompt NAME@ALIAS or %llm_pin model NAME@ALIAS"
            return {"text/plain": text, "text/html": f"<div>{esc(text)}</div>"}
        rows = self._rows()
        return {
            "text/plain": text_table(self._HEADERS, rows),
            "text/html": f"<div class='llmops-pins'>{html_table(self._HEADERS, rows)}</div>",
        }
