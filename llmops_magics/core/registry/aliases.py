"""Alias moves on prompts and models, with a history MLflow itself does not keep.

The Python twins of ``%llm_alias``. Each takes the kind as a word, looks the kind object
up once (:mod:`.kinds`) and lets it do the work (:class:`.base.RegistryKind`); the history
is one tag per move (:mod:`.history`).
"""

from __future__ import annotations

from ...config import Settings
from ..tracking import bounded_command
from .history import TAG_PREFIX, AliasHistory, AliasMove
from .kinds import kind_of

__all__ = ["TAG_PREFIX", "AliasHistory", "AliasMove", "alias_history", "alias_target", "move_alias"]


@bounded_command
def alias_target(kind: str, name: str, alias: str, cfg: Settings | None = None) -> int | None:
    """The version ``alias`` points to now, or None when it is not set."""
    return kind_of(kind).alias_target(name, alias, cfg=cfg)


@bounded_command
def move_alias(kind: str, name: str, alias: str, version: int, *, cfg: Settings | None = None) -> AliasMove | None:
    """Point ``alias`` of a prompt or model at ``version`` and record the move.

    The Python twin of ``%llm_alias KIND NAME ALIAS VERSION``.

    Parameters
    ----------
    kind : {"prompt", "model"}
    name : str
        The prompt or registered model.
    alias : str
        Letters, digits, '-' and '_'; not ``latest`` nor ``v<N>`` (MLflow keeps those).
    version : int
        The version the alias points to afterwards; it must exist.

    Returns
    -------
    AliasMove or None
        None when the alias already pointed at ``version`` (nothing moved, nothing recorded).
    """
    return kind_of(kind).move_alias(name, alias, version, cfg=cfg)


@bounded_command
def alias_history(kind: str, name: str, alias: str | None = None, *, cfg: Settings | None = None) -> AliasHistory:
    """Every recorded move of the aliases of one prompt or model (oldest first).

    The Python twin of ``%llm_alias --history KIND NAME``.

    Raises
    ------
    PromptNotFound, ModelNotFound
        When there is no such prompt / model.
    """
    return kind_of(kind).history(name, alias, cfg=cfg)
