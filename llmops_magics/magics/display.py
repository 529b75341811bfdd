"""Small display objects of the magic edge."""

from __future__ import annotations

from ..core.display import esc


class Note:
    """A one-line result (``saved 2 pins to ...``) that reads well as text and HTML."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": self.text, "text/html": f"<div class='llmops-note'>{esc(self.text)}</div>"}
