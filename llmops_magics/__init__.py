"""llmops-magics: notebook-first LLMOps.

``%load_ext llmops_magics`` registers the magics; every magic has a Python twin here.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import configure, settings
from .core.llm import LlmResult, llm
from .errors import LlmopsError

__all__ = ["__version__", "configure", "settings", "llm", "LlmResult", "LlmopsError",
           "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the magics (``%load_ext llmops_magics``)."""
    from .magics import MAGICS

    for magics_class in MAGICS:
        ipython.register_magics(magics_class)


def unload_ipython_extension(ipython) -> None:
    """Remove the magics and stop the engines this kernel started."""
    from .core.engines import release_all
    from .magics import MAGICS

    manager = ipython.magics_manager
    for magics_class in MAGICS:
        instance = manager.registry.pop(magics_class.__name__, None)
        if instance is None:
            continue
        for kind, names in instance.magics.items():
            for name in names:
                manager.magics[kind].pop(name, None)
    release_all()
