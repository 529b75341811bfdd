"""llmops-magics: notebook-first LLMOps.

``%load_ext llmops_magics`` registers the magics; every magic has a Python twin here.
"""

from __future__ import annotations

from .config import configure, settings
from .core.adapter.check import check_adapter
from .core.adapter.report import AdapterReport
from .core.generation.engine_list import engine_log, list_engines, stop_engine
from .core.generation.engines import release_all
from .core.generation.llm import LlmResult, llm
from .core.lineage.views import export_openlineage, lineage_cell, lineage_sync, lineage_table
from .core.promote import promote
from .core.registry.aliases import alias_history, move_alias
from .core.registry.models import ModelRef, list_models, register_model
from .core.registry.pins import PinSet, check_pins, clear_pins, load_lock, pin, pins, save_lock, unpin
from .core.registry.prompts import PromptRef, register_prompt
from .core.registry.resolve import resolve_prompt
from .core.review.session import ReviewSession, open_review
from .core.shadow.result import ShadowResult
from .core.shadow.run import shadow
from .core.vectors.migration import Migration, migration
from .core.vectors.table import create_index, describe_table, search
from .core.verify import verify
from .core.watch import WatchResult, watch
from .errors import LlmopsError
from .version import __version__
from .widgets import register_views as _register_views

_register_views()  # core finds the review/plot views by name, never by import

__all__ = [
    "__version__",
    "register_prompt",
    "resolve_prompt",
    "PromptRef",
    "register_model",
    "list_models",
    "ModelRef",
    "move_alias",
    "promote",
    "alias_history",
    "pin",
    "pins",
    "unpin",
    "clear_pins",
    "check_pins",
    "save_lock",
    "load_lock",
    "PinSet",
    "migration",
    "Migration",
    "create_index",
    "describe_table",
    "search",
    "configure",
    "settings",
    "check_adapter",
    "AdapterReport",
    "llm",
    "LlmResult",
    "list_engines",
    "stop_engine",
    "engine_log",
    "shadow",
    "ShadowResult",
    "open_review",
    "ReviewSession",
    "LlmopsError",
    "lineage_table",
    "lineage_cell",
    "lineage_sync",
    "export_openlineage",
    "verify",
    "watch",
    "WatchResult",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython) -> None:
    """Register the magics (``%load_ext llmops_magics``)."""
    # deferred: IPython, so `import llmops_magics` from a script or CI stays free of it
    from .magics import MAGICS
    from .magics.lineage_hooks import install

    for magics_class in MAGICS:
        ipython.register_magics(magics_class)

    install(ipython)


def unload_ipython_extension(ipython) -> None:
    """Remove the magics and stop the engines this kernel started."""
    # deferred: IPython, as in load_ipython_extension
    from .magics import MAGICS
    from .magics.lineage_hooks import uninstall

    uninstall(ipython)
    manager = ipython.magics_manager
    for magics_class in MAGICS:
        instance = manager.registry.pop(magics_class.__name__, None)
        if instance is None:
            continue
        for kind, names in instance.magics.items():
            for name in names:
                manager.magics[kind].pop(name, None)
    release_all()
