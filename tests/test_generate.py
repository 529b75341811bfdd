"""Generation on the real default model through vLLM and transformers."""

from __future__ import annotations

import pytest

import llmops_magics
from llmops_magics.backends.base import Adapter, GenerationRequest, Sampling

QUESTION = "What is the capital of France?"


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_default_model_knows_paris(backend):
    result = llmops_magics.llm(QUESTION, backend=backend, max_tokens=24)
    assert "Paris" in result.answer
    assert result.backend == backend
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    assert result.run_id, "each generation is recorded as an MLflow run"


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_same_seed_same_text_when_sampling(backend):
    kwargs = dict(backend=backend, max_tokens=24, temperature=0.9, seed=7, log=False)
    prompts = ["Write a short poem about rain.", "Name three animals."]
    first = llmops_magics.llm(prompts, **kwargs).answers
    second = llmops_magics.llm(prompts, **kwargs).answers
    assert first == second
    other_seed = llmops_magics.llm(prompts, **{**kwargs, "seed": 8}).answers
    assert other_seed != first, "the seed must matter when sampling"


def test_each_line_gives_one_answer_per_prompt():
    result = llmops_magics.llm(
        "What is 2+2?\n\nName a color.\n", each_line=True, backend="vllm", max_tokens=16, log=False
    )
    assert result.prompts == ["What is 2+2?", "Name a color."]
    assert len(result.answers) == 2 and all(result.answers)


def test_system_message_reaches_the_model():
    plain = llmops_magics.llm(QUESTION, backend="vllm", max_tokens=24, log=False)
    # Longer than the template's built-in default system turn, which it replaces.
    system = "You are a terse geography tutor who answers in one short sentence. " * 4
    tutored = llmops_magics.llm(QUESTION, backend="vllm", max_tokens=24, log=False, system=system)
    # A small model may or may not obey; the system turn must be in the prompt it saw.
    assert tutored.prompt_tokens > plain.prompt_tokens + 40


def test_lora_adapter_changes_vllm_output(lora_adapter, default_model_dir):
    from llmops_magics.core.generation.engines import get_generator

    gen, choice = get_generator(str(default_model_dir), backend="vllm")
    assert choice.backend == "vllm"
    msgs = ({"role": "user", "content": QUESTION},)
    base, adapted = gen.generate(
        [
            GenerationRequest(msgs, Sampling(max_tokens=24)),
            GenerationRequest(msgs, Sampling(max_tokens=24), Adapter("sharp", str(lora_adapter))),
        ]
    )
    assert "Paris" in base.text
    assert adapted.text != base.text, "the LoRARequest must reach the model"
    # The adapter folder is also a model ref: its base comes from adapter_config.json.
    via_ref = llmops_magics.llm(QUESTION, model=str(lora_adapter), backend="vllm", max_tokens=24, log=False)
    assert via_ref.answer == adapted.text
    assert via_ref.model.adapter is not None


def test_lora_adapter_changes_transformers_output(lora_adapter):
    base = llmops_magics.llm(QUESTION, backend="transformers", max_tokens=24, log=False).answer
    adapted = llmops_magics.llm(
        QUESTION, model=str(lora_adapter), backend="transformers", max_tokens=24, log=False
    ).answer
    again = llmops_magics.llm(QUESTION, backend="transformers", max_tokens=24, log=False).answer
    assert adapted != base
    assert again == base, "a base request after an adapter one must not keep the adapter on"


def test_generation_run_in_mlflow():
    from llmops_magics.core.tracking import client

    result = llmops_magics.llm(QUESTION, backend="vllm", max_tokens=16)
    run = client().get_run(result.run_id)
    assert run.data.params["backend"] == "vllm"
    assert run.data.metrics["completion_tokens"] == result.completion_tokens
    assert run.data.tags["llmops.kind"] == "generation"
