"""Static ``%adapter_check``: real PEFT adapters on tiny real bases, headers only."""

from __future__ import annotations

import json

import pytest
from adapter_helpers import make_adapter, tiny_gpt2, tiny_llama
from IPython.core.error import UsageError

from llmops_magics import check_adapter
from llmops_magics.backends import safetensors_header as st
from llmops_magics.core.adapter.report import AdapterReport, Finding
from llmops_magics.core.adapter.static import static_check


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Bases and adapters shared by this module's tests (built once, about 10 s)."""
    d = tmp_path_factory.mktemp("adapter-zoo")
    z = {"old": tiny_llama(d / "old", vocab=4096)}
    z["wide"] = tiny_llama(d / "wide", hidden=96, vocab=4096, seed=3)
    z["shallow"] = tiny_llama(d / "shallow", layers=1, vocab=4096)
    z["sibling"] = tiny_llama(d / "sibling", vocab=4096, seed=5)
    z["gpt2"] = tiny_gpt2(d / "gpt2")
    z["ad"] = make_adapter(z["old"], d / "ad")
    z["gpt2_ad"] = make_adapter(z["gpt2"], d / "gpt2_ad", target_modules=["c_attn"], fan_in_fan_out=True)
    z["save"] = make_adapter(z["old"], d / "save", modules_to_save=["lm_head"])
    z["resized"] = make_adapter(z["old"], d / "resized", resize_vocab=4104, modules_to_save=["embed_tokens", "lm_head"])
    z["fancy"] = make_adapter(z["old"], d / "fancy", r=32, lora_alpha=32, use_dora=True, bias="lora_only")
    return z


def _subjects(report_or_result, check):
    return [f for f in report_or_result.findings if f.check == check]


def test_compatible_adapter_has_no_breaking_or_warning(zoo):
    report = check_adapter(str(zoo["ad"]), base=str(zoo["sibling"]), behavior=False, log=False)
    assert report.verdict == "compatible"
    assert not report.by(severity="breaking") and not report.by(severity="warning")
    # 2 layers x (q, v) x (A, B) LoRA tensors were checked against the base's headers.
    assert report.static["tensors_checked"] == 8
    trained_on = _subjects(report, "base")[0]
    assert trained_on.expected == str(zoo["old"]) and trained_on.found == str(zoo["sibling"])


def test_other_hidden_size_is_breaking_with_expected_and_found(zoo):
    report = check_adapter(str(zoo["ad"]), base=str(zoo["wide"]), behavior=False, log=False)
    assert report.verdict == "breaking"
    shapes = {f.subject: f for f in _subjects(report, "shape")}
    a = shapes["model.layers.*.self_attn.q_proj.lora_A.weight (2 tensors)"]
    assert (a.severity, a.expected, a.found) == ("breaking", "in_features 96", "in_features 64")
    b = shapes["model.layers.*.self_attn.q_proj.lora_B.weight (2 tensors)"]
    assert (b.expected, b.found) == ("out_features 96", "out_features 64")
    assert "model.layers.*.self_attn.v_proj.lora_A.weight (2 tensors)" in shapes
    assert any(f.check == "architecture" and f.subject == "hidden_size" for f in report.findings)
    assert any("skipped" in f.message for f in report.by(check="behavior"))


def test_target_modules_of_another_architecture_are_missing(zoo):
    report = check_adapter(str(zoo["gpt2_ad"]), base=str(zoo["sibling"]), behavior=False, log=False)
    assert report.verdict == "breaking"
    missing = _subjects(report, "target_modules")
    assert any(f.subject == "c_attn" and f.severity == "breaking" for f in missing)
    assert any("c_attn.lora_A" in f.subject for f in missing)
    arch = {f.subject: f for f in _subjects(report, "architecture")}
    assert (arch["model_type"].expected, arch["model_type"].found) == ("gpt2", "llama")


def test_gpt2_adapter_fits_its_own_base_with_fan_in_fan_out(zoo):
    # Conv1D stores weights (in, out): without honouring fan_in_fan_out this would be "breaking".
    result = static_check(zoo["gpt2_ad"], zoo["gpt2"], old_base_dir=zoo["gpt2"])
    assert not [f for f in result.findings if f.severity != "info"]


def test_modules_to_save_is_a_vllm_warning_not_a_break(zoo):
    report = check_adapter(str(zoo["save"]), base=str(zoo["sibling"]), behavior=False, log=False)
    assert report.verdict == "compatible"
    vllm = _subjects(report, "vllm")
    assert [(f.severity, f.subject, f.found) for f in vllm] == [("warning", "lm_head", "modules_to_save")]


