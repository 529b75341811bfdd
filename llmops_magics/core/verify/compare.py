"""Compare what a cell's saved lineage recorded with what the same cell does now.

Pure functions of two lineage bundles (plain dicts), so every kind of difference is
testable without a kernel. A difference is *named* when it is a pin, a digest, a serving
parameter or the hardware: something a reviewer can point at. A changed answer with
nothing named is the case that matters most in CI ("the git log is clean and the feature
is broken"): exit 1. Changed with something named: exit 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

IDENTICAL = "identical"
CHANGED = "changed"
GENERATING = ("generation", "shadow")

# An error a cell now raises about a pin or a digest (a lockfile that no longer verifies,
# weights changed on disk) is a named difference, not a mystery. Told by its type: raised
# from Python it is the error's own type; from a magic, a UsageError whose line starts with
# the type ("UsageError: DigestMismatch: weights of chat/1 changed on disk ...").
_PIN_ERRORS = ("DigestMismatch", "PinDrift")
_TYPED_LINE = re.compile(r"^(?:UsageError: )?(\w+):")


def pin_error(error: str | None, error_type: str | None) -> bool:
    """Whether a cell's error is a pin or digest error (by type, never by wording)."""
    if error_type in _PIN_ERRORS:
        return True
    found = _TYPED_LINE.match(error or "")
    return bool(found) and found.group(1) in _PIN_ERRORS


@dataclass(frozen=True)
class CellVerdict:
    """One generating cell: identical or changed, and why."""

    cell: int  # its execution count in the saved notebook
    index: int  # its position in the notebook
    cell_id: str | None
    status: str  # identical | changed
    named: tuple[str, ...] = ()  # pins, digests, serving parameters, hardware that differ
    notes: tuple[str, ...] = ()  # what else was seen: the input changed, an error's line

    @property
    def changed(self) -> bool:
        return self.status == CHANGED

    @property
    def exit_code(self) -> int:
        """0 identical, 1 changed with nothing named, 3 changed and something named."""
        if not self.changed:
            return 0
        return 3 if self.named else 1

    def line(self) -> str:
        """``cell 3  identical`` / ``cell 5  changed (pins unchanged)`` / ``cell 7  changed: ...``."""
        head = f"cell {self.cell}  "
        named = " / ".join(self.named)
        if not self.changed:
            text = IDENTICAL + (f" (but {named})" if named else "")
        elif named:
            text = f"{CHANGED}: {named}"
        else:
            text = f"{CHANGED} (pins unchanged)"
        notes = f" · {' · '.join(self.notes)}" if self.notes else ""
        return head + text + notes

    def to_dict(self) -> dict:
        return {
            "cell": self.cell,
            "index": self.index,
            "cell_id": self.cell_id,
            "status": self.status,
            "differences": list(self.named),
            "notes": list(self.notes),
            "exit_code": self.exit_code,
            "line": self.line(),
        }


@dataclass
class _Diff:
    named: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outputs_changed: bool = False

    def name(self, text: str) -> None:
        if text not in self.named:
            self.named.append(text)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def generating_events(bundle: dict | None) -> list[dict]:
    """The generation and shadow events of a lineage bundle, in order."""
    evs = (bundle or {}).get("events") or []
    return [e for e in evs if isinstance(e, dict) and e.get("kind") in GENERATING]


def compare_cell(
    saved: dict,
    now: dict | None,
    *,
    cell: int,
    index: int,
    error: str | None = None,
    error_type: str | None = None,
    ran: bool = True,
) -> CellVerdict:
    """Compare a cell's saved lineage bundle with the bundle of its run now.

    Parameters
    ----------
    saved, now : dict
        Lineage bundles (``application/vnd.llmops.lineage+json``); ``now`` None when the
        cell produced none (it failed before lineage, or did not run).
    error, error_type : str, optional
        The one line of the error the cell raises now, and its type.
    ran : bool
        False when the cell did not run (an earlier cell failed: ``error`` is that cell's).
    """
    d = _Diff()
    if not ran:
        d.outputs_changed = True
        # ``error``: the earlier cell's, when known; a pin error there is named here too.
        if error is not None and pin_error(error, error_type):
            d.name(f"not run: an earlier cell fails: {error}")
        else:
            d.note("not run: an earlier cell failed" + (f": {error}" if error else ""))
    elif error is not None and saved.get("status") != "error":
        d.outputs_changed = True
        if pin_error(error, error_type):
            d.name(f"fails: {error}")
        else:
            d.note(f"fails now: {error}")
    else:
        _compare_events(generating_events(saved), generating_events(now), d)
        if saved.get("status") == "error" and error is None:
            d.outputs_changed = True
            d.note("passes now (it failed when saved)")
    return CellVerdict(
        cell=cell,
        index=index,
        cell_id=saved.get("cell_id"),
        status=CHANGED if d.outputs_changed else IDENTICAL,
        named=tuple(d.named),
        notes=tuple(d.notes),
    )


def _compare_events(old: list[dict], new: list[dict], d: _Diff) -> None:
    if len(old) != len(new):
        d.outputs_changed = True
        d.note(f"{len(old)} generating call(s) when saved, {len(new)} now")
    for a, b in zip(old, new):
        if a.get("kind") != b.get("kind"):
            d.outputs_changed = True
            d.note(f"{a.get('kind')} when saved, {b.get('kind')} now")
        elif a.get("kind") == "generation":
            compare_generation(a, b, d)
        else:
            compare_shadow(a, b, d)


