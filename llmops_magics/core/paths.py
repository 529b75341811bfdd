"""Paths as people share them: no machine's absolute paths in MLflow or in a cell's output.

A run, a lineage record or a saved notebook travels to other people and other machines;
``/home/alice/.cache/llmops-magics/models/...`` says nothing to them and tells them a
user name. Paths are shown relative to the notebook's folder when under it, else under a
named root: ``<home>`` (the llmops home), ``<venv>`` (the Python environment), ``~``.
Absolute paths stay in the engine log only, where a person debugging this machine needs
them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..config import Settings, settings


def _roots(cfg: Settings | None, base: Path | None) -> list[tuple[str, str]]:
    """(absolute prefix, shown as) pairs, longest prefix first so the most specific wins."""
    cfg = cfg or settings()
    pairs = {}
    for root, shown in (
        (Path.home(), "~"),
        (Path(sys.prefix), "<venv>"),
        (cfg.home, "<home>"),
        (base if base is not None else Path.cwd(), "."),
    ):
        try:
            text = str(Path(root).expanduser().resolve())
        except OSError:
            continue
        if text != os.sep:  # "/" would turn every path into a relative one
            pairs[text] = shown
    return sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)


def shown_path(path, *, base: Path | None = None, cfg: Settings | None = None) -> str:
    """``path`` as it may be shared: relative to ``base`` (default: the working directory,
    which is the notebook's folder in a kernel), else ``<home>/``, ``<venv>/`` or ``~/``.

    A path under none of them (``/data/models/x``) is shown as it is: it names shared
    storage, not this user's machine. Non-paths (``chat@champion``, URIs) pass unchanged.

    >>> shown_path(Path.home() / "notes")
    '~/notes'
    """
    text = str(path)
    if not text.startswith(os.sep) and not text.startswith("~"):
        return text
    try:
        full = str(Path(text).expanduser().resolve())
    except OSError:
        return text
    for prefix, shown in _roots(cfg, base):
        if full == prefix:
            return shown
        if full.startswith(prefix + os.sep):
            rest = full[len(prefix) + 1 :]
            return rest if shown == "." else f"{shown}/{rest}"
    return text


def shown_text(text: str, *, base: Path | None = None, cfg: Settings | None = None) -> str:
    """``text`` (a warning, an error line) with every absolute path under a known root
    replaced as :func:`shown_path` would show it."""
    if not text or os.sep not in text:
        return text
    for prefix, shown in _roots(cfg, base):
        text = text.replace(prefix + os.sep, "" if shown == "." else shown + "/")
    return text
