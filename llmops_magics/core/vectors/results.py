"""What a migration step shows and returns: :class:`StepResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..display import esc, html_table, text_table, warnings_block


@dataclass
class StepResult:
    """What one migration step did, with the table versions around it."""

    table: str
    step: str
    version_before: int
    version_after: int
    summary: str
    details: dict = field(default_factory=dict)
    run_id: str | None = None
    # What did not happen, in one line each (e.g. the MLflow run was kept for later).
    warnings: list = field(default_factory=list)
    run_key: str | None = None

    def _rows(self) -> list[list]:
        return [[k, v] for k, v in self.details.items()]

    def _repr_mimebundle_(self, include=None, exclude=None):
        head = f"{self.step} {self.table}: {self.summary}"
        foot = f"version {self.version_before} -> {self.version_after}" + (
            f" · run {self.run_id[:8]}" if self.run_id else ""
        )
        warn_text, warn_html = warnings_block(self.warnings)
        text = head + "\n" + (text_table(["", ""], self._rows()) + "\n" if self.details else "") + foot + warn_text
        html = (
            f"<div class='llmops-migrate'><b>{esc(head)}</b>"
            + (html_table(["", ""], self._rows()) if self.details else "")
            + f"<div style='opacity:.7'>{esc(foot)}</div>{warn_html}</div>"
        )
        return {"text/plain": text, "text/html": html}
