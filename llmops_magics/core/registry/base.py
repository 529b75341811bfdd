"""What a registry kind is: the few MLflow calls that differ, and all that is done with them.

A prompt and a model differ in the registry behind them (MLflow's Prompt Registry or its
Model Registry) and in what a version is made of; moving an alias and recording the move,
reading the history, pinning and locking are the same for both. Each kind
(:data:`.prompts.PROMPTS`, :data:`.models.MODELS`) supplies the primitives; the shared
operations live here once, so aliases, pins and the lockfile never ask which kind they hold.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from typing import ClassVar

from ...config import Settings, settings
from ...errors import AliasProtected, AliasRace, BadInput, LlmopsError
from .. import events
from ..tracking import bounded_command, client, is_not_found, mlflow_errors
from ..tracking.errors import error_code
from ..tracking.redact import describe
from .common import forced_why, now_iso, who
from .history import AliasHistory, AliasMove, move_tag, read_history
from .history_block import HISTORY_TAG, history_tag_value, with_history
from .refs import Ref, check_alias_name, check_name

# MLflow answers a lookup of an alias that is not set with this code ("alias x not found").
_ALIAS_NOT_SET = "INVALID_PARAMETER_VALUE"
# Rounds of read, rewrite, read back before leaving the readable history to a concurrent
# mover (who reads back after their own write, so one of the two leaves every move in).
_REWRITE_ROUNDS = 4
# ``move_alias(expect_from=ANY)``: move from wherever the alias points.
ANY = object()


class RegistryKind(ABC):
    """One kind of registered thing (prompt or model): its primitives and the shared operations.

    Attributes
    ----------
    name : str
        ``"prompt"`` or ``"model"``: the word in refs, messages, events, pins and the lockfile.
    not_found : type of LlmopsError
        What is raised when a name, version or alias does not exist.
    """

    name: ClassVar[str]
    not_found: ClassVar[type[LlmopsError]]
    # Whether the readable history also goes into the tag HISTORY_TAG (where the MLflow UI
    # shows tags but not the description).
    history_in_tag: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<registry kind {self.name}>"

    # ------------------------------------------------------------ primitives (one MLflow call each)

    @abstractmethod
    def _version_by_alias(self, c, name: str, alias: str):
        """The MLflow version entity ``alias`` points to; MLflow raises when it is not set."""

    @abstractmethod
    def _set_alias(self, c, name: str, alias: str, version: int) -> None: ...

    @abstractmethod
    def _set_tag(self, c, name: str, key: str, value: str) -> None: ...

    @abstractmethod
    def _entity(self, c, name: str):
        """The prompt / registered model ``name`` (``.tags``, ``.description``); None (or a
        not-found error) when missing."""

    @abstractmethod
    def _set_description(self, c, name: str, text: str) -> None: ...

    def _tags(self, c, name: str) -> dict | None:
        """The tags of the prompt / registered model ``name``; None (or a not-found error) when missing."""
        found = self._entity(c, name)
        return None if found is None else dict(found.tags or {})

    @abstractmethod
    def load(self, name: str, version: int, cfg: Settings):
        """One version (PromptRef or ModelRef); ``not_found`` saying what exists when it does not."""

    @abstractmethod
    def find(self, ref: Ref, cfg: Settings):
        """Resolve a parsed ref in the registry (ignoring pins): version, alias or latest."""

    @abstractmethod
    def from_data(self, data: dict):
        """A version back from :meth:`to_data` (the lockfile keeps whole versions)."""

    # ------------------------------------------------------------ what a version holds on disk

    def changed_files(self, found, cfg: Settings) -> list[str]:
        """Files of ``found`` whose bytes differ from the registration (none unless the kind has files)."""
        return []

    def file_stats(self, found) -> dict:
        """path -> (size, mtime_ns) of the files of ``found`` now (none unless the kind has files)."""
        return {}

    def to_data(self, found) -> dict:
        """``found`` as plain JSON-ready data, without where it was resolved from."""
        data = asdict(found)
        data.pop("via", None)
        return data

    # ------------------------------------------------------------ aliases, shared by every kind

    @bounded_command
    def alias_target(self, name: str, alias: str, *, cfg: Settings | None = None) -> int | None:
        """The version ``alias`` points to now, or None when it is not set."""
        cfg = cfg or settings()
        try:
            found = self._version_by_alias(client(cfg), name, alias)
        except Exception as e:
            if is_not_found(e) or error_code(e) == _ALIAS_NOT_SET:
                return None
            with mlflow_errors(f"read alias {name}@{alias}", cfg):
                raise
        return None if found is None else int(found.version)

    @bounded_command
    def move_alias(
        self,
        name: str,
        alias: str,
        version,
        *,
        run_id: str | None = None,
        evidence: str | None = None,
        promotion: bool = False,
        force: bool = False,
        why: str | None = None,
        expect_from: int | None | object = ANY,
        cfg: Settings | None = None,
    ) -> AliasMove | None:
        """Point ``alias`` at ``version`` and record the move in the history; None when it was
        there already (unless ``force`` gives a reason: then the reason is recorded, so a move
        made outside llmops-magics, in the MLflow UI say, can be vouched for).

        ``run_id`` names the run that justified the move and ``evidence`` what it is
        ("shadow run"); both go into the record and the readable history. A protected alias
        (``cfg.protected_aliases``) that is already set moves only with ``promotion`` (the
        gate, :mod:`..promote`, checked the evidence) or ``force`` with ``why`` (recorded).
        ``expect_from``: the version the caller saw the alias at (None: unset); when the
        alias points elsewhere now, nothing moves and :class:`AliasRace` says so.
        """
        cfg = cfg or settings()
        name, alias = check_name(name, f"{self.name} name"), check_alias_name(alias)
        version = _version_number(version)
        why = forced_why(force, why)
        self.load(name, version, cfg)  # says which versions exist when this one does not
        before = self.alias_target(name, alias, cfg=cfg)
        if expect_from is not ANY and before != expect_from:
            was = "unset" if expect_from is None else expect_from
            raise AliasRace(
                f"{self.name} {name}@{alias} moved from {was} to {before} while this move was checked "
                f"(another notebook promoting at once?): nothing changed"
            )
        if before == version and not why:
            return None  # with a reason it is recorded anyway: someone vouches for a move made elsewhere
        if before is not None and alias in cfg.protected_aliases and not (promotion or why):
            raise AliasProtected(
                f"{self.name} {name}@{alias} is protected: move it with %llm_promote {self.name} {name} {version} "
                f'--to {alias}, or record why with --force --why "..."'
            )
        run_id = (str(run_id).strip() or None) if run_id is not None else None
        move = AliasMove(
            self.name, name, alias, before, version, who(cfg), now_iso(), run_id, evidence or None, promotion, why
        )
        key, value = move_tag(move)
        c = client(cfg)
        with mlflow_errors(f"move alias {name}@{alias}", cfg):
            self._set_alias(c, name, alias, version)
            self._set_tag(c, name, key, value)
        events.emit(
            events.AliasMoved(
                registry=self.name,
                name=name,
                alias=alias,
                from_=before,
                to=version,
                user=move.user,
                run_id=run_id,
                promotion=promotion,
                forced_why=why,
            )
        )
        try:
            self.show_history(name, cfg=cfg)
        except Exception as e:  # the move is recorded; only its readable copy is behind
            return replace(move, note=f"the readable history on the MLflow page was not updated: {describe(e)}")
        return move

    @bounded_command
    def show_history(self, name: str, *, cfg: Settings | None = None) -> None:
        """Rewrite the readable alias history of ``name`` (description block, and tag when the
        kind has one) from the move tags, until what the store holds agrees with them."""
        cfg = cfg or settings()
        c = client(cfg)
        with mlflow_errors(f"write the alias history of {self.name} {name}", cfg):
            for _ in range(_REWRITE_ROUNDS):
                found = self._entity(c, name)
                if found is None:
                    raise self.not_found(f"unknown {self.name} {name!r}")
                tags, description = dict(found.tags or {}), found.description or ""
                history = read_history(self.name, name, tags)
                text = with_history(description, history)
                tag = history_tag_value(history) if self.history_in_tag and history.moves else None
                if text == description and (tag is None or tags.get(HISTORY_TAG) == tag):
                    return
                if text != description:
                    self._set_description(c, name, text)
                if tag is not None and tags.get(HISTORY_TAG) != tag:
                    self._set_tag(c, name, HISTORY_TAG, tag)

    @bounded_command
    def history(self, name: str, alias: str | None = None, *, cfg: Settings | None = None) -> AliasHistory:
        """Every recorded alias move of ``name`` (oldest first), of ``alias`` only if given."""
        cfg = cfg or settings()
        name = check_name(name, f"{self.name} name")
        missing = self.not_found(f"unknown {self.name} {name!r}")
        with mlflow_errors(f"read {self.name} {name}", cfg, not_found=missing):
            tags = self._tags(client(cfg), name)
        if tags is None:
            raise missing
        return read_history(self.name, name, tags, alias)


def _version_number(version) -> int:
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise BadInput(f"version must be a whole number, got {version!r}") from None
    if version < 1:
        raise BadInput(f"version must be 1 or more, got {version}")
    return version
