"""What a saved notebook shows once its kernel is gone, in notebooks executed by nbclient.

* Our progress bars are saved finished, as one line (``backfill docs.x · 30/30 · 0.4 s``),
  never as a widget stuck at "0%|"; their widgets leave no state behind.
* The review widget's saved output carries a static copy (tally and cases) beside the
  view, and its state is saved without this machine's paths.
* The kernel knows its notebook (``JPY_SESSION_NAME``), relative to its folder.
* The shadow dashboard shows the panels that have data: no empty tally, no flat latency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import nbformat
import pytest

from llmops_magics.backends.base import Sampling
from llmops_magics.backends.progress import progress_bar, summary_line
from llmops_magics.core.notebooks import run_notebook
from llmops_magics.core.review.session import open_review
from llmops_magics.core.shadow.result import ShadowResult
from llmops_magics.core.shadow.stats import Check, Thresholds, Verdict
from llmops_magics.widgets.plots import shadow_plots

WIDGET = "application/vnd.jupyter.widget-view+json"

CELLS = [
    "%load_ext llmops_magics",
    '%llm_model register saved --base default -m "bars in a saved notebook"',
    textwrap.dedent("""\
        import llmops_magics
        facts = ["Bees make honey.", "The Nile is long.", "Owls hunt at night."]
        llmops_magics.create_index("docs", [f"{f} ({i})" for i, f in enumerate(facts * 10)])"""),
    "%lance_migrate start docs --to minilm-cls\n%lance_migrate backfill docs",
    textwrap.dedent("""\
        from llmops_magics.backends.progress import progress_bar
        try:
            with progress_bar(total=4, desc="interrupted work") as bar:
                bar.update(1)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass"""),
    textwrap.dedent("""\
        from llmops_magics.core.review.session import ReviewSession
        from llmops_magics.widgets.review import ReviewWidget
        rows = [{"id": i, "input": f"question {i}", "prompt": f"question {i}",
                 "primary_output": f"primary answer {i}", "candidate_output": f"candidate answer {i}"}
                for i in range(3)]
        session = ReviewSession(rows, sync=False, reviewer="ann")
        session.vote("left")
        ReviewWidget(session)"""),
    "import os; print(os.environ.get('JPY_SESSION_NAME'))",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, llmops_home):
    folder = tmp_path_factory.mktemp("saved")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, folder / "bars.ipynb")
    executed = run_notebook(folder / "bars.ipynb", folder / "bars.out.ipynb", cwd=folder, timeout=600)
    return executed, (folder / "bars.out.ipynb").read_text(), llmops_home


def _texts(cell) -> list[str]:
    return [o["data"].get("text/plain", "") for o in cell.outputs if "data" in o]


def test_saved_bars_are_finished_lines_not_widgets(saved):
    nb, text, _home = saved
    assert "0%|" not in text, "a bar was saved unfinished"
    register, _index, backfill, interrupted = (_texts(nb.cells[i]) for i in (1, 2, 3, 4))
    digests = [t for t in register if t.startswith("digests of saved ·")]
    assert len(digests) == 1 and digests[0].endswith(" s"), register
    assert "MB" in digests[0] and "stopped" not in digests[0]
    assert any(t.startswith("backfill docs.vector_minilm_cls · 30/30 · ") for t in backfill), backfill
    assert len(interrupted) == 1 and interrupted[0].startswith("interrupted work · stopped at 1/4 · "), interrupted
    for i in (1, 2, 3, 4):
        assert not any(WIDGET in o.get("data", {}) for o in nb.cells[i].outputs), f"cell {i} kept a bar widget"


def test_closed_bars_leave_no_widget_state_and_the_review_widget_keeps_its_own(saved):
    nb, _text, _home = saved
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    (review_out,) = [o for o in nb.cells[5].outputs if WIDGET in o.get("data", {})]
    model_id = review_out["data"][WIDGET]["model_id"]
    assert model_id in state, "the review widget's state is saved with the notebook"
    names = {s["model_name"] for s in state.values()}
    assert "FloatProgressModel" not in names and "HBoxModel" not in names, names


def test_review_widget_saves_a_static_copy_with_the_tally(saved):
    nb, _text, home = saved
    (out,) = [o for o in nb.cells[5].outputs if WIDGET in o.get("data", {})]
    html, plain = out["data"]["text/html"], out["data"]["text/plain"]
    for shown in (html, plain):
        assert "candidate win rate" in shown and "1 of 3 reviewed" in shown
        assert "question 2" in shown and "primary answer 2" in shown and "not reviewed" in shown
    # Blind until voted: the voted case names its sides, the others do not.
    assert plain.count("(primary)") == 1 and plain.count("(candidate)") == 1
    saved_review = json.dumps([out, nb.metadata["widgets"]])
    assert str(home) not in saved_review, "the llmops home's absolute path was saved with the widget"


def test_the_kernel_knows_its_notebook(saved):
    nb, _text, _home = saved
    assert "".join(o.get("text", "") for o in nb.cells[6].outputs).strip() == "bars.ipynb"


def test_a_bar_outside_a_kernel_is_tqdm_on_its_console_and_sums_up_the_same():
    import io

    from tqdm.std import tqdm

    console = io.StringIO()
    bar = progress_bar(total=6, desc="primary: chat/1", file=console)
    assert type(bar) is tqdm
    bar.update(6)
    bar.close()
    assert "6/6" in console.getvalue()
    assert summary_line(bar).startswith("primary: chat/1 · 6/6 · ")
    sized = progress_bar(total=2_000_000, desc="digests of x", unit="B", unit_scale=True, file=io.StringIO())
    sized.update(2_000_000)
    sized.close()
    assert summary_line(sized).startswith("digests of x · 2.00MB · ")


LIBRARY_NOISE = textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    from llmops_magics.backends import engine_logs
    from transformers.utils import logging as hf_logging

    log = Path(sys.argv[1])
    with engine_logs.quiet_libraries():  # before the logs are routed
        print("bars off inside:", not hf_logging.is_progress_bar_enabled())
    print("bars back after:", hf_logging.is_progress_bar_enabled())
    engine_logs.route_engine_logs(log)
    lib = sys.prefix + "/lib/python3/site-packages/vllm/triton_utils/dispatcher.py"
    warnings.warn_explicit("reduce_op is deprecated", FutureWarning, lib, 139)
    warnings.warn_explicit("your own warning", UserWarning, "/tmp/notebook-cell.py", 3)
""")


