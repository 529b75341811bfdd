"""Views of core results: the review widget, the shadow plots and the watch plot.

Importing this package is cheap: anywidget and plotly load when a view is first used.
:func:`register_views` hands core the viewers by name (core never imports widgets).
"""

from __future__ import annotations

from ..core.viewers import register_view


def _review(result, **options):
    # deferred: anywidget/plotly load on first use
    from .review import review_widget

    return review_widget(result, **options)


def _plot(result, **options):
    # deferred: anywidget/plotly load on first use
    from .plots import shadow_plots

    return shadow_plots(result, **options)


def _watch_plot(result, **options):
    # deferred: plotly loads on first use
    from .plots import watch_plot

    return watch_plot(result, **options)


def _actions(result, bundle):
    # deferred: anywidget/plotly load on first use
    from .actions import with_actions

    return with_actions(result, bundle)


def register_views() -> None:
    """Register ``review``, ``plot``, ``watch_plot`` and the ShadowResult buttons with
    :mod:`llmops_magics.core.viewers`."""
    register_view("review", _review)
    register_view("plot", _plot)
    register_view("shadow:bundle", _actions)
    register_view("watch_plot", _watch_plot)
