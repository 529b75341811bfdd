"""``ShadowResult``: what one shadow comparison found, for people and for code.

Rows keep both outputs, the case id and the input, so a review view (issue #6) can be
built on ``rows`` / ``to_pandas()`` without re-running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...backends.base import Sampling
from .. import viewers
from ..display import esc, html_table, run_link, text_table, warnings_block
from .stats import Check, Thresholds, Verdict

_COLOURS = {"equivalent": "#1a7f37", "better": "#1a7f37", "worse": "#cf222e", "inconclusive": "#9a6700"}


@dataclass
class ShadowResult:
    """A shadow comparison of a primary and a candidate model.

    Attributes
    ----------
    name : str
        The comparison's name (MLflow run name).
    primary, candidate : str
        Labels of the two models; ``primary_ref`` / ``candidate_ref`` in ``params``.
    rows : list of dict
        One dict per case: ``id``, ``input``, ``prompt``, ``primary_output``,
        ``candidate_output`` and every per-case metric.
    verdict : Verdict
        Overall label, reasons, and each check (``verdict.check("format validity")``).
    aggregates : dict
        Means and rates over cases (logged as MLflow metrics).
    params : dict
        Refs, digests, prompt version, sampling, engine plan (logged as MLflow params).
    run_id : str or None
        The MLflow run of this comparison.
    serving : dict
        Per side (``primary``, ``candidate``), what its engine really ran with:
        ``backend``, ``dtype``, ``device``.
    """

    name: str
    primary: str
    candidate: str
    rows: list[dict]
    verdict: Verdict
    aggregates: dict
    params: dict
    sampling: Sampling
    thresholds: Thresholds
    run_id: str | None = None
    extra: dict = field(default_factory=dict)
    serving: dict = field(default_factory=dict)
    # What did not happen, in one line each (e.g. the MLflow run was kept for later).
    warnings: list = field(default_factory=list)
    run_key: str | None = None

    @property
    def notes(self) -> list[str]:
        """Facts that qualify the comparison (how each side was served)."""
        out = []
        p, c = self.serving.get("primary") or {}, self.serving.get("candidate") or {}
        if p.get("dtype") and c.get("dtype") and p["dtype"] != c["dtype"]:
            out.append(
                f"the two sides ran with different dtypes: primary {p['dtype']} ({p.get('device')}), "
                f"candidate {c['dtype']} ({c.get('device')}); a dtype change alone changes answers"
            )
        out += self.extra.get("notes", [])
        return out

    def _serving_line(self) -> str:
        parts = [
            f"{role} {v.get('backend')} {v.get('dtype')} {v.get('device')}" for role, v in self.serving.items() if v
        ]
        return "served: " + " · ".join(parts) if parts else ""

    @property
    def label(self) -> str:
        """The overall verdict: equivalent | better | worse | inconclusive."""
        return self.verdict.label

    @property
    def checks(self) -> tuple[Check, ...]:
        return self.verdict.checks

    @property
    def n_cases(self) -> int:
        return len(self.rows)

    @property
    def differing_cases(self) -> list[dict]:
        """Rows whose outputs differ."""
        return [r for r in self.rows if not r["exact_match"]]

    def most_divergent(self, k: int = 5) -> list[dict]:
        """The ``k`` differing rows with the lowest embedding similarity."""
        return sorted(self.differing_cases, key=lambda r: (r["embedding_similarity"], r["edit_similarity"]))[:k]

    def to_pandas(self):
        """One row per case, every metric a column."""
        import pandas as pd  # deferred: pandas takes a second to import, and only this needs it

        return pd.DataFrame(self.rows).set_index("id", drop=False)

    # ------------------------------------------------------------- review and plots (issue #6)

    def review(self, **options):
        """Open (or resume) the blind A/B review widget of this comparison.

        Options (``seed``, ``reviewer``, ``sync``) go to
        :func:`llmops_magics.core.review.session.open_review`; verdicts are saved to the local
        spool and to this comparison's MLflow run as you vote.
        """
        # The widgets register the viewer by name; core never imports them.
        return viewers.show("review", self, **options)

    def plot(self, **options):
        """Plotly charts: similarity, length ratio, latency per side, checks, review tally.

        The returned object has ``figures`` and ``export_html(path)``.
        """
        return viewers.show("plot", self, **options)

    # ------------------------------------------------------------- display

    def _header(self) -> str:
        diff = len(self.differing_cases)
        run = f" · run {self.run_id[:8]}" if self.run_id else ""
        return (
            f"shadow {self.name}: {self.primary} (primary) vs {self.candidate} (candidate) · "
            f"{self.n_cases} cases, {diff} differing{run}"
        )

    def _check_rows(self) -> list[list]:
        def ci(c: Check) -> str:
            return f"{c.ci[0]:.3g} to {c.ci[1]:.3g}" if c.ci else ""

        return [[c.name, c.verdict, f"{c.estimate:.3g}", ci(c), c.reason] for c in self.checks]

    def _case_rows(self, k: int = 5) -> list[list]:
        return [
            [
                r["id"],
                _short(r["prompt"]),
                _short(r["primary_output"]),
                _short(r["candidate_output"]),
                f"{r['embedding_similarity']:.2f}",
            ]
            for r in self.most_divergent(k)
        ]

    def __str__(self) -> str:
        return f"{self.label.upper()}: {self._header()}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        check_headers = ["check", "verdict", "estimate", "95% CI", "reason"]
        case_headers = ["case", "input", "primary", "candidate", "cosine"]
        cases = self._case_rows()
        text = [f"verdict: {self.label.upper()}", self._header(), self._serving_line(), ""]
        text += [f"  - {r}" for r in self.verdict.reasons]
        text += [f"  note: {n}" for n in self.notes]
        text += ["", text_table(check_headers, self._check_rows())]
        if cases:
            text += ["", "most divergent cases:", text_table(case_headers, cases)]
        link_text, link_html = run_link(self.run_id)
        warn_text, warn_html = warnings_block(self.warnings)
        colour = _COLOURS.get(self.label, "inherit")
        reasons = "".join(f"<li>{esc(r)}</li>" for r in self.verdict.reasons)
        reasons += "".join(f"<li><i>note: {esc(n)}</i></li>" for n in self.notes)
        html = (
            "<div class='llmops-shadow'>"
            f"<div><b style='color:{colour};font-size:120%'>{esc(self.label.upper())}</b> "
            f"<span>{esc(self._header())}</span></div>"
            f"<div style='opacity:.7;font-size:85%'>{esc(self._serving_line())}</div>"
            f"<ul>{reasons}</ul>"
            + html_table(check_headers, self._check_rows(), cls="llmops-shadow-checks")
            + (
                "<div style='margin-top:.5em'><b>most divergent cases</b></div>"
                + html_table(case_headers, cases, cls="llmops-shadow-cases")
                if cases
                else ""
            )
            + link_html
            + warn_html
            + "</div>"
        )
        text.append(link_text + warn_text)
        # A registered decorator may add a "Review" button (issue #6).
        return viewers.decorate("shadow", self, {"text/plain": "\n".join(text).rstrip(), "text/html": html})


def _short(text, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
