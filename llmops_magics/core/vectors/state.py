"""The migration state a table carries: which step it is at, which columns, how far along.

The state is JSON in the text column's field metadata (``llmops:migration``, see
``table.py``), so it is versioned and restored with the data, and every process that
opens the table sees the same open migration. Functions here read and check it; only
the steps in ``migration.py`` change it.
"""

from __future__ import annotations

import json

from ...backends import lance
from ...errors import BadInput
from .table import MIGRATION_KEY, layout

# A migration in one of these states has columns on the table that a later step
# (cutover, finish or rollback) still owns.
OPEN = ("started", "cut_over")
DIGEST_SUFFIX = "__src"

_HINTS = {
    "none": "start one with %lance_migrate start TABLE --to EMBEDDER",
    "finished": "the last migration finished; start a new one",
    "started": "run backfill and cutover first",
    "cut_over": "it was already cut over",
}


def read_state(t) -> dict:
    """The migration state recorded on table ``t`` (``{}`` when none ever ran)."""
    raw = lance.field_meta(t, layout(t).text_column).get(MIGRATION_KEY)
    return json.loads(raw) if raw else {}


def write_state(t, state: dict | None) -> None:
    """Record ``state`` on ``t`` (``None``: no migration) in one commit."""
    lance.set_field_meta(t, layout(t).text_column, {MIGRATION_KEY: json.dumps(state) if state else None})


def digest_column(state: dict) -> str:
    """The column recording which text each new vector came from."""
    return state.get("digest_column") or state["to_column"] + DIGEST_SUFFIX


def interrupted(state: dict, columns) -> str | None:
    """The step whose kill left ``state`` naming a column that is gone: run it again."""
    if state.get("status") == "started" and state.get("to_column") not in columns:
        return "rollback"
    if state.get("status") == "cut_over" and state.get("from_column") not in columns:
        return "finish"
    return None


def open_state(t, name: str, allowed: tuple = OPEN, *, resume: str | None = None) -> dict:
    """The open migration of ``t`` if it is in one of ``allowed``, else ``BadInput``.

    ``resume`` names the step that may pick up after its own interrupted run (see
    :func:`interrupted`); every other step refuses until that run is completed.
    """
    state = read_state(t)
    if state.get("status") not in allowed:
        now = state.get("status") or "none"
        raise BadInput(f"{name!r} has no migration in state {'/'.join(allowed)} (now: {now}): {_HINTS.get(now, '')}")
    pending = interrupted(state, t.schema.names)
    if pending and pending != resume:
        raise BadInput(
            f"a {pending} of {name!r} was interrupted before it finished: "
            f"run %lance_migrate {pending} {name} again to complete it"
        )
    return state


def empty_and_stale(t, state: dict) -> tuple[int, int]:
    """(empty, stale) rows of the new column; stale: embedded from a text since edited."""
    col, dig = state["to_column"], digest_column(state)
    empty = t.count_rows(lance.is_null(col))
    if dig not in t.schema.names:  # started before digests were kept: no row can be trusted
        return empty, t.count_rows() - empty
    return empty, t.count_rows(lance.stale_vectors(col, dig, layout(t).text_column))


def require_complete(t, state: dict, step: str) -> None:
    """Refuse ``step`` while any row of the new column is empty or stale."""
    empty, stale = empty_and_stale(t, state)
    col = state["to_column"]
    if empty:
        raise BadInput(f"{empty} rows of {col!r} are still empty: run backfill before {step}")
    if stale:
        raise BadInput(
            f"{stale} rows of {col!r} are stale (their text changed after they were embedded): "
            f"run backfill before {step}"
        )
