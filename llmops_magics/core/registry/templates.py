"""Prompt templates as written in a cell: text or chat messages, their variables, their digest.

Plain Python, no registry call: a template is checked here before anything is sent to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import re

from ...errors import BadInput

# Same rule as MLflow's PROMPT_TEMPLATE_VARIABLE_PATTERN, so both agree on the variables.
VARIABLE_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")
ROLES = ("system", "user", "assistant")


def template_digest(template) -> str:
    """sha256 of a template; chat templates as canonical JSON."""
    if isinstance(template, str):
        data = template
    else:
        data = json.dumps(template, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def parse_template(body) -> str | list:
    """A cell body as a text template, or chat messages when it is a JSON/YAML list of them."""
    if isinstance(body, (list, tuple)):
        return _check_messages(list(body))
    if not isinstance(body, str):
        raise BadInput(f"a prompt template is text or a list of messages, got {type(body).__name__}")
    text = body.strip()
    if not text:
        raise BadInput("the prompt is empty: write the template below the %%llm_prompt line")
    if text.startswith("[") or text.startswith("- "):
        parsed = _parse_list(text)
        if isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed):
            return _check_messages(parsed)
    return text


def _parse_list(text: str):
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # deferred: only chat cells written as YAML need it

        return yaml.safe_load(text)
    except Exception:  # not YAML either: it is a text template that starts with '[' or '- '
        return None


def _check_messages(messages: list) -> list:
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            keys = sorted(m) if isinstance(m, dict) else type(m).__name__
            raise BadInput(f"chat message {i + 1} must have exactly 'role' and 'content', got {keys}")
        if m["role"] not in ROLES:
            raise BadInput(f"chat message {i + 1} has role {m['role']!r}: use one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise BadInput(f"chat message {i + 1} content must be text")
        out.append({"role": m["role"], "content": m["content"]})
    if not out:
        raise BadInput("a chat prompt needs at least one message")
    return out


def normalize_response_format(value) -> dict | None:
    """A JSON schema dict from a dict, a JSON string or a pydantic model class."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise BadInput(
                f"--response-format is not JSON ({e.msg} at column {e.colno}): "
                "give a JSON schema or the name of a variable holding one"
            ) from None
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        value = value.model_json_schema()
    if not isinstance(value, dict):
        raise BadInput(f"--response-format must be a JSON schema object, got {type(value).__name__}")
    import jsonschema  # deferred: only prompts with a response format need it

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as e:
        raise BadInput(f"--response-format is not a valid JSON schema: {e.message}") from None
    return value


def template_variables(template) -> frozenset:
    """The ``{{var}}`` names a text or chat template uses."""
    text = template if isinstance(template, str) else "\n".join(m["content"] for m in template)
    return frozenset(VARIABLE_RE.findall(text))
