"""``ShadowResult``: what one shadow comparison found, for people and for code.

Rows keep both outputs, the case id and the input, so a review view (issue #6) can be
built on ``rows`` / ``to_pandas()`` without re-running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...backends.base import Sampling
from .. import viewers
from ..display import esc, html_table, run_link, text_table, warnings_block
from .cost import CostComparison
from .stats import CHANGE_WORDS, Check, Thresholds, Verdict

_COLOURS = {"equivalent": "#1a7f37", "better": "#1a7f37", "worse": "#cf222e", "inconclusive": "#9a6700"}
# A change is news, not a fault: blue, never red.
_CHANGE_COLOURS = {"unchanged": "#1a7f37", "changed": "#0969da", "inconclusive": "#9a6700"}
_KINDS = {"change": "behaviour", "quality": "quality", "performance": "reported"}


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
        The quality verdict: its label (``equivalent`` / ``better`` / ``worse`` /
        ``inconclusive``, from refusals, format, the judge and the scorers), reasons, and
        every check (``verdict.check("format validity")``).
    change_verdict : Verdict or None
        How much behaviour moved: ``unchanged`` / ``changed`` / ``inconclusive`` (from
        identical outputs, similarity and length), its reasons, and every check.
    aggregates : dict
        Means and rates over cases (logged as MLflow metrics).
    params : dict
        Refs, digests, prompt version, sampling, engine plan (logged as MLflow params).
    run_id : str or None
        The MLflow run of this comparison.
    serving : dict
        Per side (``primary``, ``candidate``), what its engine really ran with:
        ``backend``, ``dtype``, ``device``.
    cost : CostComparison or None
        Each side's cost of 1,000 requests like these (or, without prices, its tokens and
        seconds), and the candidate - primary difference with its 95% interval.
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
    change_verdict: Verdict | None = None
    cost: CostComparison | None = None

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
        """The quality verdict: equivalent | better | worse | inconclusive."""
        return self.verdict.label

    @property
    def change(self) -> str:
        """How much behaviour moved: unchanged | changed | inconclusive."""
        return self.change_verdict.label if self.change_verdict is not None else "inconclusive"

    @property
    def _verdict_line(self) -> str:
        return f"verdict: {self.label.upper()} · behaviour: {self.change.upper()}"

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

        def said(c: Check) -> str:
            # A change check's own words (worse) read as behaviour (changed) here.
            return CHANGE_WORDS[c.verdict] if c.kind == "change" else c.verdict

        return [
            [c.name, _KINDS.get(c.kind, c.kind), said(c), f"{c.estimate:.3g}", ci(c), c.reason] for c in self.checks
        ]

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
        return f"{self.label.upper()} · {self.change.upper()}: {self._header()}"

    def _repr_mimebundle_(self, include=None, exclude=None):
        check_headers = ["check", "decides", "verdict", "estimate", "95% CI", "reason"]
        case_headers = ["case", "input", "primary", "candidate", "cosine"]
        cases = self._case_rows()
        change_reasons = self.change_verdict.reasons if self.change_verdict is not None else ()
        cost_line = self.cost.line() if self.cost is not None else ""
        text = [self._verdict_line, self._header(), self._serving_line(), *([cost_line] if cost_line else []), ""]
        text += [f"  - {r}" for r in self.verdict.reasons]
        text += [f"  - behaviour: {r}" for r in change_reasons]
        text += [f"  note: {n}" for n in self.notes]
        text += ["", text_table(check_headers, self._check_rows())]
        if cases:
            text += ["", "most divergent cases:", text_table(case_headers, cases)]
        link_text, link_html = run_link(self.run_id)
        warn_text, warn_html = warnings_block(self.warnings)
        colour = _COLOURS.get(self.label, "inherit")
        change_colour = _CHANGE_COLOURS.get(self.change, "inherit")
        reasons = "".join(f"<li>{esc(r)}</li>" for r in self.verdict.reasons)
        reasons += "".join(f"<li>behaviour: {esc(r)}</li>" for r in change_reasons)
        reasons += "".join(f"<li><i>note: {esc(n)}</i></li>" for n in self.notes)
        html = (
            "<div class='llmops-shadow'>"
            f"<div>verdict: <b style='color:{colour};font-size:120%'>{esc(self.label.upper())}</b> · "
            f"behaviour: <b style='color:{change_colour};font-size:120%'>{esc(self.change.upper())}</b> "
            f"<span>{esc(self._header())}</span></div>"
            f"<div style='opacity:.7;font-size:85%'>{esc(self._serving_line())}</div>"
            + (f"<div class='llmops-shadow-cost'>{esc(cost_line)}</div>" if cost_line else "")
            + f"<ul>{reasons}</ul>"
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
