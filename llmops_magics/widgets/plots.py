"""Plotly charts of a shadow comparison: what the numbers behind a verdict look like.

``shadow_plots(result)`` builds one figure per question (how similar are the answers,
did lengths change, which side is slower, what did each check say, what did reviewers
prefer) and a dashboard for the notebook of the panels that have something to show: no
tally before anyone voted, no latency chart when each side has one latency (a batch's),
which the summary table states instead; ``export_html(path)`` writes a self-contained
page (plotly.js inlined once) that opens offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..core.display import esc, html_table, text_table
from ..core.review.session import open_review
from ..core.watch.changes import minute

VERDICT_COLOURS = {"equivalent": "#1a7f37", "better": "#0969da", "worse": "#cf222e", "inconclusive": "#9a6700"}
SIDE_COLOURS = {"primary": "#636efa", "candidate": "#ef553b"}
TALLY_BARS = ("candidate wins", "primary wins", "ties", "skips")
PANELS = ("similarity", "length_ratio", "latency", "checks", "review")
TITLES = {
    "similarity": "Similarity of the two answers per case",
    "length_ratio": "Length ratio (candidate / primary) per case",
    "latency": "Latency per case, by side",
    "checks": "Check verdicts",
    "review": "Review tally",
}


def _col(rows: list[dict], key: str) -> list:
    return [r[key] for r in rows if r.get(key) is not None]


def _panel_traces(result, tally) -> dict[str, tuple[list, dict]]:
    """Per panel: its traces and axis titles (shared by the figures and the dashboard)."""
    rows = result.rows
    bins = dict(start=0.0, end=1.0001, size=0.05)
    similarity = [
        go.Histogram(
            x=_col(rows, "edit_similarity"), name="edit similarity", xbins=bins, opacity=0.7, legendgroup="sim"
        ),
        go.Histogram(
            x=_col(rows, "embedding_similarity"),
            name="embedding similarity",
            xbins=bins,
            opacity=0.7,
            legendgroup="sim",
        ),
    ]
    length = [go.Histogram(x=_col(rows, "length_ratio"), name="length ratio", marker_color="#00a2a6", nbinsx=20)]
    latency = [
        go.Box(
            y=_col(rows, f"{side}_latency_s"),
            name=f"{side} ({getattr(result, side)})",
            boxpoints="all",
            jitter=0.3,
            marker_color=SIDE_COLOURS[side],
        )
        for side in ("primary", "candidate")
    ]
    checks = list(result.checks)
    verdict_traces = []
    for verdict, colour in VERDICT_COLOURS.items():
        mine = [c for c in checks if c.verdict == verdict]
        if mine:
            verdict_traces.append(
                go.Scatter(
                    x=[c.verdict for c in mine],
                    y=[c.name for c in mine],
                    mode="markers",
                    name=verdict,
                    marker=dict(size=16, color=colour, symbol="square"),
                    hovertext=[c.reason for c in mine],
                    hoverinfo="text+y",
                )
            )
    counts = [tally.candidate_wins, tally.primary_wins, tally.ties, tally.skips] if tally else [0, 0, 0, 0]
    review = [
        go.Bar(
            x=list(TALLY_BARS),
            y=counts,
            name="review verdicts",
            text=counts,
            marker_color=[SIDE_COLOURS["candidate"], SIDE_COLOURS["primary"], "#9a9a9a", "#d0d0d0"],
        )
    ]
    return {
        "similarity": (similarity, {"x": "similarity (1 = same)", "y": "cases"}),
        "length_ratio": (length, {"x": "candidate / primary characters", "y": "cases"}),
        "latency": (latency, {"x": "", "y": "seconds"}),
        "checks": (verdict_traces, {"x": "verdict", "y": ""}),
        "review": (review, {"x": "", "y": "votes"}),
    }


def _spread(values: list) -> bool:
    return len({round(float(v), 6) for v in values}) > 1


def _shown_panels(result, tally, panels: dict) -> list[str]:
    """The panels worth a place in the dashboard: each has data, and a chart of it says
    more than a number would."""
    shown = []
    for name in PANELS:
        traces = panels[name][0]
        if name == "review":
            has = tally is not None and tally.reviewed > 0
        elif name == "latency":
            has = any(_spread(_col(result.rows, f"{side}_latency_s")) for side in ("primary", "candidate"))
        else:
            has = any(len(getattr(t, "x", None) or getattr(t, "y", None) or ()) for t in traces)
        if has:
            shown.append(name)
    return shown


def _latency_text(result) -> str | None:
    parts = []
    for side in ("primary", "candidate"):
        values = _col(result.rows, f"{side}_latency_s")
        if values:
            parts.append(f"{side} {sum(values) / len(values):.2f} s")
    return " · ".join(parts) or None


def _review_title(tally) -> str:
    if tally is None or tally.reviewed == 0:
        return "Review tally: no verdicts yet (open result.review())"
    return "Review tally: " + tally.text()


@dataclass
class ShadowPlots:
    """The charts of one shadow comparison.

    Attributes
    ----------
    figures : dict of str to plotly Figure
        ``similarity``, ``length_ratio``, ``latency``, ``checks``, ``review``.
    dashboard : plotly Figure
        The panels that have data, in one figure (what the notebook shows).
    panels : list of str
        Which of ``figures`` the dashboard shows.
    """

    title: str
    figures: dict[str, go.Figure]
    dashboard: go.Figure
    summary: list[list] = field(default_factory=list)
    panels: list[str] = field(default_factory=lambda: list(PANELS))

    def export_html(self, path) -> Path:
        """Write every figure to one static HTML file (plotly.js inlined, opens offline)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(self.figures.values())]
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{esc(self.title)}</title></head><body>"
            f"<h2>{esc(self.title)}</h2>"
            + html_table(["measure", "value"], self.summary)
            + "".join(parts)
            + "</body></html>"
        )
        path.write_text(page, encoding="utf-8")
        return path

    def _repr_mimebundle_(self, include=None, exclude=None):
        fig = json.loads(self.dashboard.to_json())
        text = f"{self.title}\n" + text_table(["measure", "value"], self.summary)
        html = (
            f"<div class='llmops-plots'><b>{esc(self.title)}</b>"
            + html_table(["measure", "value"], self.summary)
            + "<div style='opacity:.7'>interactive charts need the plotly renderer; "
            "plots.export_html(path) writes a static page</div></div>"
        )
        return {"application/vnd.plotly.v1+json": fig, "text/html": html, "text/plain": text}


