"""Alias moves on prompts and models, with a history MLflow itself does not keep.

Each move is stored as one tag on the prompt / registered model
(``llmops.alias_move.<ms>.<rand>`` -> JSON {alias, from, to, user, at}). One tag per move
means two processes moving aliases at once never overwrite each other's record, and
anyone sharing the store (sqlite file or tracking server) reads the same history.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from ...config import Settings, settings
from ...errors import BadInput, ModelNotFound, PromptNotFound
from .. import events
from ..display import esc, html_table, text_table
from ..tracking import bounded_command, client, mlflow_errors
from .common import now_iso, who
from .refs import check_alias_name, check_name

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

    def _row(self) -> list:
        return [self.at, self.user, self.alias, "" if self.from_version is None else self.from_version, self.to_version]

    def __str__(self) -> str:
        before = "unset" if self.from_version is None else self.from_version
        return f"{self.kind} {self.name}: {self.alias} {before} -> {self.to_version}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        text = f"moved {self}"
        return {"text/plain": text, "text/html": f"<div class='llmops-alias'>{esc(text)}</div>"}


@dataclass(frozen=True)
class AliasHistory:
    """Who moved which alias of one prompt or model, when, from and to (oldest first)."""

    kind: str
    name: str
    moves: tuple[AliasMove, ...]

    _HEADERS = ["when (UTC)", "who", "alias", "from", "to"]

    def current(self) -> dict[str, int]:
        """Alias -> version after the last recorded move of each alias."""
        return {m.alias: m.to_version for m in self.moves}

    def to_pandas(self):
        import pandas as pd

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


def _check_kind(kind) -> str:
    if kind not in ("prompt", "model"):
        raise BadInput(f"unknown kind {kind!r}: choose prompt or model")
    return kind


@bounded_command
def alias_target(kind: str, name: str, alias: str, cfg: Settings | None = None) -> int | None:
    """The version ``alias`` points to now, or None when it is not set."""
    c = client(cfg)
    try:
        if kind == "prompt":
            return int(c.get_prompt_version_by_alias(name, alias).version)
        return int(c.get_model_version_by_alias(name, alias).version)
    except Exception as e:
        if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        with mlflow_errors(f"read alias {name}@{alias}", cfg):
            raise


def _version_exists(kind: str, name: str, version: int, cfg: Settings | None) -> None:
    # The registries' own loaders say what exists (prompts / models / versions) when not.
    if kind == "prompt":
        from .prompts import load_version

        load_version(name, version, cfg)
    else:
        from .models import find_model
        from .refs import Ref

        find_model(Ref(name, version, kind="model"), cfg)


@bounded_command
def move_alias(kind: str, name: str, alias: str, version: int, *, cfg: Settings | None = None) -> AliasMove | None:
    """Point ``alias`` of a prompt or model at ``version`` and record the move.

    The Python twin of ``%llm_alias KIND NAME ALIAS VERSION``.

    Returns
    -------
    AliasMove or None
        None when the alias already pointed at ``version`` (nothing moved, nothing recorded).
    """
    cfg = cfg or settings()
    kind, name, alias = _check_kind(kind), check_name(name, f"{kind} name"), check_alias_name(alias)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise BadInput(f"version must be a whole number, got {version!r}") from None
    if version < 1:
        raise BadInput(f"version must be 1 or more, got {version}")
    _version_exists(kind, name, version, cfg)
    before = alias_target(kind, name, alias, cfg)
    if before == version:
        return None
    c = client(cfg)
    move = AliasMove(kind, name, alias, before, version, who(), now_iso())
    key = f"{TAG_PREFIX}{int(time.time() * 1000):013d}.{secrets.token_hex(3)}"
    value = json.dumps({"alias": alias, "from": before, "to": version, "user": move.user, "at": move.at})
    with mlflow_errors(f"move alias {name}@{alias}", cfg):
        if kind == "prompt":
            c.set_prompt_alias(name, alias, version)
            c.set_prompt_tag(name, key, value)
        else:
            c.set_registered_model_alias(name, alias, str(version))
            c.set_registered_model_tag(name, key, value)
    events.emit(events.AliasMoved(registry=kind, name=name, alias=alias, from_=before, to=version, user=move.user))
    return move


@bounded_command
def alias_history(kind: str, name: str, alias: str | None = None, *, cfg: Settings | None = None) -> AliasHistory:
    """Every recorded move of the aliases of one prompt or model (oldest first).

    The Python twin of ``%llm_alias --history KIND NAME``.
    """
    cfg = cfg or settings()
    kind, name = _check_kind(kind), check_name(name, f"{kind} name")
    c = client(cfg)
    missing = (PromptNotFound if kind == "prompt" else ModelNotFound)(f"unknown {kind} {name!r}")
    with mlflow_errors(f"read {kind} {name}", cfg, not_found=missing):
        entity = c.get_prompt(name) if kind == "prompt" else c.get_registered_model(name)
    if entity is None:
        raise missing
    moves = []
    for key, value in sorted((entity.tags or {}).items()):
        if not key.startswith(TAG_PREFIX):
            continue
        try:
            d = json.loads(value)
            moves.append(AliasMove(kind, name, d["alias"], d["from"], int(d["to"]), d["user"], d["at"]))
        except (ValueError, KeyError, TypeError):
            continue  # a hand-edited tag is not history
    if alias is not None:
        moves = [m for m in moves if m.alias == alias]
    return AliasHistory(kind, name, tuple(moves))
