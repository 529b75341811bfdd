"""Prompt versions in the MLflow Prompt Registry: %%llm_prompt, resolution, rendering,
and generations linked to the prompt version they ran under. Each test runs against the
embedded sqlite store and a real `mlflow server` process."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError
from registry_helpers import mlflow_client, one_line, sqlite_store, store, uniq  # noqa: F401

import llmops_magics
from llmops_magics.core.registry import register_prompt, resolve_prompt
from llmops_magics.errors import BadInput, PromptNotFound

TEMPLATE = "Summarize in one sentence: {{text}}"


def test_register_adds_a_version_only_when_the_template_changed(store, uniq):
    name = uniq("summarize")
    first = register_prompt(name, TEMPLATE, message="first")
    assert first.created and first.prompt.version == 1
    again = register_prompt(name, TEMPLATE + "\n", message="same text, trailing newline")
    assert not again.created and str(again) == f"unchanged: still {name}/1"
    shorter = register_prompt(name, "Summarize in five words: {{text}}", message="shorter answers")
    assert shorter.created and shorter.prompt.version == 2
    assert shorter.prompt.message == "shorter answers"
    # What MLflow itself stores agrees with what we report.
    stored = mlflow_client().get_prompt_version(name, 2)
    assert stored.template == "Summarize in five words: {{text}}" and stored.variables == {"text"}


def test_chat_prompt_from_yaml_with_response_format(sqlite_store, uniq):
    name = uniq("extract")
    yaml_cell = "- role: system\n  content: Answer in JSON.\n- role: user\n  content: 'City of {{person}}?'\n"
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reg = register_prompt(name, yaml_cell, response_format=json.dumps(schema))
    p = reg.prompt
    assert p.is_chat and p.template[0] == {"role": "system", "content": "Answer in JSON."}
    assert p.response_format == schema and p.variables == frozenset({"person"})
    assert p.render({"person": "Ada"}) == (
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "City of Ada?"},
    )
    # The same messages as JSON are the same template: no new version.
    as_json = json.dumps(
        [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "City of {{person}}?"}]
    )
    assert not register_prompt(name, as_json, response_format=schema).created
    # A different response format is a different prompt.
    assert register_prompt(name, as_json, response_format={"type": "object"}).prompt.version == 2


def test_render_names_the_missing_variables():
    import llmops_magics.core.registry.prompts as prompts

    p = prompts.PromptRef(
        "t", 1, "{{a}} and {{ b }} and {{c}}", prompts.template_digest("x"), variables=frozenset({"a", "b", "c"})
    )
    with pytest.raises(BadInput) as err:
        p.render({"b": 1})
    assert "needs variable(s) a, c" in str(err.value) and "given: b" in str(err.value)
    assert p.render({"a": 1, "b": 2, "c": 3})[0]["content"] == "1 and 2 and 3"


def test_resolve_by_version_alias_and_latest_and_say_what_exists(sqlite_store, uniq):
    name = uniq("qa")
    register_prompt(name, "Q: {{q}}", alias="production")
    register_prompt(name, "Question: {{q}}")
    assert resolve_prompt(name).version == 2
    assert resolve_prompt(f"{name}/1").template == "Q: {{q}}"
    assert resolve_prompt(f"prompts:/{name}@production").version == 1
    with pytest.raises(PromptNotFound, match=r"has no version 7 \(versions: 1, 2\)"):
        resolve_prompt(f"{name}/7")
    with pytest.raises(PromptNotFound, match=r"no alias 'staging' \(aliases moved here: production\)"):
        resolve_prompt(f"{name}@staging")
    with pytest.raises(PromptNotFound, match=rf"unknown prompt 'nope-{name}' \(registered prompts: .*{name}"):
        resolve_prompt(f"nope-{name}")


def test_llm_prompt_magic_registers_the_cell(shell, sqlite_store, uniq):
    name = uniq("greet")
    shell.user_ns["schema"] = {"type": "object", "properties": {"greeting": {"type": "string"}}}
    out = shell.run_cell(
        f"%%llm_prompt {name} -m 'first cut' --alias staging --response-format schema\nGreet {{{{who}}}} warmly."
    )
    assert out.created and out.prompt.response_format == shell.user_ns["schema"]
    assert "staging -> 1" in out._repr_mimebundle_()["text/plain"]
    again = shell.run_cell(f"%%llm_prompt {name} -m 'no change' --response-format schema\nGreet {{{{who}}}} warmly.")
    assert again._repr_mimebundle_()["text/plain"].startswith(f"unchanged: still {name}/1")
    assert shell.user_ns["_llm_prompt"].label == f"{name}/1"
    html = shell.run_cell(f"%%llm_prompt {name}\n<script>alert(1)</script> {{{{who}}}}")._repr_mimebundle_()[
        "text/html"
    ]
    assert "<script" not in html


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%llm_prompt x\n   ", "the prompt is empty"),
        ("%%llm_prompt 'bad name'\nhi", "bad prompt name"),
        ("%%llm_prompt x --response-format '{nope'\nhi", "--response-format is not JSON"),
        ("%%llm_prompt x --response-format bad_schema\nhi", "not a valid JSON schema"),
        ('%%llm_prompt x\n[{"role": "robot", "content": "hi"}]', "has role 'robot'"),
        ("%%llm_prompt x --alias latest\nhi", "reserved by MLflow"),
        ("%%llm_prompt\nhi", "the following arguments are required: name"),
    ],
)
def test_bad_prompt_cells_are_one_line(shell, cell, message):
    shell.user_ns["bad_schema"] = {"type": 5}
    with pytest.raises(UsageError) as err:
        shell.run_cell(cell)
    assert message in str(err.value) and one_line(str(err.value))


def _run_tags(run_id):
    return mlflow_client().get_run(run_id).data.tags


def test_generation_links_the_prompt_version_to_its_run(shell, store, uniq):
    name = uniq("capital")
    register_prompt(name, "What is the capital of {{country}}? Answer in {{style}}.", alias="production")
    result = shell.run_cell(f"%%llm --prompt {name}@production --var 'style=one sentence' --max-tokens 16\nFrance")
    assert "Paris" in result.answer
    assert result.prompts == ["What is the capital of France? Answer in one sentence."]
    tags = _run_tags(result.run_id)
    assert tags["llmops.prompt"] == f"{name}/1"
    assert json.loads(tags["mlflow.linkedPrompts"]) == [{"name": name, "version": "1"}]
    assert tags["llmops.prompt_digest"] == resolve_prompt(f"{name}/1").digest


def test_pinned_prompt_is_what_generation_runs_under(sqlite_store, uniq):
    name = uniq("tone")
    register_prompt(name, "Say hello to {{who}}.", alias="production")
    llmops_magics.pin("prompt", f"{name}@production")
    register_prompt(name, "Say goodbye to {{who}}.", alias="production")  # production -> 2
    assert resolve_prompt(name).version == 1, "a pinned name gives its pinned version"
    result = llmops_magics.llm(["Ada", "Bob"], prompt=name, max_tokens=8)
    assert result.prompts == ["Say hello to Ada.", "Say hello to Bob."]
    assert _run_tags(result.run_id)["llmops.prompt"] == f"{name}/1"
    assert resolve_prompt(f"{name}/2").version == 2, "an explicit version bypasses the pin"


def test_cell_body_needs_exactly_one_free_variable(sqlite_store, uniq):
    name = uniq("two")
    register_prompt(name, "{{a}} then {{b}}")
    with pytest.raises(BadInput, match="leaves a, b unset"):
        llmops_magics.llm("body", prompt=name, log=False)
    with pytest.raises(BadInput, match="needs variable\\(s\\) b"):
        llmops_magics.llm(prompt=name, variables={"a": "x"}, log=False)
    with pytest.raises(BadInput, match="give --prompt NAME too"):
        llmops_magics.llm("hi", variables={"a": "x"}, log=False)
