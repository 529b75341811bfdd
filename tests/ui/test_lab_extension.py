"""The JupyterLab extension in a real ``jupyter lab`` and Chromium: lineage badges,
the LLMOps panel, lineage kept in cell metadata, and text-only rendering.

The renderer tests display hand-written lineage bundles from a cell (what the kernel
would emit), which pins down the contract the kernel side fills; the end-to-end test
drives the real magics.
"""

from __future__ import annotations

import copy
import time

import pytest
from lab_harness import empty_notebook

MIME = "application/vnd.llmops.lineage+json"
XSS = '<img src=x onerror="window.__llmopsXss=1">'
RUN_ID = "3f2a1b2c9d8e7f6054a3b2c1d0e9f8a7"

pytestmark = pytest.mark.slow


def bundle(**overrides) -> dict:
    b = {
        "version": 1,
        "record_id": "rec-1",
        "session_id": "sess-1",
        "notebook": "render.ipynb",
        "cell_id": None,
        "execution_count": 1,
        "status": "ok",
        "error_type": None,
        "started": "2026-11-27T17:00:00.000+00:00",
        "duration_s": 1.25,
        "prompts": [{"name": "summarize", "version": "4", "digest": "sha256:0123456789abcdef0123"}],
        "models": [{"name": "chat", "version": "2", "digest": "sha256:feedfacecafebeef1234", "backend": "vllm"}],
        "runs": [{"run_id": RUN_ID, "experiment_id": "7", "kind": "llm"}],
        "pins": [
            {
                "kind": "prompt",
                "name": "summarize",
                "version": "4",
                "alias": "production",
                "alias_now": "4",
                "digest": "sha256:0123456789abcdef0123",
                "drift": False,
                "message": None,
            }
        ],
        "tokens": {"prompt": 31, "completion": 16},
        "latency_s": 0.42,
        "tables": [{"table": "docs", "version_before": 3, "version_after": 4, "step": "backfill"}],
        "shadow": [],
        "adapter_checks": [],
        "events": [],
        "summary": "prompt summarize/4 · model chat/2 · run 3f2a1b2c",
    }
    b.update(overrides)
    return b


def show(b: dict) -> str:
    """A cell that displays a bundle the way the kernel's lineage hook does."""
    return f"from IPython.display import display\ndisplay({{{MIME!r}: {b!r}, 'text/plain': 'lineage'}}, raw=True)"


def open_panel(lab_page):
    lab_page.command("LLMOps: Show Lineage Panel")
    panel = lab_page.page.locator("#llmops-panel")
    panel.wait_for()
    return panel


def test_bundle_shows_badges_keeps_metadata_and_comes_back_from_it(lab_page, jupyter_lab):
    page = lab_page.page
    lab_page.new_notebook("render.ipynb")
    cell = lab_page.run_cell(show(bundle()))

    badges = cell.locator(".jp-llmops-lineage-output summary")
    text = badges.inner_text()
    assert "summarize v4" in text and "chat v2" in text and "ok" in text
    link = badges.locator("a.jp-llmops-run")
    assert link.get_attribute("href") == f"http://127.0.0.1:5999/#/experiments/7/runs/{RUN_ID}"

    details = cell.locator(".jp-llmops-details")
    assert not details.is_visible()
    badges.click(position={"x": 4, "y": 6})
    details.wait_for()
    for expected in ("@production", "0123456789ab", "31 in / 16 out", "latency 0.42 s", "backfill"):
        assert expected in details.inner_text()

    saved = lab_page.save("render.ipynb")
    assert saved["cells"][0]["metadata"]["llmops"]["record_id"] == "rec-1"
    assert saved["cells"][0]["metadata"]["llmops"]["models"][0]["name"] == "chat"

    # The alias moves: the next record carries the pin with drift.
    moved = bundle(
        record_id="rec-2",
        execution_count=2,
        started="2026-11-27T17:01:00.000+00:00",
        pins=[dict(bundle()["pins"][0], alias_now="5", drift=True, message="production moved from 4 to 5")],
    )
    lab_page.run_cell(show(moved))
    panel = open_panel(lab_page)
    panel.locator(".jp-llmops-drift-banner").wait_for()
    assert "1 pin drifted" in panel.inner_text()
    assert "@production now → v5" in panel.locator(".jp-llmops-pin-drift").inner_text()

    # A cell re-run without llmops work no longer carries its old lineage.
    third = lab_page.run_cell(show(bundle(record_id="rec-3", execution_count=3)))
    third.locator(".jp-llmops-lineage-output").wait_for()
    panel.locator(".jp-llmops-cell-item").nth(2).wait_for()
    third.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("1 + 1")
    page.keyboard.press("Control+Enter")
    third.locator(".jp-OutputArea").get_by_text("2", exact=True).wait_for()
    assert third.locator(".jp-llmops-lineage").count() == 0
    items = panel.locator(".jp-llmops-cell-item")
    assert items.count() == 2
    assert items.nth(0).inner_text().startswith("[1]")

    # Outputs cleared and saved: metadata keeps the lineage, badges come from it.
    lab_page.command("Clear Outputs of All Cells")
    from_meta = lab_page.cell(0).locator(".jp-llmops-cell-lineage details[data-source=metadata]")
    from_meta.wait_for()
    assert "summarize v4" in from_meta.inner_text()
    saved = lab_page.save("render.ipynb")
    assert saved["cells"][0]["outputs"] == []
    assert saved["cells"][1]["metadata"]["llmops"]["record_id"] == "rec-2"
    assert "llmops" not in saved["cells"][2]["metadata"]

    # Reopened from disk in a new page: badges and the panel come back from metadata.
    jupyter_lab.write_notebook("reopened.ipynb", saved)
    lab_page.open("reopened.ipynb")
    restored = lab_page.cell(0).locator(".jp-llmops-cell-lineage summary")
    restored.wait_for()
    assert "summarize v4" in restored.inner_text() and "chat v2" in restored.inner_text()
    panel = open_panel(lab_page)
    panel.locator(".jp-llmops-drift-banner").wait_for()
    assert panel.locator(".jp-llmops-cell-item").count() == 2

    # A click in the panel scrolls to and selects the cell.
    panel.locator(".jp-llmops-cell-item").nth(1).click()
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')[1]"
        ".classList.contains('jp-mod-active')"
    )


