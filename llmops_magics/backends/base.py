"""The one generation interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, identical in meaning on every backend."""

    max_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    top_p: float = 1.0
    logprobs: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter applied per request on top of the engine's base model."""

    name: str
    path: str


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion: messages as ``({"role":..., "content":...}, ...)``."""

    messages: tuple[dict, ...]
    sampling: Sampling = Sampling()
    adapter: Adapter | None = None


@dataclass
class GenerationResult:
    """What one request produced."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = ""
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Per generated token: log-probability of the chosen token (when asked for).
    logprobs: list[float] | None = None


def default_dtype(device: str) -> str:
    """The dtype an engine runs with when the user sets none.

    float32 on CPU: a float32 checkpoint run as bfloat16 answers differently on
    different CPU classes (garbage greedy answers on AMX Xeons, sane ones on AVX2
    EPYCs) and is 4-5x slower without native bf16. On a GPU, the engine's own choice.
    """
    return "float32" if device == "cpu" else "auto"


def dtype_name(dtype) -> str:
    """``torch.float32`` -> ``float32``; strings pass through."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class EngineKey:
    """Identifies one loaded engine: the base weights plus the settings that change outputs."""

    backend: str
    model_path: str
    options: tuple[tuple[str, object], ...] = ()


class Generator(Protocol):
    """A loaded model that turns chat requests into results, in request order.

    Implementations run the whole batch together: on vLLM greedy outputs depend on
    batch composition, so callers that compare two sides must send the same batch.
    """

    backend: str
    key: EngineKey
    dtype: str  # what the engine really runs with, e.g. "float32"
    device: str  # "cpu" | "cuda"

    def generate(
        self, requests: Sequence[GenerationRequest], *, progress: str | None = None
    ) -> list[GenerationResult]: ...

    def close(self) -> None: ...
