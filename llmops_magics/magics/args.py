"""Argument lines that never end in a traceback: any input parses or is one UsageError."""

from __future__ import annotations

import re
import shlex

from IPython.core.error import UsageError


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_line(magic, line: str):
    """Parse a magic's line with shell quoting; any input parses or is one UsageError.

    ``parse_argstring`` splits without POSIX quoting, so ``-m 'shorter answers'`` would
    keep its quotes; shlex in POSIX mode gives what a user means.
    """
    try:
        return magic.parser.parse_args(shlex.split(line))
    except UsageError as e:
        raise UsageError(_one_line(str(e))) from None
    except ValueError as e:  # shlex: "No closing quotation"
        raise UsageError(f"cannot split the line: {e}; check the quotes") from None
    except SystemExit:  # argparse's -h/--help prints the help and exits
        raise UsageError(_one_line(magic.parser.format_usage())) from None


class Note:
    """A one-line result (``saved 2 pins to ...``) that reads well as text and HTML."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include=None, exclude=None):
        from ..core.display import esc

        return {"text/plain": self.text, "text/html": f"<div class='llmops-note'>{esc(self.text)}</div>"}
