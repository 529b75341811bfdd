"""%adapter_check costs: static check of a 7B-shaped adapter; behavioral check on the default model.

    .venv/bin/python bench/adapter_check.py [--probes 16] [--backend transformers] [--skip-behavior]

Static: a Llama-7B-shaped base (32 layers, hidden 4096, vocab 32000, fp16, two shards
plus model.safetensors.index.json, 13.5 GB) and a PEFT-format LoRA adapter (r=16 on
q/k/v/o of all 32 layers, random fp16 weights, 33 MB) are written as real safetensors
files. The base's tensor data is all zeros and written as sparse files, so it costs no
disk; the check must not read it anyway. Prints seconds and bytes read side by side
with the bytes on disk.

Behavioral: a real random LoRA on the default SmolLM2-135M, checked on the shipped 16
probes, against (a) the same base (no-effect check) and (b) a perturbed copy of the
base (full drift check: old vs new, with and without the adapter). Model loading is
timed apart from the check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

LLAMA_7B = {"hidden": 4096, "intermediate": 11008, "layers": 32, "heads": 32, "vocab": 32000}


def _llama_tensors(c: dict) -> dict[str, tuple[int, ...]]:
    h, i = c["hidden"], c["intermediate"]
    out = {"model.embed_tokens.weight": (c["vocab"], h), "model.norm.weight": (h,), "lm_head.weight": (c["vocab"], h)}
    for n in range(c["layers"]):
        p = f"model.layers.{n}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{p}self_attn.{m}.weight"] = (h, h)
        out[f"{p}mlp.gate_proj.weight"] = (i, h)
        out[f"{p}mlp.up_proj.weight"] = (i, h)
        out[f"{p}mlp.down_proj.weight"] = (h, i)
        out[f"{p}input_layernorm.weight"] = (h,)
        out[f"{p}post_attention_layernorm.weight"] = (h,)
    return out


def _write_sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """A valid fp16 safetensors file whose (zero) data region is a hole in the file."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def build_7b(root: Path, rank: int = 16) -> tuple[Path, Path, int]:
    import torch
    from safetensors.torch import save_file

    c = LLAMA_7B
    base = root / "llama-7b-like"
    base.mkdir()
    (base / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": c["hidden"],
                "intermediate_size": c["intermediate"],
                "num_hidden_layers": c["layers"],
                "num_attention_heads": c["heads"],
                "num_key_value_heads": c["heads"],
                "vocab_size": c["vocab"],
                "torch_dtype": "float16",
            }
        )
    )
    shapes = _llama_tensors(c)
    names = list(shapes)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map, total = {}, 0
    for k, part in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-00002.safetensors"
        total += _write_sparse_safetensors(base / fname, {n: shapes[n] for n in part})
        weight_map.update({n: fname for n in part})
    (base / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    adapter = root / "adapter-r16"
    adapter.mkdir()
    torch.manual_seed(0)
    tensors = {}
    for n in range(c["layers"]):
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            key = f"base_model.model.model.layers.{n}.self_attn.{m}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, c["hidden"], dtype=torch.float16) * 0.01
            tensors[f"{key}.lora_B.weight"] = torch.randn(c["hidden"], rank, dtype=torch.float16) * 0.01
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": str(base),
                "r": rank,
                "lora_alpha": 2 * rank,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "bias": "none",
                "fan_in_fan_out": False,
                "use_dora": False,
                "modules_to_save": None,
            }
        )
    )
    adapter_bytes = (adapter / "adapter_model.safetensors").stat().st_size
    return base, adapter, total + adapter_bytes


def bench_static(root: Path) -> None:
    from llmops_magics.core.adapter.static import static_check

    t0 = time.perf_counter()
    base, adapter, on_disk = build_7b(root)
    print(
        f"wrote 7B-shaped base + r=16 adapter in {time.perf_counter() - t0:.1f} s "
        f"({on_disk / 1e9:.2f} GB of safetensors, base data sparse)"
    )
    runs = []
    for _ in range(5):
        result = static_check(adapter, base, old_base_dir=base, max_lora_rank=16)
        runs.append(result.stats)
    first, best = runs[0], min(runs, key=lambda s: s["seconds"])
    problems = [f for f in result.findings if f.severity != "info"]
    print(
        f"static check: {first['tensors_checked']} adapter tensors vs {first['base_tensors']} base tensors, "
        f"{len(problems)} non-info findings"
    )
    print(f"  seconds: first {first['seconds']:.4f}, best of 5 {best['seconds']:.4f}   (target < 1 s)")
    print(
        f"  bytes read: {first['bytes_read']:,} of {on_disk:,} on disk = "
        f"{first['bytes_read'] / on_disk:.2e} of the files   (target < 1 MB)"
    )


def bench_behavior(root: Path, n_probes: int, backend: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import llmops_magics
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core.adapter.behavior import load_probes
    from llmops_magics.core.generation.engines import get_generator

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from adapter_helpers import perturbed_base

    cfg = llmops_magics.settings()
    base = chat_model_dir(cfg.model_cache)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).save_pretrained(root / "smol-adapter")
    del model
    probes = (load_probes() * 4)[:n_probes]
    updated = perturbed_base(base, root / "smol-updated", noise=0.02)
    t0 = time.perf_counter()
    get_generator(str(base), cfg, backend=backend)
    if backend == "transformers":
        get_generator(str(updated), cfg, backend=backend)
    load_s = time.perf_counter() - t0
    print(f"behavioral check, default model, {len(probes)} probes x 16 reference tokens, {backend}:")
    print(f"  engine load (apart): {load_s:.1f} s")
    for label, new in (("same base (no-effect check)", str(base)), ("perturbed base (full drift check)", str(updated))):
        if backend == "vllm" and label.startswith("perturbed"):
            continue  # one vLLM engine per process: the drift check would start a second
        t0, c0 = time.perf_counter(), time.process_time()
        report = llmops_magics.check_adapter(
            str(root / "smol-adapter"), base=new, old_base=str(base), probes=probes, backend=backend, log=False
        )
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        m = report.metrics
        extra = (
            ""
            if "adapter_drift_kl" not in m
            else (f", adapter drift {m['adapter_drift_kl']:.3f} vs base drift {m['base_drift_kl']:.3f}")
        )
        print(
            f"  {label}: {s:.1f} s wall, {cpu:.1f} s CPU (target < 60 s; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), verdict {report.verdict}, "
            f"effect {m['adapter_effect_kl']:.3f} nats/token{extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--skip-behavior", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("LLMOPS_HOME", tempfile.mkdtemp(prefix="llmops-bench-"))
    root = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    try:
        bench_static(root)
        if not args.skip_behavior:
            bench_behavior(root, args.probes, args.backend)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
