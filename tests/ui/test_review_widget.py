"""The A/B review widget in a real ``jupyter lab`` and Chromium: a real shadow run,
the "Review" button, keyboard votes, the live tally, and text-only rendering."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

XSS_ROWS = [
    {
        "id": "x1",
        "input": "<script>window.__rvXss = 2</script>",
        "prompt": "<script>window.__rvXss = 2</script> question",
        "primary_output": '<img src=x onerror="window.__rvXss = 1"> primary',
        "candidate_output": "<script>window.__rvXss = 3</script> candidate",
    }
]


def tally_text(widget) -> str:
    return widget.locator(".llmops-rv-tally").inner_text()


def wait_text(locator, pattern: str, timeout_ms: float = 30_000) -> None:
    locator.filter(has_text=re.compile(pattern)).first.wait_for(timeout=timeout_ms)


def test_untrusted_outputs_render_as_text(lab_page):
    page = lab_page.page
    lab_page.new_notebook("xss.ipynb")
    cell = lab_page.run_cell(
        "from llmops_magics.core.review.session import ReviewSession\n"
        "from llmops_magics.widgets.review import ReviewWidget\n"
        f"ReviewWidget(ReviewSession({XSS_ROWS!r}, sync=False))"
    )
    widget = cell.locator(".llmops-rv")
    widget.wait_for()
    text = widget.inner_text()
    assert '<img src=x onerror="window.__rvXss = 1"> primary' in text
    assert "<script>window.__rvXss = 3</script> candidate" in text
    assert "<script>window.__rvXss = 2</script> question" in text
    assert widget.locator("img, script").count() == 0
    widget.locator(".llmops-rv-progress").click()
    page.keyboard.press("2")
    wait_text(widget.locator(".llmops-rv-tally"), r"1 of 1 reviewed")
    assert page.evaluate("window.__rvXss") is None


def test_review_a_shadow_with_the_keyboard(lab_page, lora_adapter, screenshot_dir):
    page = lab_page.page
    lab_page.new_notebook("review.ipynb")
    cell = lab_page.run_cell(
        "import llmops_magics\n"
        "r = llmops_magics.shadow(['Name a colour of the sky.', 'What is 2 + 2?'],\n"
        f"    primary='default', candidate={str(lora_adapter)!r}, max_tokens=16, name='ui-review',\n"
        "    adapter_mode='lora')\n"
        "r",
        timeout_ms=560_000,  # a vLLM engine starts in the kernel
    )
    # The result's display carries a Review button (a widget under the static summary).
    cell.get_by_role("button", name="Review").click()
    widget = cell.locator(".llmops-rv")
    widget.wait_for()
    assert "0 of 2 reviewed" in tally_text(widget)
    assert widget.locator(".llmops-rv-label").all_inner_texts() == ["Left", "Right"]  # blind

    widget.locator(".llmops-rv-progress").click()  # focus the widget, not the notebook
    page.keyboard.press("1")
    wait_text(widget.locator(".llmops-rv-tally"), r"1 of 2 reviewed")
    reveal = widget.locator(".llmops-rv-reveal").inner_text()
    assert re.search(r"left was (primary|candidate) \(", reveal)

    page.keyboard.press("n")
    page.keyboard.type("terse but right")
    page.keyboard.press("Enter")
    page.keyboard.press("3")
    wait_text(widget.locator(".llmops-rv-tally"), r"2 of 2 reviewed")
    assert "ties 1" in tally_text(widget)
    assert re.search(r"candidate win rate (0|100)% \(95% Wilson CI", tally_text(widget))

    # Back to the first case: now revealed, with the vote cast.
    page.keyboard.press("ArrowLeft")
    wait_text(widget.locator(".llmops-rv-progress"), r"case 1 of 2")
    labels = widget.locator(".llmops-rv-label").all_inner_texts()
    assert sorted(label.split(" ")[0] for label in labels) == ["candidate", "primary"]
    assert "your verdict: left" in widget.locator(".llmops-rv-reveal").inner_text()
    # The keys went to the widget, not to notebook shortcuts (1/3 would make headings).
    assert lab_page.cells.count() == 2
    lab_page.screenshot(screenshot_dir / "review-widget.png", widget)

    # The kernel's session persisted both verdicts, the note included.
    out = lab_page.run_cell(
        "s = llmops_magics.open_review(r)\n"
        "print(sorted(v.vote for v in s.verdicts.values()), [v.note for v in s.verdicts.values()])"
    )
    text = out.locator(".jp-OutputArea").inner_text()
    assert "['left', 'tie']" in text and "terse but right" in text