def compare_generation(a: dict, b: dict, d: _Diff | None = None) -> _Diff:
    """Differences between two ``generation`` event records (one ``llm()`` call each)."""
    d = d or _Diff()
    _model(a.get("model"), b.get("model"), d)
    _same(d, "model digest", a.get("model_digest"), b.get("model_digest"), show=False)
    _prompt(a.get("prompt"), b.get("prompt"), d)
    # None here means "no adapter": an adapter added or removed is a difference (in records
    # that have the field at all).
    _present(d, "base digest", a, b, "base_digest", show=False)
    _present(d, "adapter", a, b, "adapter")
    _present(d, "adapter digest", a, b, "adapter_digest", show=False)
    _dict(d, "sampling", a.get("sampling"), b.get("sampling"))
    for key in ("dtype", "backend", "device"):
        _same(d, f"engine {key}", a.get(key), b.get(key))
    # dtype is named above, from what the engine really ran with.
    _dict(d, "engine arg", _without(a.get("engine_args"), "dtype"), _without(b.get("engine_args"), "dtype"))
    _same(d, "engine version", a.get("engine_version"), b.get("engine_version"))
    _hardware(a.get("hardware"), b.get("hardware"), d)
    if list(a.get("input_digests") or []) != list(b.get("input_digests") or []):
        d.note("input changed")
    if list(a.get("output_digests") or []) != list(b.get("output_digests") or []):
        d.outputs_changed = True
    return d


def compare_shadow(a: dict, b: dict, d: _Diff | None = None) -> _Diff:
    """Differences between two ``shadow`` event records (one comparison each)."""
    d = d or _Diff()
    for role in ("primary", "candidate"):
        _same(d, role, a.get(f"{role}_label") or a.get(role), b.get(f"{role}_label") or b.get(role))
        old = (a.get("serving") or {}).get(role) or {}
        new = (b.get("serving") or {}).get(role) or {}
        for key in ("dtype", "backend", "device"):
            _same(d, f"{role} engine {key}", old.get(key), new.get(key))
    _same(d, "prompt", _label(a.get("prompt")), _label(b.get("prompt")))
    _same(d, "candidate prompt", a.get("candidate_prompt"), b.get("candidate_prompt"))
    old_digests, new_digests = a.get("digests") or {}, b.get("digests") or {}
    for key in sorted(set(old_digests) & set(new_digests)):
        # "candidate adapter digest": which side's weights or prompt text changed.
        _same(d, key.replace("_", " "), old_digests[key], new_digests[key], show=False)
    _hardware(a.get("hardware"), b.get("hardware"), d)
    if list(a.get("input_digests") or []) != list(b.get("input_digests") or []):
        d.note("input changed")
    if (a.get("output_digests") or {}) != (b.get("output_digests") or {}):
        d.outputs_changed = True
    return d


def _same(d: _Diff, what: str, old, new, *, show: bool = True) -> None:
    """Name ``what`` when it differs; ``show`` adds ``old -> new`` (not for digests: noise)."""
    if old is None or new is None or old == new:
        # A field missing on one side (an older record, a remote engine) is not a difference.
        return
    d.name(f"{what} {old} -> {new}" if show else what)


def _present(d: _Diff, what: str, a: dict, b: dict, key: str, *, show: bool = True) -> None:
    """Name ``what`` when both records have ``key`` and it differs, None (absent) included."""
    if key in a and key in b and a[key] != b[key]:
        d.name(f"{what} {_shown(a[key], 'none')} -> {_shown(b[key], 'none')}" if show else what)


def _dict(d: _Diff, what: str, old: dict | None, new: dict | None) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    for key in sorted(set(old) | set(new), key=str):
        if old.get(key) != new.get(key):
            d.name(f"{what} {key} {_shown(old.get(key))} -> {_shown(new.get(key))}")


def _without(args: dict | None, key: str) -> dict | None:
    return {k: v for k, v in args.items() if k != key} if isinstance(args, dict) else None


def _shown(v, missing: str = "unset") -> str:
    return missing if v is None else str(v)


def _model(old: str | None, new: str | None, d: _Diff) -> None:
    """``model chat 1 -> 2`` for two versions of one name, else ``model a -> b``."""
    if old is None or new is None or old == new:
        return
    old_name, _, old_version = str(old).partition("/")
    new_name, _, new_version = str(new).partition("/")
    if old_name == new_name and old_version and new_version:
        d.name(f"model {old_name} {old_version} -> {new_version}")
    else:
        d.name(f"model {old} -> {new}")


def _prompt(old: dict | None, new: dict | None, d: _Diff) -> None:
    if not old and not new:
        return
    if not old or not new:
        d.name(f"prompt {_label(old) or 'none'} -> {_label(new) or 'none'}")
        return
    if old.get("name") != new.get("name"):
        d.name(f"prompt {_label(old)} -> {_label(new)}")
    elif str(old.get("version")) != str(new.get("version")):
        d.name(f"prompt {old.get('name')} {old.get('version')} -> {new.get('version')}")
    _same(d, "prompt digest", old.get("digest"), new.get("digest"), show=False)


def _label(prompt) -> str | None:
    if isinstance(prompt, dict):
        name, version = prompt.get("name"), prompt.get("version")
        return f"{name}/{version}" if version not in (None, "") else name
    return str(prompt) if prompt else None


def _hardware(old: dict | None, new: dict | None, d: _Diff) -> None:
    """The CPU's ISA class or the GPU model (what changes bf16 answers), not the CPU's name."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    before = f"{old.get('device')} {old.get('class')}"
    after = f"{new.get('device')} {new.get('class')}"
    if before != after:
        # "hardware cpu avx512 -> avx2"; the device is repeated only when it changed.
        same_device = old.get("device") == new.get("device")
        d.name(f"hardware {before} -> {new.get('class') if same_device else after}")
    elif old.get("name") != new.get("name"):
        d.note(f"another CPU of the same class ({new.get('name')})")
