"""Tensor names, shapes and dtypes of safetensors files, without reading tensor data.

A ``.safetensors`` file starts with an 8-byte little-endian header length and a JSON
header (name -> dtype, shape, offsets). Reading only that lets a check answer "does
this adapter fit this 7B base?" from a few hundred kilobytes instead of gigabytes.
``bytes_read`` counts every byte this module reads, so tests and benchmarks can show
that no tensor data was touched.
"""

from __future__ import annotations

import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput

# The format caps headers at 100 MB; a bigger length means "not a safetensors file".
_MAX_HEADER = 100 << 20
_lock = threading.Lock()
bytes_read = 0  # bytes read by this module since import


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it."""

    dtype: str
    shape: tuple[int, ...]
    file: str


def _count(n: int) -> None:
    global bytes_read
    with _lock:
        bytes_read += n


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict]:
    """Tensors and ``__metadata__`` of one ``.safetensors`` file (header only).

    Returns
    -------
    (dict name -> TensorInfo, metadata dict)
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw_len = f.read(8)
            _count(len(raw_len))
            if len(raw_len) != 8:
                raise BadInput(f"{path} is not a safetensors file: it is shorter than 8 bytes")
            (n,) = struct.unpack("<Q", raw_len)
            if n > _MAX_HEADER:
                raise BadInput(f"{path} is not a safetensors file: header length {n} is implausible")
            raw = f.read(n)
            _count(len(raw))
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from e
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise BadInput(f"{path} is not a safetensors file: its header is not JSON") from e
    metadata = header.pop("__metadata__", None) or {}
    tensors = {
        name: TensorInfo(str(v["dtype"]), tuple(int(d) for d in v["shape"]), path.name) for name, v in header.items()
    }
    return tensors, metadata


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a model folder: those the index names, else all of them."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        raw = index.read_bytes()
        _count(len(raw))
        try:
            weight_map = json.loads(raw)["weight_map"]
        except (ValueError, KeyError) as e:
            raise BadInput(f"{index} has no weight_map: the index file is damaged") from e
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(folder.glob("*.safetensors"))


def model_tensors(folder: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of a model folder (sharded or not), from the headers alone."""
    tensors: dict[str, TensorInfo] = {}
    for path in weight_files(folder):
        tensors.update(read_header(path)[0])
    return tensors


def read_json(path: str | Path) -> dict:
    """A small JSON file (``config.json``, ``adapter_config.json``), counted in ``bytes_read``."""
    path = Path(path)
    raw = path.read_bytes()
    _count(len(raw))
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise BadInput(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise BadInput(f"{path} should hold a JSON object")
    return data
