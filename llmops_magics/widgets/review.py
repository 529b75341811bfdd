"""The blind A/B review widget: an anywidget view of :class:`core.review.ReviewSession`.

The session holds every bit of state; the ES module (``review.js``) renders the one
``state`` trait with ``textContent`` and sends actions back as custom messages. Beside the
widget view, its display carries a static copy (the tally and the cases, as text and
HTML) that a saved notebook shows where no kernel or widget state renders the view.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from ..core.display import esc, html_table, run_link, text_table
from ..core.paths import shown_path
from ..core.review.session import ReviewSession, open_review
from ..core.review.verdicts import vote_words
from ..errors import LlmopsError

_HERE = Path(__file__).parent
# Per case in the static copy: enough to recognize an answer, not a page of it.
_SHOWN_CHARS = 240


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
        state = self.session.state()
        # The state is saved with the notebook: no absolute path of this machine in it.
        self.state = {**state, "spool": shown_path(state.get("spool", "")), "error": error}

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

    def _repr_mimebundle_(self, **kwargs):
        # anywidget answers (data, metadata): keep its view and metadata, add the copy.
        data, metadata = super()._repr_mimebundle_(**kwargs)
        text, html = static_view(self.session)
        return {**data, "text/plain": text, "text/html": html}, metadata


def _case_rows(s: ReviewSession) -> list[list]:
    """One row per case, blind as in the widget: a side is named only once voted."""
    rows = []
    for i, case in enumerate(s.cases, 1):
        v = s.verdict_for(case.id)
        left = s.side_label(case.left) if v else "left"
        right = s.side_label(case.right) if v else "right"
        rows.append(
            [
                i,
                case.input[:_SHOWN_CHARS],
                f"{left}: {case.left_text[:_SHOWN_CHARS]}",
                f"{right}: {case.right_text[:_SHOWN_CHARS]}",
                vote_words(v) if v else "not reviewed",
            ]
        )
    return rows


def static_view(session: ReviewSession) -> tuple[str, str]:
    """``(text, html)`` of a review as it stands: who reviews, the tally, every case.

    What a saved notebook shows of the widget without a kernel (and a terminal always).
    """
    s = session
    title = f"blind A/B review by {s.reviewer}: {s.total} cases"
    summary = s.summary()
    tallies = [f"{s.reviewer}: {s.tally().text()}"]
    if len(summary.reviewers) > 1:
        tallies.append(f"all reviewers: {summary.pooled.text()}")
    headers = ["case", "input", "left", "right", "verdict"]
    rows = _case_rows(s)
    link_text, link_html = run_link(s.run_id)
    text = "\n".join([title, *tallies, "", text_table(headers, rows)]) + link_text
    html = (
        "<div class='llmops-review-static'>"
        f"<div><b>{esc(title)}</b></div>"
        + "".join(f"<div>{esc(t)}</div>" for t in tallies)
        + html_table(headers, rows)
        + link_html
        + "<div style='opacity:.7'>a static copy: vote in the live widget (run the cell)</div></div>"
    )
    return text, html


def review_widget(source, **options) -> ReviewWidget:
    """Open (or resume) the review of a ShadowResult, run id or rows as a widget."""
    return ReviewWidget(open_review(source, **options))
