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

    .venv/bin/python bench/shadow.py --lora [--cases 64] [--tokens 16] [--reps 2]

    .venv/bin/python bench/shadow.py --traced [--cases 64] [--tokens 16] [--reps 3]

4. Traced path: the raw vLLM generate of both sides (primary, then the LoRA candidate,
   the layout of 1.) against the same generate plus writing its 2N generations as MLflow
   traces linked to a run (:func:`llmops_magics.core.tracking.write_traces`, the writer
   ``shadow()`` uses) into the embedded sqlite store. Interleaved repetitions, medians;
   overhead = traced / raw - 1 (target: under 10%); also the write against the
   generation of the same traced run (steadier on a shared machine), the write's own
   seconds and calls, and the overhead had the candidate been the base itself (the
   fastest side, the harshest ratio).

5. LoRA candidate, both adapter paths: in one process per path (so peak memory is that
   path's own), ``shadow()`` of base vs base and of base vs the LoRA candidate on the
   same cases, warm (engines started, merged copy built); the ratio LoRA / base-vs-base
   per path (target for ``merged``: at most 1.3x), the cold first LoRA shadow (merge and
   engine start included), peak RSS, and whether both paths find the same differing
   cases and verdict.
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
]


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


def lora_child(mode: str, cases: int, tokens: int, reps: int, work: Path) -> dict:
    """One adapter path in a fresh process: warm timings, cold first run, peak RSS."""
    import resource

    import llmops_magics
    from llmops_magics.backends.default_models import chat_model_dir

    os.environ["LLMOPS_HOME"] = str(work / f"home-{mode}")
    llmops_magics.config.reset()
    base = chat_model_dir(llmops_magics.settings().model_cache, progress=False)
    adapter = work / "adapter"
    inputs = [t.format(topic) for t in TEMPLATES for topic in TOPICS][:cases]
    kw = dict(primary="default", max_tokens=tokens, backend="vllm", log=False)

    def timed(**more):
        t0 = time.perf_counter()
        result = llmops_magics.shadow(inputs, **kw, **more)
        return time.perf_counter() - t0, result

    rss0 = rss_mib()
    timed(candidate="default")  # starts the base engine: not part of either path's cold time
    cold, _ = timed(candidate=str(adapter), adapter_mode=mode)
    base_runs, lora_runs = [], []
    for _ in range(reps):
        base_runs.append(timed(candidate="default")[0])
        seconds, result = timed(candidate=str(adapter), adapter_mode=mode)
        lora_runs.append(seconds)
    assert str(base)  # the base folder exists (converted once)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mode": mode,
        "base_s": statistics.median(base_runs),
        "lora_s": statistics.median(lora_runs),
        "base_runs": base_runs,
        "lora_runs": lora_runs,
        "cold_s": cold,
        "peak_mib": peak,
        "rss0_mib": rss0,
        "plan": result.params["engine_plan"],
        "label": result.label,
        "differing": sorted(r["id"] for r in result.differing_cases),
        "outputs": [r["candidate_output"] for r in result.rows],
    }


