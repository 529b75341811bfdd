"""What a call did, announced to whoever listens (the lineage recorder listens).

Core functions emit small dict events; they never know who records them, which keeps
lineage out of core's import graph and costs nothing when nobody listens.
"""

from __future__ import annotations

from typing import Callable

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
