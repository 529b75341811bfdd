"""``%llm_alias``: move an alias of a prompt or model (recorded), or show who moved it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.registry.aliases import alias_history, move_alias
from .args import parse_command
from .display import Note
from .edge import user_errors


@dataclass(frozen=True)
class AliasCommand:
    """One parsed ``%llm_alias`` line."""

    kind: Literal["move", "history"]
    target: Literal["prompt", "model"]
    name: str
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    force: bool = False
    why: str | None = None

    @classmethod
    def from_args(cls, args) -> AliasCommand:
        # --force without --why (and --why alone) is refused by core, one line, for both doors.
        if args.history:
            if args.version is not None or args.run is not None or args.force:
                raise UsageError("--history takes KIND NAME [ALIAS], e.g. %llm_alias --history prompt summarize")
            return cls("history", args.kind, args.name, args.alias)
        if args.alias is None or args.version is None:
            raise UsageError(f"give ALIAS and VERSION, e.g. %llm_alias {args.kind} {args.name} production 4")
        return cls("move", args.kind, args.name, args.alias, args.version, args.run, args.force, args.why)


@magics_class
class AliasMagics(Magics):
    """``%llm_alias prompt summarize production 4`` and ``%llm_alias --history prompt summarize``."""

    @magic_arguments()
    @argument("kind", choices=["prompt", "model"], help="prompt or model.")
    @argument("name", help="Prompt or model name.")
    @argument("alias", nargs="?", default=None, help="Alias to move (e.g. production).")
    @argument("version", nargs="?", default=None, help="Version the alias points to after the move.")
    @argument("--history", action="store_true", help="Show who moved which alias, when, from and to.")
    @argument("--run", default=None, help="The MLflow run that justifies the move (shown in the history).")
    @argument("--force", action="store_true", help="Move a protected alias without a promotion (needs --why).")
    @argument("--why", default=None, help="The reason for --force, recorded in the alias history.")
    @line_magic
    @user_errors
    def llm_alias(self, line):
        """Move an alias (recorded with who and when) or show the alias history."""
        cmd = parse_command(self.llm_alias, line, AliasCommand)
        if cmd.kind == "history":
            return alias_history(cmd.target, cmd.name, cmd.alias)
        moved = move_alias(
            cmd.target, cmd.name, cmd.alias, cmd.version, run_id=cmd.run_id, force=cmd.force, why=cmd.why
        )
        if moved is None:
            return Note(f"{cmd.target} {cmd.name}: {cmd.alias} already points to {cmd.version}; nothing moved")
        return moved
