"""Stages of the shadow pipeline, each called alone: no engine starts, no model answers.

The whole pipeline on real vLLM is in test_shadow.py; here each stage gets hand-made
input (a spec, sides on empty model folders, synthetic rows) and is checked for what it
decides.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from llmops_magics import settings
from llmops_magics.backends.base import Adapter, Sampling
from llmops_magics.core.generation import ResolvedModel, engines
from llmops_magics.core.options import OptionError
from llmops_magics.core.shadow import ShadowSpec, Thresholds, validate
from llmops_magics.core.shadow.generate import Generated
from llmops_magics.core.shadow.inputs import Case
from llmops_magics.core.shadow.judge import ask_judge
from llmops_magics.core.shadow.plan import plan
from llmops_magics.core.shadow.resolve import Resolved
from llmops_magics.core.shadow.sides import Side
from llmops_magics.core.shadow.verdict import decide


def test_validate_checks_every_option_before_reading_the_inputs():
    # No inputs at all: the bad option is still what the user hears about first.
    with pytest.raises(OptionError, match=r"n=0: must be a whole number of at least 1"):
        validate(None, primary="default", candidate="default", n=0)
    with pytest.raises(OptionError, match="engine_plan='sideways'"):
        validate(["hi"], primary="default", candidate="default", engine_plan="sideways")
    with pytest.raises(OptionError, match="is not a threshold"):
        validate(["hi"], primary="default", candidate="default", nonsense=1)


def test_validate_gives_a_frozen_spec_with_converted_values_and_a_reproducible_sample():
    inputs = [f"question {i}" for i in range(20)]
    spec = validate(
        inputs, primary="a", candidate="b", n="5", sample_seed="3", max_tokens="16", max_differing_rate="0.2"
    )
    assert isinstance(spec, ShadowSpec)
    assert (spec.n, spec.sample_seed, spec.sampling) == (5, 3, Sampling(max_tokens=16))
    assert spec.thresholds == Thresholds(max_differing_rate=0.2)
    assert len(spec.indices) == 5 and list(spec.indices) == sorted(spec.indices)
    again = validate(inputs, primary="a", candidate="b", n=5, sample_seed=3)
    assert again.indices == spec.indices, "the same seed draws the same sample"
    assert spec.items == tuple(inputs) and (spec.primary, spec.candidate) == ("a", "b"), "refs stay unresolved"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n = 6


@pytest.fixture
def lora_sides(tmp_path):
    """A primary on a base folder and a candidate with a LoRA adapter on the same base."""
    base = tmp_path / "base"
    adapter = tmp_path / "sharp"
    base.mkdir()
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    cfg = settings()
    primary = ResolvedModel("base", "base", str(base))
    candidate = ResolvedModel(str(adapter), "sharp", str(base), Adapter("sharp", str(adapter)))
    return Side("primary", primary, cfg, "transformers"), Side("candidate", candidate, cfg, "transformers")


def _resolved(primary: Side, candidate: Side, n: int = 2) -> Resolved:
    cases = tuple(Case(i, f"q{i}", ({"role": "user", "content": f"q{i}"},)) for i in range(n))
    return Resolved(primary, candidate, judge=None, prompt=None, schema=None, cases=cases)


def test_plan_serves_a_lora_candidate_per_request_on_the_shared_engine(lora_sides):
    held = len(engines.engines())
    spec = validate(["q"], primary="base", candidate="sharp", adapter_mode="lora", backend="transformers")
    planned = plan(spec, _resolved(*lora_sides))
    assert planned.engines == "shared", planned.engines_reason
    assert (planned.primary.adapter_mode, planned.candidate.adapter_mode) == ("none", "lora")
    assert planned.adapter_reasons == {"primary": "no adapter", "candidate": "chosen"}
    assert planned.candidate.serve_adapter == lora_sides[1].model.adapter and planned.notes() == []
    # auto on transformers keeps LoRA per request too: it applies it at nearly base speed.
    auto = plan(dataclasses.replace(spec, adapter_mode="auto"), _resolved(*lora_sides))
    assert auto.candidate.adapter_mode == "lora"
    assert auto.adapter_reasons["candidate"] == "transformers applies LoRA at nearly base speed"
    assert len(engines.engines()) == held, "planning starts no engine"


def test_plan_runs_two_engines_together_or_one_at_a_time_by_the_memory_limit(lora_sides):
    primary, _ = lora_sides
    other = dataclasses.replace(
        primary, role="candidate", cfg=dataclasses.replace(primary.cfg, engine_args={"dtype": "bfloat16"})
    )
    tight = validate(["q"], primary="base", candidate="base", memory_limit_gb=0.1, backend="transformers")
    planned = plan(tight, _resolved(primary, other))
    assert planned.engines == "one-at-a-time"
    assert "do not fit" in planned.engines_reason and "limit 0.1 GiB" in planned.engines_reason
    roomy = plan(dataclasses.replace(tight, memory_limit_gb=8.0), _resolved(primary, other))
    assert roomy.engines == "together"


def test_judge_stage_leaves_rows_alone_without_a_judge():
    rows = [{"id": 0, "prompt": "q", "primary_output": "a", "candidate_output": "b"}]
    spec = validate(["q"], primary="a", candidate="b")
    assert ask_judge(spec, None, rows) is rows


def test_decide_assembles_checks_verdict_aggregates_and_params(lora_sides):
    spec = validate(["q0", "q1", "q2"], primary="base", candidate="sharp", adapter_mode="lora", backend="transformers")
    resolved = _resolved(*lora_sides, n=3)
    planned = plan(spec, resolved)

    def row(i: int, same: bool) -> dict:
        return {
            "id": i,
            "exact_match": same,
            "edit_similarity": 1.0 if same else 0.5,
            "embedding_similarity": 1.0 if same else 0.6,
            "length_ratio": 1.0,
            "primary_refused": False,
            "candidate_refused": False,
            "primary_format_valid": None,
            "candidate_format_valid": None,
            "primary_latency_s": 0.1,
            "candidate_latency_s": 0.1,
            "primary_tokens_in": 5,
            "candidate_tokens_in": 5,
            "primary_tokens_out": 8,
            "candidate_tokens_out": 8,
        }

    rows = [row(0, True), row(1, False), row(2, True)]
    serving = {"backend": "transformers", "dtype": "float32", "device": "cpu"}
    generated = Generated([], [], {"primary": serving, "candidate": serving}, {"primary": 2.0, "candidate": 0.0}, 2.5)
    result = decide(spec, resolved, planned, generated, rows)
    assert result.name == "base-vs-sharp" and (result.primary, result.candidate) == ("base", "sharp")
    assert [c.name for c in result.checks][0] == "identical outputs"
    assert "format validity" not in [c.name for c in result.checks], "no response format, no format check"
    assert "judge preference" not in [c.name for c in result.checks]
    assert result.aggregates["differing_cases"] == 1 and result.aggregates["generate_s"] == 2.5
    assert result.aggregates["primary_tokens_per_s"] == 12.0
    assert "candidate_tokens_per_s" not in result.aggregates, "a zero-second batch has no speed"
    assert result.params["engine_plan"] == "shared" and result.params["candidate_adapter_mode"] == "lora"
    assert (result.params["primary_dtype"], result.params["n_cases"]) == ("float32", 3)
    assert result.serving == {"primary": serving, "candidate": serving}
    assert result.run_id is None, "deciding logs nothing"
