"""A LoRA adapter folded into its base: plain weights that serve at base speed.

vLLM's CPU LoRA kernels run an adapter's requests 4-8x slower than its base (measured:
424 vs 49 tokens/s), so a shadow of an adapter candidate spent most of its time there.
``merge_and_unload`` (PEFT) adds ``B @ A * scale`` into each target weight once; the
merged folder then loads like any model. It is cached by the digests of the base and
the adapter, built once into a temporary folder and renamed, so a crash mid-build never
leaves a half-written model where the cache says a whole one is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ...backends.engine_logs import engine_output
from ...backends.progress import progress_bar
from ...config import Settings

MERGED_DIR = "merged"


def is_lora(adapter_path: str | Path) -> bool:
    """Whether a PEFT adapter folder holds a LoRA (the only kind that merges this way)."""
    try:
        config = json.loads((Path(adapter_path) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    return str(config.get("peft_type", "")).upper() == "LORA"


def merged_key(base_digest: str, adapter_digest: str) -> str:
    return hashlib.sha256(f"{base_digest}\n{adapter_digest}".encode()).hexdigest()[:16]


def merged_dir(base_digest: str, adapter_digest: str, cfg: Settings) -> Path:
    """Where the merged copy of this base and adapter lives (whether or not it is built)."""
    return cfg.model_cache / MERGED_DIR / merged_key(base_digest, adapter_digest)


def merged_copy(
    base_path: str, adapter_path: str, base_digest: str, adapter_digest: str, cfg: Settings, *, label: str = "adapter"
) -> tuple[Path, bool]:
    """The merged folder for ``adapter_path`` on ``base_path``, built on first use.

    Returns
    -------
    (Path, bool)
        The folder, and whether this call built it.
    """
    target = merged_dir(base_digest, adapter_digest, cfg)
    if (target / "config.json").is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.building-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    log = cfg.home / "logs" / "merge.log"
    try:
        with engine_output(log, verbose=cfg.verbose) as console:
            bar = progress_bar(
                total=3,
                desc=f"merging {label} into its base (once; cached)",
                bar_format="{desc} {n}/{total} {elapsed}",
                file=console if _fd(console) else None,
            )
            _merge(Path(base_path), Path(adapter_path), tmp, bar)
            bar.close()
        try:
            os.rename(tmp, target)
        except OSError:  # another process renamed its copy first: same content, keep theirs
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, True


def _fd(stream) -> bool:
    try:
        stream.fileno()
        return True
    except Exception:  # a notebook's stream: tqdm draws a widget instead
        return False


def _merge(base: Path, adapter: Path, out: Path, bar) -> None:
    # deferred: torch, peft and transformers take seconds to import; only a merge needs them
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # float32 whatever the serving dtype: the merged weights are then as exact as the
    # base's, and the engine casts them as it casts the base.
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    bar.update(1)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    bar.update(1)
    # A base converted from GGUF still carries its quantizer, which refuses to save.
    merged.hf_quantizer = None
    if getattr(merged.config, "quantization_config", None) is not None:
        del merged.config.quantization_config
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    generation = base / "generation_config.json"
    if generation.is_file():
        shutil.copy2(generation, out / "generation_config.json")
    (out / "llmops-merged.json").write_text(json.dumps({"base": str(base), "adapter": str(adapter)}))
    bar.update(1)
