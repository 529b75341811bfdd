"""``%lineage``: this session's cell records, one record, OpenLineage export, sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.lineage.views import export_openlineage, lineage_cell, lineage_sync, lineage_table
from .args import parse_command
from .edge import user_errors

_USAGE = "use %lineage, %lineage cell N, %lineage export --openlineage PATH or %lineage sync"


@dataclass(frozen=True)
class LineageCommand:
    """A parsed ``%lineage`` line."""

    kind: Literal["table", "cell", "export", "sync"]
    key: str | None = None
    path: str | None = None
    all_sessions: bool = False

    @classmethod
    def from_args(cls, args) -> LineageCommand:
        words = list(args.command)
        verb = words.pop(0) if words else "table"
        if verb == "cell" and len(words) == 1:
            return cls("cell", key=words[0])
        if verb == "export" and not words:
            if not args.openlineage:
                raise UsageError("%lineage export needs --openlineage PATH (a .jsonl file to write)")
            return cls("export", path=args.openlineage, all_sessions=args.all)
        if verb in ("table", "sync") and not words:
            return cls(verb)
        raise UsageError(f"cannot read %lineage {' '.join(args.command)!r}: {_USAGE}")


@magics_class
class LineageMagics(Magics):
    """Lineage of every executed cell (recorded by hooks installed at ``%load_ext``)."""

    @magic_arguments()
    @argument("command", nargs="*", help="(nothing) | cell N | export | sync")
    @argument("--openlineage", metavar="PATH", default=None, help="Write OpenLineage RunEvents (JSON Lines) to PATH.")
    @argument("--all", action="store_true", help="Export every session in the home, not only this one.")
    @line_magic
    @user_errors
    def lineage(self, line):
        """Show this session's lineage, one record, export it, or ship it to MLflow now."""
        cmd = parse_command(self.lineage, line, LineageCommand)
        if cmd.kind == "cell":
            return lineage_cell(cmd.key)
        if cmd.kind == "export":
            return export_openlineage(cmd.path, all_sessions=cmd.all_sessions)
        if cmd.kind == "sync":
            return lineage_sync()
        return lineage_table()
