"""Refs to registered prompts and models: ``name``, ``name/3``, ``name@alias``, URIs.

One grammar for both kinds, the one MLflow uses in its URIs::

    [prompts:/ | models:/] NAME [ /VERSION | @ALIAS ]

``NAME@latest`` and a bare ``NAME`` both mean the latest version. A ref is parsed before
any registry call so a typo gets a one-line answer without a round trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import BadInput

KINDS = ("prompt", "model")
_SCHEMES = {"prompts:/": "prompt", "models:/": "model"}
# MLflow's prompt-name rule (alphanumerics, '-', '_', '.'); model names follow it here
# too so one ref reads the same whichever registry it points into.
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,255}")
ALIAS_RE = re.compile(r"[A-Za-z0-9_\-]{1,255}")
_REF_RE = re.compile(rf"(?P<name>{NAME_RE.pattern})(?:/(?P<version>[0-9]+|latest)|@(?P<alias>{ALIAS_RE.pattern}))?")
_EXAMPLE = "write NAME, NAME/VERSION or NAME@ALIAS (e.g. summarize/3, chat@champion)"


@dataclass(frozen=True)
class Ref:
    """A parsed ref; ``version`` and ``alias`` both None means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None
    kind: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias is None

    @property
    def selector(self) -> str:
        if self.version is not None:
            return f"/{self.version}"
        return f"@{self.alias}" if self.alias else ""

    @property
    def uri(self) -> str:
        scheme = {"prompt": "prompts:/", "model": "models:/"}.get(self.kind or "", "")
        return f"{scheme}{self}"

    def __str__(self) -> str:
        return f"{self.name}{self.selector}"


def parse_ref(text, kind: str | None = None) -> Ref:
    """Parse a prompt or model ref.

    Parameters
    ----------
    text : str
        ``summarize``, ``summarize/3``, ``summarize@production``, ``prompts:/summarize@production``,
        ``models:/chat/2``.
    kind : {"prompt", "model"}, optional
        The kind the caller needs; a URI of the other kind is refused.

    Returns
    -------
    Ref

    Raises
    ------
    BadInput
        When the text is not a ref (the message shows the accepted forms).
    """
    if kind is not None and kind not in KINDS:
        raise BadInput(f"unknown kind {kind!r}: choose prompt or model")
    if not isinstance(text, str):
        raise BadInput(f"a ref must be text, got {type(text).__name__}: {_EXAMPLE}")
    raw = text.strip()
    found_kind = None
    for scheme, scheme_kind in _SCHEMES.items():
        if raw.startswith(scheme):
            found_kind, raw = scheme_kind, raw[len(scheme) :]
            break
    if kind and found_kind and found_kind != kind:
        raise BadInput(f"{text.strip()!r} is a {found_kind} ref, but a {kind} ref is needed here")
    match = _REF_RE.fullmatch(raw)
    if not match or match["name"] in (".", ".."):
        raise BadInput(f"malformed ref {_show(text)}: {_EXAMPLE}")
    version = match["version"]
    alias = match["alias"]
    if version == "latest" or (alias or "").lower() == "latest":
        version = alias = None
    elif version is not None:
        version = int(version)
        if version < 1:
            raise BadInput(f"malformed ref {_show(text)}: versions start at 1")
    return Ref(match["name"], version, alias, kind or found_kind)


def check_alias_name(alias) -> str:
    """An alias name MLflow accepts, or BadInput saying why not."""
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise BadInput(f"bad alias {_show(alias)}: use letters, digits, '-' and '_' (e.g. production)")
    if alias.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", alias):
        raise BadInput(f"alias {alias!r} is reserved by MLflow: pick another name (e.g. production)")
    return alias


def check_name(name, what: str = "name") -> str:
    """A prompt/model name the registry accepts, or BadInput."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise BadInput(f"bad {what} {_show(name)}: use letters, digits, '-', '_' and '.' (e.g. summarize)")
    return name


def _show(value) -> str:
    # Keep messages on one line whatever the input holds.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
