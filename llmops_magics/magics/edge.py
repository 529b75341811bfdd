"""The magic edge: typed core errors become one-line ``UsageError``s.

``%config LlmopsMagics.short_errors = False`` brings the full traceback back.
"""

from __future__ import annotations

import functools

from IPython.core.error import UsageError

from ..core.options import OptionError
from ..errors import LlmopsError


def short_errors_enabled(shell) -> bool:
    magics = shell.magics_manager.registry.get("LlmopsMagics") if shell else None
    return getattr(magics, "short_errors", True)


def error_line(e: LlmopsError) -> str:
    """``BadInput: ...`` (an option's error names the flag as typed: ``--max-tokens 0: ...``)."""
    message = e.as_flag() if isinstance(e, OptionError) else str(e)
    return f"{type(e).__name__}: {message}"


def user_errors(method):
    """Decorate a magic so an ``LlmopsError`` shows as one line, not a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except LlmopsError as e:
            if not short_errors_enabled(self.shell):
                raise
            raise UsageError(error_line(e)) from None

    return wrapper
