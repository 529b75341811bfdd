"""The blind A/B review widget: an anywidget view of :class:`core.review.ReviewSession`.

The session holds every bit of state; the ES module (``review.js``) renders the one
``state`` trait with ``textContent`` and sends actions back as custom messages.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from ..core.review.session import ReviewSession, open_review
from ..errors import LlmopsError

_HERE = Path(__file__).parent


class ReviewWidget(anywidget.AnyWidget):
    """One case at a time, blind, with keyboard votes and a live tally.

    The view shows whose queue it is; once a second reviewer has voted, each reviewer's
    win rate and the agreement between them (Krippendorff's alpha) appear under the tally.

    Parameters
    ----------
    session : ReviewSession
        One reviewer's review; votes go through it (spool first, then MLflow: the run's
        tables and feedback on the case's traces).
    """

    _esm = _HERE / "review.js"
    _css = _HERE / "review.css"
    state = traitlets.Dict().tag(sync=True)

    def __init__(self, session: ReviewSession, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self.on_msg(self._on_msg)
        self.refresh()

    def refresh(self, error: str = "") -> None:
        self.state = {**self.session.state(), "error": error}

    def act(self, content: dict) -> None:
        """Apply one action from the view: ``vote`` | ``move`` | ``go`` | ``key`` | ``refresh``.

        ``refresh`` reads the other reviewers' verdicts again and sends pending feedback.
        """
        s = self.session
        action = content.get("action")
        if action == "vote":
            s.vote(content.get("choice", ""), content.get("note", ""))
        elif action == "move":
            s.move(int(content.get("step", 0)))
        elif action == "go":
            s.go(int(content.get("index", 0)))
        elif action == "key":
            s.press(str(content.get("key", "")))
        elif action == "refresh":
            s.refresh()
        else:
            raise LlmopsError(f"unknown action {action!r}")
        self.refresh()

    def _on_msg(self, _widget, content, _buffers) -> None:
        # A callback's traceback would vanish into the kernel log: show the message in
        # the widget instead.
        try:
            self.act(content)
        except LlmopsError as e:
            self.refresh(error=f"{type(e).__name__}: {e}")
        except Exception as e:  # keep the view alive and say what broke
            self.refresh(error=f"unexpected {type(e).__name__}: {e}")

    def __repr__(self) -> str:
        # The text/plain of the widget's bundle: a terminal or nbconvert shows the tally.
        return repr(self.session)


def review_widget(source, **options) -> ReviewWidget:
    """Open (or resume) the review of a ShadowResult, run id or rows as a widget."""
    return ReviewWidget(open_review(source, **options))
