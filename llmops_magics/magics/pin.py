"""``%llm_pin``: hold prompt and model versions, show drift, keep a lockfile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.registry import pins as core_pins
from .args import parse_command
from .display import Note
from .edge import user_errors


@dataclass(frozen=True)
class PinCommand:
    """One parsed ``%llm_pin`` line."""

    kind: Literal["show", "pin", "unpin", "check", "save", "load", "clear"]
    target: Literal["prompt", "model"] | None = None  # None: the ref is a prompts:/ or models:/ URI
    ref: str | None = None
    path: str | None = None

    @classmethod
    def from_args(cls, args) -> PinCommand:
        words = list(args.words)
        flags = [f for f in ("check", "save", "load", "clear", "unpin") if getattr(args, f) not in (None, False)]
        if len(flags) > 1:
            raise UsageError(f"choose one of --{', --'.join(flags)}")
        if flags and flags[0] != "unpin" and words:
            raise UsageError(f"--{flags[0]} takes no ref: %llm_pin --{flags[0]}")
        if flags and flags[0] in ("save", "load"):
            return cls(flags[0], path=getattr(args, flags[0]))
        if not words:
            return cls(flags[0] if flags else "show")
        target = words.pop(0) if words[0] in ("prompt", "model") else None
        if len(words) != 1:
            raise UsageError("give KIND REF, e.g. %llm_pin prompt summarize@production")
        return cls("unpin" if flags else "pin", target, words[0])


@magics_class
class PinMagics(Magics):
    """``%llm_pin [KIND REF] [--check | --save [PATH] | --load [PATH] | --unpin | --clear]``."""

    @magic_arguments()
    @argument("words", nargs="*", help="KIND REF, e.g. prompt summarize@production; none shows the pins.")
    @argument("--check", action="store_true", help="Error if a pinned alias moved or pinned files changed.")
    @argument("--save", nargs="?", const=core_pins.LOCKFILE, default=None, help="Write the lockfile.")
    @argument("--load", nargs="?", const=core_pins.LOCKFILE, default=None, help="Restore pins from the lockfile.")
    @argument("--unpin", action="store_true", help="Drop the pin of KIND REF.")
    @argument("--clear", action="store_true", help="Drop every pin.")
    @line_magic
    @user_errors
    def llm_pin(self, line):
        """Pin a version now, or show / check / save / load the pins."""
        cmd = parse_command(self.llm_pin, line, PinCommand)
        if cmd.kind == "pin":
            return core_pins.pin(cmd.target, cmd.ref)
        if cmd.kind == "unpin":
            return core_pins.unpin_ref(cmd.target, cmd.ref)
        if cmd.kind == "check":
            return core_pins.check_pins()
        if cmd.kind == "save":
            return Note(f"saved {len(core_pins.pins())} pin(s) to {core_pins.save_lock(cmd.path)}")
        if cmd.kind == "load":
            return core_pins.load_lock(cmd.path)
        if cmd.kind == "clear":
            return core_pins.clear_pins()
        return core_pins.pins()