def test_library_warnings_and_bars_stay_out_of_the_console(tmp_path):
    log = tmp_path / "engines.log"
    # A fresh process as a user's kernel starts: bars on (this test process has routed engine
    # logs, which turns them off for its children through the environment).
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    out = subprocess.run(
        [sys.executable, "-c", LIBRARY_NOISE, str(log)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "bars off inside: True" in out.stdout and "bars back after: True" in out.stdout
    assert "reduce_op is deprecated" not in out.stderr and "site-packages" not in out.stderr
    assert "reduce_op is deprecated" in log.read_text(), "the engine log keeps it"
    assert "your own warning" in out.stderr, "a warning from the user's code still shows"


def _result(rows: list[dict]) -> ShadowResult:
    checks = (Check("edit similarity", "change", "inconclusive", 0.5, None, "few cases"),)
    return ShadowResult(
        name="plots-unit",
        primary="chat/1",
        candidate="chat/2",
        rows=rows,
        verdict=Verdict("inconclusive", ("few cases",), checks),
        aggregates={},
        params={},
        sampling=Sampling(),
        thresholds=Thresholds(),
    )


def _rows(latencies: tuple[list[float], list[float]]) -> list[dict]:
    # Numbers for the charts' bookkeeping, not a model's output: the plot only draws them.
    return [
        {
            "id": i,
            "input": f"q{i}",
            "prompt": f"q{i}",
            "primary_output": f"primary {i}",
            "candidate_output": f"candidate {i}",
            "exact_match": False,
            "edit_similarity": 0.5 + 0.1 * i,
            "embedding_similarity": 0.8,
            "length_ratio": 1.0 + 0.05 * i,
            "primary_latency_s": latencies[0][i],
            "candidate_latency_s": latencies[1][i],
        }
        for i in range(3)
    ]


def _titles(plots) -> list[str]:
    return [a.text for a in plots.dashboard.layout.annotations]


def test_shadow_dashboard_shows_only_panels_with_data(tmp_path):
    # One batch per side: every case carries its batch's latency, nothing to chart.
    flat = _result(_rows(([1.4, 1.4, 1.4], [0.7, 0.7, 0.7])))
    plots = shadow_plots(flat)
    assert plots.panels == ["similarity", "length_ratio", "checks"]
    assert not any("Review tally" in t or "Latency" in t for t in _titles(plots)), _titles(plots)
    assert ["latency (mean)", "primary 1.40 s · candidate 0.70 s"] in plots.summary
    fig = plots._repr_mimebundle_()["application/vnd.plotly.v1+json"]
    assert len(fig["data"]) == sum(len(plots.figures[p].data) for p in plots.panels)

    # Once someone votes, the tally has data and its panel appears.
    open_review(flat, reviewer="ann").vote("left")
    voted = shadow_plots(flat)
    assert "review" in voted.panels and any("Review tally" in t for t in _titles(voted))

    spread = shadow_plots(_result(_rows(([1.2, 1.5, 1.3], [0.6, 0.9, 0.7]))), review=False)
    assert "latency" in spread.panels and "review" not in spread.panels
