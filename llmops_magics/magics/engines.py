"""``%llm_engines``: the engines this kernel holds; stop one; read one's log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.generation.engine_list import engine_log, list_engines, stop_engine
from ..core.options import check
from .args import parse_command
from .display import Note
from .edge import user_errors


@dataclass(frozen=True)
class EnginesCommand:
    """One parsed ``%llm_engines`` line."""

    kind: Literal["list", "stop", "log"]
    name: str | None = None
    lines: int | str = "200"  # as typed: checked by core/options

    @classmethod
    def from_args(cls, args) -> EnginesCommand:
        if args.stop and args.log:
            raise UsageError("give --stop NAME or --log NAME, not both")
        if args.stop:
            return cls("stop", args.stop)
        if args.log:
            return cls("log", args.log, args.lines)
        return cls("list")


@magics_class
class EngineMagics(Magics):
    """``%llm_engines`` lists engines (model, backend, dtype, device, memory, uptime, log)."""

    @magic_arguments()
    @argument("--stop", metavar="NAME", default=None, help="Stop this engine and free its memory.")
    @argument("--log", metavar="NAME", default=None, help="Show the last lines of this engine's own log.")
    @argument("--lines", default="200", help="How many log lines --log shows.")
    @line_magic
    @user_errors
    def llm_engines(self, line):
        """List the loaded engines, or stop one, or show one's log."""
        cmd = parse_command(self.llm_engines, line, EnginesCommand)
        if cmd.kind == "stop":
            return Note(stop_engine(cmd.name))
        if cmd.kind == "log":
            return engine_log(cmd.name, **check(lines=cmd.lines))
        return list_engines()
