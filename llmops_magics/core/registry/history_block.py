"""The alias history where people look for it in the MLflow UI, rebuilt from the move tags.

The per-move tags (:mod:`.history`) are for code: one JSON value each, cut off on MLflow's
pages. What a person reads is one line per move, newest first, in two places:

* **the description** of the registered model / prompt, inside a block between
  :data:`BLOCK_START` and :data:`BLOCK_END` (markdown, which the model page renders). The
  user's own text before and after the block is kept byte for byte; the block is
  rebuilt whole on every move, so edits inside it do not last.
* **the tag** :data:`HISTORY_TAG` (prompts): MLflow 3.17's prompt page shows the prompt's
  tags but not its description; the chip shows the newest move (cut at 300 px by MLflow),
  its tooltip every line.

Both are derived from the tags alone: two processes moving aliases at once each rebuild
them from what the store holds, so the last one to write leaves every move in.
"""

from __future__ import annotations

import re

from .history import AliasHistory

BLOCK_START = "<!-- llmops:alias-history -->"
BLOCK_END = "<!-- /llmops:alias-history -->"
# Short enough (15 characters at most) that MLflow's tag chip shows the key whole and gives
# the rest of its 300 px to the newest move; the chip's tooltip holds every line.
HISTORY_TAG = "alias history"
# MLflow's SQL stores keep a description in a VARCHAR(5000): a longer one fails on Postgres.
MAX_DESCRIPTION = 5000
MAX_LINES = 20

# Markdown that would change what a user name or alias looks like (or inject HTML).
_MARKDOWN = re.compile(r"([\\`*_\[\]<#|])")


def history_lines(history: AliasHistory, limit: int = MAX_LINES) -> list[str]:
    """The readable lines, newest first; the last says how many older moves were left out."""
    newest = [m.line() for m in reversed(history.moves)]
    if len(newest) <= limit:
        return newest
    return newest[:limit] + [_older(history, len(newest) - limit)]


def history_tag_value(history: AliasHistory) -> str:
    """The value of :data:`HISTORY_TAG`: one line per move, newest first."""
    return "\n".join(history_lines(history))


def with_history(description: str | None, history: AliasHistory) -> str:
    """``description`` with its history block rebuilt from ``history``.

    The text outside the block is returned unchanged; a description without a block gets
    one appended after a blank line. Without moves there is no block.
    """
    description = description or ""
    before, after = _outside_block(description)
    if not history.moves:
        return before + after
    limit = MAX_LINES
    while True:
        text = before + _glue(before) + _block(history_lines(history, limit)) + after
        # Too long for MLflow's column: show fewer moves (the last line says how many more).
        if len(text) <= MAX_DESCRIPTION or limit <= 1:
            return text
        limit -= 1


def user_text(description: str | None) -> str:
    """The user's own part of a description: everything outside our block."""
    before, after = _outside_block(description or "")
    return before + after


def _glue(before: str) -> str:
    # One blank line between the user's text and the block, added once: it stays in
    # ``before`` on every later rebuild.
    if not before or before.endswith("\n\n"):
        return ""
    return "\n" if before.endswith("\n") else "\n\n"


def _block(lines: list[str]) -> str:
    items = "\n".join(f"- {_escape(line)}" for line in lines)
    title = (
        "**Alias history** (newest first, times in UTC; written by llmops-magics from the "
        "`llmops.alias_move.*` tags, edits inside this block are replaced)"
    )
    # Blank lines around each marker: renderers then read them as HTML comments (hidden),
    # never as part of the paragraph or the list next to them.
    return f"{BLOCK_START}\n\n{title}\n\n{items}\n\n{BLOCK_END}"


def _outside_block(description: str) -> tuple[str, str]:
    """(text before our block, text after it); (description, '') when there is none."""
    start = description.find(BLOCK_START)
    if start < 0:
        return description, ""
    end = description.find(BLOCK_END, start)
    # A block whose end marker was deleted by hand runs to the end of the description.
    after = "" if end < 0 else description[end + len(BLOCK_END) :]
    return description[:start], after


def _older(history: AliasHistory, n: int) -> str:
    return f"… {n} older move{'s' if n != 1 else ''}: %llm_alias --history {history.kind} {history.name}"


def _escape(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)