def shadow_plots(result, *, review: bool = True, seed: int = 0) -> ShadowPlots:
    """Charts of a ShadowResult: similarity, length ratio, latency, checks, review tally.

    Parameters
    ----------
    result : ShadowResult
    review : bool
        Read the review verdicts recorded so far (spool and MLflow) for the tally: every
        reviewer's votes together.
    """
    tally = None
    if review:
        tally = open_review(result, seed=seed).summary().pooled
    panels = _panel_traces(result, tally)
    figures = {}
    for name in PANELS:
        traces, axes = panels[name]
        title = _review_title(tally) if name == "review" else TITLES[name]
        fig = go.Figure(traces)
        fig.update_layout(
            title=title,
            xaxis_title=axes["x"],
            yaxis_title=axes["y"],
            barmode="overlay",
            template="plotly_white",
            height=360,
        )
        figures[name] = fig
    _length_band(figures["length_ratio"], result)
    figures["checks"].update_xaxes(categoryorder="array", categoryarray=list(VERDICT_COLOURS))

    shown = _shown_panels(result, tally, panels)
    cols = 2 if len(shown) > 1 else 1
    rows = max(1, -(-len(shown) // cols))
    dash = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[TITLES[p] for p in shown] or None,
        vertical_spacing=0.3 / rows,
        horizontal_spacing=0.12,
    )
    for i, name in enumerate(shown):
        r, c = divmod(i, cols)
        for trace in panels[name][0]:
            dash.add_trace(trace, row=r + 1, col=c + 1)
    dash.update_layout(
        title=f"shadow {result.name}: {result.label}",
        barmode="overlay",
        template="plotly_white",
        height=120 + 300 * rows,
        showlegend=True,
    )
    title = f"shadow {result.name}: {result.primary} (primary) vs {result.candidate} (candidate)"
    summary = [
        ["verdict", result.label],
        ["cases", result.n_cases],
        ["differing", len(result.differing_cases)],
        ["review", tally.text() if tally else "not read"],
    ]
    latency = _latency_text(result)
    if latency and "latency" not in shown:
        summary.append(["latency (mean)", latency])
    return ShadowPlots(title, figures, dash, summary, shown)


def _length_band(fig: go.Figure, result) -> None:
    margin = getattr(getattr(result, "thresholds", None), "length_ratio_margin", None)
    fig.add_vline(x=1.0, line_dash="dash", line_color="#444")
    if margin is not None:
        fig.add_vrect(
            x0=1 - margin,
            x1=1 + margin,
            fillcolor="#1a7f37",
            opacity=0.08,
            line_width=0,
            annotation_text=f"1 ± {margin:g}",
            annotation_position="top left",
        )


# ------------------------------------------------------------------ %llm_watch (issue 22)

CHANGE_COLOURS = {"alias move": "#8250df", "traces": "#0969da"}


@dataclass
class WatchPlot:
    """The chart of one watch: per scorer its rate or mean per bucket with the 95% band and
    the baseline, flagged buckets marked; input drift; tokens and latency per request; volume;
    a dotted line per change through every panel (hover its marker under the requests bars).

    Attributes
    ----------
    figure : plotly Figure
    """

    title: str
    figure: go.Figure
    summary: list[list] = field(default_factory=list)

    def html(self) -> str:
        """A self-contained page (plotly.js inlined): opens offline, an MLflow artifact."""
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{esc(self.title)}</title></head><body>"
            + html_table(["measure", "value"], self.summary)
            + self.figure.to_html(full_html=False, include_plotlyjs=True)
            + "</body></html>"
        )

    def export_html(self, path) -> Path:
        """Write :meth:`html` to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path

    def _repr_mimebundle_(self, include=None, exclude=None):
        text = f"{self.title}\n" + text_table(["measure", "value"], self.summary)
        html = (
            f"<div class='llmops-plots'><b>{esc(self.title)}</b>"
            + html_table(["measure", "value"], self.summary)
            + "<div style='opacity:.7'>interactive charts need the plotly renderer; "
            "plot.export_html(path) writes a static page</div></div>"
        )
        return {
            "application/vnd.plotly.v1+json": json.loads(self.figure.to_json()),
            "text/html": html,
            "text/plain": text,
        }


def _band(fig: go.Figure, rows: list[dict], x: list, name: str, colour: str, row: int) -> None:
    """Estimate per bucket, its 95% interval as a shaded band, flagged buckets as red marks."""
    lo = [r.get("ci_low") for r in rows]
    hi = [r.get("ci_high") for r in rows]
    fig.add_trace(go.Scatter(x=x, y=hi, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"), row, 1)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=lo,
            mode="lines",
            line=dict(width=0),
            fill="tonexty",
            fillcolor="rgba(99,110,250,0.18)",
            name=f"{name} 95% CI",
            hoverinfo="skip",
            showlegend=False,
        ),
        row,
        1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[r.get("estimate") for r in rows],
            mode="lines+markers",
            name=name,
            line=dict(color=colour),
            customdata=[[r.get("n"), r.get("role"), r.get("adjusted_p")] for r in rows],
            hovertemplate="%{x}<br>%{y:.3f} (n=%{customdata[0]}, %{customdata[1]}, adj. p %{customdata[2]})"
            "<extra>" + esc(name) + "</extra>",
        ),
        row,
        1,
    )
    flagged = [r for r in rows if r.get("flagged")]
    if flagged:
        fig.add_trace(
            go.Scatter(
                x=[minute(r["start_ms"]) for r in flagged],
                y=[r.get("estimate") for r in flagged],
                mode="markers",
                marker=dict(symbol="x", size=14, color="#cf222e", line=dict(width=2)),
                name=f"{name} flagged",
                hovertext=[f"flagged: {r['diff']:+.3f} vs baseline, adj. p {r['adjusted_p']:.2g}" for r in flagged],
                hoverinfo="text",
            ),
            row,
            1,
        )


def watch_plot(result) -> WatchPlot:
    """Plotly chart of a WatchResult (``result.plot()``)."""
    panels = [(name, name) for name in result.scorers]
    drift = result.measure("input drift")
    if drift:
        panels.append(("input drift", "input drift: share of requests far from the baseline"))
    if result.measure("prompt tokens") or result.measure("completion tokens"):
        panels.append(("tokens", "tokens per request (prompt, completion)"))
    if result.measure("latency s"):
        panels.append(("latency s", "latency per request (s)"))
    panels.append(("requests", "requests per bucket"))
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[title for _, title in panels],
        vertical_spacing=min(0.08, 0.3 / len(panels)),
    )
    palette = ("#636efa", "#00a2a6", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692")
    for i, (measure, _) in enumerate(panels, start=1):
        rows = result.measure(measure)
        x = [minute(r["start_ms"]) for r in rows]
        if measure == "requests":
            fig.add_trace(go.Bar(x=x, y=[r["estimate"] for r in rows], name="requests", marker_color="#9a9a9a"), i, 1)
            continue
        if measure == "tokens":
            for j, part in enumerate(("prompt tokens", "completion tokens")):
                part_rows = result.measure(part)
                if part_rows:
                    xs = [minute(r["start_ms"]) for r in part_rows]
                    _band(fig, part_rows, xs, part, palette[(i + j) % len(palette)], i)
            continue
        _band(fig, rows, x, measure, palette[(i - 1) % len(palette)], i)
        base = result.baselines.get(measure)
        if base is not None and base[1] is not None:
            fig.add_hline(
                y=base[1],
                line_dash="dash",
                line_color="#444",
                row=i,
                col=1,
                annotation_text=f"baseline {base[1]:.3g}",
                annotation_position="bottom left",
            )
    for change in result.changes:
        # One line through every panel: x on the shared time axis, y over the whole figure.
        fig.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=minute(change.at_ms),
            x1=minute(change.at_ms),
            y0=0,
            y1=1,
            line=dict(dash="dot", color=CHANGE_COLOURS.get(change.kind, CHANGE_COLOURS["traces"]), width=1.5),
            opacity=0.7,
        )
    if result.changes:
        # Shapes carry no hover: a marker per change at the foot of the requests bars (y = 0 is
        # always on that panel's scale) says what moved.
        fig.add_trace(
            go.Scatter(
                x=[minute(c.at_ms) for c in result.changes],
                y=[0] * len(result.changes),
                mode="markers",
                marker=dict(
                    symbol="triangle-down",
                    size=12,
                    color=[CHANGE_COLOURS.get(c.kind, "#0969da") for c in result.changes],
                ),
                name="changes",
                hovertext=[f"{c.when} · {c.kind}: {c.text}" for c in result.changes],
                hoverinfo="text",
            ),
            len(panels),
            1,
        )
    fig.update_layout(
        title=f"{result.name}: {result.line().split(' · ', 1)[0]}",
        template="plotly_white",
        height=160 + 240 * len(panels),
        showlegend=True,
    )
    summary = [
        ["traces", f"{result.counts.get('traces', 0):,}"],
        ["buckets", len(result.buckets)],
        ["baseline", result.baseline],
        ["flags", len(result.flags)],
        ["changes", len(result.changes)],
    ]
    return WatchPlot(result.name, fig, summary)
