"""The hardware an engine runs on, as far as it changes answers.

The same weights in bfloat16 answer differently on an AMX Xeon, an AVX-512 machine and
an AVX2 EPYC (each computes bf16 matmuls its own way), and differently again on each GPU
model. Lineage records this so ``llmops-magics verify`` can say "hardware cpu avx512 ->
avx2" instead of leaving a changed answer unexplained.
"""

from __future__ import annotations

import platform
import sys
from functools import lru_cache
from pathlib import Path

# The CPU features that decide how fast and how faithfully bfloat16 runs.
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")

# From the most to the least capable: the first one a CPU has is its class.
_CLASSES = (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (Linux ``/proc/cpuinfo``)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the flags are unknown
        pass
    return name, [f for f in CPU_FLAGS if f in flags]


def isa_class(flags: list[str] | tuple[str, ...]) -> str:
    """``amx``, ``avx512_bf16``, ``avx512``, ``avx2`` or ``other``: the CPU class whose bf16
    answers agree with each other."""
    for flag, name in _CLASSES:
        if flag in flags:
            return name
    return "other"


def _gpu_name() -> str | None:
    # Only when torch is already loaded (a GPU engine loads it): never import it for this.
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # a broken CUDA set-up: the GPU model stays unknown, never fatal
        return None
    return None


def describe(device: str | None) -> dict:
    """What the engine on ``device`` runs on: ``{"device", "name", "class"}`` (a new dict each call).

    On a CPU ``class`` is its ISA class (:func:`isa_class`); on a GPU it is the GPU
    model (``NVIDIA H100 80GB HBM3``).
    """
    device = (device or "cpu").lower()
    if device.startswith(("cuda", "gpu", "rocm", "xpu")):
        name = _gpu_name() or device  # asked each time: torch may load after the first call
        return {"device": "gpu", "name": name, "class": name}
    name, flags = _cpu()
    return {"device": "cpu", "name": name, "class": isa_class(flags)}


@lru_cache(maxsize=1)
def _cpu() -> tuple[str, tuple[str, ...]]:
    # Read once per process: the CPU does not change under a running kernel.
    name, flags = cpu_info()
    return name, tuple(flags)
