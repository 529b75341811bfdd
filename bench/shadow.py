"""Shadow overhead and engine memory, measured side by side in one process.

    VLLM_CPU_KVCACHE_SPACE=1 .venv/bin/python bench/shadow.py [--cases 64] [--tokens 32] [--reps 2]

1. Overhead: ``shadow()`` end to end (generation + metrics + statistics + MLflow run +
   lineage record) against the raw vLLM generate of both sides: the same engine, the
   same two batches (primary, then the same prompts with the LoRA candidate).
   Interleaved repetitions; medians; overhead = shadow / raw - 1 (target: under 10%).
   The first ``shadow()`` call also loads the embedder and hashes the weights once;
   it is reported apart as "cold".
2. Memory: process RSS after one shared engine (base + adapter per request) against
   RSS after a second engine of the same weights, the layout without sharing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = ["rivers", "volcanoes", "bread", "chess", "the moon", "bees", "trains", "tea",
          "glaciers", "violins", "deserts", "owls", "bridges", "coral", "maps", "clocks"]
TEMPLATES = ["Tell me one fact about {}.", "Write a haiku about {}.", "What is the history of {}?",
             "Give a one-line definition of {}."]


def make_adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(out)
    return out


def rss_mib() -> float:
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    os.environ["LLMOPS_HOME"] = str(work / "home")
    import llmops_magics
    from llmops_magics.backends.base import GenerationRequest, Sampling
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core import engines
    from llmops_magics.core.models import resolve_model

    llmops_magics.config.reset()
    base = chat_model_dir(llmops_magics.settings().model_cache, progress=False)
    adapter = make_adapter(base, work / "adapter")
    inputs = [t.format(topic) for t in TEMPLATES for topic in TOPICS][: args.cases]
    primary, candidate = resolve_model("default"), resolve_model(str(adapter))

    rss_before = rss_mib()
    gen, _ = engines.get_generator(primary.base_path, backend="vllm")
    sampling = Sampling(max_tokens=args.tokens, temperature=0.0, seed=0)

    def batch(model):
        return [GenerationRequest(({"role": "user", "content": p},), sampling, model.adapter) for p in inputs]

    def raw() -> float:
        t0 = time.perf_counter()
        gen.generate(batch(primary))
        gen.generate(batch(candidate))
        return time.perf_counter() - t0

    try:
        from llmops_magics.core.lineage import start_recording

        recorder = start_recording(home=work / "home", ship=False)
    except ImportError:
        recorder = None

    def end_to_end() -> float:
        t0 = time.perf_counter()
        if recorder is not None:
            recorder.begin_cell("%%shadow ...")
        llmops_magics.shadow(inputs, primary="default", candidate=str(adapter), max_tokens=args.tokens,
                             backend="vllm")
        if recorder is not None:
            recorder.end_cell(1)
        return time.perf_counter() - t0

    cold = end_to_end()  # also the warm-up: loads the adapter, the embedder, hashes weights
    rss_shared = rss_mib()
    raws, shadows = [], []
    for _ in range(args.reps):
        raws.append(raw())
        shadows.append(end_to_end())
    r, s = statistics.median(raws), statistics.median(shadows)

    # Two engines of the same weights: what a primary and a candidate cost unshared.
    llmops_magics.configure(engine_args={"max_model_len": 2047})
    second, _ = engines.get_generator(primary.base_path, backend="vllm")
    second.generate(batch(candidate)[:2])
    rss_two = rss_mib()
    engines.release_all()
    if recorder is not None:
        from llmops_magics.core.lineage import stop_recording

        stop_recording()

    print(f"cases {len(inputs)}, max_tokens {args.tokens}, reps {args.reps} (medians)")
    print(f"raw vLLM generate, both sides : {r:7.2f} s   runs {[round(x, 2) for x in raws]}")
    print(f"shadow() end to end          : {s:7.2f} s   runs {[round(x, 2) for x in shadows]}")
    print(f"overhead (shadow / raw - 1)  : {s / r - 1:+7.1%}   cold first call: {cold:.2f} s ({cold / r - 1:+.1%})")
    print(f"RSS before engines           : {rss_before:7.0f} MiB")
    print(f"RSS one shared engine        : {rss_shared:7.0f} MiB  (+{rss_shared - rss_before:.0f})")
    print(f"RSS two engines              : {rss_two:7.0f} MiB  (+{rss_two - rss_before:.0f})")
    print(f"two engines / one shared (engine memory): {(rss_two - rss_before) / (rss_shared - rss_before):.2f}x")


if __name__ == "__main__":
    main()
