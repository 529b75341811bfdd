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


def user_errors(method):
    """Decorate a magic so an ``LlmopsError`` shows as one line, not a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except LlmopsError as e:
            if not short_errors_enabled(self.shell):
                raise
            message = e.as_flag() if isinstance(e, OptionError) else str(e)
            raise UsageError(f"{type(e).__name__}: {message}") from None

    return wrapper
