"""The executed quickstart as a user receives it (what `make demo` leaves, or a colleague's
saved notebook), opened in a real JupyterLab in Debian's Chromium.

A saved notebook must read as finished and be safe to share: no progress bar stuck at
"0%", no absolute path of the machine it ran on, verdict chips that say the verdict,
a review widget that still shows its tally without a kernel, and opening it to read it
must not modify it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NAME = "quickstart-saved.ipynb"


def _cell_index(nb: dict, tag: str) -> int:
    return next(i for i, c in enumerate(nb["cells"]) if tag in c.get("metadata", {}).get("tags", []))


def _machine_paths(executed) -> dict[str, str]:
    """Absolute paths that say which machine (and user) ran the notebook."""
    from llmops_magics import settings

    paths = {
        "the home": str(Path.home()),
        "the venv": sys.prefix,
        "the model cache": str(settings().model_cache),
        "the working folder": str(executed.folder),
        "the llmops home": str(executed.home),
    }
    return {what: p for what, p in paths.items() if p != "/"}  # "/" as a home would match every path


def test_saved_quickstart_is_finished_and_shareable(executed_quickstart):
    text = executed_quickstart.path.read_text()
    nb = json.loads(text)
    stuck = [
        (i, line.strip()[:80])
        for i, cell in enumerate(nb["cells"])
        for out in cell.get("outputs", [])
        for line in json.dumps(out).split("\\n")
        if "0%|" in line
    ]
    assert not stuck, f"progress bars saved unfinished: {stuck}"
    for what, path in _machine_paths(executed_quickstart).items():
        # The path itself or a path under it; "/root.jsonl" (a file named for reviewer root) is neither.
        found = re.search(re.escape(path) + r"(?=[/\"'\s]|$)", text)
        where = text[found.start() - 80 : found.end() + 40] if found else ""
        assert found is None, f"{what} ({path}) appears in the saved notebook: {where!r}"


def test_opening_the_saved_quickstart_shows_verdicts_and_leaves_it_unmodified(
    lab_page, jupyter_lab, executed_quickstart, screenshot_dir
):
    target = jupyter_lab.work / NAME
    shutil.copy(executed_quickstart.path, target)
    before = target.read_bytes()
    nb = json.loads(before)
    page = lab_page.open(NAME).page

    # The adapter check's chip says its verdict, not "ok".
    adapter = lab_page.cell(_cell_index(nb, "adapter-check"))
    adapter.scroll_into_view_if_needed()
    chips = adapter.locator(".jp-llmops-chip")
    chips.first.wait_for()
    # text_content: JupyterLab renders only the cells near the viewport as visible text.
    values = [(t or "").strip() for t in chips.evaluate_all("els => els.map(e => e.textContent)")]
    assert any("degraded" in v for v in values), values
    assert not any(v.endswith("ok") for v in values), values

    # The review widget, without its kernel-side session, still shows the tally.
    review = lab_page.cell(
        next(i for i, c in enumerate(nb["cells"]) if "".join(c["source"]).startswith("_shadow.review"))
    )
    review.scroll_into_view_if_needed()
    output = review.locator(".jp-OutputArea")
    output.get_by_text(re.compile(r"candidate win rate|tally", re.I)).first.wait_for()

    # Reading is not editing: no dirty mark, nothing written back.
    time.sleep(3)  # the extension has synced every cell's metadata by now
    tab = page.locator(".lm-TabBar-tab", has_text=NAME)
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "opening the notebook marked it modified"
    lab_page.screenshot(screenshot_dir / "saved-quickstart.png")
    assert target.read_bytes() == before, "opening the notebook rewrote it"
