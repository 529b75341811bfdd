"""The user's redaction hook: ``%config LlmopsMagics.redact_text = 'module:function'``.

Production text may hold personal data. The hook (``str -> str``) runs on every request
and response read from a trace, a dataset or an earlier run before anything is logged,
shown, stored or sent to a model: a case never exists in unredacted form.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ...errors import ConfigError

Redactor = Callable[[str], str]


def _identity(text: str) -> str:
    return text


def load(spec: str) -> Redactor:
    """The function ``spec`` names (``'package.module:function'``), or the identity for ''."""
    if not spec:
        return _identity
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ConfigError(f"redact_text {spec!r} is not 'module:function' (e.g. 'myapp.privacy:scrub')")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"redact_text {spec!r} cannot be loaded ({type(e).__name__}: {e}): check the name") from None
    if not callable(fn):
        raise ConfigError(f"redact_text {spec!r} is not a function")

    def redact(text: str) -> str:
        out = fn(text)
        if not isinstance(out, str):
            raise ConfigError(f"redact_text {spec!r} returned {type(out).__name__}, not text")
        return out

    return redact


def messages(redact: Redactor, msgs) -> tuple[dict, ...]:
    """``msgs`` with every content passed through ``redact``."""
    return tuple({**m, "content": redact(m["content"])} for m in msgs)
