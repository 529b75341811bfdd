"""transformers: batched ``generate`` with left padding. The fallback everywhere."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import BackendUnavailable, GenerationError
from .base import Adapter, EngineKey, GenerationRequest, GenerationResult, Sampling, default_dtype, dtype_name
from .engine_logs import quiet_libraries
from .progress import progress_bar

# The engine arguments transformers understands; vLLM-only ones (enforce_eager, ...) in
# the shared ``engine_args`` setting do not change a transformers engine.
OPTIONS = ("dtype", "device", "batch_size")


def engine_options(engine_args: dict | None) -> dict:
    """The options a transformers engine starts with: device, its dtype, batch size."""
    import torch

    given = {k: v for k, v in (engine_args or {}).items() if k in OPTIONS}
    device = given.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"batch_size": 16, **given, "device": device, "dtype": given.get("dtype") or default_dtype(device)}


class TransformersGenerator:
    """A transformers causal LM for one base model; PEFT adapters attached per request."""

    backend = "transformers"

    def __init__(
        self, model_path: str, engine_args: dict | None = None, *, seed: int = 0, log_file: Path | None = None
    ):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise BackendUnavailable(f"transformers does not import: {e}", extra="cpu") from e
        options = engine_options(engine_args)
        self.key = EngineKey("transformers", str(model_path), tuple(sorted(options.items(), key=str)))
        self.log_file = log_file
        self._torch = torch
        device = options["device"]
        if options["dtype"] != "auto" and not isinstance(getattr(torch, str(options["dtype"]), None), torch.dtype):
            raise BackendUnavailable(f"unknown dtype {options['dtype']!r}: use float32, bfloat16, float16 or auto")
        dtype = getattr(torch, options["dtype"]) if options["dtype"] != "auto" else "auto"
        with quiet_libraries():
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
                model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
            except (OSError, ValueError) as e:
                raise BackendUnavailable(f"transformers could not load {model_path}: {str(e).splitlines()[0]}") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model.to(device).eval()
        self._device = device
        self.device = torch.device(device).type
        self.dtype = dtype_name(next(self.model.parameters()).dtype)
        self.batch_size = int(options["batch_size"])
        self._adapters: dict[str, str] = {}  # adapter path -> peft adapter name

    def _use_adapter(self, adapter: Adapter | None):
        """Activate ``adapter`` (loading it once) and return a context for the call."""
        import contextlib

        if adapter is None:
            if self._adapters:
                return self.model.disable_adapter()
            return contextlib.nullcontext()
        from peft import PeftModel

        name = self._adapters.get(adapter.path)
        if name is None:
            name = f"a{len(self._adapters)}"
            with quiet_libraries():
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(adapter.path, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, adapter.path, adapter_name=name).eval()
            self._adapters[adapter.path] = name
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    def generate(self, requests: Sequence[GenerationRequest], *, progress: str | None = None) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        # Batches group requests sharing an adapter and sampling, in request order.
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.adapter, r.sampling), []).append(i)
        bar = progress_bar(total=len(requests), desc=progress, disable=not progress)
        for (adapter, sampling), idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                outs = self._generate_batch([requests[i] for i in chunk], adapter, sampling)
                for i, out in zip(chunk, outs):
                    results[i] = out
                bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    def _generate_batch(self, batch, adapter: Adapter | None, s: Sampling):
        torch = self._torch
        prompts = [
            self.tokenizer.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
            for r in batch
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        torch.manual_seed(s.seed)
        kwargs = dict(max_new_tokens=s.max_tokens, pad_token_id=self.tokenizer.pad_token_id)
        if s.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        start = time.perf_counter()
        try:
            with self._use_adapter(adapter), torch.inference_mode(), quiet_libraries():
                out = self.model.generate(**enc, **kwargs, output_scores=bool(s.logprobs), return_dict_in_generate=True)
        except RuntimeError as e:
            raise GenerationError(f"transformers generation failed: {e}") from e
        latency = time.perf_counter() - start
        prompt_len = enc["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_len:]
        results = []
        for row, ids in enumerate(new_tokens.tolist()):
            finish = "length"
            eos = self.tokenizer.eos_token_id
            if eos in ids:
                ids = ids[: ids.index(eos) + 1]
                finish = "stop"
            ids = [t for t in ids if t != self.tokenizer.pad_token_id or t == eos]
            logprobs = None
            if s.logprobs and out.scores:
                logprobs = [
                    torch.log_softmax(out.scores[step][row].float(), -1)[tok].item() for step, tok in enumerate(ids)
                ]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(
                GenerationResult(
                    text=text,
                    token_ids=ids,
                    finish_reason=finish,
                    latency_s=latency,
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=len(ids),
                    logprobs=logprobs,
                )
            )
        return results

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()
