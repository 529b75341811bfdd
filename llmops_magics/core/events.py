"""What a call did, announced to whoever listens (the lineage recorder listens).

Core functions emit small dict events; they never know who records them, which keeps
lineage out of core's import graph and costs nothing when nobody listens.
"""

from __future__ import annotations

from collections.abc import Callable

_listeners: list[Callable[[str, dict], None]] = []


def subscribe(fn: Callable[[str, dict], None]) -> None:
    if fn not in _listeners:
        _listeners.append(fn)


def unsubscribe(fn: Callable[[str, dict], None]) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def emit(kind: str, payload: dict) -> None:
    for fn in list(_listeners):
        fn(kind, payload)


# Context providers: named functions whose value describes "the state now" (e.g. the
# pins in force). Lineage calls them when it records a cell; they must be cheap.
_context: dict[str, Callable[[], object]] = {}


def provide_context(name: str, fn: Callable[[], object]) -> None:
    _context[name] = fn


def context() -> dict:
    return {name: fn() for name, fn in list(_context.items())}
