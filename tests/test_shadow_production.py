"""``%shadow`` on what production did: the test plays the app, tracing real answers of the
default model into MLflow, then shadows them.

The app's answers come from the same vLLM engine the candidate runs on, in one batch in
the order the traces are read back, so a candidate that is the same model answers
exactly what was recorded: ``--primary recorded`` is then ``unchanged`` with 0 differing
cases. A LoRA candidate changes answers. Replaying an earlier run's side against a
changed dtype reports the change.
"""

from __future__ import annotations

import os
import time

import mlflow
import pytest

import llmops_magics
from llmops_magics import config
from llmops_magics.backends.base import GenerationRequest, Sampling
from llmops_magics.core.generation import engines

pytestmark = pytest.mark.vllm

os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"

QUESTIONS = [
    "Tell me one fact about rivers.",
    "Write a haiku about bees.",
    "What is the history of tea?",
    "Give a one-line definition of owls.",
    "Why do people like maps?",
    "Tell me one fact about clocks.",
    "Write a haiku about bread.",
    "What is the history of chess?",
]
TOKENS = 16
TOPICS = ["rivers", "volcanoes", "bread", "chess", "the moon", "bees", "trains", "tea"]


def _app_answers(requests: list[tuple[dict, ...]]) -> list[str]:
    """The app's model: the default model on the shared vLLM engine, one greedy batch."""
    generator, _ = engines.get_generator(
        str(llmops_magics.backends.default_models.chat_model_dir(config.settings().model_cache, progress=False)),
        config.settings(),
        backend="vllm",
    )
    out = generator.generate([GenerationRequest(m, Sampling(max_tokens=TOKENS)) for m in requests])
    return [r.text for r in out]


@pytest.fixture(scope="module")
def support_app():
    """An app that answered QUESTIONS last hour, traced four ways, plus traces of no chat shape."""
    mlflow.set_tracking_uri(config.settings().resolved_tracking_uri)
    name = f"support-app-{time.time_ns()}"
    mlflow.set_experiment(name)
    system = {"role": "system", "content": "You answer in one sentence."}
    requests = [
        (system, {"role": "user", "content": q}) if i % 4 == 0 else ({"role": "user", "content": q},)
        for i, q in enumerate(QUESTIONS)
    ]
    answers = _app_answers(requests)

    @mlflow.trace(name="answer_question")
    def answer_question(question: str) -> str:  # a single string argument
        return answers[QUESTIONS.index(question)]

    @mlflow.trace(name="lookup_order")
    def lookup_order(order_id: str, user_id: str) -> dict:  # a tool call: two arguments, no chat request
        return {"status": "shipped"}

    for i, (msgs, text) in enumerate(zip(requests, answers)):
        shape = i % 4
        if shape == 0:  # OpenAI autologging's shape: messages in, a chat completion out
            with mlflow.start_span("chat.completions", span_type="CHAT_MODEL") as span:
                span.set_inputs({"messages": list(msgs), "model": "support-bot", "temperature": 0.0})
                span.set_outputs(
                    {"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": 9}}
                )
        elif shape == 1:
            answer_question(msgs[-1]["content"])
        elif shape == 2:
            with mlflow.start_span("handler") as span:
                span.set_inputs({"prompt": msgs[-1]["content"]})
                span.set_outputs({"content": text})
        else:
            with mlflow.start_span("raw") as span:
                span.set_inputs(msgs[-1]["content"])
                span.set_outputs(text)
        time.sleep(0.002)  # distinct start times: the read order is the recording order
    # Traces of no chat shape: an embedding call, a tool call with two arguments.
    with mlflow.start_span("embed") as span:
        span.set_inputs({"texts": ["a", "b"]})
        span.set_outputs([[0.1, 0.2]])
    lookup_order("A-1", "u-17")
    return name, answers


def test_recorded_answers_against_the_same_model_are_unchanged_and_equivalent(shell, support_app):
    name, answers = support_app
    result = shell.run_line_magic(
        "shadow", f"--from-traces {name} --primary recorded --candidate default --max-tokens {TOKENS}"
    )
    assert shell.user_ns["_shadow"] is result
    assert result.n_cases == len(QUESTIONS), "every supported trace, and only those"
    assert [r["primary_output"] for r in result.rows] == answers
    assert result.differing_cases == [], "same engine, same batch: the same answers"
    assert (result.change, result.label) == ("unchanged", "equivalent"), result.verdict.reasons
    assert any("skipped 2 traces with no chat request" in w for w in result.warnings), result.warnings
    assert result.params["primary_ref"] == "recorded" and result.params["source_kind"] == "from_traces"
    assert all(r["primary_trace_id"] and r["primary_recorded"] for r in result.rows), "feedback lands on them"
    text = result._repr_mimebundle_()["text/plain"]
    assert "EQUIVALENT" in text and "UNCHANGED" in text


def test_a_lora_candidate_on_recorded_answers_is_changed(shell, support_app, lora_adapter):
    name, answers = support_app
    result = shell.run_line_magic(
        "shadow",
        f"--from-traces {name} --primary recorded --candidate {lora_adapter} --max-tokens {TOKENS} "
        "--adapter-mode lora --n 6",
    )
    assert result.n_cases == 6
    assert len(result.differing_cases) >= 4, "a random LoRA moves greedy answers"
    assert result.change == "changed", result.change_verdict.reasons
    for row in result.rows:
        assert row["primary_output"] == answers[row["id"]], "the primary is the recording, not a re-run"


