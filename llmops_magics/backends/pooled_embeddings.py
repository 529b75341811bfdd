"""Embedders built from real model weights with an explicit pooling configuration.

* ``MiniLMPooled``: the all-MiniLM-L6-v2 transformer with a pooling other than the
  one it ships with (CLS instead of mean): same weights, a different vector space of
  the same dimension, which is exactly the case a dimension check cannot catch.
* ``MeanPooledLM``: a causal language model's last hidden states, mean-pooled over
  the attention mask (SmolLM2-135M-Instruct: 576-d).

Both return L2-normalized float32 vectors, so cosine is the metric.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..errors import BackendUnavailable
from .engine_logs import quiet_libraries

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


class MiniLMPooled:
    """A sentence-transformers folder re-assembled with ``pooling`` (``cls``, ``max``, ``mean``)."""

    def __init__(self, path: str, *, pooling: str = "cls", max_seq_length: int = 128):
        try:
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.models import Normalize, Pooling, Transformer
        except ImportError as e:
            raise BackendUnavailable("sentence-transformers is not installed: pip install sentence-transformers") from e
        with quiet_libraries():
            word = Transformer(str(path), max_seq_length=max_seq_length)
            pool = Pooling(_dim(word), pooling_mode=pooling)
            self._model = SentenceTransformer(modules=[word, pool, Normalize()], device="cpu")
        self.dimension = int(_dim(word))

    def embed(self, texts: Sequence[str], *, batch_size: int = 64):
        import numpy as np

        if not len(texts):
            return np.zeros((0, self.dimension), dtype=np.float32)
        with quiet_libraries():
            vectors = self._model.encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return vectors.astype(np.float32, copy=False)


class MeanPooledLM:
    """Mean of a causal LM's last hidden states over real (non-padding) tokens."""

    def __init__(self, path: str, *, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        with quiet_libraries():
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            self._model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self.max_length = max_length
        self.dimension = int(self._model.config.hidden_size)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32):
        import numpy as np
        import torch

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self._tokenizer(
                    list(texts[i : i + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[i : i + len(pooled)] = pooled.numpy()
        return out


def cached(kind: str, path: str, **options):
    """One loaded embedder per (kind, path, options) for the process's life."""
    key = (kind, str(path), tuple(sorted(options.items())))
    with _lock:
        if key not in _cache:
            cls = {"minilm-pooled": MiniLMPooled, "mean-pooled-lm": MeanPooledLM}[kind]
            _cache[key] = cls(path, **options)
        return _cache[key]


def _dim(module) -> int:
    # sentence-transformers 6 renamed the accessor; older releases only have the old name.
    getter = getattr(module, "get_embedding_dimension", None) or module.get_word_embedding_dimension
    return int(getter())
