"""Secrets out of lineage before anything is written: spool, MLflow, exports.

Two sources of secrets: well-known token shapes (API keys, bearer tokens,
``password=...``) and the values of environment variables whose names look secret.
Environment values are never recorded otherwise; they are only used here, to be
searched for and removed.
"""

from __future__ import annotations

import os
import re
import time

from ...backends.uris import public_uri

REDACTED = "[REDACTED]"

# One alternation so a plain cell costs a single regex pass.
_TOKEN = re.compile(
    r"(?P<openai>\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,})"
    r"|(?P<hf>\bhf_[A-Za-z0-9]{20,})"
    r"|(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{22,}))"
    r"|(?P<slack>\bxox[abposr]-[A-Za-z0-9\-]{10,})"
    r"|(?P<bearer>(?<=Bearer )[A-Za-z0-9._~+/=\-]{8,})"
    r"|(?P<assign>(?<![A-Za-z0-9_])(?:password|passwd|pwd|secret|api_key|apikey|token|access_key)"
    r"[\"']?\s*[=:]\s*)(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;)}\]'\"]+)",
    re.IGNORECASE,
)
# PWD/OLDPWD are the working directory, not a password.
_SECRET_NAME = re.compile(r"^(?!(?:OLD)?PWD$).*(?:KEY|TOKEN|SECRET|PASSW|PWD|CREDENTIAL|AUTH|PRIVATE|COOKIE)", re.I)
# Short values ("1", "true") would blank out ordinary text; real secrets are longer.
_MIN_ENV_SECRET = 6


_names_cache: dict = {"size": -1, "at": 0.0, "names": ()}
_RESCAN_S = 5.0


def _secret_names() -> tuple:
    # Scanning every name costs ~0.2 ms on a busy machine, most of a plain cell's budget:
    # rescan when a variable is added or removed, and every few seconds anyway.
    size, now = len(os.environ), time.monotonic()
    if size != _names_cache["size"] or now - _names_cache["at"] > _RESCAN_S:
        _names_cache.update(size=size, at=now, names=tuple(k for k in os.environ if _SECRET_NAME.search(k)))
    return _names_cache["names"]


def secret_env_values(environ=None) -> list[str]:
    """Values of environment variables whose names look secret, longest first.

    Values are read afresh on every call (a secret set during the session counts).
    """
    if environ is None:
        get = os.environ.get
        values = {v for v in map(get, _secret_names()) if v and len(v) >= _MIN_ENV_SECRET}
    else:
        values = {v for k, v in environ.items() if len(v) >= _MIN_ENV_SECRET and _SECRET_NAME.search(k)}
    return sorted(values, key=len, reverse=True)


def _sub(match: re.Match) -> str:
    if match.group("assign"):
        value = match.group("value")
        quote = value[0] if value[:1] in "\"'" else ""
        return f"{match.group('assign')}{quote}{REDACTED}{quote}"
    return REDACTED


def redact(text: str, env_secrets: list[str] | None = None) -> str:
    """``text`` with every secret replaced by ``[REDACTED]``.

    Parameters
    ----------
    text : str
        Any text: a cell's source, an error message, an event field.
    env_secrets : list of str, optional
        Values to remove wherever they appear; default: :func:`secret_env_values`.
    """
    if not text:
        return text
    for value in secret_env_values() if env_secrets is None else env_secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return _TOKEN.sub(_sub, _URI_CREDENTIALS.sub("//" + REDACTED + "@", text))


# ``user:password@`` inside any URI in free text (``ray://alice:pw@head:10001`` in a cell).
_URI_CREDENTIALS = re.compile(r"//[^/@\s:'\"]+:[^/@\s'\"]+@")


def redact_obj(obj, env_secrets: list[str] | None = None):
    """Redact every string inside dicts, lists and tuples (keys included)."""
    if env_secrets is None:
        env_secrets = secret_env_values()
    if isinstance(obj, str):
        return redact(obj, env_secrets)
    if isinstance(obj, dict):
        return {redact(str(k), env_secrets): redact_obj(v, env_secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, env_secrets) for v in obj]
    return obj


def first_line(e: BaseException) -> str:
    """The first line of an error's message, cut at 300 characters, URI passwords removed."""
    text = str(e).strip()
    return public_uri(text.splitlines()[0][:300]) if text else ""


def describe(e: BaseException) -> str:
    """``TypeName: first line``: how an outside error is told in one line."""
    return f"{type(e).__name__}: {first_line(e)}" if first_line(e) else type(e).__name__
