"""What moved while the traces were served: alias moves, pins, and the versions and digests
the traces themselves carry.

Two sources here, so a flag can say "this changed just before": the registry's alias history
(one tag per move, :func:`..registry.aliases.alias_history`) of every registered model and
prompt the traces name, and the traces' own root-span facts (``Observation.served``): the
first trace carrying a model version, prompt version or digest not seen before in the
window.

Notebook pins (``%llm_pin``, a lockfile loaded) come from the lineage sessions shipped
to MLflow: :mod:`.pin_changes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from ...config import Settings
from ...errors import LlmopsError, ModelNotFound, PromptNotFound
from ..registry.aliases import alias_history

# (kind of change, Observation.served key of the value, key of its subject)
SERVED = (
    ("model version", "model", "model_name"),
    ("model digest", "model_digest", "model_name"),
    ("prompt version", "prompt_version", "prompt"),
    ("prompt digest", "prompt_digest", "prompt"),
    ("adapter digest", "adapter_digest", "model_name"),
)


@dataclass(frozen=True)
class Change:
    """One thing that moved at a known time.

    Attributes
    ----------
    at_ms : int
        When (ms since the epoch, UTC).
    kind : str
        ``alias move``, ``model version``, ``model digest``, ``prompt version``,
        ``prompt digest`` or ``adapter digest``.
    subject : str
        What moved: ``model chat``, ``prompt summarize``.
    text : str
        One line: ``model chat: version chat/1 -> chat/2 (first trace 2026-12-12 00:03)``.
    source : str
        ``registry`` (an alias move) or ``traces`` (what the traces carry).
    """

    at_ms: int
    kind: str
    subject: str
    text: str
    source: str

    @property
    def when(self) -> str:
        return minute(self.at_ms)


def minute(ms: int) -> str:
    """``2026-12-12 00:03`` (UTC) of a time in ms."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def model_name(served) -> str | None:
    """The registered model name a trace names (``chat`` of ``chat/2`` or ``chat@champion``)."""
    name = served.get("model_name")
    if name:
        return str(name)
    for key, sep in (("model", "/"), ("model_ref", "@")):
        value = str(served.get(key) or "")
        if sep in value:
            return value.rsplit(sep, 1)[0]
    return None


def _subject(served, subject_key: str) -> str | None:
    return model_name(served) if subject_key == "model_name" else served.get(subject_key)


def _value(served, key: str) -> str | None:
    value = served.get(key)
    if key == "model" and value and "/" not in str(value) and served.get("model_version"):
        value = f"{value}/{served['model_version']}"
    return str(value) if value not in (None, "") else None


def served_changes(items: Sequence) -> list[Change]:
    """Each first trace (oldest first) carrying a value not seen before: a model or prompt
    version for its name, a digest for its version (a new version's digest is said with
    the version, not twice). The first value of each is where the window starts, not a change.
    """
    seen: dict[tuple, set] = {}
    last: dict[tuple, str] = {}
    out: list[Change] = []
    for obs in items:
        served = obs.served or {}
        for kind, key, subject_key in SERVED:
            subject, value = _subject(served, subject_key), _value(served, key)
            if not subject or value is None:
                continue
            what = "prompt" if kind.startswith("prompt") else "model"
            # A digest belongs to one version: the same version served from other weights.
            under = _value(served, "prompt_version" if what == "prompt" else "model")
            slot = (kind, subject) if kind.endswith("version") else (kind, subject, under)
            if slot not in seen:
                seen[slot], last[slot] = {value}, value
                continue
            before, last[slot] = last[slot], value
            if value in seen[slot]:
                continue  # back to a value served before (canary traffic): nothing new
            seen[slot].add(value)
            shown = (lambda v: v[:12]) if kind.endswith("digest") else str
            label = kind.split()[1] if what != "model" or not kind.startswith("adapter") else kind
            out.append(
                Change(
                    at_ms=int(obs.time_ms),
                    kind=kind,
                    subject=f"{what} {subject}",
                    text=(
                        f"{what} {subject}: {label} {shown(before)} -> {shown(value)}"
                        + (f" under {under}" if kind.endswith("digest") and under else "")
                        + f" (first trace {minute(obs.time_ms)})"
                    ),
                    source="traces",
                )
            )
    return out


def served_names(items: Sequence) -> dict[str, set[str]]:
    """``{"model": {...}, "prompt": {...}}``: the registered names the traces may carry."""
    names: dict[str, set[str]] = {"model": set(), "prompt": set()}
    for obs in items:
        served = obs.served or {}
        if name := model_name(served):
            names["model"].add(name)
        if served.get("prompt"):
            names["prompt"].add(str(served["prompt"]))
    return names


def alias_changes(names: dict[str, set[str]], start_ms: int, end_ms: int, cfg: Settings) -> tuple[list[Change], list]:
    """Alias moves in ``[start_ms, end_ms]`` of each registered model and prompt named.

    A name that is not registered is skipped silently (the default model, a folder);
    an MLflow failure is one note, and the watch goes on without that history.
    """
    out: list[Change] = []
    notes: list[str] = []
    for kind in ("model", "prompt"):
        for name in sorted(names.get(kind, ())):
            try:
                history = alias_history(kind, name, cfg=cfg)
            except (ModelNotFound, PromptNotFound):
                continue
            except LlmopsError as e:
                notes.append(f"alias history of {kind} {name} not read: {e}")
                continue
            for move in history.moves:
                at = _ms(move.at)
                if at is None or not start_ms <= at <= end_ms:
                    continue
                before = "unset" if move.from_version is None else move.from_version
                how = f" · {move.how}" if move.how else ""
                out.append(
                    Change(
                        at_ms=at,
                        kind="alias move",
                        subject=f"{kind} {name}",
                        text=f"{kind} {name}: {move.alias} {before} -> {move.to_version} "
                        f"({move.user}{how}, {minute(at)})",
                        source="registry",
                    )
                )
    return out, notes


def _ms(at: str) -> int | None:
    try:
        when = datetime.fromisoformat(str(at))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # moves are recorded in UTC
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def explain(bucket_index: int, buckets: Sequence, changes: Sequence[Change]) -> tuple[Change, ...]:
    """What changed from the start of the bucket before ``bucket_index`` to the end of that
    bucket, newest first (the flag's "what moved just before")."""
    if not buckets or not 0 <= bucket_index < len(buckets):
        return ()
    lo = buckets[max(0, bucket_index - 1)].start_ms
    hi = buckets[bucket_index].end_ms
    found = [c for c in changes if lo <= c.at_ms < hi]
    return tuple(sorted(found, key=lambda c: c.at_ms, reverse=True))
