"""Pins: the prompt and model versions a notebook runs, resolved once and held.

``pin("prompt", "summarize@production")`` asks the registry where the alias points *now*
and holds that version; later refs to ``summarize`` (or ``summarize@production``) give the
pinned version without a registry call (:mod:`.resolve`). Drift is what changed since: an
alias that moved, model files touched on disk. The cheap view (:func:`pin_context`, used by
lineage on every cell) compares what was seen at pin time; :func:`check_pins` asks the
registry again and re-hashes touched files. :func:`save_lock` and :func:`load_lock` keep
them in ``llmops.lock.json`` beside the notebook (:mod:`.lockfile`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

from ...config import Settings, settings
from ...errors import BadInput, DigestMismatch, PinDrift
from .. import events
from ..paths import shown_path
from ..tracking import bounded_command
from .base import RegistryKind
from .common import now_iso, short
from .kinds import kind_of
from .lockfile import LOCKFILE, read_lock, use_lockfile, write_lock
from .pinset import Pin, PinSet
from .refs import Ref, parse_ref

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


def pinned(kind: str | RegistryKind, ref: Ref, cfg: Settings | None = None) -> Pin | None:
    """The pin a ref resolves to: same store, and a bare name, the pinned alias or version."""
    pin = pins().get(kind_of(kind).name, ref.name)
    if pin is None or pin.store != (cfg or settings()).resolved_tracking_uri:
        return None
    if ref.is_latest or (ref.alias is not None and ref.alias == pin.alias) or ref.version == pin.version:
        return pin
    return None


def make_pin(kind: RegistryKind, found, alias: str | None, cfg: Settings) -> Pin:
    """A pin of ``found`` (a PromptRef or ModelRef), refused when its files changed on disk."""
    # Only models have files, hence the %llm_model hint.
    changed = kind.changed_files(found, cfg)
    if changed:
        raise DigestMismatch(
            f"weights of {found.label} changed on disk since registration ({', '.join(changed[:5])}): "
            f"restore them or register a new version (%llm_model register {found.name} ...)"
        )
    return Pin(
        kind=kind.name,
        name=found.name,
        version=found.version,
        alias=alias,
        digest=found.digest,
        store=cfg.resolved_tracking_uri,
        pinned_at=now_iso(),
        alias_now=found.version if alias else None,
        stats=tuple(sorted(kind.file_stats(found).items())),
        **{kind.name: found},  # pin.prompt or pin.model
    )


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
    if parsed.kind is None:
        raise BadInput(f"say what {ref!r} is: %llm_pin prompt {ref} or %llm_pin model {ref}")
    registry = kind_of(parsed.kind)
    locked_pin = pinned(registry, parsed, cfg) if enforce_lock(cfg) else None
    if locked_pin is not None:
        # Under an enforced lockfile the alias resolves to the locked version, not where it points now.
        _announce(locked_pin, os.environ[LOCK_ENV], cfg)
        return pins()
    new = make_pin(registry, registry.find(parsed, cfg), parsed.alias, cfg)
    _announce(new)
    return _set(pins().with_pin(new))


def _announce(p: Pin, lockfile=None, cfg: Settings | None = None) -> None:
    """Tell lineage a pin is in force (``lockfile``: the one it came from)."""
    # Lineage travels: the lockfile as people share its path, never this machine's.
    source = shown_path(lockfile, cfg=cfg) if lockfile is not None else None
    events.emit(
        events.Pinned(registry=p.kind, name=p.name, version=p.version, alias=p.alias, digest=p.digest, source=source)
    )


# Set by ``llmops-magics verify`` for the kernel it starts: that lockfile's pins are in
# force from the first ref resolved, so the notebook runs what it ran when it was saved.
LOCK_ENV = "LLMOPS_LOCK"
_enforced: str | None = None  # the LLMOPS_LOCK file this process has loaded


def enforce_lock(cfg: Settings | None = None) -> bool:
    """Load the lockfile named by ``LLMOPS_LOCK`` once per process (verified, as
    :func:`load_lock` does); True while one is in force.

    Raises
    ------
    DigestMismatch
        When the registry or the files on disk differ from the lockfile: every cell that
        resolves a ref fails with it, so a verify run names the digest that changed.
    """
    global _enforced
    path = os.environ.get(LOCK_ENV)
    if not path:
        return False
    if _enforced != path:
        load_lock(path, cfg=cfg)
        _enforced = path
    return True


@bounded_command
def check_pins(*, cfg: Settings | None = None) -> PinSet:
    """Ask the registry where pinned aliases point now and re-hash touched model files.

    The Python twin of ``%llm_pin --check``.

    A pinned protected alias (``cfg.protected_aliases``) whose current target was not put
    there by a recorded promotion or forced move (moved in the MLflow UI, say) is drift too.

    Raises
    ------
    PinDrift
        Naming each alias that moved, each model whose files changed and each protected
        alias that moved without a recorded promotion.
    """
    cfg = cfg or settings()
    refreshed = PinSet()
    unpromoted: dict[str, str] = {}
    for p in pins().pins:
        kind = kind_of(p.kind)
        now = kind.alias_target(p.name, p.alias, cfg=cfg) if p.alias else None
        changed = tuple(kind.changed_files(p.ref, cfg))
        stats = p.stats if changed else tuple(sorted(kind.file_stats(p.ref).items()))
        refreshed = refreshed.with_pin(replace(p, alias_now=now, changed=changed, stats=stats))
        if p.alias in cfg.protected_aliases and now is not None:
            why = _unpromoted(kind, p.name, p.alias, now, cfg)
            if why:
                unpromoted[f"{p.kind} {p.label}"] = why
    _set(refreshed)
    found = {f"{p.kind} {p.label}": p.messages() for p in refreshed.drift()}
    for key, why in unpromoted.items():
        found.setdefault(key, []).append(why)
    # Announce the check even when it fails, so the cell's lineage (and the lab panel)
    # shows the drift it found.
    events.emit(events.PinsChecked(pins=len(refreshed), drift=list(found)))
    if found:
        raise PinDrift("; ".join(f"{key}: {'; '.join(msgs)}" for key, msgs in found.items()))
    return refreshed


def _unpromoted(kind: RegistryKind, name: str, alias: str, now: int, cfg: Settings) -> str:
    """Why protected ``alias`` pointing at ``now`` lacks a recorded promotion ('' when it has one)."""
    moves = kind.history(name, alias, cfg=cfg).moves
    last = moves[-1] if moves else None
    if last is None or last.to_version != now:
        return (
            f"protected alias {alias} points to {now} but no recorded promotion put it there "
            f"(moved outside llmops-magics, e.g. in the MLflow UI?): check it, then record why with "
            f'%llm_alias {kind.name} {name} {alias} {now} --force --why "..."'
        )
    if not last.sanctioned:
        return f"protected alias {alias} was moved to {now} by {last.user} without a promotion"
    return ""


def save_lock(path: str | Path | None = None) -> Path:
    """Write the pins to a lockfile beside the notebook (``llmops.lock.json`` in the cwd).

    The Python twin of ``%llm_pin --save [PATH]``.
    """
    current = pins()
    if not current.pins:
        raise BadInput("nothing to save: pin something first (%llm_pin prompt NAME@ALIAS)")
    return write_lock(current.lock(), path)


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
    new = PinSet()
    for entry in read_lock(path):
        new = new.with_pin(_verified(entry, path, cfg))
    for p in new.pins:
        _announce(p, path, cfg)
    use_lockfile(path)
    return _set(new)


def _verified(entry, path: Path, cfg: Settings) -> Pin:
    """The pin a lockfile entry names, once the registry and the disk agree with it."""
    try:
        kind, name, version, alias, digest = (entry[k] for k in ("kind", "name", "version", "alias", "digest"))
        ref = parse_ref(f"{name}/{int(version)}", kind)
        registry = kind_of(kind)
    except (KeyError, TypeError, ValueError, BadInput) as e:
        raise BadInput(f"{path} has a malformed pin {entry!r}: {e}") from None
    found = registry.find(ref, cfg)
    if found.digest != digest:
        raise DigestMismatch(
            f"{path} does not match the registry: {kind} {found.label} has digest {short(found.digest)} "
            f"there, the lockfile says {short(digest)}"
        )
    p = make_pin(registry, found, alias, cfg)
    return replace(p, alias_now=registry.alias_target(name, alias, cfg=cfg)) if alias else p


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