def test_baseline_replay_is_unchanged_and_a_dtype_change_is_reported():
    """An earlier run's candidate side replayed against the same model (unchanged), then
    against the same weights served in another dtype (the change is reported)."""
    prompts = [f"{t} {topic}." for t in ("Tell me one fact about", "Write a haiku about") for topic in TOPICS]
    first = llmops_magics.shadow(prompts, primary="default", candidate="default", max_tokens=TOKENS)
    assert first.run_id
    again = llmops_magics.shadow(baseline=first.run_id, candidate="default", max_tokens=TOKENS)
    assert [r["primary_output"] for r in again.rows] == [r["candidate_output"] for r in first.rows]
    assert again.differing_cases == []
    assert (again.change, again.label) == ("unchanged", "equivalent"), again.verdict.reasons
    assert again.extra["reproduction"]["rate"] == 1.0, "the recorded model still resolves: re-run and reproduced"
    assert again.params["primary_recorded_ref"] == "default"

    default = again.serving["candidate"]["dtype"]
    other = "bfloat16" if default == "float32" else "float32"
    moved = llmops_magics.shadow(
        baseline=first.run_id, candidate="default", candidate_engine_args={"dtype": other}, max_tokens=TOKENS
    )
    assert any("different dtypes" in n for n in moved.notes), moved.notes
    assert moved.differing_cases, f"{other} moves some greedy answers of a float32 checkpoint"
    assert moved.change != "unchanged", moved.change_verdict.reasons
    assert moved.extra["reproduction"]["rate"] == 1.0, "the recorded side itself, re-run, did not move"
    for gen in engines.loaded_engines():  # give the other engine's memory back
        if dict(gen.key.options).get("dtype") == other:
            engines.release(gen)


def test_dataset_cases_scored_by_the_users_scorers(shell):
    """An evaluation dataset's records as cases, the user's ``@scorer`` functions as checks:
    a boolean one, a numeric one that reads the expectations, one that fails on one case."""
    from IPython.core.error import UsageError
    from mlflow.genai.datasets import create_dataset

    mlflow.set_tracking_uri(config.settings().resolved_tracking_uri)
    name = f"refunds-golden-{time.time_ns()}"
    create_dataset(name=name).merge_records(
        [{"inputs": {"question": q}, "expectations": {"expected_words": q.split()[-1].strip(".?")}} for q in QUESTIONS]
    )
    shell.run_cell(
        """
from mlflow.genai.scorers import scorer

@scorer
def is_polite(outputs) -> bool:
    return not any(w in outputs.lower() for w in ("stupid", "shut up"))

@scorer
def mentions_topic(outputs, expectations) -> float:
    return float(expectations["expected_words"].lower() in outputs.lower())

@scorer
def flaky(inputs, outputs) -> bool:
    if "bees" in inputs["question"]:
        raise RuntimeError("the rubric service timed out")
    return True
"""
    )
    with pytest.raises(UsageError, match="scorer calls"):  # refused before any generation
        shell.run_line_magic(
            "shadow",
            f"--from-dataset {name} --primary default --candidate default --scorer is_polite --max-scorer-calls 4",
        )
    result = shell.run_line_magic(
        "shadow",
        f"--from-dataset {name} --primary default --candidate default --max-tokens {TOKENS} "
        "--scorer is_polite --scorer mentions_topic --scorer flaky --threshold scorer.mentions_topic=0.1",
    )
    assert result.n_cases == len(QUESTIONS) and result.params["source_kind"] == "from_dataset"
    names = {c.name for c in result.checks}
    assert {"scorer is_polite", "scorer mentions_topic", "scorer flaky"} <= names
    for check in ("scorer is_polite", "scorer mentions_topic", "scorer flaky"):
        assert result.verdict.check(check).verdict == "equivalent", "same model, same answers, same scores"
    assert (result.change, result.label) == ("unchanged", "equivalent"), result.verdict.reasons
    failed = [r for r in result.rows if r["score_errors"]]
    assert len(failed) == 1 and "bees" in failed[0]["prompt"], "one case failed, on both sides, and only it"
    assert any("flaky" in w and "timed out" in w for w in result.warnings), result.warnings
    assert any("3 scorers x 8 cases x 2 sides = 48 scorer calls" in w for w in result.warnings)


def test_our_own_llm_traces_name_the_recorded_model_and_its_reproduction(shell, tmp_path):
    """``%%llm`` traces carry the model, digest, sampling and dtype: ``--primary recorded``
    on them knows what it compares, re-runs that model and reports how often it reproduces
    its own recording."""
    config.configure(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # only this test's traces
    shell.ip.config.pop("LlmopsMagics", None)
    shell.run_cell(f"%%llm --each-line --max-tokens {TOKENS}\n" + "\n".join(QUESTIONS[:6]))
    asked = shell.user_ns["_llm"]
    assert len(asked.trace_ids) == 6 and all(asked.trace_ids), asked.warnings
    result = shell.run_line_magic(
        "shadow",
        "--from-traces llmops-magics --filter \"tags.`llmops.role` = 'llm'\" "
        f"--primary recorded --candidate default --max-tokens {TOKENS}",
    )
    assert [r["primary_output"] for r in result.rows] == [r.text for r in asked.results], "in recording order"
    recorded = result.params["primary_recorded"]
    assert asked.dtype in recorded and "max_tokens=16" in recorded and "temperature=0" in recorded, recorded
    assert result.params["primary_recorded_digest"] and result.params["primary_regenerated"] is True
    reproduction = result.extra["reproduction"]
    assert reproduction["n"] == 6 and reproduction["rate"] == 1.0, "one batch then, one batch now"
    assert any("the change verdict is read against that rate" in r for r in result.change_verdict.reasons)
    assert result.verdict.check("differing beyond reproduction").estimate == 0, "no case moved beyond the noise"
    assert (result.change, result.label) == ("unchanged", "equivalent")
