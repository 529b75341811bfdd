"""Prompt versions in the MLflow Prompt Registry: register, find, render.

``register_prompt`` adds a version only when the template (or its response format)
differs from the latest one, so re-running a notebook cell does not pile up identical
versions. :data:`PROMPTS` is the prompt kind of the registry (see :mod:`.base`): the
MLflow calls behind prompt aliases and tags. Resolving a ref through the pins first is
:func:`.resolve.resolve_prompt`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ...config import Settings, settings
from ...errors import BadInput, PromptNotFound
from .. import events
from ..display import esc
from ..tracking import BoundedClient, bounded_command, client, is_not_found, mlflow_errors
from .base import RegistryKind
from .common import short
from .refs import Ref, check_alias_name, check_name, parse_ref
from .templates import VARIABLE_RE, normalize_response_format, parse_template, template_digest, template_variables

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


def _to_ref(pv) -> PromptRef:
    template = pv.template
    return PromptRef(
        name=pv.name,
        version=int(pv.version),
        template=template,
        digest=template_digest(template),
        response_format=pv.response_format or None,
        variables=template_variables(template),
        message=pv.commit_message or "",
        aliases=tuple(getattr(pv, "aliases", None) or ()),
    )


def _is_model(c, name: str) -> bool:
    """Whether ``name`` belongs to a registered model rather than a prompt.

    MLflow keeps a prompt as a registered model tagged ``mlflow.prompt.is_prompt`` = "true",
    and its client reads that mark: ``get_registered_model`` answers "not found" for a
    prompt (and ``get_prompt`` answers None for a model), so a name it finds is a model's.
    """
    try:
        c.get_registered_model(name)
    except Exception as e:
        if is_not_found(e):
            return False
        raise
    return True


def _prompt_call(c, name: str, call):
    """``call()``, or None when MLflow says the prompt (or the version) does not exist."""
    try:
        return call()
    except Exception as e:
        if is_not_found(e):
            return None
        if _is_model(c, name):
            raise BadInput(f"{name!r} is a registered model, not a prompt: pick another prompt name") from None
        raise


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
    key = (cfg.resolved_tracking_uri, name, int(version))
    with _cache_lock:
        if key in _versions:
            return _versions[key]
    c = client(cfg)
    with mlflow_errors(f"read prompt {name}/{version}", cfg):
        pv = _prompt_call(c, name, lambda: c.get_prompt_version(name, int(version)))
        if pv is None:
            if c.get_prompt(name) is None:
                raise _unknown_prompt(name, cfg)
            versions = _version_numbers(name, cfg)
            raise PromptNotFound(f"prompt {name} has no version {version} (versions: {_ranges(versions)})")
    ref = _to_ref(pv)
    with _cache_lock:
        _versions[key] = ref
    return ref


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
        found = _prompt_call(c, name, lambda: list(c.search_prompt_versions(name, max_results=1)))
    if not found:
        return None
    return load_version(name, int(found[0].version), cfg)


class PromptKind(RegistryKind):
    """Prompts: versions in MLflow's Prompt Registry, aliases and tags on the prompt."""

    name = "prompt"
    not_found = PromptNotFound
    # MLflow 3.17's prompt page shows the prompt's tags, not its description.
    history_in_tag = True

    def _version_by_alias(self, c, name: str, alias: str):
        return c.get_prompt_version_by_alias(name, alias)

    def _set_alias(self, c, name: str, alias: str, version: int) -> None:
        c.set_prompt_alias(name, alias, version)

    def _set_tag(self, c, name: str, key: str, value: str) -> None:
        c.set_prompt_tag(name, key, value)

    def _entity(self, c, name: str):
        return c.get_prompt(name)

    def _set_description(self, c, name: str, text: str) -> None:
        # MlflowClient refuses to update a prompt as a registered model and has no
        # update_prompt; the registry client underneath updates either (one REST call,
        # registered-models/update, which the server applies to prompts too).
        BoundedClient(c.raw._get_registry_client(), c._cfg).update_registered_model(name, description=text)

    def load(self, name: str, version: int, cfg: Settings) -> PromptRef:
        return load_version(name, version, cfg)

    def find(self, ref: Ref, cfg: Settings) -> PromptRef:
        return find_prompt(ref, cfg)

    def to_data(self, found: PromptRef) -> dict:
        return {**super().to_data(found), "variables": sorted(found.variables)}

    def from_data(self, data: dict) -> PromptRef:
        return PromptRef(
            **{**data, "variables": frozenset(data.get("variables") or ()), "aliases": tuple(data.get("aliases") or ())}
        )


PROMPTS = PromptKind()


@bounded_command
def find_prompt(ref: Ref | str, cfg: Settings | None = None) -> PromptRef:
    """Resolve a ref in the registry (ignoring pins): version, alias or latest."""
    cfg = cfg or settings()
    ref = parse_ref(ref, "prompt") if isinstance(ref, str) else ref
    if ref.version is not None:
        return load_version(ref.name, ref.version, cfg)
    if ref.alias is not None:
        version = PROMPTS.alias_target(ref.name, ref.alias, cfg=cfg)
        if version is None:
            raise _no_alias(ref, cfg)
        return load_version(ref.name, version, cfg)
    found = latest_version(ref.name, cfg)
    if found is None:
        raise _unknown_prompt(ref.name, cfg)
    return found


def _no_alias(ref: Ref, cfg: Settings) -> PromptNotFound:
    with mlflow_errors(f"read prompt {ref.name}", cfg):
        exists = client(cfg).get_prompt(ref.name) is not None
    if not exists:
        return _unknown_prompt(ref.name, cfg)
    known = sorted(PROMPTS.history(ref.name, cfg=cfg).current())
    listed = f"aliases moved here: {', '.join(known)}" if known else "no aliases recorded"
    return PromptNotFound(
        f"prompt {ref.name} has no alias {ref.alias!r} ({listed}): "
        f"set it with %llm_alias prompt {ref.name} {ref.alias} VERSION"
    )


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
        check_alias_name(alias)
    latest = latest_version(name, cfg)
    created = not (latest and latest.template == template and (latest.response_format or None) == response_format)
    prompt = latest
    if created:
        prompt = _create_version(name, template, message, response_format, exists=latest is not None, cfg=cfg)
        events.emit(events.PromptRegistered(name=name, version=prompt.version, digest=prompt.digest))
    if alias is not None:
        PROMPTS.move_alias(name, alias, prompt.version, cfg=cfg)
    return PromptRegistration(prompt, created, alias)


def _create_version(name: str, template, message, response_format, *, exists: bool, cfg: Settings) -> PromptRef:
    c = client(cfg)
    with mlflow_errors(f"register prompt {name}", cfg):
        if not exists and c.get_prompt(name) is None:
            # No description: the message is the version's commit message (the prompt's own
            # description holds the alias history block and whatever the user writes).
            c.create_prompt(name)
        pv = c.create_prompt_version(
            name,
            template,
            description=message,
            tags={"llmops.digest": template_digest(template)},
            response_format=response_format,
        )
    return load_version(name, int(pv.version), cfg)


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