def test_resized_vocab_in_saved_embeddings_is_breaking(zoo):
    report = check_adapter(str(zoo["resized"]), base=str(zoo["sibling"]), behavior=False, log=False)
    assert report.verdict == "breaking"
    vocab = {f.subject: f for f in _subjects(report, "vocab")}
    emb = vocab["model.embed_tokens.weight"]
    assert (emb.severity, emb.expected, emb.found) == ("breaking", "(4096, 64)", "(4104, 64)")
    assert vocab["lm_head.weight"].found == "(4104, 64)"


def test_rank_dora_and_bias_are_what_vllm_refuses(zoo):
    report = check_adapter(str(zoo["fancy"]), base=str(zoo["sibling"]), behavior=False, log=False, max_lora_rank=16)
    assert report.verdict == "compatible"
    rank = [f for f in _subjects(report, "rank") if f.subject == "adapter"][0]
    assert (rank.severity, rank.expected, rank.found) == ("warning", "<= 16", "32")
    assert {f.subject for f in _subjects(report, "vllm")} == {"use_dora", "bias"}
    relaxed = check_adapter(str(zoo["fancy"]), base=str(zoo["sibling"]), behavior=False, log=False, max_lora_rank=64)
    assert not _subjects(relaxed, "rank")


def test_fewer_layers_in_new_base_is_breaking(zoo):
    report = check_adapter(str(zoo["ad"]), base=str(zoo["shallow"]), behavior=False, log=False)
    assert report.verdict == "breaking"
    layers = _subjects(report, "layers")
    assert layers and layers[0].expected == "layers 0..0" and layers[0].found == "layers up to 1"


def test_layers_to_transform_beyond_the_new_base(zoo, tmp_path):
    ad = make_adapter(zoo["old"], tmp_path / "late", layers_to_transform=[1])
    report = check_adapter(str(ad), base=str(zoo["shallow"]), behavior=False, log=False)
    assert any(f.subject == "layers_to_transform" and f.found == "[1]" for f in _subjects(report, "layers"))


def test_reads_headers_only_and_follows_a_sharded_index(zoo, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(zoo["sibling"], dtype=torch.float32).save_pretrained(
        sharded, max_shard_size="300KB"
    )
    assert (sharded / "model.safetensors.index.json").is_file()
    weights = sum(p.stat().st_size for p in sharded.glob("*.safetensors"))
    before = st.bytes_read
    result = static_check(zoo["ad"], sharded)
    assert not [f for f in result.findings if f.severity != "info"]
    assert result.stats["bytes_read"] == st.bytes_read - before
    # Headers and configs only: a tiny fraction of the weight bytes.
    assert result.stats["bytes_read"] < 64_000 < weights // 10


def test_header_reader_rejects_a_file_that_is_not_safetensors(tmp_path):
    from llmops_magics.errors import BadInput

    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(BadInput, match="not a safetensors file"):
        st.read_header(bad)


def test_magic_binds_report_and_escapes_html(shell, zoo):
    report = shell.run_cell(f"%adapter_check {zoo['ad']} --base {zoo['wide']} --static-only --no-log")
    assert shell.user_ns["_adapter_report"] is report and report.verdict == "breaking"
    bundle = report._repr_mimebundle_()
    assert "breaking" in bundle["text/plain"] and "in_features 96" in bundle["text/plain"]
    evil = AdapterReport(
        "<script>x</script>", "b", None, findings=[Finding("warning", "vllm", "<img src=x onerror=alert(1)>")]
    )
    html = evil._repr_mimebundle_()["text/html"]
    assert "<script>" not in html and "<img" not in html and "&lt;img src=x" in html
    assert json.loads(json.dumps(evil.to_dict()))["verdict"] == "compatible"


@pytest.mark.parametrize(
    "line, message",
    [
        ("/no/such/adapter --base default", "adapter folder /no/such/adapter does not exist"),
        ("{old} --base default", "is not a PEFT adapter: it has no adapter_config.json"),
        ("{ad} --base no-such-base", "ModelNotFound: unknown model 'no-such-base'"),
        ("{ad} --base {old} --max-lora-rank 0", "--max-lora-rank 0: must be a whole number of at least 1"),
        ("{ad} --base {old} --probes nothing_here.json", "probes file nothing_here.json does not exist"),
        ("{ad} --base {old} --probes empty", "no probe prompts given"),
        ("{ad}", "the following arguments are required: --base"),
    ],
)
def test_bad_input_is_one_line(shell, zoo, line, message):
    shell.user_ns["empty"] = []
    with pytest.raises(UsageError) as err:
        shell.run_cell("%adapter_check " + line.format(**{k: str(v) for k, v in zoo.items()}) + " --no-log")
    text = str(err.value)
    assert message in text and "\n" not in text.strip() and "Traceback" not in text