def test_strings_from_the_kernel_render_as_text(lab_page):
    page = lab_page.page
    hostile = bundle(
        status="error",
        error_type=XSS,
        summary=XSS,
        prompts=[{"name": XSS, "version": XSS, "digest": XSS}],
        models=[{"name": XSS, "version": "1", "digest": XSS, "backend": XSS}],
        pins=[
            {
                "kind": "prompt",
                "name": XSS,
                "version": "1",
                "alias": XSS,
                "alias_now": "2",
                "digest": XSS,
                "drift": True,
                "message": XSS,
            }
        ],
        shadow=[{"name": XSS, "verdict": XSS, "run_id": RUN_ID}],
        tables=[{"table": XSS, "version_before": 1, "version_after": 2, "step": XSS}],
        runs=[{"run_id": XSS, "experiment_id": XSS, "kind": XSS}],
    )
    lab_page.new_notebook("lineage-xss.ipynb")
    cell = lab_page.run_cell(show(hostile))
    badges = cell.locator(".jp-llmops-lineage-output")
    badges.locator("summary").click(position={"x": 4, "y": 6})
    badges.locator(".jp-llmops-details").wait_for()
    panel = open_panel(lab_page)
    panel.locator(".jp-llmops-drift-banner").wait_for()
    page.wait_for_timeout(300)  # time for a (wrongly) parsed <img> to fail and fire onerror

    assert page.evaluate("() => window.__llmopsXss") is None
    assert badges.locator("img").count() == 0 and panel.locator("img").count() == 0
    assert XSS in badges.inner_text()
    assert XSS in panel.inner_text()
    link = badges.locator("a.jp-llmops-run").first.get_attribute("href")
    assert link.startswith("http://127.0.0.1:5999/#/experiments/%3Cimg")

    # A record from a newer kernel side says what to do instead of half-rendering.
    cell = lab_page.run_cell(show(bundle(version=99)))
    message = cell.locator(".jp-llmops-lineage-invalid").inner_text()
    assert "version 99" in message and "pip install -U llmops-magics" in message

    # Another cell's record shown on purpose renders, but is not copied into this cell.
    other = lab_page.run_cell(show(bundle(record_id="rec-other", cell_id="some-other-cell")))
    other.locator(".jp-llmops-lineage-output summary").wait_for()
    saved = lab_page.save("lineage-xss.ipynb")
    assert saved["cells"][0]["metadata"]["llmops"]["summary"] == XSS
    assert "llmops" not in saved["cells"][1]["metadata"]
    assert "llmops" not in saved["cells"][2]["metadata"]


