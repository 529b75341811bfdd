"""Pins: the prompt and model versions a notebook runs, resolved once and held.

``pin("prompt", "summarize@production")`` asks the registry where the alias points *now*
and holds that version; later refs to ``summarize`` (or ``summarize@production``) give the
pinned version without a registry call. Drift is what changed since: an alias that moved,
model files touched on disk. The cheap view (:func:`pin_context`, used by lineage on every
cell) compares what was seen at pin time; :func:`check_pins` asks the registry again and
re-hashes touched files.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ...config import Settings, settings
from ...errors import BadInput, DigestMismatch, PinDrift
from .. import events
from ..display import esc, html_table, text_table
from ..generation.engines import serving_for
from ..tracking import bounded_command, public_uri
from .aliases import alias_target
from .common import now_iso, short, who
from .models import FileDigest, ModelRef, find_model
from .prompts import PromptRef, find_prompt
from .refs import Ref, parse_ref

LOCKFILE = "llmops.lock.json"
LOCK_FORMAT = 1


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
    prompt: PromptRef | None = None
    model: ModelRef | None = None
    stats: tuple = ()  # ((path, (size, mtime_ns)), ...) of model files at pin time
    changed: tuple = ()  # files a verification found changed

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def ref(self) -> PromptRef | ModelRef | None:
        return self.prompt if self.kind == "prompt" else self.model

    def messages(self) -> list[str]:
        """What drifted, in words; empty when nothing did. Cheap: no registry call."""
        out = []
        if self.alias and self.alias_now != self.version:
            now = "is unset" if self.alias_now is None else f"now points to {self.alias_now}"
            out.append(f"{self.alias} {now}; you are pinned to {self.version}")
        if self.changed:
            out.append(f"weights of {self.label} changed on disk since registration ({', '.join(self.changed)})")
        elif self.model is not None and self.stats and dict(self.stats) != self.model.file_stats():
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
                    **({"serving": serving_for(p.model.base_path)} if p.model is not None else {}),
                    # The whole version, so refs resolve from the lockfile while the
                    # registry is unreachable (see locked()).
                    "ref": _ref_data(p.ref),
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
        import pandas as pd

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


_lock = threading.Lock()
_current = PinSet()


def pins() -> PinSet:
    """The pins in force in this process (the Python twin of ``%llm_pin``)."""
    return _current


def _set(new: PinSet) -> PinSet:
    global _current
    with _lock:
        _current = new
    return new


def clear_pins() -> PinSet:
    """Drop every pin."""
    return _set(PinSet())


def unpin(kind: str, name: str) -> PinSet:
    """Drop one pin."""
    return _set(pins().without(kind, name))


def unpin_ref(kind: str | None, ref: str) -> PinSet:
    """Drop the pin a ref names (``prompt summarize`` or ``prompts:/summarize``)."""
    parsed = parse_ref(ref, kind)
    if parsed.kind is None:
        raise BadInput(f"say what {ref!r} is: %llm_pin --unpin prompt {ref} or --unpin model {ref}")
    if pins().get(parsed.kind, parsed.name) is None:
        raise BadInput(f"{parsed.kind} {parsed.name} is not pinned")
    return unpin(parsed.kind, parsed.name)


def pinned(kind: str, ref: Ref, cfg: Settings | None = None) -> Pin | None:
    """The pin a ref resolves to: same store, and a bare name, the pinned alias or version."""
    pin = pins().get(kind, ref.name)
    if pin is None or pin.store != (cfg or settings()).resolved_tracking_uri:
        return None
    if ref.is_latest or (ref.alias is not None and ref.alias == pin.alias) or ref.version == pin.version:
        return pin
    return None


def _make_pin(kind: str, found, alias: str | None, cfg: Settings) -> Pin:
    if kind == "model":
        changed = found.changed_files(cfg)
        if changed:
            raise DigestMismatch(
                f"weights of {found.label} changed on disk since registration ({', '.join(changed[:5])}): "
                f"restore them or register a new version (%llm_model register {found.name} ...)"
            )
    return Pin(
        kind=kind,
        name=found.name,
        version=found.version,
        alias=alias,
        digest=found.digest,
        store=cfg.resolved_tracking_uri,
        pinned_at=now_iso(),
        alias_now=found.version if alias else None,
        prompt=found if kind == "prompt" else None,
        model=found if kind == "model" else None,
        stats=tuple(sorted(found.file_stats().items())) if kind == "model" else (),
    )


def _find(kind: str, ref: Ref, cfg: Settings):
    return find_prompt(ref, cfg) if kind == "prompt" else find_model(ref, cfg)


@bounded_command
def pin(kind: str | None, ref: str, *, cfg: Settings | None = None) -> PinSet:
    """Resolve ``ref`` in the registry now and hold that version.

    The Python twin of ``%llm_pin prompt summarize@production`` / ``%llm_pin model chat@champion``.

    Parameters
    ----------
    kind : {"prompt", "model"} or None
        None when ``ref`` is a ``prompts:/`` or ``models:/`` URI.
    ref : str
        ``name``, ``name/3``, ``name@alias`` or a URI.

    Returns
    -------
    PinSet
        The pins now in force.
    """
    cfg = cfg or settings()
    parsed = parse_ref(ref, kind)
    kind = parsed.kind
    if kind is None:
        raise BadInput(f"say what {ref!r} is: %llm_pin prompt {ref} or %llm_pin model {ref}")
    found = _find(kind, parsed, cfg)
    new = _make_pin(kind, found, parsed.alias, cfg)
    events.emit(events.Pinned(registry=kind, name=new.name, version=new.version, alias=new.alias, digest=new.digest))
    return _set(pins().with_pin(new))


@bounded_command
def check_pins(*, cfg: Settings | None = None) -> PinSet:
    """Ask the registry where pinned aliases point now and re-hash touched model files.

    The Python twin of ``%llm_pin --check``.

    Raises
    ------
    PinDrift
        Naming each alias that moved and each model whose files changed.
    """
    cfg = cfg or settings()
    refreshed = PinSet()
    for p in pins().pins:
        now = alias_target(p.kind, p.name, p.alias, cfg) if p.alias else None
        changed = tuple(p.model.changed_files(cfg)) if p.model is not None else ()
        stats = tuple(sorted(p.model.file_stats().items())) if p.model is not None and not changed else p.stats
        refreshed = refreshed.with_pin(replace(p, alias_now=now, changed=changed, stats=stats))
    _set(refreshed)
    drifted = refreshed.drift()
    # Announce the check even when it fails, so the cell's lineage (and the lab panel)
    # shows the drift it found.
    events.emit(events.PinsChecked(pins=len(refreshed), drift=[f"{p.kind} {p.label}" for p in drifted]))
    if drifted:
        raise PinDrift("; ".join(f"{p.kind} {p.label}: {'; '.join(p.messages())}" for p in drifted))
    return refreshed


def save_lock(path: str | Path | None = None) -> Path:
    """Write the pins to a lockfile beside the notebook (``llmops.lock.json`` in the cwd).

    The Python twin of ``%llm_pin --save [PATH]``.
    """
    current = pins()
    if not current.pins:
        raise BadInput("nothing to save: pin something first (%llm_pin prompt NAME@ALIAS)")
    path = Path(path or LOCKFILE)
    try:
        path.write_text(json.dumps(current.lock(), indent=2, default=str) + "\n")
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror or e}: pick a writable path") from None
    global _lockfile
    _lockfile = path
    return path


# The lockfile in force: the one last saved or loaded here, else llmops.lock.json in the cwd.
_lockfile: Path | None = None


def _ref_data(ref) -> dict | None:
    if ref is None:
        return None
    data = asdict(ref)
    data.pop("via", None)
    if "variables" in data:
        data["variables"] = sorted(data["variables"])
    return data


def _ref_from(kind: str, data: dict):
    if kind == "prompt":
        return PromptRef(
            **{**data, "variables": frozenset(data.get("variables") or ()), "aliases": tuple(data.get("aliases") or ())}
        )
    files = tuple(FileDigest(**f) for f in data.get("files") or ())
    return ModelRef(**{**data, "files": files})


def locked(kind: str, ref: Ref, cfg: Settings | None = None):
    """The version the lockfile in force holds for ``ref`` (same store, and the ref names
    its version, its alias or just its name), or None. Model files are checked against
    the digests the lockfile recorded."""
    cfg = cfg or settings()
    path = _lockfile or Path(LOCKFILE)
    try:
        data = json.loads(path.read_text())
        entries = data["pins"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    store = public_uri(cfg.resolved_tracking_uri)
    for e in entries:
        if not isinstance(e, dict) or (e.get("kind"), e.get("name")) != (kind, ref.name) or not e.get("ref"):
            continue
        if e.get("store", data.get("tracking_uri")) != store:
            continue  # a version of another registry
        if ref.is_latest or (ref.alias is not None and ref.alias == e.get("alias")) or ref.version == e.get("version"):
            try:
                found = _ref_from(kind, e["ref"])
            except TypeError:  # a lockfile from another version of this package
                return None
            if kind == "model" and found.changed_files(cfg):
                raise DigestMismatch(
                    f"{path} pins {found.label}, but its files changed on disk: restore them "
                    "or resolve it in the registry once MLflow answers"
                )
            return found
    return None


@bounded_command
def load_lock(path: str | Path | None = None, *, cfg: Settings | None = None) -> PinSet:
    """Restore pins from a lockfile, verifying each digest against the registry and the disk.

    The Python twin of ``%llm_pin --load [PATH]``. Nothing changes unless every pin verifies.

    Raises
    ------
    DigestMismatch
        When the registry or the files on disk differ from what the lockfile recorded.
    """
    cfg = cfg or settings()
    path = Path(path or LOCKFILE)
    try:
        data = json.loads(path.read_text())
        entries = data["pins"]
        if data.get("llmops_lock") != LOCK_FORMAT or not isinstance(entries, list):
            raise ValueError("unknown format")
    except FileNotFoundError:
        raise BadInput(f"no lockfile at {path}: write one with %llm_pin --save") from None
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} is not an llmops lockfile ({e}): write one with %llm_pin --save") from None
    new = PinSet()
    for entry in entries:
        try:
            kind, name, version, alias, digest = (entry[k] for k in ("kind", "name", "version", "alias", "digest"))
            ref = parse_ref(f"{name}/{int(version)}", kind)
        except (KeyError, TypeError, ValueError, BadInput) as e:
            raise BadInput(f"{path} has a malformed pin {entry!r}: {e}") from None
        found = _find(kind, ref, cfg)
        if found.digest != digest:
            raise DigestMismatch(
                f"{path} does not match the registry: {kind} {found.label} has digest {short(found.digest)} "
                f"there, the lockfile says {short(digest)}"
            )
        p = _make_pin(kind, found, alias, cfg)
        if alias:
            p = replace(p, alias_now=alias_target(kind, name, alias, cfg))
        new = new.with_pin(p)
    for p in new.pins:
        events.emit(
            events.Pinned(
                registry=p.kind, name=p.name, version=p.version, alias=p.alias, digest=p.digest, source=str(path)
            )
        )
    global _lockfile
    _lockfile = path
    return _set(new)


def pin_context() -> list[dict]:
    """The pins as plain dicts, for lineage (cheap: no registry call)."""
    return [p.as_context() for p in pins().pins]


def _follow_alias_moves(event: events.Event) -> None:
    """A move made from this process updates the pins at once (no registry call)."""
    if not isinstance(event, events.AliasMoved):
        return
    current = pins()
    updated = current
    for p in current.pins:
        if (p.kind, p.name, p.alias) == (event.registry, event.name, event.alias):
            updated = updated.with_pin(replace(p, alias_now=event.to))
    if updated is not current:
        _set(updated)


events.provide_context("pins", pin_context)
events.subscribe(_follow_alias_moves)
