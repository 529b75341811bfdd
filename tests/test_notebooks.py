"""Every notebook runs end to end with nbclient on a real kernel, and says what it should."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from notebook_runs import ExecutedNotebook  # tests/ is on sys.path (conftest)

from llmops_magics.core.notebooks import cell_text

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _outputs_by_tag(nb) -> dict[str, str]:
    """Text of each tagged code cell's outputs (cells carry tags like `llm-answer`)."""
    out = {}
    for cell in nb.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            out[tag] = cell_text(cell)
    return out


# What each notebook must show, by cell tag: (tag, substring that must appear).
EXPECTED = {
    "quickstart.ipynb": [
        ("prompt-v1", "registered summarize/1"),
        ("model-v1", "registered chat/1"),
        ("train-adapter", "adapter saved to adapters/in-short"),
        ("model-v2", "registered chat/2"),
        ("pins", "production"),
        ("llm-answer", "Paris"),
        ("llm-backend", "backend: vllm"),
        ("llm-each-line", "100"),
        ("llm-prompt", "model chat/1"),
        # The trained adapter prefixes every answer with "In short:": all cases differ.
        ("shadow-verdict", "differing cases: 6 of 6"),
        # Different answers are a behaviour change; no quality check says they are worse.
        ("shadow-verdict", "behaviour: changed"),
        ("shadow", "cost / 1,000 requests: primary $"),
        # Six cases and an inconclusive verdict are no evidence: the gate refuses in one line.
        ("promote", "refused: "),
        ("app-traces", "traced 3 production calls"),
        ("traces-verdict", "behaviour: changed"),
        ("traces-verdict", "recorded side: recorded"),
        # Two weeks played back: a canary summarizing a third of the tickets from day 10 is caught.
        ("app-history", "played back 336 traces over 14 days"),
        ("watch", "FLAGGED"),
        ("watch", "model chat: version chat/1 -> chat/2"),
        ("watch-canary", "worse"),
        ("adapter-verdict", "adapter verdict: degraded"),
        ("lance-shadow", "4 queries"),
        ("lance-status", "cut_over"),
        ("lance-search", "Bees make honey"),
        ("lineage", "prompt summarize/1"),
    ],
    "prompts_and_pins.ipynb": [
        ("p1", "registered summarize/1"),
        ("p-unchanged", "unchanged: still summarize/1"),
        ("p2", "registered summarize/2"),
        ("m1", "registered chat/1"),
        ("history", "production"),
        ("drift", "production now points to 2; you are pinned to 1"),
        ("check", "PinDrift"),
        ("load", "summarize"),
    ],
    "lance_migration.ipynb": [
        ("plan", "24 rows from default-embedding to smollm2-mean"),
        ("status-open", "25"),
        ("shadow", "3 queries"),
        ("search-new", "Bees make honey"),
        ("rollback", "rows"),
    ],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_results(path, request, tmp_path):
    if path.name == "quickstart.ipynb":
        executed = request.getfixturevalue("executed_quickstart").nb  # shared with the UI tests
    else:
        # A copy of notebooks/ with its own embedded home, as a new user's checkout has.
        executed = ExecutedNotebook(path, tmp_path / "notebooks").run().nb
    outputs = _outputs_by_tag(executed)
    for tag, needle in EXPECTED.get(path.name, []):
        assert tag in outputs, f"{path.name} has no cell tagged {tag}"
        assert needle in outputs[tag], f"{path.name} [{tag}] lacks {needle!r}: {outputs[tag][:500]}"
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_every_notebook_has_expectations():
    assert {p.name for p in NOTEBOOKS} <= set(EXPECTED), "add expectations for new notebooks"
