"""Reading a chat request and its answer out of what a trace recorded.

Apps trace with MLflow's autologging (OpenAI, LangChain) or ``@mlflow.trace`` on their
own functions, so the root span's inputs and outputs come in a few shapes:

* request: an OpenAI-style ``messages`` list, a ``{"messages": [...]}`` or
  ``{"prompt": ...}`` mapping, or a single string argument (``"text"`` or
  ``{"question": "text"}``);
* response: an OpenAI-style chat completion, a string, or a ``{"content"|"text"|
  "answer": ...}`` mapping.

Anything else is not guessed at: the functions return None and the caller counts it.
"""

from __future__ import annotations

from collections.abc import Mapping

ROLES = ("system", "user", "assistant", "developer", "tool")
_ANSWER_KEYS = ("content", "text", "answer")


def _text(content) -> str | None:
    """Message content as text: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") in ("text", None)]
        if parts and all(isinstance(p, str) for p in parts) and len(parts) == len(content):
            return "".join(parts)
    return None


def _messages(value) -> tuple[dict, ...] | None:
    if not isinstance(value, list) or not value:
        return None
    out = []
    for m in value:
        if not isinstance(m, Mapping) or m.get("role") not in ROLES:
            return None
        text = _text(m.get("content"))
        if text is None:
            return None
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": text})
    return tuple(out) if any(m["role"] == "user" for m in out) else None


def chat_request(inputs) -> tuple[dict, ...] | None:
    """The messages of the request a root span's ``inputs`` describe, or None."""
    if isinstance(inputs, str):
        return ({"role": "user", "content": inputs},) if inputs.strip() else None
    found = _messages(inputs)
    if found is not None:
        return found
    if not isinstance(inputs, Mapping):
        return None
    if "messages" in inputs:
        return _messages(inputs["messages"])
    if isinstance(inputs.get("prompt"), str):
        return ({"role": "user", "content": inputs["prompt"]},)
    # A function of one text argument: ``answer(question)`` records {"question": ...}.
    if len(inputs) == 1:
        (value,) = inputs.values()
        if isinstance(value, str) and value.strip():
            return ({"role": "user", "content": value},)
    return None


def chat_response(outputs) -> str | None:
    """The answer text a root span's ``outputs`` describe, or None."""
    if isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, Mapping):
        return None
    choices = outputs.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        message = choices[0].get("message")
        if isinstance(message, Mapping):
            return _text(message.get("content"))
        return choices[0].get("text") if isinstance(choices[0].get("text"), str) else None
    for key in _ANSWER_KEYS:
        if key in outputs:
            return _text(outputs[key])
    return None


def usage(outputs) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of an OpenAI-style response; zeros when absent."""
    u = outputs.get("usage") if isinstance(outputs, Mapping) else None
    if not isinstance(u, Mapping):
        return 0, 0
    return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)


def sampling(inputs) -> dict:
    """The sampling an OpenAI-style request asked for (temperature, max_tokens, model)."""
    if not isinstance(inputs, Mapping):
        return {}
    out = {k: inputs[k] for k in ("temperature", "top_p", "seed", "model") if inputs.get(k) is not None}
    tokens = inputs.get("max_tokens") or inputs.get("max_completion_tokens")
    if tokens is not None:
        out["max_tokens"] = tokens
    return out
