"""Throughput and right answers: vLLM in float32 and bfloat16, and transformers, in one run.

    .venv/bin/python bench/generate.py [--tokens 32] [--prompts 32]

On the converted default SmolLM2-135M-Instruct (an fp32 checkpoint), greedy:

1. Right answers: 36 short factual questions with known answers, each engine warmed up
   first; an answer counts when it contains an accepted answer (case-insensitive).
2. Throughput: 32 chat prompts x ``--tokens`` new tokens.

Each engine runs in a process of its own (two in-process vLLM engines share global
state), one after the other, on the same prompts. The table ends with the machine's CPU
flags: bf16 speed and answers depend on them (AMX, avx512_bf16). Engines start with
the project's defaults plus the dtype of the row; the default on CPU is float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

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

# (question, accepted answers): short facts a small instruct model answers in float32.
FACTS = [
    ("What is the capital of France?", ["paris"]),
    ("What is the capital of Italy?", ["rome"]),
    ("What is the capital of Japan?", ["tokyo"]),
    ("What is the capital of Germany?", ["berlin"]),
    ("What is the capital of Spain?", ["madrid"]),
    ("What is the capital of England?", ["london"]),
    ("What is the capital of Russia?", ["moscow"]),
    ("What is the capital of Egypt?", ["cairo"]),
    ("What is the capital of China?", ["beijing"]),
    ("What is the capital of Canada?", ["ottawa"]),
    ("Which planet is known as the Red Planet?", ["mars"]),
    ("What is the largest planet in our solar system?", ["jupiter"]),
    ("What star is at the center of our solar system?", ["sun"]),
    ("What is the closest planet to the Sun?", ["mercury"]),
    ("What natural satellite orbits the Earth?", ["moon"]),
    ("How many days are there in a week?", ["seven", "7"]),
    ("How many legs does a spider have?", ["eight", "8"]),
    ("How many hours are there in a day?", ["24", "twenty-four", "twenty four"]),
    ("How many months are there in a year?", ["twelve", "12"]),
    ("What is 2 plus 2?", ["4", "four"]),
    ("What is 10 minus 3?", ["7", "seven"]),
    ("What is 3 times 3?", ["9", "nine"]),
    ("What color is the sky on a clear day?", ["blue"]),
    ("What color are the leaves of most trees in summer?", ["green"]),
    ("What color is snow?", ["white"]),
    ("What is frozen water called?", ["ice"]),
    ("What gas do plants absorb from the air for photosynthesis?", ["carbon dioxide", "co2"]),
    ("What gas do humans need to breathe to live?", ["oxygen"]),
    ("What is the chemical formula of water?", ["h2o", "h₂o"]),
    ("Who wrote Romeo and Juliet?", ["shakespeare"]),
    ("Who painted the Mona Lisa?", ["leonardo", "vinci"]),
    ("What is the largest ocean on Earth?", ["pacific"]),
    ("What is the longest river in Africa?", ["nile"]),
    ("What animal is known as the king of the jungle?", ["lion"]),
    ("What do bees make?", ["honey"]),
    ("In which continent is Brazil?", ["south america"]),
]


def chat_prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        out.append(
            f"Tell me one interesting fact about {topic}." if i < len(TOPICS) else f"Write a haiku about {topic}."
        )
    return out


def child(backend: str, dtype: str, n_prompts: int, tokens: int) -> dict:
    """One engine: right answers on FACTS, then throughput; returns a JSON-able dict."""
    import llmops_magics
    from llmops_magics.backends.base import GenerationRequest, Sampling
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core.generation.engines import get_engine

    llmops_magics.configure(engine_args={"dtype": dtype})
    path = str(chat_model_dir(llmops_magics.settings().model_cache))
    t0 = time.perf_counter()
    engine = get_engine(path, backend=backend)
    start_s = time.perf_counter() - t0

    def requests(texts, max_tokens):
        sampling = Sampling(max_tokens=max_tokens, temperature=0.0)
        return [GenerationRequest(({"role": "user", "content": t},), sampling) for t in texts]

    gen = engine.generator
    gen.generate(requests(["Hello!", "Name a fruit."], 8))  # warm-up
    answers = [r.text for r in gen.generate(requests([q for q, _ in FACTS], 48))]
    right = [any(a in text.lower() for a in accepted) for text, (_, accepted) in zip(answers, FACTS)]
    reqs = requests(chat_prompts(n_prompts), tokens)
    t0 = time.perf_counter()
    results = gen.generate(reqs)
    seconds = time.perf_counter() - t0
    n_tokens = sum(r.completion_tokens for r in results)
    return {
        "backend": backend,
        "dtype": engine.dtype,
        "device": engine.device,
        "right": sum(right),
        "total": len(FACTS),
        "wrong": [(q, a[:80]) for (q, _), a, ok in zip(FACTS, answers, right) if not ok],
        "tokens": n_tokens,
        "seconds": seconds,
        "tok_s": n_tokens / seconds,
        "start_s": start_s,
        "paris": answers[0][:80],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument(
        "--engines",
        default="vllm:float32,vllm:bfloat16,transformers:float32",
        help="BACKEND:DTYPE,... run one after the other",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.child:
        backend, dtype = args.child.split(":")
        print("RESULT " + json.dumps(child(backend, dtype, args.prompts, args.tokens)), flush=True)
        return

    from llmops_magics.core.doctor import CPU_FLAGS, cpu_info

    rows = []
    for spec in args.engines.split(","):
        cmd = [sys.executable, __file__, "--child", spec, "--prompts", str(args.prompts), "--tokens", str(args.tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{spec}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
    name, flags = cpu_info()
    print(f"CPU: {name}; flags: {' '.join(f if f in flags else '-' + f for f in CPU_FLAGS)}")
    print(f"{'engine':<24} {'right answers':>14} {'tok/s':>8} {'start s':>8}   first answer")
    for r in rows:
        print(
            f"{r['backend'] + ' ' + r['dtype']:<24} {r['right']:>6}/{r['total']:<7} {r['tok_s']:8.1f} "
            f"{r['start_s']:8.1f}   {r['paris']!r}"
        )
    by = {(r["backend"], r["dtype"]): r for r in rows}
    fp32, bf16, hf = by.get(("vllm", "float32")), by.get(("vllm", "bfloat16")), by.get(("transformers", "float32"))
    if fp32 and bf16:
        print(
            f"vLLM float32 / bfloat16: right answers {fp32['right']} vs {bf16['right']}, "
            f"speed {fp32['tok_s'] / bf16['tok_s']:.2f}x"
        )
    if fp32 and hf:
        print(
            f"vLLM / transformers (float32): {fp32['tok_s'] / hf['tok_s']:.2f}x "
            f"({args.prompts} prompts x {args.tokens} new tokens, greedy)"
        )
    for r in rows:
        for q, a in r["wrong"]:
            print(f"  wrong ({r['backend']} {r['dtype']}): {q} -> {a!r}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": name, "flags": flags, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
