"""The alias history where a user looks for it: the registered model's page and the prompt's
page of the real MLflow UI (a real ``mlflow server``, Debian's Chromium).

The model page renders the registered model's description (markdown): the history is a
list there, newest first, under the user's own text. MLflow 3.17's prompt page shows the
prompt's tags but not its description: the ``alias history`` tag carries the lines,
the chip shows the newest move and its tooltip (``title``) every line.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

pytestmark = pytest.mark.slow

TIMEOUT_MS = 30_000
MINUTE = r"\d{4}-\d\d-\d\d \d\d:\d\d"
USERS_TEXT = "Chat model of the support desk. Owned by the assistants team."


def _moves(uri: str, suffix: str) -> dict:
    """A model and a prompt with two versions each, their aliases moved three times by alice,
    the last move justified by a real (shadow) run. Returns names, the run and the lines."""
    import llmops_magics
    from llmops_magics.core import tracking
    from llmops_magics.core.registry.aliases import alias_history, move_alias
    from llmops_magics.core.registry.models import register_model
    from llmops_magics.core.registry.prompts import register_prompt

    llmops_magics.configure(tracking_uri=uri)
    model, prompt = f"chat-{suffix}", f"summarize-{suffix}"
    register_model(model, "default", message="the embedded default")
    register_model(model, "default", params=["note=second"], message="second")
    tracking.client().update_registered_model(model, description=USERS_TEXT)
    register_prompt(prompt, "Summarize: {{text}}", message="first wording")
    register_prompt(prompt, "Summarize briefly: {{text}}", message="shorter")
    run = tracking.client().create_run(tracking.experiment_id(), run_name="shadow demo").info.run_id
    for kind, name in (("model", model), ("prompt", prompt)):
        move_alias(kind, name, "champion", 1)
        move_alias(kind, name, "challenger", 2)
        moved = move_alias(kind, name, "champion", 2, run_id=run, evidence="shadow run")
        assert not moved.note, moved.note
    lines = {
        name: [m.line() for m in reversed(alias_history(kind, name).moves)]
        for kind, name in (("model", model), ("prompt", prompt))
    }
    return {"model": model, "prompt": prompt, "run": run, "lines": lines}


def _in_order(text: str, lines: list[str]) -> bool:
    at = [text.find(line) for line in lines]
    return all(i >= 0 for i in at) and at == sorted(at)


def test_model_and_prompt_pages_show_the_alias_history(
    mlflow_page, mlflow_server, monkeypatch, screenshot_dir, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    made = _moves(mlflow_server.uri, uuid.uuid4().hex[:6])
    page, base = mlflow_page, mlflow_server.uri

    # The model page: the description, expanded, shows the user's text then the history list.
    lines = made["lines"][made["model"]]
    assert re.fullmatch(rf"champion: 1 -> 2 · alice · {MINUTE} · shadow run {made['run'][:8]}", lines[0]), lines
    page.goto(f"{base}/#/models/{made['model']}")
    # The first load parses MLflow's whole UI bundle: the slowest step on a busy machine.
    page.get_by_text(lines[0], exact=True).wait_for(timeout=2 * TIMEOUT_MS)
    item = page.get_by_role("listitem").filter(has_text=lines[0])
    assert item.is_visible()
    note = item.locator("xpath=ancestor::*[.//p[contains(., 'support desk')]][1]")
    text = note.inner_text()
    assert USERS_TEXT in text and "Alias history" in text and _in_order(text, [USERS_TEXT, *lines]), text
    body = page.locator("body").inner_text()
    assert "llmops:alias-history" not in body and "the embedded default" not in body.split("Versions")[0]
    page.screenshot(path=str(screenshot_dir / "mlflow-model-history.png"))

    # The prompt page: its tags row holds the history; the chip reads as the newest move and
    # its tooltip (the value's title) as every move.
    lines = made["lines"][made["prompt"]]
    page.goto(f"{base}/#/prompts/{made['prompt']}")
    value = page.locator(f"[title^='{lines[0]}']").first
    value.wait_for(timeout=2 * TIMEOUT_MS)
    assert value.get_attribute("title").splitlines() == lines
    chip = value.locator("xpath=..")
    shown = chip.inner_text().replace("\n", "")  # key and value are two blocks of one chip
    assert chip.is_visible() and shown.startswith(f"alias history: {lines[0]}"), shown
    page.screenshot(path=str(tmp_path / "mlflow-prompt-history.png"))
