"""A "Review" and a "Plot" button under a ShadowResult's display, in a live kernel.

The static HTML stays in the bundle for nbconvert and viewers without a kernel; a
frontend with the widget manager shows the same HTML with the buttons, which open the
review widget / the charts in place.
"""

from __future__ import annotations

import ipywidgets as W

from ..errors import LlmopsError


def in_kernel() -> bool:
    """Whether widgets can talk to a frontend (an ipykernel, not a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class ShadowActions(W.VBox):
    """The result's HTML, the buttons, and the area where a view opens."""

    def __init__(self, result, html: str):
        self.result = result
        self.review_button = W.Button(
            description="Review",
            icon="check-square",
            tooltip="blind A/B review of the outputs (verdicts saved to MLflow)",
        )
        self.plot_button = W.Button(description="Plot", icon="bar-chart", tooltip="charts of this comparison")
        self.out = W.Output()
        # html was built by ShadowResult with every string escaped.
        super().__init__([W.HTML(html), W.HBox([self.review_button, self.plot_button]), self.out])
        self.review_button.on_click(lambda _b: self._open("review"))
        self.plot_button.on_click(lambda _b: self._open("plot"))

    def _open(self, what: str) -> None:
        from IPython.display import display

        self.out.clear_output()
        with self.out:
            try:
                display(self.result.review() if what == "review" else self.result.plot())
            except LlmopsError as e:
                print(f"{type(e).__name__}: {e}")


def with_actions(result, bundle: dict) -> dict:
    """Add the widget view of :class:`ShadowActions` to a ShadowResult bundle."""
    if not in_kernel():
        return bundle
    widget = ShadowActions(result, bundle.get("text/html", ""))
    view = widget._repr_mimebundle_()
    view = view[0] if isinstance(view, tuple) else view
    return {**bundle, "application/vnd.jupyter.widget-view+json": view["application/vnd.jupyter.widget-view+json"]}
