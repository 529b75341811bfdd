"""The alias history MLflow itself does not keep: one tag per move.

Each move is stored as one tag on the prompt / registered model
(``llmops.alias_move.<ms>.<rand>`` -> JSON {alias, from, to, user, at[, run_id, evidence][,
promotion][, forced_why]}).
One tag per move means two processes moving aliases at once never overwrite each other's
record, and anyone sharing the store (sqlite file or tracking server) reads the same
history. The tags are what code reads; people read the lines of :meth:`AliasMove.line`,
which :mod:`.history_block` writes where the MLflow UI shows them.

This module only writes and reads the records; :class:`.base.RegistryKind` stores them.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime

from ..display import esc, html_table, text_table

TAG_PREFIX = "llmops.alias_move."


@dataclass(frozen=True)
class AliasMove:
    """One recorded alias move."""

    kind: str
    name: str
    alias: str
    from_version: int | None
    to_version: int
    user: str
    at: str
    # The run that justified the move (a shadow run, a gate's verdict), when one did.
    run_id: str | None = None
    evidence: str | None = None  # what that run is, in words: "shadow run"; "run" when not said
    # Put there by the promotion gate (``%llm_promote``) on that evidence.
    promotion: bool = False
    # Moved past the gate or a protected alias with ``--force``: the reason the user gave.
    forced_why: str | None = None
    # What went wrong after the move itself was recorded (the readable history not rewritten).
    note: str = field(default="", compare=False)

    @property
    def evidence_text(self) -> str:
        """``shadow run 629d51e5``, or '' when the move names no run."""
        if not self.run_id:
            return ""
        return f"{self.evidence or 'run'} {self.run_id[:8]}"

    @property
    def how(self) -> str:
        """How the move was allowed: ``promoted on shadow run 629d51e5``, ``forced: <why>``, or the evidence."""
        if self.forced_why:
            return f"forced: {self.forced_why}"
        if self.promotion:
            return f"promoted on {self.evidence_text}" if self.run_id else "promoted"
        return self.evidence_text

    @property
    def sanctioned(self) -> bool:
        """Whether a protected alias may stand where this move put it: a promotion, a forced
        move with its reason, or the alias's first setting."""
        return self.promotion or bool(self.forced_why) or self.from_version is None

    def line(self) -> str:
        """The move as a person reads it: ``champion: 1 -> 2 · alice · 2026-12-05 12:15 · shadow run 629d51e5``."""
        before = "unset" if self.from_version is None else self.from_version
        parts = [f"{self.alias}: {before} -> {self.to_version}", self.user, _minute(self.at), self.how]
        return " · ".join(p for p in parts if p)

    def _row(self) -> list:
        before = "" if self.from_version is None else self.from_version
        return [self.at, self.user, self.alias, before, self.to_version, self.how]

    def __str__(self) -> str:
        before = "unset" if self.from_version is None else self.from_version
        return f"{self.kind} {self.name}: {self.alias} {before} -> {self.to_version}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        text = f"moved {self}" + (f" ({self.note})" if self.note else "")
        return {"text/plain": text, "text/html": f"<div class='llmops-alias'>{esc(text)}</div>"}


@dataclass(frozen=True)
class AliasHistory:
    """Who moved which alias of one prompt or model, when, from and to (oldest first)."""

    kind: str
    name: str
    moves: tuple[AliasMove, ...]

    _HEADERS = ["when (UTC)", "who", "alias", "from", "to", "evidence"]

    def current(self) -> dict[str, int]:
        """Alias -> version after the last recorded move of each alias."""
        return {m.alias: m.to_version for m in self.moves}

    def to_pandas(self):
        import pandas as pd  # deferred: pandas is heavy and only this view needs it

        return pd.DataFrame([m._row() for m in self.moves], columns=self._HEADERS)

    def _repr_mimebundle_(self, include=None, exclude=None):
        title = f"alias history of {self.kind} {self.name}"
        if not self.moves:
            text = f"{title}: no alias moves recorded"
            return {"text/plain": text, "text/html": f"<div>{esc(text)}</div>"}
        rows = [m._row() for m in self.moves]
        return {
            "text/plain": f"{title}\n" + text_table(self._HEADERS, rows),
            "text/html": (
                f"<div class='llmops-alias-history'><b>{esc(title)}</b>{html_table(self._HEADERS, rows)}</div>"
            ),
        }


def move_tag(move: AliasMove) -> tuple[str, str]:
    """The (key, value) of the tag that records ``move``.

    The key sorts by time; its random tail keeps two moves in the same millisecond apart.
    """
    key = f"{TAG_PREFIX}{int(time.time() * 1000):013d}.{secrets.token_hex(3)}"
    value = {"alias": move.alias, "from": move.from_version, "to": move.to_version, "user": move.user, "at": move.at}
    if move.run_id:
        value.update(run_id=move.run_id, evidence=move.evidence)
    if move.promotion:
        value["promotion"] = True
    if move.forced_why:
        value["forced_why"] = move.forced_why
    return key, json.dumps(value)


def read_history(kind: str, name: str, tags: dict | None, alias: str | None = None) -> AliasHistory:
    """The moves recorded in the tags of one prompt or model (oldest first), of ``alias`` only if given."""
    moves = []
    for key, value in sorted((tags or {}).items()):
        if not key.startswith(TAG_PREFIX):
            continue
        try:
            d = json.loads(value)
            moves.append(
                AliasMove(
                    kind,
                    name,
                    d["alias"],
                    d["from"],
                    int(d["to"]),
                    d["user"],
                    d["at"],
                    d.get("run_id"),
                    d.get("evidence"),
                    bool(d.get("promotion")),
                    d.get("forced_why") or None,
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a hand-edited tag is not history
    if alias is not None:
        moves = [m for m in moves if m.alias == alias]
    return AliasHistory(kind, name, tuple(moves))


def _minute(at: str) -> str:
    """``2026-12-05T12:15:33+00:00`` -> ``2026-12-05 12:15`` (moves are recorded in UTC)."""
    try:
        return datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(at)
