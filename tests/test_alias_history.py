"""The alias history a person reads on MLflow's pages (issue 19), on a real MLflow store.

Each move stays one tag (what code reads, what concurrent movers rely on); the readable
lines, newest first, are rebuilt from those tags into a marked block of the registered
model's / prompt's description (beside the user's own text) and, for prompts, the tag
MLflow 3.17's prompt page shows. Registering with a message describes the version only.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from registry_helpers import mlflow_client, sqlite_store, store, uniq  # noqa: F401  (fixtures)

import llmops_magics
from llmops_magics.core.registry.aliases import alias_history, move_alias
from llmops_magics.core.registry.history_block import BLOCK_END, BLOCK_START, HISTORY_TAG, user_text
from llmops_magics.core.registry.manifest import MANIFEST
from llmops_magics.core.registry.models import register_model
from llmops_magics.core.registry.prompts import register_prompt
from llmops_magics.core.tracking import read_artifact

MINUTE = r"\d{4}-\d\d-\d\d \d\d:\d\d"


def _block_lines(description: str) -> list[str]:
    """The history lines of the block, as the markdown list items read (escapes undone)."""
    start, end = description.index(BLOCK_START), description.index(BLOCK_END)
    items = [line[2:] for line in description[start:end].splitlines() if line.startswith("- ")]
    return [re.sub(r"\\(.)", r"\1", item) for item in items]


@pytest.fixture
def alice(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    return "alice"


def test_model_description_keeps_the_users_text_and_shows_moves_newest_first(sqlite_store, uniq, alice):
    name = uniq("chat")
    register_model(name, "default", message="the embedded default")
    register_model(name, "default", params=["note=second"], message="second try")
    c = mlflow_client()
    mine = "Our chat model.\n\nOwned by the *assistant* team."
    c.update_registered_model(name, description=mine)

    move_alias("model", name, "champion", 1)
    move_alias("model", name, "challenger", 2)
    move_alias("model", name, "champion", 2, run_id="629d51e5f00dcafe", evidence="shadow run")

    description = c.get_registered_model(name).description
    assert description.startswith(mine + "\n\n" + BLOCK_START)  # the user's text, untouched, first
    lines = _block_lines(description)
    assert len(lines) == 3
    assert re.fullmatch(rf"champion: 1 -> 2 · alice · {MINUTE} · shadow run 629d51e5", lines[0]), lines[0]
    assert re.fullmatch(rf"challenger: unset -> 2 · alice · {MINUTE}", lines[1]), lines[1]
    assert re.fullmatch(rf"champion: unset -> 1 · alice · {MINUTE}", lines[2]), lines[2]
    # The tags underneath still hold every move (oldest first), with the run of the last.
    moves = alias_history("model", name).moves
    assert [(m.alias, m.to_version, m.run_id) for m in moves] == [
        ("champion", 1, None),
        ("challenger", 2, None),
        ("champion", 2, "629d51e5f00dcafe"),
    ]

    # Text the user adds after the block survives the next rebuild, as does the text before.
    after = "\n\nSee also: the runbook."
    c.update_registered_model(name, description=description + after)
    move_alias("model", name, "challenger", 1)
    description = c.get_registered_model(name).description
    assert description.startswith(mine + "\n\n" + BLOCK_START) and description.endswith(BLOCK_END + after)
    assert user_text(description) == mine + "\n\n" + after
    assert _block_lines(description)[0].startswith("challenger: 2 -> 1 · alice · ")
    assert description.count(BLOCK_START) == 1 and len(_block_lines(description)) == 4


def test_a_version_message_describes_the_version_not_the_model(sqlite_store, uniq):
    name = uniq("chat")
    reg = register_model(name, "default", message="the embedded default")
    c = mlflow_client()
    assert "the embedded default" not in (c.get_registered_model(name).description or "")
    assert c.get_model_version(name, str(reg.model.version)).description == "the embedded default"


def test_a_prompt_commit_message_is_the_versions_and_its_history_is_a_tag(sqlite_store, uniq, alice):
    name = uniq("summarize")
    register_prompt(name, "Summarize: {{text}}", message="first wording")
    register_prompt(name, "Summarize briefly: {{text}}", message="shorter")
    c = mlflow_client()
    assert "first wording" not in (c.get_prompt(name).description or "")
    assert c.get_prompt_version(name, 1).commit_message == "first wording"

    move_alias("prompt", name, "production", 1)
    move_alias("prompt", name, "production", 2, run_id="0123456789abcdef")
    prompt = c.get_prompt(name)
    # MLflow 3.17's prompt page shows the prompt's tags: one of them reads as the history.
    lines = prompt.tags[HISTORY_TAG].splitlines()
    assert re.fullmatch(rf"production: 1 -> 2 · alice · {MINUTE} · run 01234567", lines[0]), lines
    assert re.fullmatch(rf"production: unset -> 1 · alice · {MINUTE}", lines[1]), lines
    assert _block_lines(prompt.description) == lines  # the same lines in the description block
    assert len([k for k in prompt.tags if k.startswith("llmops.alias_move.")]) == 2


def test_the_user_is_mlflows_then_the_os(sqlite_store, uniq, monkeypatch):
    name = uniq("who")
    register_prompt(name, "a {{x}}")
    register_prompt(name, "b {{x}}")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    move_alias("prompt", name, "production", 1)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    move_alias("prompt", name, "production", 2)
    assert [m.user for m in alias_history("prompt", name).moves] == [getpass.getuser(), "bob"]

    # A registration records the same user in its manifest.
    model = uniq("who-model")
    reg = register_model(model, "default")
    run_id = mlflow_client().get_model_version(model, str(reg.model.version)).run_id
    assert json.loads(read_artifact(run_id, MANIFEST))["registered_by"] == "bob"


def test_llm_alias_run_option_names_the_evidence(shell, sqlite_store, uniq):
    name = uniq("summarize")
    register_prompt(name, "one {{x}}")
    moved = shell.run_cell(f"%llm_alias prompt {name} production 1 --run 9f8e7d6c5b4a")
    assert moved.run_id == "9f8e7d6c5b4a" and moved.line().endswith(" · run 9f8e7d6c")
    assert mlflow_client().get_prompt(name).tags[HISTORY_TAG].endswith(" · run 9f8e7d6c")


_MOVER = textwrap.dedent(
    """
    import sys, time
    import llmops_magics
    from llmops_magics.core.registry.aliases import move_alias

    uri, name, alias, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    llmops_magics.configure(tracking_uri=uri)
    time.sleep(max(0.0, start - time.time()))  # both movers start together
    for version in (1, 2, 1):
        moved = move_alias("prompt", name, alias, version)
        assert moved is not None and not moved.note, moved
    """
)


def test_two_concurrent_movers_both_land_in_the_history(store, uniq, tmp_path):
    import time

    from llmops_magics import settings

    name = uniq("shared")
    register_prompt(name, "one {{x}}")
    register_prompt(name, "two {{x}}")
    uri = settings().resolved_tracking_uri
    script = tmp_path / "mover.py"
    script.write_text(_MOVER)
    # Importing llmops_magics and mlflow takes seconds on a busy machine: start after both have.
    start = time.time() + 25
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": ""}
    procs = {
        who: subprocess.Popen(
            [sys.executable, str(script), uri, name, alias, str(start)],
            env={**env, "MLFLOW_TRACKING_USERNAME": who},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for who, alias in (("alice", "champion"), ("bob", "challenger"))
    }
    for who, proc in procs.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{who}: {out[-2000:]}"

    moves = alias_history("prompt", name).moves
    assert sorted((m.user, m.alias) for m in moves) == sorted([("alice", "champion")] * 3 + [("bob", "challenger")] * 3)
    expected = [m.line() for m in reversed(moves)]
    prompt = mlflow_client().get_prompt(name)
    assert _block_lines(prompt.description) == expected
    assert prompt.tags[HISTORY_TAG].splitlines() == expected


def test_server_store_shows_the_same_history(mlflow_server, uniq, alice):
    llmops_magics.configure(tracking_uri=mlflow_server.uri)
    name = uniq("served")
    register_prompt(name, "one {{x}}")
    moved = move_alias("prompt", name, "production", 1)
    assert not moved.note
    prompt = mlflow_client().get_prompt(name)
    assert prompt.tags[HISTORY_TAG] == moved.line()
    assert _block_lines(prompt.description) == [moved.line()]
