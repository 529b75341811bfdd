"""``llm()``: send prompts to a chat model. The Python twin of ``%%llm``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...backends import hardware, vllm_backend
from ...backends.base import GenerationRequest, GenerationResult, Sampling
from ...config import Settings, settings
from ...errors import BadInput, TrackingError
from .. import events, options, tracking
from ..cost import Cost, check_prices, cost_of, lookup_price, parse_price
from ..display import esc, html_table, run_link, text_table, warnings_block
from ..paths import shown_path
from ..registry.prompts import prompt_requests
from ..registry.resolve import resolve_prompt
from ..tracking import trace_write
from ..verify.fingerprint import messages_digest, text_digest
from .digests import adapter_digest, folder_digest
from .engines import Engine, get_engine
from .resolve import ResolvedModel, resolution_note, resolve_chat_model


@dataclass
class LlmResult:
    """Answers to one ``%%llm`` cell, with what produced them."""

    prompts: list[str]
    results: list[GenerationResult]
    model: ResolvedModel
    backend: str
    backend_reason: str
    sampling: Sampling
    run_id: str | None = None
    extra: dict = field(default_factory=dict)
    # What the engine really ran with: {"backend", "dtype", "device"}.
    serving: dict = field(default_factory=dict)
    # What did not happen, in one line each (e.g. the MLflow run was kept for later).
    warnings: list = field(default_factory=list)
    run_key: str | None = None
    # The MLflow trace of each generation, in prompt order (None where one was not written).
    trace_ids: list = field(default_factory=list)
    # Cost of 1,000 requests like these (tokens and seconds without a price): issue 20.
    cost: Cost | None = None

    @property
    def dtype(self) -> str:
        return self.serving.get("dtype", "")

    @property
    def device(self) -> str:
        return self.serving.get("device", "")

    @property
    def answers(self) -> list[str]:
        return [r.text for r in self.results]

    @property
    def answer(self) -> str:
        """The first answer (the only one unless ``--each-line``)."""
        return self.answers[0]

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.results)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.results)

    @property
    def latency_s(self) -> float:
        return max((r.latency_s for r in self.results), default=0.0)

    def _summary(self) -> str:
        run = f" · run {self.run_id[:8]}" if self.run_id else ""
        serving = f" ({self.dtype}, {self.device})" if self.dtype else ""
        cost = ""
        if self.cost is not None:
            priced = self.cost.per_1k is not None
            cost = f" · {self.cost} / 1,000 requests" if priced else f" · per 1,000 requests: {self.cost}"
        return (
            f"model {self.model.label} · backend {self.backend}{serving} · tokens {self.prompt_tokens} in / "
            f"{self.completion_tokens} out · {self.latency_s:.2f} s{cost}{run}"
        )

    def __str__(self) -> str:
        return "\n".join(self.answers)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if len(self.results) == 1:
            text = f"{self.answer}\n\n{self._summary()}"
            body = f"<div style='white-space:pre-wrap'>{esc(self.answer)}</div>"
        else:
            rows = [[p, r.text, r.completion_tokens] for p, r in zip(self.prompts, self.results)]
            text = text_table(["prompt", "answer", "tokens"], rows) + f"\n\n{self._summary()}"
            body = html_table(["prompt", "answer", "tokens"], rows)
        link_text, link_html = run_link(self.run_id)
        warn_text, warn_html = warnings_block(self.warnings)
        html = (
            f"<div class='llmops-llm'>{body}<div style='opacity:.7;font-size:85%'>{esc(self._summary())}</div>"
            f"{link_html}{warn_html}</div>"
        )
        return {"text/plain": text + link_text + warn_text, "text/html": html}

    def to_pandas(self):
        import pandas as pd  # deferred: pandas takes a second to import, and only this needs it

        return pd.DataFrame(
            {
                "prompt": self.prompts,
                "answer": self.answers,
                "prompt_tokens": [r.prompt_tokens for r in self.results],
                "completion_tokens": [r.completion_tokens for r in self.results],
                "finish_reason": [r.finish_reason for r in self.results],
                "latency_s": [r.latency_s for r in self.results],
            }
        )


def split_prompts(body: str, each_line: bool) -> list[str]:
    """One prompt, or one per non-empty line."""
    if each_line:
        prompts = [line.strip() for line in body.splitlines() if line.strip()]
    else:
        prompts = [body.strip()] if body.strip() else []
    if not prompts:
        raise BadInput("the cell is empty: write the prompt below the %%llm line")
    return prompts


@tracking.bounded_command
def llm(
    prompts: str | Sequence[str] | None = None,
    *,
    model: str | None = None,
    prompt=None,
    variables: dict | None = None,
    system: str | None = None,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    each_line: bool = False,
    backend: str | None = None,
    log: bool = True,
    cfg: Settings | None = None,
    price: str | None = None,
) -> LlmResult:
    """Send one prompt (or several) to a chat model.

    Parameters
    ----------
    prompts : str or list of str
        A prompt, a list of prompts, or with ``each_line`` one prompt per line.
    model : str, optional
        A model ref; the configured default model when omitted.
    prompt : str or PromptRef, optional
        A registered prompt (``summarize``, ``summarize@production``; pins apply). Its
        template is filled from ``variables``; each of ``prompts`` fills the one variable
        left unset. The run is linked to the prompt version.
    variables : dict, optional
        Template variables for ``prompt``.
    system : str, optional
        A system message put before each prompt.
    max_tokens, temperature, seed
        Sampling; ``temperature=0`` is greedy and deterministic per backend.
    backend : str, optional
        Override ``Settings.backend`` for this call.
    log : bool
        Record the generation as an MLflow run and each answer as an MLflow trace linked
        to it (default True).
    price : str, optional
        ``"0.15/1M in,0.60/1M out"`` or ``"2.50/h"`` (serving hardware); default: the
        model's entry in ``Settings.prices`` (by ref, label, then name). ``cost`` is then
        what 1,000 requests like these cost, from this call's tokens and wall time.

    Returns
    -------
    LlmResult
        With ``trace_ids``, and ``warnings`` saying what did not happen (an MLflow run
        that had to be kept for later, traces that could not be written); the answers
        are there whatever MLflow did.
    """
    cfg = cfg or settings()
    sampling = options.sampling(max_tokens, temperature, seed)
    # Prices checked before any work: a typo costs nothing.
    given_price = parse_price(price, what="--price") if price is not None else None
    prices = check_prices(cfg.prices, what="LlmopsMagics.prices")
    template = None
    if prompt is not None:
        template = resolve_prompt(prompt, cfg)
        prompts, message_sets = prompt_requests(template, variables, prompts, each_line, system)
    else:
        if variables:
            raise BadInput("--var fills a registered prompt's variables: give --prompt NAME too")
        if isinstance(prompts, str):
            prompts = split_prompts(prompts, each_line)
        prompts = list(prompts or [])
        if not prompts:
            raise BadInput("no prompt given")
        message_sets = [_messages(p, system) for p in prompts]
    resolved = resolve_chat_model(model, cfg=cfg, purpose="%%llm needs a chat model")
    engine = get_engine(resolved.base_path, cfg, backend=backend, label=resolved.label)
    requests = [GenerationRequest(m, sampling, resolved.adapter) for m in message_sets]
    progress = f"generating with {resolved.label}" if len(requests) > 1 else None
    started = time.time_ns()
    results = engine.generator.generate(requests, progress=progress)
    wall_s = (time.time_ns() - started) / 1e9  # one batch: its requests overlap
    result = LlmResult(
        prompts, results, resolved, engine.backend, engine.choice.reason, sampling, serving=engine.serving()
    )
    chosen = given_price or lookup_price(prices, (model, resolved.ref, resolved.label, resolved.name))
    result.cost = cost_of(chosen, [r.prompt_tokens for r in results], [r.completion_tokens for r in results], wall_s)
    if template is not None:
        result.extra["prompt"] = template
    if log:
        try:
            result.run_id = _log(result, system, cfg, started / 1e9, time.time())
        except TrackingError as e:  # the answers stand; the run waits in the home
            result.warnings.append(str(e))
            result.run_key = getattr(e, "key", None)
        # After the run, so each trace links to it (a kept run has no id yet: unlinked).
        traced = trace_write.write_traces(
            _traces(result, message_sets, engine, cfg, started), run_id=result.run_id, cfg=cfg
        )
        result.trace_ids = traced.trace_ids
        if traced.note:
            result.warnings.append(traced.note)
    result.warnings += [
        n
        for n in (
            resolution_note(model or resolved.ref, resolved),
            resolution_note(prompt, template) if template is not None else None,
        )
        if n
    ]
    events.emit(
        events.Generation(
            model=resolved.label,
            model_ref=resolved.ref,
            backend=engine.backend,
            dtype=engine.dtype,
            device=engine.device,
            requests=len(requests),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            run_id=result.run_id,
            run_key=result.run_key,
            experiment_id=tracking.experiment_of(result.run_id),
            latency_s=result.latency_s,
            model_digest=resolved.digest,
            prompt=(
                {"name": template.name, "version": template.version, "digest": template.digest}
                if template is not None
                else None
            ),
            **_verifiable(result, message_sets, engine, cfg),
        )
    )
    return result


def _messages(prompt: str, system: str | None) -> tuple[dict, ...]:
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return tuple(messages)


def _log(result: LlmResult, system: str | None, cfg: Settings, started: float, ended: float) -> str:
    s, m, template = result.sampling, result.model, result.extra.get("prompt")
    total_latency = result.latency_s or 1e-9
    return tracking.log_run(
        run_name=f"llm {result.model.label}",
        tags={
            "llmops.kind": "generation",
            "llmops.model": result.model.label,
            "llmops.backend": result.backend,
            **_prompt_tags(result.extra.get("prompt")),
        },
        params={
            "model_ref": result.model.ref,
            # As people share them; the absolute paths stay in the engine log.
            "model_path": shown_path(m.base_path, cfg=cfg),
            "adapter": shown_path(m.adapter.path, cfg=cfg) if m.adapter else "",
            "backend": result.backend,
            "dtype": result.dtype,
            "device": result.device,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "seed": s.seed,
            "system": system or "",
            "price": result.cost.price.text if result.cost is not None and result.cost.price else "",
            "n_prompts": len(result.prompts),
            **({"prompt": result.extra["prompt"].label} if "prompt" in result.extra else {}),
        },
        metrics={
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "latency_s": result.latency_s,
            "tokens_per_s": result.completion_tokens / total_latency,
            **_cost_metrics(result.cost),
        },
        tables={"generations.json": {"prompt": result.prompts, "answer": result.answers}},
        cfg=cfg,
        start_time=started,
        end_time=ended,
        prompts=[(template.name, template.version)] if template is not None and template.version else [],
        models=[(m.name, m.version)] if m.version else [],
    )


def _traces(result: LlmResult, message_sets, engine: Engine, cfg: Settings, started_ns: int) -> list:
    """One trace per answer: the request, the answer, and what produced it."""
    m, s, template = result.model, result.sampling, result.extra.get("prompt")
    side = trace_write.generation_attributes(
        model=m.label,
        model_ref=m.ref,
        model_version=m.version,
        # Cached by size and mtime in the model cache: read once per machine, then free.
        model_digest=m.params.get("base_digest") or folder_digest(m.base_path, cfg),
        registry_digest=m.digest,
        adapter=shown_path(m.adapter.path, cfg=cfg) if m.adapter else "",
        adapter_digest=(m.params.get("adapter_digest") or adapter_digest(m.adapter.path, cfg)) if m.adapter else "",
        prompt=template.name if template is not None else None,
        prompt_version=template.version if template is not None else None,
        prompt_digest=template.digest if template is not None else None,
        sampling={"max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed, "top_p": s.top_p},
        engine_args=dict(engine.key.options) if engine.key is not None else dict(cfg.engine_args),
        serving=result.serving,
    )
    return [
        trace_write.GenerationTrace(
            name="llm",
            messages=list(messages),
            response=r.text,
            attributes={
                **side,
                **trace_write.generation_attributes(
                    model=m.label,
                    prompt_tokens=r.prompt_tokens,
                    completion_tokens=r.completion_tokens,
                    latency_s=r.latency_s,
                    finish_reason=r.finish_reason,
                ),
            },
            start_ns=started_ns,
            end_ns=started_ns + int(r.latency_s * 1e9),
            tags={trace_write.KIND_TAG: "generation", trace_write.ROLE_TAG: "llm", trace_write.CASE_TAG: i},
        )
        for i, (messages, r) in enumerate(zip(message_sets, result.results))
    ]


def _cost_metrics(cost: Cost | None) -> dict:
    """``cost_per_1k`` with a price, ``seconds_per_1k`` whenever the wall time is known."""
    if cost is None:
        return {}
    out = {"seconds_per_1k": cost.seconds_per_1k, "cost_per_1k": cost.per_1k}
    return {k: v for k, v in out.items() if v is not None}


def _prompt_tags(template) -> dict:
    if template is None:
        return {}
    return {
        "llmops.prompt": template.label,
        "llmops.prompt_digest": template.digest,
    }


def _verifiable(result: LlmResult, message_sets, engine: Engine, cfg: Settings) -> dict:
    """The per-generation fields ``llmops-magics verify`` compares: input and output
    digests and everything that decides an answer (sampling, serving, weights as served,
    hardware). Weight digests are cached by size and mtime: cheap after the first call."""
    m, s = result.model, result.sampling
    return {
        "input_digests": [messages_digest(messages) for messages in message_sets],
        "output_digests": [text_digest(r.text) for r in result.results],
        "sampling": {"max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed, "top_p": s.top_p},
        "engine_args": dict(engine.key.options) if engine.key is not None else dict(cfg.engine_args),
        "engine_version": _engine_version(engine.backend),
        "base_digest": folder_digest(m.base_path, cfg),
        "adapter": shown_path(m.adapter.path, cfg=cfg) if m.adapter else None,
        "adapter_digest": adapter_digest(m.adapter.path, cfg) if m.adapter else None,
        "hardware": hardware.describe(engine.device) if engine.backend in ("vllm", "transformers") else None,
    }


def _engine_version(backend: str) -> str | None:
    """``vllm 0.11.0`` / ``transformers 4.57.1``: the library that computed the answers."""
    from importlib import metadata  # deferred: needed only here, once per generation

    if backend == "vllm":
        return f"vllm {vllm_backend.vllm_version()}"
    try:
        return f"{backend} {metadata.version(backend)}"
    except (metadata.PackageNotFoundError, ValueError):  # a remote server's version is its own
        return None
