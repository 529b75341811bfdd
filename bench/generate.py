"""Throughput: the same 32 chat prompts through vLLM and transformers, in one run.

    .venv/bin/python bench/generate.py [--tokens 32] [--prompts 32]

Greedy, same model folder (the converted default SmolLM2-135M-Instruct), same prompts,
each backend warmed up once first. Prints tokens/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import time

TOPICS = ["rivers", "volcanoes", "bread", "chess", "the moon", "bees", "trains", "tea",
          "glaciers", "violins", "deserts", "owls", "bridges", "coral", "maps", "clocks"]


def prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        out.append(f"Tell me one interesting fact about {topic}." if i < len(TOPICS) else f"Write a haiku about {topic}.")
    return out


def run(backend: str, model_path: str, texts: list[str], tokens: int, dtype: str | None):
    from llmops_magics.backends.base import GenerationRequest, Sampling
    from llmops_magics.core.engines import get_generator, release
    import llmops_magics

    if dtype:
        llmops_magics.configure(engine_args={"dtype": dtype})
    gen, _ = get_generator(model_path, backend=backend)
    # Fixed-length outputs so both sides generate the same number of tokens.
    sampling = Sampling(max_tokens=tokens, temperature=0.0)
    reqs = [GenerationRequest(({"role": "user", "content": t},), sampling) for t in texts]
    gen.generate(reqs[:2])  # warm-up
    start = time.perf_counter()
    results = gen.generate(reqs)
    elapsed = time.perf_counter() - start
    n_tokens = sum(r.completion_tokens for r in results)
    release(gen)
    return n_tokens, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--vllm-dtype", default=None, help="e.g. bfloat16 (default: the model's fp32)")
    args = parser.parse_args()
    import llmops_magics
    from llmops_magics.backends.default_models import chat_model_dir

    path = str(chat_model_dir(llmops_magics.settings().model_cache))
    texts = prompts(args.prompts)
    rows = {}
    for backend in ("vllm", "transformers"):
        n, s = run(backend, path, texts, args.tokens, args.vllm_dtype if backend == "vllm" else None)
        rows[backend] = n / s
        print(f"{backend:<13} {n:5d} tokens in {s:6.2f} s  = {n / s:7.1f} tok/s")
    print(f"ratio vLLM / transformers: {rows['vllm'] / rows['transformers']:.2f}x "
          f"({args.prompts} prompts x {args.tokens} new tokens, greedy)")


if __name__ == "__main__":
    main()
