"""Charts of a real shadow comparison: every panel carries the rows' numbers."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

import llmops_magics
from llmops_magics.widgets.plots import TALLY_BARS, ShadowPlots

QUESTIONS = ["What is the capital of Italy?", "Name a fruit.", "What is 3 + 3?"]


@pytest.fixture(scope="module")
def result(lora_adapter):
    return llmops_magics.shadow(
        QUESTIONS, primary="default", candidate=str(lora_adapter), max_tokens=16, name="plots-test", adapter_mode="lora"
    )


def test_figures_carry_the_rows(result):
    plots = result.plot()
    assert isinstance(plots, ShadowPlots)
    assert set(plots.figures) == {"similarity", "length_ratio", "latency", "checks", "review"}
    rows = result.rows

    edit, emb = plots.figures["similarity"].data
    assert list(edit.x) == [r["edit_similarity"] for r in rows]
    assert list(emb.x) == [r["embedding_similarity"] for r in rows]
    (length,) = plots.figures["length_ratio"].data
    assert list(length.x) == [r["length_ratio"] for r in rows]
    # The tolerance band of the length check is drawn around 1.
    band = [s for s in plots.figures["length_ratio"].layout.shapes if s.type == "rect"]
    assert band and band[0].x0 == pytest.approx(1 - result.thresholds.length_ratio_margin)

    primary, candidate = plots.figures["latency"].data
    assert list(primary.y) == [r["primary_latency_s"] for r in rows]
    assert list(candidate.y) == [r["candidate_latency_s"] for r in rows]
    assert result.primary in primary.name and result.candidate in candidate.name

    markers = {(y, x) for trace in plots.figures["checks"].data for x, y in zip(trace.x, trace.y)}
    assert markers == {(c.name, c.verdict) for c in result.checks}

    (bars,) = plots.figures["review"].data
    assert list(bars.x) == list(TALLY_BARS) and list(bars.y) == [0, 0, 0, 0]
    assert "no verdicts yet" in plots.figures["review"].layout.title.text

    # The notebook gets one dashboard figure with the traces of every panel that has data:
    # nobody voted yet, so no empty tally panel.
    bundle = plots._repr_mimebundle_()
    fig = bundle["application/vnd.plotly.v1+json"]
    assert "review" not in plots.panels and set(plots.panels) >= {"similarity", "length_ratio", "checks"}
    assert len(fig["data"]) == sum(len(plots.figures[p].data) for p in plots.panels)
    assert not any("Review tally" in a["text"] for a in fig["layout"]["annotations"])
    assert "plots-test" in bundle["text/plain"]


def test_review_tally_panel_follows_the_votes(result):
    session = result.review(seed=7, reviewer="bob").session
    for choice in ("left", "right", "tie"):
        session.go(session.first_unreviewed())
        session.vote(choice)
    tally = session.tally()
    (bars,) = result.plot(seed=7).figures["review"].data
    assert list(bars.y) == [tally.candidate_wins, tally.primary_wins, tally.ties, tally.skips]
    assert sum(bars.y) == 3


def test_export_html_writes_a_static_page_that_escapes_names(result, tmp_path):
    plots = result.plot(review=False)
    plots.title = "<script>window.x=1</script>"
    path = plots.export_html(tmp_path / "out" / "shadow.html")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "plotly" in page.lower() and "Plotly.newPlot" in page
    assert page.count("Plotly.newPlot") == len(plots.figures)
    assert "&lt;script&gt;window.x=1&lt;/script&gt;" in page and "<script>window.x=1" not in page
    # plotly.js itself is inlined once, so the page opens offline.
    assert page.count("cdn.plot.ly") == 0 or "plotly.js v" in page


def test_plot_data_round_trips_as_json(result):
    fig = result.plot(review=False).figures["similarity"]
    data = json.loads(fig.to_json())
    assert isinstance(go.Figure(data), go.Figure)
