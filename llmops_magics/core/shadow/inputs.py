"""The inputs of a shadow comparison and the cases built from them.

Inputs come as cell text (one per line, or JSON lines), a list, or a pandas
DataFrame/Series; a case is one input turned into the messages both sides receive.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from ...errors import BadInput


@dataclass(frozen=True)
class Case:
    """One input: its position in the given inputs and the messages sent to both sides.

    ``candidate_messages`` is set only when the candidate renders the input through a
    prompt version of its own (``candidate_prompt``) and the result differs from the
    primary's; otherwise both sides receive ``messages``.
    """

    id: int
    input: Any
    messages: tuple[dict, ...]
    candidate_messages: tuple[dict, ...] | None = None

    def messages_for(self, role: str) -> tuple[dict, ...]:
        """The messages the side named ``role`` (``primary`` or ``candidate``) receives."""
        if role == "candidate" and self.candidate_messages is not None:
            return self.candidate_messages
        return self.messages

    @property
    def request_text(self) -> str:
        return _last_user_text(self.messages)

    @property
    def candidate_request_text(self) -> str:
        """The candidate's request text (the primary's when both sides share one)."""
        return _last_user_text(self.messages_for("candidate"))


def _last_user_text(messages) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else messages[-1]["content"]


def parse_inputs(inputs) -> list:
    """Cell text (one input per line, or JSON lines), a list, or a pandas DataFrame/Series."""
    if inputs is None:
        items: list = []
    elif isinstance(inputs, str):
        items = []
        for lineno, line in enumerate(inputs.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    items.append(json.loads(line))
                except ValueError as e:
                    raise BadInput(
                        f"input line {lineno} looks like JSON but does not parse ({e.msg}): fix it or give plain text"
                    ) from None
            else:
                items.append(line)
    elif hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # DataFrame
        items = inputs.to_dict("records")
    elif hasattr(inputs, "tolist") and hasattr(inputs, "index"):  # Series
        items = inputs.tolist()
    elif isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        raise BadInput(f"inputs must be text, a list, or a pandas DataFrame/Series, not {type(inputs).__name__}")
    if not items:
        raise BadInput(
            "no inputs: write one input per line below %%shadow, or pass --inputs VAR "
            "(a list or a pandas DataFrame/Series)"
        )
    for i, item in enumerate(items):
        if not isinstance(item, (str, dict)):
            raise BadInput(f"input row {i} is a {type(item).__name__}: give text or a dict of template variables")
    return items


def sample_indices(total: int, n: int | None, seed: int) -> list[int]:
    """Reproducible sample of ``n`` of ``total`` case indices, in input order."""
    if n is None or n >= total:
        return list(range(total))
    if n < 1:
        raise BadInput(f"--n must be at least 1, got {n}")
    return sorted(random.Random(seed).sample(range(total), n))


def build_cases(
    items: list, indices: list[int], prompt=None, system: str | None = None, candidate_prompt=None
) -> list[Case]:
    """Turn inputs into messages: through the prompt template, or as user messages.

    With ``candidate_prompt`` (another version of the prompt), each input also fills the
    candidate's template; a variable either template needs and the input lacks fails here.
    """
    cases = []
    for i in indices:
        item = items[i]
        messages = _messages(item, i, prompt, system)
        theirs = None
        if candidate_prompt is not None:
            theirs = tuple(candidate_prompt.render(_variables(item, i, candidate_prompt)))
        cases.append(Case(i, item, messages, theirs if theirs != messages else None))
    return cases


def _messages(item, row: int, prompt, system: str | None) -> tuple[dict, ...]:
    if isinstance(item, dict) and "messages" in item and prompt is None:
        return tuple({"role": m["role"], "content": str(m["content"])} for m in item["messages"])
    if prompt is not None:
        return tuple(prompt.render(_variables(item, row, prompt)))
    return (({"role": "system", "content": system},) if system else ()) + (
        {"role": "user", "content": _plain_text(item, row)},
    )


def candidate_prompt_column(rows: list[dict], cases) -> list[dict]:
    """``rows`` with a ``candidate_prompt`` column (the candidate's request text, and its
    whole request as ``candidate_messages``) when some case's two requests differ; as
    they are otherwise, so a comparison of one prompt keeps today's columns."""
    by_id = {c.id: c for c in cases}
    if not any(c.candidate_messages is not None for c in cases):
        return rows
    out = []
    for row in rows:
        case = by_id[row["id"]]
        out.append(
            {
                **row,
                "candidate_prompt": case.candidate_request_text,
                "candidate_messages": json.dumps(list(case.messages_for("candidate"))),
            }
        )
    return out


def _variables(item, row: int, prompt) -> dict:
    needed = sorted(prompt.variables)
    if isinstance(item, str):
        if len(needed) == 1:
            return {needed[0]: item}
        if not needed:
            return {}
        raise BadInput(
            f"prompt {prompt.name} needs variables {', '.join(needed)} but input row {row} is plain text: "
            "give JSON lines or a DataFrame with those columns"
        )
    missing = [v for v in needed if v not in item]
    if missing:
        raise BadInput(
            f"template variable {missing[0]!r} of prompt {prompt.name} is missing from the inputs "
            f"(first at row {row}: {_preview(item)}): add it as a column or JSON key"
        )
    return {k: item[k] for k in needed}


def _plain_text(item, row: int) -> str:
    if isinstance(item, str):
        return item
    for key in ("prompt", "input", "text", "question"):
        if key in item:
            return str(item[key])
    raise BadInput(
        f"input row {row} ({_preview(item)}) has no prompt, input, text or messages key: "
        "name a template with --prompt or add one of those keys"
    )


def _preview(item, width: int = 80) -> str:
    text = json.dumps(item, default=str) if isinstance(item, dict) else str(item)
    return text if len(text) <= width else text[: width - 1] + "…"
