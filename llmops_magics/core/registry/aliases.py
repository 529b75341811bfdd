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
def move_alias(
    kind: str,
    name: str,
    alias: str,
    version: int,
    *,
    run_id: str | None = None,
    evidence: str | None = None,
    force: bool = False,
    why: str | None = None,
    cfg: Settings | None = None,
) -> AliasMove | None:
    """Point ``alias`` of a prompt or model at ``version`` and record the move.

    The Python twin of ``%llm_alias KIND NAME ALIAS VERSION [--run RUN_ID] [--force --why "..."]``. Besides the
    record (a tag per move), the readable history on the MLflow page is rewritten: a block
    in the description (``champion: 1 -> 2 · alice · 2026-12-05 12:15 · shadow run 629d51e5``,
    newest first) and, for prompts, the tag ``alias history`` (the prompt page shows tags).

    Parameters
    ----------
    kind : {"prompt", "model"}
    name : str
        The prompt or registered model.
    alias : str
        Letters, digits, '-' and '_'; not ``latest`` nor ``v<N>`` (MLflow keeps those).
    version : int
        The version the alias points to afterwards; it must exist.
    run_id : str, optional
        The MLflow run that justified the move (kept in the record, shown in the history).
    evidence : str, optional
        What that run is, in words ("shadow run"); "run" when not given.
    force, why : bool, str
        Move a protected alias (``cfg.protected_aliases``) without a promotion; ``why`` is
        required with ``force`` and recorded in the history.

    Returns
    -------
    AliasMove or None
        None when the alias already pointed at ``version`` (nothing moved, nothing recorded).
        Its ``note`` says so when the move is recorded but the readable history could not be
        rewritten.

    Raises
    ------
    AliasProtected
        When ``alias`` is protected and already set, unless forced with a reason.
    """
    return kind_of(kind).move_alias(
        name, alias, version, run_id=run_id, evidence=evidence, force=force, why=why, cfg=cfg
    )


@bounded_command
def alias_history(kind: str, name: str, alias: str | None = None, *, cfg: Settings | None = None) -> AliasHistory:
    """Every recorded move of the aliases of one prompt or model (oldest first, from the tags).

    The Python twin of ``%llm_alias --history KIND NAME``.

    Raises
    ------
    PromptNotFound, ModelNotFound
        When there is no such prompt / model.
    """
    return kind_of(kind).history(name, alias, cfg=cfg)
