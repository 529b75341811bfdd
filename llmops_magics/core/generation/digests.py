"""Digests of model folders: what the weights are, whatever their path.

A shadow run records the digest of each side's base and adapter, and a merged copy of
an adapter is cached by the digests of both (:mod:`.merge`). File digests are cached
by size and mtime in the model cache, so a folder is read once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ...backends.files import sha256_file
from ...config import Settings


def folder_digest(path: str | None, cfg: Settings, pattern: str = "*.safetensors") -> str:
    """sha256 of a model folder's weight files (``*.bin`` when there are none of ``pattern``).

    One file: its own sha256; several: the sha256 of their names and digests; no
    folder or no weights: ``""``.
    """
    if not path:
        return ""
    files = sorted(Path(path).glob(pattern)) or sorted(Path(path).glob("*.bin"))
    if not files:
        return ""
    digests = [(f.name, sha256_file(f, cache_dir=cfg.model_cache)) for f in files]
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, d in digests).encode()).hexdigest()


def adapter_digest(adapter_path: str, cfg: Settings) -> str:
    """sha256 of an adapter's weights and its ``adapter_config.json``."""
    # The weights and the LoRA config (rank, alpha, targets) both decide the merged weights.
    config = Path(adapter_path) / "adapter_config.json"
    extra = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else ""
    return hashlib.sha256(f"{folder_digest(adapter_path, cfg)}:{extra}".encode()).hexdigest()
