"""Registering and pinning a 538 MB model: bytes read and time, first vs again, in one run.

    .venv/bin/python bench/pins.py

The default SmolLM2 folder is hard-linked into a fresh folder (same bytes, paths the
digest cache has never seen), registered twice and pinned, against a fresh sqlite store.
Also times resolving a model name through a pin vs through the registry, and a prompt.
Prints bytes hashed per step (the counter ``backends.files.bytes_hashed``) and ratios.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def timed(fn, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-pins-"))
    try:
        measure(work)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path) -> None:
    os.environ["LLMOPS_HOME"] = str(work / "home")
    import llmops_magics
    from llmops_magics.backends import files
    from llmops_magics.backends.default_models import chat_model_dir
    from llmops_magics.core.generation.resolve import resolve_model
    from llmops_magics.core.registry import register_prompt, resolve_prompt

    llmops_magics.config.reset()
    src = chat_model_dir(llmops_magics.settings().model_cache)
    linked = work / "smollm2"
    linked.mkdir()
    for p in src.iterdir():
        if p.is_file():
            os.link(p, linked / p.name)
    size = sum(p.stat().st_size for p in linked.iterdir())
    llmops_magics.register_prompt("warmup", "hi {{x}}")  # sqlite schema + experiment, not measured

    rows = []
    for label, fn in [
        ("register (cold digest cache)", lambda: llmops_magics.register_model("chat", str(linked), alias="champion")),
        ("register again (unchanged)", lambda: llmops_magics.register_model("chat", str(linked))),
        ("pin chat@champion", lambda: llmops_magics.pin("model", "chat@champion")),
    ]:
        before = files.bytes_hashed
        _, seconds = timed(fn)
        rows.append((label, files.bytes_hashed - before, seconds))
    print(f"\nmodel folder: {size / 1e6:.0f} MB in {len(list(linked.iterdir()))} files\n", flush=True)
    print(f"{'step':32} {'bytes hashed':>14} {'seconds':>9}")
    for label, hashed, seconds in rows:
        print(f"{label:32} {hashed:>14,} {seconds:>9.3f}")
    print(
        f"\nregister again / first: {rows[1][2] / rows[0][2]:.3f}x the time, {rows[1][1]} of {rows[0][1]:,} bytes read"
    )

    _, pinned_s = timed(lambda: resolve_model("chat"), repeat=50)
    llmops_magics.clear_pins()
    _, registry_s = timed(lambda: resolve_model("chat@champion"), repeat=50)
    print(
        f"\nresolve 'chat' through the pin: {pinned_s * 1e3:.3f} ms; "
        f"'chat@champion' through the registry: {registry_s * 1e3:.2f} ms "
        f"({registry_s / pinned_s:.0f}x)"
    )
    register_prompt("summarize", "Summarize: {{text}}", alias="production")
    llmops_magics.pin("prompt", "summarize@production")
    _, p_pinned = timed(lambda: resolve_prompt("summarize"), repeat=50)
    llmops_magics.clear_pins()
    _, p_registry = timed(lambda: resolve_prompt("summarize@production"), repeat=50)
    print(
        f"resolve prompt through the pin: {p_pinned * 1e3:.3f} ms; through the registry: "
        f"{p_registry * 1e3:.2f} ms ({p_registry / p_pinned:.0f}x)"
    )


if __name__ == "__main__":
    main()