def lora_bench(args) -> None:
    import json
    import subprocess
    import sys

    import llmops_magics
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core.doctor import CPU_FLAGS, cpu_info

    work = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    make_adapter(chat_model_dir(llmops_magics.settings().model_cache, progress=False), work / "adapter")
    rows = {}
    for mode in ("lora", "merged"):
        cmd = [
            sys.executable,
            __file__,
            "--lora-child",
            mode,
            "--work",
            str(work),
            "--cases",
            str(args.cases),
            "--tokens",
            str(args.tokens),
            "--reps",
            str(args.reps),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
        rows[mode] = json.loads(line[len("RESULT ") :])
    name, flags = cpu_info()
    print(f"CPU: {name}; flags: {' '.join(f if f in flags else '-' + f for f in CPU_FLAGS)}")
    print(f"{args.cases} cases x {args.tokens} tokens, greedy, float32, medians of {args.reps} warm runs")
    print(
        f"{'path':<8} {'base-vs-base s':>15} {'LoRA shadow s':>14} {'ratio':>7} "
        f"{'cold s':>7} {'peak RSS MiB':>13}  plan"
    )
    for mode, r in rows.items():
        print(
            f"{mode:<8} {r['base_s']:15.2f} {r['lora_s']:14.2f} {r['lora_s'] / r['base_s']:6.2f}x "
            f"{r['cold_s']:7.1f} {r['peak_mib']:13.0f}  {r['plan']}"
        )
    lo, me = rows["lora"], rows["merged"]
    same = sum(a == b for a, b in zip(lo["outputs"], me["outputs"]))
    print(
        f"candidate answers identical on both paths: {same}/{len(lo['outputs'])}; differing cases "
        f"{len(lo['differing'])} (lora) vs {len(me['differing'])} (merged), "
        f"same set: {lo['differing'] == me['differing']}; "
        f"verdict {lo['label']} vs {me['label']}"
    )
    print(f"merged LoRA shadow vs shared LoRA shadow: {lo['lora_s'] / me['lora_s']:.2f}x faster")


def traced_bench(args) -> None:
    """Raw generation of both sides vs the same generation plus writing its 2N traces."""
    work = Path(tempfile.mkdtemp(prefix="bench-traced-"))
    os.environ["LLMOPS_HOME"] = str(work / "home")
    import llmops_magics
    from llmops_magics.backends.base import GenerationRequest, Sampling
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core import tracking
    from llmops_magics.core.doctor import CPU_FLAGS, cpu_info
    from llmops_magics.core.generation import engines
    from llmops_magics.core.generation.resolve import resolve_model
    from llmops_magics.core.tracking import trace_write as tw

    llmops_magics.config.reset()
    cfg = llmops_magics.settings()
    base = chat_model_dir(cfg.model_cache, progress=False)
    adapter = make_adapter(base, work / "adapter")
    inputs = [t.format(topic) for t in TEMPLATES for topic in TOPICS][: args.cases]
    sides = {"primary": resolve_model("default"), "candidate": resolve_model(str(adapter))}
    gen, _ = engines.get_generator(sides["primary"].base_path, backend="vllm")
    sampling = Sampling(max_tokens=args.tokens, temperature=0.0, seed=0)
    messages = [({"role": "user", "content": p},) for p in inputs]

    def generate(role: str):
        requests = [GenerationRequest(m, sampling, sides[role].adapter) for m in messages]
        t0 = time.time_ns()
        return t0, gen.generate(requests)

    def traces(role: str, started: int, results) -> list:
        model = sides[role]
        side = tw.generation_attributes(
            model=model.label,
            model_ref=model.ref,
            model_digest="0" * 64,  # shadow takes it from its params: no hashing in the timed path
            adapter=model.adapter.path if model.adapter else "",
            sampling={"max_tokens": sampling.max_tokens, "temperature": 0.0, "seed": 0, "top_p": 1.0},
            engine_args={"dtype": gen.dtype},
            serving={"backend": gen.backend, "dtype": gen.dtype, "device": gen.device},
        )
        return [
            tw.GenerationTrace(
                name=f"shadow {role}",
                messages=m,
                response=r.text,
                attributes={
                    **side,
                    tw.PROMPT_TOKENS: r.prompt_tokens,
                    tw.COMPLETION_TOKENS: r.completion_tokens,
                    tw.LATENCY_S: r.latency_s,
                },
                start_ns=started,
                end_ns=started + int(r.latency_s * 1e9),
                tags={tw.KIND_TAG: "shadow", tw.ROLE_TAG: role, tw.CASE_TAG: i},
            )
            for i, (m, r) in enumerate(zip(messages, results))
        ]

    run_id = tracking.log_run(run_name="bench traced", tags={}, params={}, metrics={}, cfg=cfg)

    def raw() -> dict:
        out = {}
        for role in ("primary", "candidate"):
            t0 = time.perf_counter()
            generate(role)
            out[role] = time.perf_counter() - t0
        return out

    def traced() -> tuple[float, float, tw.TraceReport]:
        t0 = time.perf_counter()
        batches = {role: generate(role) for role in ("primary", "candidate")}
        generated = time.perf_counter() - t0
        written = [t for role, (started, results) in batches.items() for t in traces(role, started, results)]
        report = tw.write_traces(written, run_id=run_id, cfg=cfg)
        assert report.failed == 0, report.note
        return time.perf_counter() - t0, generated, report

    traced()  # warm-up: the adapter loaded, the store's first writes
    raws, traceds, in_run, writes, base_s = [], [], [], [], []
    for _ in range(args.reps):
        one = raw()
        base_s.append(one["primary"])
        raws.append(sum(one.values()))
        seconds, generated, report = traced()
        traceds.append(seconds)
        # The same run's own generation: a ratio that the neighbours' load moves far less.
        in_run.append((seconds - generated) / generated)
        writes.append(report.seconds)
    engines.release_all()
    r, t, w = statistics.median(raws), statistics.median(traceds), statistics.median(writes)
    primary_s = statistics.median(base_s)
    name, flags = cpu_info()
    n = 2 * len(inputs)
    print(f"CPU: {name}; flags: {' '.join(f if f in flags else '-' + f for f in CPU_FLAGS)}")
    print(f"{len(inputs)} cases x {args.tokens} tokens, both sides, greedy, {gen.dtype}; medians of {args.reps}")
    print(f"raw generate, both sides        : {r:7.2f} s   runs {[round(x, 2) for x in raws]}")
    print(f"generate + {n} traces written    : {t:7.2f} s   runs {[round(x, 2) for x in traceds]}")
    print(f"trace write alone               : {w:7.2f} s   ({report.calls} calls, {w / n * 1e3:.1f} ms/trace)")
    print(f"overhead (traced / raw - 1)     : {t / r - 1:+7.1%}")
    print(f"overhead within each traced run : {statistics.median(in_run):+7.1%}   runs {[f'{x:+.1%}' for x in in_run]}")
    print(f"had the candidate been the base : {w / (2 * primary_s):+7.1%}  (write / 2 x {primary_s:.2f} s base batch)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--lora", action="store_true", help="LoRA candidate: merged vs shared engine")
    parser.add_argument("--traced", action="store_true", help="raw generation vs generation + its MLflow traces")
    parser.add_argument("--lora-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lora_child:
        import json

        result = lora_child(args.lora_child, args.cases, args.tokens, args.reps, Path(args.work))
        print("RESULT " + json.dumps(result), flush=True)
        return
    if args.lora:
        lora_bench(args)
        return
    if args.traced:
        traced_bench(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    os.environ["LLMOPS_HOME"] = str(work / "home")
    import llmops_magics
    from llmops_magics.backends.base import GenerationRequest, Sampling
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core.generation import engines
    from llmops_magics.core.generation.resolve import resolve_model

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
        from llmops_magics.core.lineage.record import start_recording

        recorder = start_recording(home=work / "home", ship=False)
    except ImportError:
        recorder = None

    def end_to_end() -> float:
        t0 = time.perf_counter()
        if recorder is not None:
            recorder.begin_cell("%%shadow ...")
        llmops_magics.shadow(inputs, primary="default", candidate=str(adapter), max_tokens=args.tokens, backend="vllm")
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
        from llmops_magics.core.lineage.record import stop_recording

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
