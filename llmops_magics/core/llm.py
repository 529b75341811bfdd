"""``llm()``: send prompts to a chat model. The Python twin of ``%%llm``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..backends.base import GenerationRequest, GenerationResult, Sampling
from ..config import Settings, settings
from ..errors import BadInput
from . import events
from .display import esc, html_table, run_link, text_table
from .engines import get_generator
from .models import ResolvedModel, resolve_model


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
        return (
            f"model {self.model.label} · backend {self.backend} · tokens {self.prompt_tokens} in / "
            f"{self.completion_tokens} out · {self.latency_s:.2f} s{run}"
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
        html = (f"<div class='llmops-llm'>{body}<div style='opacity:.7;font-size:85%'>{esc(self._summary())}</div>"
                f"{link_html}</div>")
        return {"text/plain": text + link_text, "text/html": html}

    def to_pandas(self):
        import pandas as pd

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
        Record the generation as an MLflow run (default True).

    Returns
    -------
    LlmResult
    """
    cfg = cfg or settings()
    template = None
    if prompt is not None:
        from .prompts import prompt_requests, resolve_prompt

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
    if max_tokens < 1:
        raise BadInput(f"--max-tokens must be at least 1, got {max_tokens}")
    if temperature < 0:
        raise BadInput(f"--temperature must be 0 or more, got {temperature}")
    resolved = resolve_model(model, cfg=cfg)
    if resolved.kind != "chat":
        raise BadInput(f"{resolved.label} is an embedding model: %%llm needs a chat model")
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, seed=seed)
    generator, choice = get_generator(resolved.base_path, cfg, backend=backend)
    requests = [GenerationRequest(m, sampling, resolved.adapter) for m in message_sets]
    progress = f"generating with {resolved.label}" if len(requests) > 1 else None
    results = generator.generate(requests, progress=progress)
    result = LlmResult(prompts, results, resolved, choice.backend, choice.reason, sampling)
    if template is not None:
        result.extra["prompt"] = template
    if log:
        result.run_id = _log(result, system, cfg)
    events.emit("generation", {
        "model": resolved.label, "model_ref": resolved.ref, "backend": choice.backend,
        "requests": len(requests), "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens, "run_id": result.run_id,
        "experiment_id": _experiment_of(result.run_id, cfg), "latency_s": result.latency_s,
        "model_digest": resolved.digest,
        "prompt": ({"name": template.name, "version": template.version, "digest": template.digest}
                   if template is not None else None),
    })
    return result


def _experiment_of(run_id: str | None, cfg: Settings) -> str | None:
    # Lineage links a cell to its run in the MLflow UI, which needs the experiment too.
    if not run_id:
        return None
    from .tracking import experiment_id

    return experiment_id(cfg=cfg)


def _messages(prompt: str, system: str | None) -> tuple[dict, ...]:
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return tuple(messages)


def _log(result: LlmResult, system: str | None, cfg: Settings) -> str:
    from .tracking import log_run

    s = result.sampling
    total_latency = result.latency_s or 1e-9
    return log_run(
        run_name=f"llm {result.model.label}",
        tags={"llmops.kind": "generation", "llmops.model": result.model.label, "llmops.backend": result.backend,
              **_prompt_tags(result.extra.get("prompt"))},
        params={
            "model_ref": result.model.ref, "model_path": result.model.base_path,
            "adapter": result.model.adapter.path if result.model.adapter else "",
            "backend": result.backend, "max_tokens": s.max_tokens, "temperature": s.temperature,
            "seed": s.seed, "system": system or "", "n_prompts": len(result.prompts),
            **({"prompt": result.extra["prompt"].label} if "prompt" in result.extra else {}),
        },
        metrics={
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "latency_s": result.latency_s, "tokens_per_s": result.completion_tokens / total_latency,
        },
        tables={"generations.json": {"prompt": result.prompts, "answer": result.answers}},
        cfg=cfg,
    )


def _prompt_tags(template) -> dict:
    # mlflow.linkedPrompts is the tag MLflow's own link_prompt_version_to_run writes (its
    # UI lists the run under the prompt version); MLflow resolves that call through the
    # global tracking URI, so the tag is set here on our own run instead.
    if template is None:
        return {}
    import json

    return {"llmops.prompt": template.label, "llmops.prompt_digest": template.digest,
            "mlflow.linkedPrompts": json.dumps([{"name": template.name, "version": str(template.version)}])}
