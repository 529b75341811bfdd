"""The prompt and model registry: versions, aliases and their history, pins, the lockfile.

Modules in import order (each imports only modules on the lines before it)::

    refs, common, templates, history,            ref grammar; who/when; templates; alias records;
    history_block, manifest                      the readable history on MLflow pages;
                                                 what a model version is made of
    base                                         RegistryKind: the operations every kind shares
    prompts, models                              the two kinds (PROMPTS, MODELS), their versions
    kinds                                        "prompt" / "model" -> the kind object
    aliases                                      move_alias, alias_history (%llm_alias twins)
    lockfile -> pinset -> pins                   llmops.lock.json; pins as data; pins in force
    resolve                                      a ref -> a version: pin, registry, lockfile

Generation imports the registry (``generation/registered.py`` resolves registered models
and adds the serving params a lockfile records); the registry never imports generation.

Modules inside the package import their siblings directly, never this ``__init__``.

Two names differ from their modules here: ``resolve`` is the function (import the module's
other names with ``from .registry.resolve import ...``), and ``pins`` stays the module (the
magics and tests reach it as ``registry.pins``; the function is ``pins.pins()``, or
``llmops_magics.pins()``).
"""

from .aliases import AliasHistory, AliasMove, alias_history, alias_target, move_alias
from .base import RegistryKind
from .kinds import KINDS, kind_of
from .lockfile import LOCKFILE, locked
from .manifest import FileDigest, ModelRef
from .models import (
    MODELS,
    ModelList,
    ModelRegistration,
    find_model,
    list_models,
    register_model,
    registered_models,
    show_model,
)
from .pins import check_pins, clear_pins, load_lock, pin, pin_context, pinned, save_lock, unpin, unpin_ref
from .pinset import Pin, PinSet, add_lock_detail
from .prompts import (
    PROMPTS,
    PromptRef,
    PromptRegistration,
    find_prompt,
    list_prompts,
    parse_variables,
    prompt_requests,
    register_prompt,
)
from .refs import Ref, parse_ref
from .resolve import resolve, resolve_prompt

__all__ = [
    "KINDS",
    "LOCKFILE",
    "MODELS",
    "PROMPTS",
    "AliasHistory",
    "AliasMove",
    "FileDigest",
    "ModelList",
    "ModelRef",
    "ModelRegistration",
    "Pin",
    "PinSet",
    "PromptRef",
    "PromptRegistration",
    "Ref",
    "RegistryKind",
    "add_lock_detail",
    "alias_history",
    "alias_target",
    "check_pins",
    "clear_pins",
    "find_model",
    "find_prompt",
    "kind_of",
    "list_models",
    "list_prompts",
    "load_lock",
    "locked",
    "move_alias",
    "parse_ref",
    "parse_variables",
    "pin",
    "pin_context",
    "pinned",
    "prompt_requests",
    "register_model",
    "register_prompt",
    "registered_models",
    "resolve",
    "resolve_prompt",
    "save_lock",
    "show_model",
    "unpin",
    "unpin_ref",
]
