"""Pins, alias moves and their history, drift, the lockfile, and the magics' argument lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from registry_helpers import one_line, sqlite_store, store, uniq  # noqa: F401

import llmops_magics
from llmops_magics.core import events
from llmops_magics.core.registry.aliases import alias_history, move_alias
from llmops_magics.core.registry.models import register_model
from llmops_magics.core.registry.pins import pin_context
from llmops_magics.core.registry.prompts import register_prompt


def test_alias_move_history_pin_and_drift(shell, store, uniq):
    name = uniq("summarize")
    for i in range(1, 6):
        register_prompt(name, f"v{i}: {{{{text}}}}")
    shell.run_cell(f"%llm_alias prompt {name} production 4")
    table = shell.run_cell(f"%llm_pin prompt {name}@production")
    assert table.get("prompt", name).version == 4
    assert pin_context()[0]["drift"] is False
    moved = shell.run_cell(f"%llm_alias prompt {name} production 5")
    assert str(moved) == f"prompt {name}: production 4 -> 5"
    with pytest.raises(UsageError) as err:
        shell.run_cell("%llm_pin --check")
    assert "production now points to 5; you are pinned to 4" in str(err.value) and one_line(str(err.value))
    text = shell.run_cell("%llm_pin")._repr_mimebundle_()["text/plain"]
    assert "production now points to 5; you are pinned to 4" in text
    row = [line for line in text.splitlines() if name in line][0].split()
    assert row[:5] == ["prompt", name, "4", "production", "5"]
    ctx = pin_context()[0]
    assert ctx["drift"] is True and ctx["alias_now"] == 5 and ctx["version"] == 4
    assert ctx["message"] == "production now points to 5; you are pinned to 4"
    history = shell.run_cell(f"%llm_alias --history prompt {name}")
    assert [(m.alias, m.from_version, m.to_version) for m in history.moves] == [
        ("production", None, 4),
        ("production", 4, 5),
    ]
    assert all(m.user and m.at for m in history.moves)
    assert "production" in history._repr_mimebundle_()["text/html"]


def test_alias_history_is_shared_by_every_process(mlflow_server, uniq):
    # The multi-user case: a colleague's process moves the alias on the same server.
    llmops_magics.configure(tracking_uri=mlflow_server.uri)
    name = uniq("shared")
    register_prompt(name, "one {{x}}")
    register_prompt(name, "two {{x}}")
    move_alias("prompt", name, "production", 1)
    uri = llmops_magics.settings().resolved_tracking_uri
    code = (
        f"import llmops_magics as m; m.configure(tracking_uri={uri!r}); "
        f"from llmops_magics.core.registry.aliases import move_alias; move_alias('prompt', {name!r}, 'production', 2)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, capture_output=True)
    moves = alias_history("prompt", name).moves
    assert [(m.from_version, m.to_version) for m in moves] == [(None, 1), (1, 2)]


def test_lockfile_round_trip_and_mismatch(shell, store, uniq, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the lockfile lives beside the notebook: the cwd
    p, m = uniq("summarize"), uniq("chat")
    register_prompt(p, "Summarize: {{text}}", alias="production")
    register_model(m, "default", alias="champion")
    shell.run_cell(f"%llm_pin prompt {p}@production")
    shell.run_cell(f"%llm_pin models:/{m}@champion")
    saved = shell.run_cell("%llm_pin --save")
    assert "saved 2 pin(s) to llmops.lock.json" in str(saved)
    lock = json.loads((tmp_path / "llmops.lock.json").read_text())
    assert {(e["kind"], e["name"], e["version"], e["alias"]) for e in lock["pins"]} == {
        ("prompt", p, 1, "production"),
        ("model", m, 1, "champion"),
    }
    assert "@" not in lock["tracking_uri"].split("//", 1)[-1], "no credentials in the lockfile"
    before = llmops_magics.pins()
    shell.run_cell("%llm_pin --clear")
    assert len(llmops_magics.pins()) == 0
    restored = shell.run_cell("%llm_pin --load")
    assert [(x.kind, x.name, x.version, x.digest) for x in restored.pins] == [
        (x.kind, x.name, x.version, x.digest) for x in before.pins
    ]
    # A lockfile that no longer matches the registry is refused, and nothing changes.
    lock["pins"][0]["digest"] = "0" * 64
    (tmp_path / "tampered.json").write_text(json.dumps(lock))
    with pytest.raises(UsageError) as err:
        shell.run_cell("%llm_pin --load tampered.json")
    assert "DigestMismatch: tampered.json does not match the registry" in str(err.value) and one_line(str(err.value))
    assert len(llmops_magics.pins()) == 2
    lock["pins"][0]["version"] = 99
    (tmp_path / "gone.json").write_text(json.dumps(lock))
    with pytest.raises(UsageError, match="has no version 99"):
        shell.run_cell("%llm_pin --load gone.json")


def test_events_tell_lineage_what_happened(sqlite_store, uniq):
    seen = []
    listener = lambda event: seen.append((event.kind, event.payload()))  # noqa: E731
    events.subscribe(listener)
    try:
        name = uniq("evt")
        register_prompt(name, "hi {{x}}", alias="staging")
        llmops_magics.pin("prompt", f"{name}@staging")
        register_model(name + "-m", "default")
    finally:
        events.unsubscribe(listener)
    kinds = [k for k, _ in seen]
    assert kinds == ["prompt_registered", "alias", "pin", "model_registered"]
    assert seen[0][1]["name"] == name and len(seen[0][1]["digest"]) == 64
    assert seen[1][1] == {
        "kind": "prompt",
        "name": name,
        "alias": "staging",
        "from": None,
        "to": 1,
        "user": seen[1][1]["user"],
    }
    assert events.context()["pins"] == pin_context() and pin_context()[0]["name"] == name


def test_unpin_and_errors(shell, sqlite_store, uniq):
    name = uniq("u")
    register_prompt(name, "x {{y}}")
    shell.run_cell(f"%llm_pin prompt {name}")
    shell.run_cell(f"%llm_pin --unpin prompt {name}")
    assert len(llmops_magics.pins()) == 0
    for line, message in [
        (f"%llm_pin {name}", "say what"),
        (f"%llm_pin prompt {name}@nope", "has no alias 'nope'"),
        ("%llm_pin prompt nothing-xyz-1", "unknown prompt 'nothing-xyz-1'"),
        ("%llm_pin --check --save", "choose one of"),
        ("%llm_pin --save", "nothing to save"),
        ("%llm_pin --load /no/such.json", "no lockfile at /no/such.json"),
        (f"%llm_alias prompt {name} production 9", "has no version 9"),
        (f"%llm_alias prompt {name} latest 1", "reserved by MLflow"),
        (f"%llm_alias prompt {name} production", "give ALIAS and VERSION"),
        ("%llm_alias --history prompt nothing-xyz-2", "unknown prompt 'nothing-xyz-2'"),
        ("%llm_pin -h", "unrecognized arguments: -h"),
    ]:
        with pytest.raises(UsageError) as err:
            shell.run_cell(line)
        assert message in str(err.value), line
        assert one_line(str(err.value)), line


TOKENS = st.sampled_from(
    [
        "prompt",
        "model",
        "summarize",
        "chat@champion",
        "x/0",
        "--check",
        "--save",
        "--load",
        "--history",
        "--unpin",
        "--clear",
        "--alias",
        "--base",
        "default",
        "register",
        "list",
        "show",
        "production",
        "4",
        "-m",
        "'",
        '"',
        "--param",
        "k=v",
        "prompts:/a@b",
        "@",
        "/",
    ]
)
LINES = st.lists(st.one_of(TOKENS, st.text(max_size=8)), max_size=5).map(" ".join)


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(magic=st.sampled_from(["llm_pin", "llm_alias", "llm_model"]), line=LINES)
def test_any_magic_line_is_a_result_or_one_usage_error(shell_for_hypothesis, magic, line):
    if magic == "llm_model" and line.split()[:1] == ["register"]:
        line = line.replace("default", "/nonexistent")  # no real registrations from random lines
    try:
        shell_for_hypothesis.run_line_magic(magic, line)
    except UsageError as e:
        assert one_line(str(e)), (magic, line, str(e))


@hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(line=LINES, body=st.text(max_size=30))
def test_any_prompt_cell_is_a_result_or_one_usage_error(shell_for_hypothesis, line, body):
    try:
        shell_for_hypothesis.run_cell_magic("llm_prompt", "hyp-" + line, body)
    except UsageError as e:
        assert one_line(str(e)), (line, body, str(e))


@pytest.fixture(scope="module")
def shell_for_hypothesis(llmops_home, tmp_path_factory):
    from shell_testing import TestingShell

    from llmops_magics import config
    from llmops_magics.core.registry import pins
    from llmops_magics.magics import MAGICS

    config.reset()
    pins.clear_pins()
    # Random `%llm_pin --save PATH` lines write relative paths: keep them out of the checkout.
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("hypothesis-cwd"))
    sh = TestingShell()
    sh.run_line_magic("load_ext", "llmops_magics")
    yield sh
    os.chdir(before)
    pins.clear_pins()
    for cls in MAGICS:
        sh.ip.magics_manager.registry.pop(cls.__name__, None)
    sh.ip.extension_manager.loaded.discard("llmops_magics")
