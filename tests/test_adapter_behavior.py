"""Behavioral ``%adapter_check``: teacher-forced on real models (tiny Llamas, the default model on vLLM)."""

from __future__ import annotations

import hashlib
import json

import pytest
from adapter_helpers import make_adapter, perturbed_base, tiny_llama

from llmops_magics import check_adapter
from llmops_magics.core import events
from llmops_magics.core.adapter.behavior import DRIFT_FLOOR, DRIFT_RATIO, NO_EFFECT_KL, load_probes

PROBES = ["What is the capital of France?", "Write a haiku about the sea.", "List three colors."]


@pytest.fixture(scope="module")
def family(tmp_path_factory, default_model_dir):
    """An old base, adapters trained on it, and two new bases of the same shapes."""
    d = tmp_path_factory.mktemp("adapter-family")
    f = {"old": tiny_llama(d / "old", tokenizer_from=default_model_dir)}
    f["ad"] = make_adapter(f["old"], d / "ad")
    f["zero"] = make_adapter(f["old"], d / "zero", zero_b=True)
    f["save"] = make_adapter(f["old"], d / "save", modules_to_save=["lm_head"])
    f["update"] = perturbed_base(f["old"], d / "update", noise=0.05)  # a provider fine-tune
    f["reparam"] = perturbed_base(f["old"], d / "reparam", rescale=3.0, noise=0.01)
    return f


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_small_base_update_is_compatible_and_logged(family, tmp_path):
    from llmops_magics.core.tracking import client

    seen = []
    listener = lambda event: seen.append((event.kind, event.payload()))  # noqa: E731
    events.subscribe(listener)
    try:
        report = check_adapter(str(family["ad"]), base=str(family["update"]), probes=PROBES, max_new_tokens=8)
    finally:
        events.unsubscribe(listener)  # only ours: pins and lineage listen too
    m = report.metrics
    assert report.verdict == "compatible", report.findings
    assert m["adapter_effect_kl"] > 0.05 and m["base_drift_kl"] > 0.01
    assert m["adapter_drift_kl"] <= DRIFT_RATIO * m["base_drift_kl"] + DRIFT_FLOOR
    run = client().get_run(report.run_id)
    assert run.data.tags["llmops.adapter_digest"] == _sha(family["ad"] / "adapter_model.safetensors")
    assert run.data.tags["llmops.base_digest"] == _sha(family["update"] / "model.safetensors")
    assert run.data.tags["llmops.verdict"] == "compatible"
    saved = json.loads(open(client().download_artifacts(report.run_id, "adapter_report.json", str(tmp_path))).read())
    assert saved["verdict"] == "compatible" and saved["metrics"]["probes"] == 3
    assert (
        "adapter_check",
        {
            "adapter": str(family["ad"]),
            "base": str(family["update"]),
            "verdict": "compatible",
            "run_id": report.run_id,
            "run_key": None,
            "findings": len(report.findings),
        },
    ) in seen


def test_zero_lora_b_is_no_effect(family):
    report = check_adapter(str(family["zero"]), base=str(family["update"]), probes=PROBES, max_new_tokens=8, log=False)
    assert report.verdict == "no-effect"
    finding = report.by(check="no-effect")[0]
    assert report.metrics["adapter_effect_kl"] < NO_EFFECT_KL and finding.severity == "warning"


def test_reparametrized_base_degrades_the_adapter(family):
    # The base computes (almost) the same function; the adapter's delta is tripled.
    report = check_adapter(str(family["ad"]), base=str(family["reparam"]), probes=PROBES, max_new_tokens=8, log=False)
    m = report.metrics
    assert report.verdict == "degraded", report.findings
    assert m["adapter_drift_kl"] > 10 * m["base_drift_kl"]
    assert m["ppl_ratio_adapter"] > 2 * m["ppl_ratio_base"]
    degraded = report.by(check="degraded")[0]
    assert f"{m['adapter_drift_kl']:.3g}" in degraded.found and f"{m['base_drift_kl']:.3g}" in degraded.found
    assert m["agreement_adapter"] < m["agreement_base"]
    fig = report.plot()
    assert {t.name for t in fig.data} >= {"adapter drift old→new (KL)", "base drift old→new (KL)"}
    assert len(fig.data[0].x) == len(PROBES)


def test_modules_to_save_runs_behavior_and_stays_compatible_with_a_vllm_warning(shell, family):
    shell.user_ns["my_probes"] = PROBES[:2]
    report = shell.run_cell(
        f"%adapter_check {family['save']} --base {family['update']} --probes my_probes "
        "--backend transformers --max-new-tokens 8 --no-log"
    )
    assert shell.user_ns["_adapter_report"] is report
    assert report.verdict == "compatible" and report.metrics["probes"] == 2
    assert [f.subject for f in report.by(severity="warning")] == ["lm_head"]


def test_default_probe_set_ships_16_prompts():
    probes = load_probes()
    assert len(probes) == 16 and len(set(probes)) == 16


def _zeroed_copy(adapter, out):
    """The same adapter with every lora_B zeroed: it loads everywhere and changes nothing."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, out)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    save_file({k: (v * 0 if "lora_B" in k else v) for k, v in tensors.items()}, str(out / "adapter_model.safetensors"))
    return out


@pytest.mark.vllm
def test_default_model_on_vllm_prompt_logprobs(lora_adapter, tmp_path):
    """The default SmolLM2 + a real adapter, scored through vLLM's prompt logprobs."""
    sharp = check_adapter(
        str(lora_adapter), base="default", probes=PROBES[:1], backend="vllm", max_new_tokens=4, log=False
    )
    assert sharp.backend == "vllm" and sharp.verdict == "compatible", sharp.findings
    assert sharp.metrics["adapter_effect_kl"] > 0.05
    zero = _zeroed_copy(lora_adapter, tmp_path / "zero")
    flat = check_adapter(str(zero), base="default", probes=PROBES[:1], backend="vllm", max_new_tokens=4, log=False)
    assert flat.verdict == "no-effect" and flat.metrics["adapter_effect_kl"] < NO_EFFECT_KL
