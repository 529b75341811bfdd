"""Prompt versions in the MLflow Prompt Registry: register, resolve, render.

``register_prompt`` adds a version only when the template (or its response format)
differs from the latest one, so re-running a notebook cell does not pile up identical
versions. ``resolve_prompt`` looks at the pins first: a pinned name gives its pinned
version without a registry call.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field, replace

from ...config import Settings, settings
from ...errors import BadInput, PromptNotFound
from .. import events
from ..display import esc
from ..tracking import MlflowUnavailable, bounded_command, client, mlflow_errors
from .common import short
from .refs import Ref, check_name, parse_ref

# Same rule as MLflow's PROMPT_TEMPLATE_VARIABLE_PATTERN, so both agree on the variables.
VARIABLE_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\s*\}\}")
ROLES = ("system", "user", "assistant")

_cache_lock = threading.Lock()
_versions: dict[tuple[str, str, int], PromptRef] = {}  # versions are immutable: cache them


@dataclass(frozen=True)
class PromptRef:
    """One immutable prompt version.

    Attributes
    ----------
    template : str or list of dict
        Text with ``{{var}}`` placeholders, or chat messages ``[{"role", "content"}, ...]``.
    digest : str
        sha256 of the template (canonical JSON for chat prompts).
    response_format : dict or None
        JSON schema the output must satisfy, when the prompt declares one.
    """

    name: str
    version: int
    template: object
    digest: str
    response_format: dict | None = None
    variables: frozenset = frozenset()
    message: str = ""
    aliases: tuple = field(default=(), compare=False)
    # Where this version came from when not the registry: "pin" or "lockfile".
    via: str = field(default="", compare=False)

    def __hash__(self):  # template / response_format may be lists and dicts
        return hash((self.name, self.version, self.digest))

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"

    @property
    def is_chat(self) -> bool:
        return isinstance(self.template, list)

    def render(self, variables: dict | None = None) -> tuple[dict, ...]:
        """Chat messages with every ``{{var}}`` filled in.

        Raises
        ------
        BadInput
            Naming the variables that were not given.
        """
        variables = dict(variables or {})
        missing = sorted(self.variables - set(variables))
        if missing:
            given = ", ".join(sorted(variables)) or "none"
            raise BadInput(
                f"prompt {self.label} needs variable(s) {', '.join(missing)} (given: {given}): "
                f"pass them with --var NAME=VALUE"
            )

        def fill(text: str) -> str:
            return VARIABLE_RE.sub(lambda m: str(variables[m.group(1)]), text)

        if self.is_chat:
            return tuple({"role": m["role"], "content": fill(m["content"])} for m in self.template)
        return ({"role": "user", "content": fill(self.template)},)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class PromptRegistration:
    """What ``%%llm_prompt`` did: a new version, or none because nothing changed."""

    prompt: PromptRef
    created: bool
    alias: str | None = None

    @property
    def message(self) -> str:
        if not self.created:
            text = f"unchanged: still {self.prompt.label}"
        else:
            text = f"registered {self.prompt.label} (digest {short(self.prompt.digest)})"
        if self.alias:
            text += f"; {self.alias} -> {self.prompt.version}"
        return text

    def __str__(self) -> str:
        return self.message

    def _repr_mimebundle_(self, include=None, exclude=None):
        vars_ = ", ".join(sorted(self.prompt.variables)) or "none"
        text = f"{self.message}\nvariables: {vars_}"
        html = (
            f"<div class='llmops-prompt'><b>{esc(self.message)}</b>"
            f"<div style='opacity:.7;font-size:85%'>variables: {esc(vars_)}</div></div>"
        )
        return {"text/plain": text, "text/html": html}


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
        import yaml

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
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as e:
        raise BadInput(f"--response-format is not a valid JSON schema: {e.message}") from None
    return value


def _to_ref(pv) -> PromptRef:
    template = pv.template
    return PromptRef(
        name=pv.name,
        version=int(pv.version),
        template=template,
        digest=template_digest(template),
        response_format=pv.response_format or None,
        variables=frozenset(
            VARIABLE_RE.findall(template if isinstance(template, str) else "\n".join(m["content"] for m in template))
        ),
        message=pv.commit_message or "",
        aliases=tuple(getattr(pv, "aliases", None) or ()),
    )


def _uri(cfg: Settings) -> str:
    return cfg.resolved_tracking_uri


@bounded_command
def list_prompts(cfg: Settings | None = None) -> list[str]:
    """Names of the registered prompts."""
    cfg = cfg or settings()
    with mlflow_errors("list prompts", cfg):
        return sorted(p.name for p in client(cfg).search_prompts(max_results=1000))


def _unknown_prompt(name: str, cfg: Settings) -> PromptNotFound:
    names = list_prompts(cfg)
    known = f"registered prompts: {', '.join(names[:20])}" if names else "no prompts are registered yet"
    return PromptNotFound(f"unknown prompt {name!r} ({known}): register it with %%llm_prompt {name}")


@bounded_command
def load_version(name: str, version: int, cfg: Settings | None = None) -> PromptRef:
    """One prompt version from the registry (cached: versions never change)."""
    cfg = cfg or settings()
    key = (_uri(cfg), name, int(version))
    with _cache_lock:
        if key in _versions:
            return _versions[key]
    c = client(cfg)
    with mlflow_errors(f"read prompt {name}/{version}", cfg):
        pv = _missing_as_none(lambda: c.get_prompt_version(name, int(version)))
        if pv is None:
            if c.get_prompt(name) is None:
                raise _unknown_prompt(name, cfg)
            versions = _version_numbers(name, cfg)
            raise PromptNotFound(f"prompt {name} has no version {version} (versions: {_ranges(versions)})")
    ref = _to_ref(pv)
    with _cache_lock:
        _versions[key] = ref
    return ref


def _missing_as_none(call):
    try:
        return call()
    except Exception as e:
        if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        if "registered as a model" in str(e):
            raise BadInput("that name belongs to a registered model, not a prompt: pick another prompt name") from None
        raise


def _version_numbers(name: str, cfg: Settings) -> list[int]:
    with mlflow_errors(f"list versions of prompt {name}", cfg):
        return sorted(int(v.version) for v in client(cfg).search_prompt_versions(name, max_results=1000))


def _ranges(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[-10:])) if numbers else "none"


@bounded_command
def latest_version(name: str, cfg: Settings | None = None) -> PromptRef | None:
    """The newest version of ``name``, or None when no such prompt exists."""
    cfg = cfg or settings()
    c = client(cfg)
    with mlflow_errors(f"read prompt {name}", cfg):
        try:
            found = c.search_prompt_versions(name, max_results=1)
        except Exception as e:
            if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            if "registered as a model" in str(e):
                raise BadInput(f"{name!r} is a registered model, not a prompt: pick another prompt name") from None
            raise
    found = list(found)
    if not found:
        return None
    return load_version(name, int(found[0].version), cfg)


@bounded_command
def find_prompt(ref: Ref | str, cfg: Settings | None = None) -> PromptRef:
    """Resolve a ref in the registry (ignoring pins): version, alias or latest."""
    cfg = cfg or settings()
    ref = parse_ref(ref, "prompt") if isinstance(ref, str) else ref
    if ref.version is not None:
        return load_version(ref.name, ref.version, cfg)
    if ref.alias is not None:
        from .aliases import alias_history, alias_target

        version = alias_target("prompt", ref.name, ref.alias, cfg)
        if version is None:
            with mlflow_errors(f"read prompt {ref.name}", cfg):
                exists = client(cfg).get_prompt(ref.name) is not None
            if not exists:
                raise _unknown_prompt(ref.name, cfg)
            known = sorted(alias_history("prompt", ref.name, cfg=cfg).current())
            listed = f"aliases moved here: {', '.join(known)}" if known else "no aliases recorded"
            raise PromptNotFound(
                f"prompt {ref.name} has no alias {ref.alias!r} ({listed}): "
                f"set it with %llm_alias prompt {ref.name} {ref.alias} VERSION"
            )
        return load_version(ref.name, version, cfg)
    found = latest_version(ref.name, cfg)
    if found is None:
        raise _unknown_prompt(ref.name, cfg)
    return found


@bounded_command
def resolve_prompt(ref, cfg: Settings | None = None) -> PromptRef:
    """Resolve ``name``, ``name/3``, ``name@alias`` or ``prompts:/...`` to a version.

    A pinned name gives its pinned version (``name`` or the alias it was pinned from);
    an explicit version always wins; anything else asks the registry.
    """
    if isinstance(ref, PromptRef):
        return ref
    cfg = cfg or settings()
    parsed = parse_ref(ref, "prompt")
    from .pins import pinned

    pin = pinned("prompt", parsed, cfg)
    if pin is not None and pin.prompt is not None:
        return replace(pin.prompt, via="pin")
    try:
        return find_prompt(parsed, cfg)
    except MlflowUnavailable:
        from .pins import locked

        found = locked("prompt", parsed, cfg)
        if found is None:
            raise
        return replace(found, via="lockfile")


@bounded_command
def register_prompt(
    name: str,
    template,
    message: str | None = None,
    alias: str | None = None,
    response_format=None,
    *,
    cfg: Settings | None = None,
) -> PromptRegistration:
    """Register ``template`` as a new version of prompt ``name`` unless it is unchanged.

    The Python twin of ``%%llm_prompt NAME -m MSG [--alias A] [--response-format JSON]``.

    Parameters
    ----------
    name : str
        Prompt name (letters, digits, '-', '_', '.').
    template : str or list of dict
        Text with ``{{var}}`` placeholders, or chat messages (a list, or JSON/YAML text).
    message : str, optional
        Commit message of the new version.
    alias : str, optional
        Move this alias to the resulting version (recorded in the alias history).
    response_format : dict, str or pydantic model class, optional
        JSON schema the model's output must satisfy.

    Returns
    -------
    PromptRegistration
    """
    cfg = cfg or settings()
    name = check_name(name, "prompt name")
    template = parse_template(template)
    response_format = normalize_response_format(response_format)
    if alias is not None:
        from .refs import check_alias_name

        check_alias_name(alias)
    latest = latest_version(name, cfg)
    created = not (latest and latest.template == template and (latest.response_format or None) == response_format)
    prompt = latest
    if created:
        c = client(cfg)
        digest = template_digest(template)
        with mlflow_errors(f"register prompt {name}", cfg):
            if latest is None and c.get_prompt(name) is None:
                c.create_prompt(name, description=message)
            pv = c.create_prompt_version(
                name, template, description=message, tags={"llmops.digest": digest}, response_format=response_format
            )
        prompt = load_version(name, int(pv.version), cfg)
        events.emit(events.PromptRegistered(name=name, version=prompt.version, digest=prompt.digest))
    moved = None
    if alias is not None:
        from .aliases import move_alias

        move_alias("prompt", name, alias, prompt.version, cfg=cfg)
        moved = alias
    return PromptRegistration(prompt, created, moved)


def prompt_requests(
    template: PromptRef, variables: dict | None, inputs=None, each_line: bool = False, system: str | None = None
) -> tuple[list[str], list[tuple[dict, ...]]]:
    """Chat messages for each generation under a registered prompt.

    ``variables`` fill the template; each input (the cell body, or each line of it with
    ``each_line``) fills the one variable left unset. Returns (the user text of each
    request, the message tuples).
    """
    variables = dict(variables or {})
    if isinstance(inputs, str):
        inputs = (
            [line.strip() for line in inputs.splitlines() if line.strip()]
            if each_line
            else ([inputs.strip()] if inputs.strip() else [])
        )
    inputs = list(inputs or [])
    free = sorted(template.variables - set(variables))
    if inputs and len(free) != 1:
        if not free:
            raise BadInput(
                f"prompt {template.label} has no variable left for the cell body (all set by --var): "
                "leave the cell empty or drop one --var"
            )
        raise BadInput(
            f"prompt {template.label} leaves {', '.join(free)} unset: give all but one with "
            f"--var NAME=VALUE and the cell body fills the last"
        )
    fills = [{**variables, free[0]: text} for text in inputs] if inputs else [variables]
    message_sets = []
    for values in fills:
        messages = template.render(values)
        if system:
            if any(m["role"] == "system" for m in messages):
                raise BadInput(f"prompt {template.label} has its own system message: drop --system")
            messages = ({"role": "system", "content": system},) + messages
        message_sets.append(messages)
    shown = [
        next((m["content"] for m in reversed(ms) if m["role"] == "user"), ms[-1]["content"]) for ms in message_sets
    ]
    return shown, message_sets


def parse_variables(items) -> dict:
    """``["text=hello", "style=terse"]`` (``--var`` values) -> dict."""
    out = {}
    for item in items or []:
        # %%llm splits its line without shell quoting: 'k=v w' and k='v w' keep their quotes.
        key, sep, value = _unquote(str(item)).partition("=")
        value = _unquote(value)
        if not sep or not VARIABLE_RE.fullmatch("{{" + key.strip() + "}}"):
            raise BadInput(f"--var {item!r} is not NAME=VALUE (e.g. --var text='Paris is big')")
        out[key.strip()] = value
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
