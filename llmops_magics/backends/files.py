"""Content digests of files, streamed, with a cache keyed by (path, size, mtime).

Hashing a 538 MB model takes seconds; pinning and registering it again must not. The
cache is one JSON file per cache folder; ``bytes_hashed`` counts the bytes actually
read so tests and benchmarks can assert "no weight bytes were read" without timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

_CHUNK = 4 << 20
_lock = threading.Lock()
bytes_hashed = 0  # bytes read by sha256_file since import


def sha256_file(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Hex sha256 of a file's bytes; reuses a cached digest when size and mtime match."""
    global bytes_hashed
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = Path(cache_dir) / "digests.json" if cache_dir else None
    if cache_file is not None:
        cached = _load(cache_file).get(key)
        if cached:
            return cached
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            with _lock:
                bytes_hashed += len(chunk)
    digest = h.hexdigest()
    if cache_file is not None:
        _store(cache_file, key, digest)
    return digest


def _load(cache_file: Path) -> dict:
    try:
        return json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}


def _store(cache_file: Path, key: str, digest: str) -> None:
    with _lock:
        data = _load(cache_file)
        data[key] = digest
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, cache_file)
