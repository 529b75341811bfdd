"""``%llm_engines``: the engines this kernel holds; stop one; read one's log."""

from __future__ import annotations

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.generation.engine_list import engine_log, list_engines, stop_engine
from ..core.options import check
from ..errors import BadInput
from .args import Note, parse_line
from .edge import user_errors


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
        args = parse_line(self.llm_engines, line)
        if args.stop and args.log:
            raise BadInput("give --stop NAME or --log NAME, not both")
        if args.stop:
            return Note(stop_engine(args.stop))
        if args.log:
            return engine_log(args.log, **check(lines=args.lines))
        return list_engines()