def test_real_magics_badge_panel_drift_metadata_and_reopen(lab_page, jupyter_lab, tmp_path, screenshot_dir):
    """The issue's walk-through with the real kernel side: registry, pins, %%llm, alias."""
    lab_page.new_notebook("walkthrough.ipynb")
    lab_page.run_cell("%load_ext llmops_magics\n%config LlmopsMagics.backend = 'transformers'")
    lab_page.run_cell("%llm_model register chat --base default --alias champion")
    lab_page.run_cell("%%llm_prompt summarize -m first --alias production\nSummarize in one line: {{text}}")
    lab_page.run_cell("%%llm_prompt summarize -m second\nSummarize in five words: {{text}}")
    lab_page.run_cell("%llm_pin prompt summarize@production")
    ask = (
        "%%llm --prompt summarize --model chat@champion --max-tokens 16\n"
        "The cat sat on the mat all afternoon and then slept."
    )
    cell = lab_page.run_cell(ask)
    llm_index = lab_page.cells.count() - 2

    badges = cell.locator(".jp-llmops-lineage-output summary")
    text = badges.inner_text()
    assert "summarize v1" in text and "chat v1" in text and "ok" in text
    href = badges.locator("a.jp-llmops-run").get_attribute("href")
    assert href.startswith("http://127.0.0.1:5999/#/experiments/") and "/runs/" in href
    saved = lab_page.save("walkthrough.ipynb")
    lineage = saved["cells"][llm_index]["metadata"]["llmops"]
    assert lineage["prompts"][0]["name"] == "summarize" and lineage["prompts"][0]["version"] == "1"
    assert lineage["runs"][0]["run_id"] in href
    assert lineage["cell_id"] == saved["cells"][llm_index]["id"]

    panel = open_panel(lab_page)
    pin = panel.locator(".jp-llmops-pin").filter(has_text="prompt summarize v1")
    pin.wait_for()
    assert panel.locator(".jp-llmops-drift-banner").count() == 0

    # The alias moves on. The kernel learns it on --check (which fails the cell, as it
    # should); the next llmops cell's record carries the drifted pin to the panel.
    lab_page.run_cell("%llm_alias prompt summarize production 2")
    lab_page.run_cell("%llm_pin --check")
    lab_page.run_cell(ask)
    panel.locator(".jp-llmops-drift-banner").wait_for()
    assert "now → v2" in panel.locator(".jp-llmops-pin-drift").inner_text()
    last = lab_page.cell(lab_page.cells.count() - 2)
    assert "1 pin drifted" in last.locator(".jp-llmops-lineage-output summary").inner_text()

    last.locator(".jp-llmops-lineage-output summary").click(position={"x": 4, "y": 6})
    last.locator(".jp-llmops-details").wait_for()
    lab_page.screenshot(screenshot_dir / "lineage-badges.png", lab_page.page.locator(".jp-NotebookPanel:visible"))
    lab_page.screenshot(screenshot_dir / "llmops-panel.png")  # the notebook beside the panel

    # Saved without outputs and reopened: the badge comes back from metadata.
    saved = lab_page.save("walkthrough.ipynb")
    stripped = copy.deepcopy(saved)
    for c in stripped["cells"]:
        c["outputs"] = []
    jupyter_lab.write_notebook("walkthrough-reopened.ipynb", stripped)
    lab_page.open("walkthrough-reopened.ipynb")
    restored = lab_page.cell(llm_index).locator(".jp-llmops-cell-lineage summary")
    restored.wait_for()
    assert "summarize v1" in restored.inner_text() and "chat v1" in restored.inner_text()


def test_a_saved_notebook_opens_unmodified_with_verdict_chips(lab_page, jupyter_lab):
    """An executed notebook (nbclient saves lineage outputs, no metadata) opened in the lab:
    nothing is written into it, its adapter chip says ``degraded``, and the panel does not
    call the saved pins the kernel's state (issue 19)."""

    def output(b: dict) -> dict:
        return {"output_type": "display_data", "metadata": {}, "data": {MIME: b, "text/plain": "lineage"}}

    registered = bundle(
        record_id="rec-reg",
        execution_count=3,
        prompts=[],
        models=[{"name": "chat", "version": "2", "digest": "af39a9", "backend": None}],
        runs=[],
        registry=[
            {"action": "registered", "kind": "model", "name": "chat", "version": "2"},
            {"action": "alias", "kind": "model", "name": "chat", "alias": "challenger", "from": None, "to": "2"},
        ],
    )
    checked = bundle(
        record_id="rec-adapter",
        execution_count=21,
        started="2026-11-27T17:05:00.000+00:00",
        adapter_checks=[{"adapter": "adapters/in-short", "verdict": "degraded", "run_id": RUN_ID}],
    )
    nb = empty_notebook()
    # What the lab's kernel reports: JupyterLab itself rewrites a notebook's kernelspec and
    # language_info when they differ, which is not what this test is about.
    from ipykernel.ipkernel import IPythonKernel

    nb["metadata"] = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": dict(IPythonKernel.language_info),
    }
    nb["cells"] = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {},
            "execution_count": b["execution_count"],
            "source": "%adapter_check ...",
            "outputs": [output(b)],
        }
        for i, b in enumerate((registered, checked))
    ]
    path = jupyter_lab.write_notebook("executed.ipynb", nb)
    on_disk = path.read_bytes()
    lab_page.open("executed.ipynb")
    chips = lab_page.cell(1).locator(".jp-llmops-lineage-output summary")
    chips.wait_for()
    verdict = chips.locator(".jp-llmops-verdict-chip")
    assert verdict.locator(".jp-llmops-chip-value").text_content() == "degraded"
    assert "jp-llmops-tone-bad" in verdict.get_attribute("class")
    assert "registered" in lab_page.cell(0).locator(".jp-llmops-lineage-output summary").inner_text()
    panel = open_panel(lab_page)
    origin = panel.locator(".jp-llmops-panel-origin")
    origin.wait_for()
    assert "kernel state" not in origin.inner_text() and "as saved with cell [21]" in origin.inner_text()
    assert "registered model chat/2 · challenger -> 2" in panel.inner_text()
    time.sleep(3)  # past the sync's deferred scans
    tab = lab_page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="executed.ipynb")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")
    assert path.read_bytes() == on_disk
