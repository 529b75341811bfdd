"""Sentence embeddings with sentence-transformers (the default: all-MiniLM-L6-v2)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..errors import BackendUnavailable
from .engine_logs import quiet_libraries

_lock = threading.Lock()
_cache: dict[tuple, SentenceEmbedder] = {}


class SentenceEmbedder:
    """A sentence-transformers model folder; vectors are L2-normalized float32."""

    def __init__(self, path: str, *, device: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise BackendUnavailable("sentence-transformers is not installed: pip install sentence-transformers") from e
        with quiet_libraries():
            self._model = SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)
        self.path = str(path)
        # sentence-transformers 5.x renamed the method; older releases only have the old name.
        dimension = (
            getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension())

    def embed(self, texts: Sequence[str], *, batch_size: int = 64):
        """Embed ``texts`` -> ``np.ndarray`` of shape (n, dimension)."""
        import numpy as np

        if not len(texts):
            return np.zeros((0, self.dimension), dtype=np.float32)
        with quiet_libraries():
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)


def sentence_embedder(path: str, *, device: str | None = None) -> SentenceEmbedder:
    """The cached embedder for ``path`` (loaded once per process)."""
    key = (str(path), device)
    with _lock:
        if key not in _cache:
            _cache[key] = SentenceEmbedder(path, device=device)
        return _cache[key]
