"""The one parse path of every magic: line -> words -> argparse -> one frozen command.

Each magic declares its options with ``magic_arguments`` (that parser is also its
``%magic?`` help and its section of docs/magics.md) and a frozen dataclass with a
``from_args`` classmethod. ``parse_command`` is the only way a magic reads its line,
so quoting and errors behave the same in every magic: any input gives a command or
exactly one ``UsageError`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from typing import Protocol, TypeVar

from IPython.core.error import UsageError

from ..errors import LlmopsError
from .edge import error_line

C = TypeVar("C", bound="Command")


class Command(Protocol):
    """A parsed magic line: a frozen dataclass built from the magic's argparse namespace."""

    @classmethod
    def from_args(cls: type[C], args: argparse.Namespace) -> C: ...


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def split_line(line: str) -> list[str]:
    """Words of a magic line as a POSIX shell reads them: ``--name 'my run'`` -> ``['--name', 'my run']``.

    IPython's ``parse_argstring`` splits without POSIX quoting, so quotes would reach
    core as part of the value (a run named ``'my run'``).
    """
    try:
        return shlex.split(line)
    except ValueError as e:  # "No closing quotation", "No escaped character"
        raise UsageError(f"cannot split the line: {e}; check the quotes") from None


def parse_line(magic, line: str) -> argparse.Namespace:
    """Parse a magic's line with shell quoting; any input parses or is one UsageError."""
    words = split_line(line)
    try:
        return magic.parser.parse_args(words)
    except UsageError as e:
        raise UsageError(_one_line(str(e))) from None
    except SystemExit:  # an argparse action that exits (help, version) prints and exits
        raise UsageError(_one_line(magic.parser.format_usage())) from None


def parse_command(magic, line: str, command: type[C]) -> C:
    """Turn a magic's line into its frozen command; every failure is one ``UsageError`` line.

    Parameters
    ----------
    magic : bound magic method
        Decorated with ``magic_arguments`` (its ``.parser`` reads the words).
    line : str
        The line as typed after the magic's name.
    command : type
        A frozen dataclass whose ``from_args`` checks the words' shape (which
        subcommand, which options go together) and raises ``UsageError`` otherwise.

    Returns
    -------
    The command. Option values stay as typed: core checks them (``core/options``).
    """
    args = parse_line(magic, line)
    try:
        return command.from_args(args)
    except UsageError as e:
        raise UsageError(_one_line(str(e))) from None
    except LlmopsError as e:  # a helper that reads an option's text (NAME=VALUE, JSON)
        raise UsageError(_one_line(error_line(e))) from None


def as_kwargs(command, *leave_out: str) -> dict:
    """A command's fields as keyword arguments of the core function they are named after."""
    return {f.name: getattr(command, f.name) for f in dataclasses.fields(command) if f.name not in leave_out}
