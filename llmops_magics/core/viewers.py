"""Named views of core results, registered from outside core.

``ShadowResult.review()`` and ``.plot()`` need widgets, but core must not import the
widgets layer. The package's ``__init__`` registers the viewers here at import time
(``register_view("review", fn)``); core looks them up by name and never learns where
they live.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BackendUnavailable

_views: dict[str, Callable] = {}


def register_view(name: str, fn: Callable) -> None:
    """Make ``fn(obj, **options)`` the viewer called ``name``."""
    _views[name] = fn


def show(name: str, obj, **options):
    """Call the viewer ``name`` on ``obj``; a clear error when none is registered."""
    fn = _views.get(name)
    if fn is None:
        raise BackendUnavailable(
            f"no {name!r} view is registered: import llmops_magics (or %load_ext llmops_magics) "
            "so its widgets register themselves"
        )
    return fn(obj, **options)


def decorate(name: str, obj, bundle: dict) -> dict:
    """Let a registered decorator add to a display bundle (e.g. action buttons)."""
    fn = _views.get(f"{name}:bundle")
    return fn(obj, bundle) if fn is not None else bundle
