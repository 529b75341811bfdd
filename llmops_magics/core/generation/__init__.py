"""Generation: model refs resolved to files, the engines that serve them, and ``llm()``.

:mod:`.resolve` turns a ref into a base folder and an optional adapter; :mod:`.engines`
keeps one engine per (backend, weights, serving options) for the kernel's life and owns
that cache and its key; :mod:`.llm` is the ``%%llm`` twin; :mod:`.engine_list` is
``%llm_engines``; :mod:`.merge` folds a LoRA adapter into its base; :mod:`.digests`
says what a model folder's weights are.

``registered`` resolves registered models through the registry (imported here, so the
resolver is in place before any ref is resolved).
"""

from __future__ import annotations

from .engine_list import EngineLog, EngineTable, engine_log, list_engines, stop_engine
from .engines import (
    BackendChoice,
    CacheKey,
    Engine,
    engine_key,
    find_engine,
    get_engine,
    get_generator,
    is_loaded,
    loaded_engines,
    release,
    release_all,
    release_if_loaded,
    serving_for,
)
from .llm import LlmResult, llm
from .registered import resolve_registered, resolved_model
from .resolve import ResolvedModel, register_resolver, resolution_note, resolve_chat_model, resolve_model

__all__ = [
    "llm",
    "LlmResult",
    "resolve_registered",
    "resolved_model",
    "list_engines",
    "stop_engine",
    "engine_log",
    "EngineTable",
    "EngineLog",
    "get_engine",
    "get_generator",
    "is_loaded",
    "release",
    "release_all",
    "release_if_loaded",
    "loaded_engines",
    "find_engine",
    "serving_for",
    "engine_key",
    "CacheKey",
    "Engine",
    "BackendChoice",
    "resolve_model",
    "resolve_chat_model",
    "resolution_note",
    "register_resolver",
    "ResolvedModel",
]
