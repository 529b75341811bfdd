"""Behavioral adapter check, teacher-forced: cheap and deterministic.

Two questions, on probe prompts:

* no-effect: does the adapter still move the new base? Mean KL(new+adapter || new)
  of the next-token distributions over reference continuations. vLLM serves base
  output when an adapter's modules match nothing; this catches it.
* degraded: reference continuations come from old base + adapter (greedy). They are
  scored under new base + adapter; the adapter's drift KL(old+adapter || new+adapter)
  is set against the base's own drift KL(old || new) on the old base's own greedy
  continuations. A provider update moves the base a little; an adapter that no longer
  fits moves much more. Greedy agreement (argmax == reference token) is the second signal.

Teacher forcing scores every position of a fixed continuation in one forward pass, so
the check costs a few forward passes per probe and no sampling noise. transformers
gives full-vocabulary distributions (exact KL); vLLM's prompt logprobs give the top
``TOP_K`` tokens per position, from which KL is estimated (the tail mass lumped).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...backends.base import Adapter
from ...backends.progress import progress_bar
from ...config import Settings, settings
from ...errors import BadInput
from ..generation.digests import adapter_digest, folder_digest
from ..generation.engines import get_generator, loaded_engines, release
from ..tracking import trace_write
from .report import Finding

NO_EFFECT_KL = 1e-3  # nats/token: below this the adapter changes (almost) nothing
NO_EFFECT_RELATIVE = 0.05  # or: its effect fell below 5% of what it was on the old base
DRIFT_RATIO = 2.0  # degraded: adapter drift > DRIFT_RATIO x base drift + DRIFT_FLOOR
DRIFT_FLOOR = 0.02
AGREEMENT_GAP = 0.25  # greedy agreement this much below the base's own: a warning
TOP_K = 20  # vLLM's default max_logprobs


def load_probes(probes=None) -> list[str]:
    """Probe prompts: the shipped default set, a list of strings, or a file.

    Parameters
    ----------
    probes : None, list of str, or path
        A ``.json`` file (a list of strings or ``{"probes": [...]}``), ``.jsonl``
        (objects with ``prompt``) or any text file (one prompt per non-empty line).
    """
    if probes is None:
        text = resources.files("llmops_magics.data").joinpath("probes.json").read_text()
        return list(json.loads(text)["probes"])
    if isinstance(probes, (str, Path)):
        path = Path(probes).expanduser()
        if not path.is_file():
            raise BadInput(f"probes file {path} does not exist: give a file or a list of prompts")
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
            probes = data.get("probes") if isinstance(data, dict) else data
        elif path.suffix == ".jsonl":
            probes = [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]
        else:
            probes = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(probes, (list, tuple)) or not all(isinstance(p, str) for p in probes):
        raise BadInput("probes must be a list of strings (or a .json/.jsonl/.txt file of them)")
    probes = [p for p in probes if p.strip()]
    if not probes:
        raise BadInput("no probe prompts given: pass at least one non-empty prompt")
    return list(probes)


class _Dists:
    """Next-token distributions at the reference positions of one sequence."""

    def __init__(self, full=None, sparse=None, targets=()):
        self.full = full  # torch tensor [m, V] of log-probs (transformers)
        self.sparse = sparse  # list of {token: logprob} per position (vLLM)
        self.targets = list(targets)

    def nll(self) -> list[float]:
        if self.full is not None:
            import torch

            idx = torch.tensor(self.targets).unsqueeze(1)
            return (-self.full.gather(1, idx).squeeze(1)).tolist()
        return [-step.get(t, min(step.values())) for step, t in zip(self.sparse, self.targets)]

    def argmax(self) -> list[int]:
        if self.full is not None:
            return self.full.argmax(-1).tolist()
        return [max(step, key=step.get) for step in self.sparse]


def kl(p: _Dists, q: _Dists) -> list[float]:
    """KL(p || q) per position, in nats (exact on full distributions, top-k estimate otherwise)."""
    if p.full is not None and q.full is not None:
        return (p.full.exp() * (p.full - q.full)).sum(-1).clamp_min(0).tolist()
    out = []
    for ps, qs in zip(p.sparse, q.sparse):
        floor = min(qs.values())
        total, p_mass, q_mass = 0.0, 0.0, 0.0
        for t, lp in ps.items():
            lq = qs.get(t, floor)
            total += math.exp(lp) * (lp - lq)
            p_mass += math.exp(lp)
            q_mass += math.exp(lq)
        p_rest, q_rest = max(1.0 - p_mass, 1e-12), max(1.0 - q_mass, 1e-12)
        out.append(max(0.0, total + p_rest * math.log(p_rest / q_rest)))
    return out


class _TransformersScorer:
    backend = "transformers"

    def __init__(self, base_path: str, cfg):
        self.gen, _ = get_generator(base_path, cfg, backend="transformers")
        self.tokenizer = self.gen.tokenizer

    def greedy(self, prompts, n, adapter):
        import torch

        # One left-padded batch: n decoding steps in all instead of n per probe.
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=self.gen.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.gen.device)
        with self.gen._use_adapter(adapter), torch.inference_mode():
            seq = self.gen.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
            )
        return seq[:, width:].tolist()

    def score(self, prompts, conts, adapter) -> list[_Dists]:
        import torch

        out = []
        # One sequence per forward pass: no padding, so positions match an unbatched run.
        with self.gen._use_adapter(adapter), torch.inference_mode():
            for p, c in zip(prompts, conts):
                ids = torch.tensor([list(p) + list(c)], device=self.gen.device)
                logits = self.gen.model(input_ids=ids).logits[0, len(p) - 1 : len(p) + len(c) - 1]
                out.append(_Dists(full=torch.log_softmax(logits.float(), -1).cpu(), targets=c))
        return out


class _VllmScorer:
    backend = "vllm"

    def __init__(self, base_path: str, cfg):
        self.gen, _ = get_generator(base_path, cfg, backend="vllm")
        self.tokenizer = self.gen.tokenizer

    def greedy(self, prompts, n, adapter):
        return self.gen.greedy_tokens(prompts, n, adapter)

    def score(self, prompts, conts, adapter) -> list[_Dists]:
        seqs = [list(p) + list(c) for p, c in zip(prompts, conts)]
        steps = self.gen.prompt_logprobs(seqs, adapter, top_k=TOP_K)
        return [_Dists(sparse=s[len(p) :], targets=c) for s, p, c in zip(steps, prompts, conts)]


_SCORERS = {"transformers": _TransformersScorer, "vllm": _VllmScorer}


def _prompt_ids(tokenizer, text: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def _mean(rows: list[list[float]]) -> float:
    flat = [x for r in rows for x in r]
    return sum(flat) / len(flat) if flat else 0.0


def _agreement(dists: list[_Dists]) -> float:
    pairs = [(a, t) for d in dists for a, t in zip(d.argmax(), d.targets)]
    return sum(a == t for a, t in pairs) / len(pairs) if pairs else 0.0


@dataclass
class BehaviorResult:
    """Findings, aggregate metrics and per-probe numbers of the behavioral check.

    ``traces`` holds one trace per greedy reference continuation the check generated,
    not yet written: the check's run is logged after it, and :func:`write_behavior_traces`
    then writes them linked to that run.
    """

    findings: list[Finding] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    per_probe: dict = field(default_factory=dict)
    backend: str = "transformers"
    traces: list = field(default_factory=list)


def write_behavior_traces(
    result: BehaviorResult, run_id: str | None, cfg: Settings | None = None
) -> trace_write.TraceReport:
    """Write the check's generations as MLflow traces linked to its run (see ``traces``).

    Returns
    -------
    TraceReport
        ``note`` says in one line how many traces could not be written, if any.
    """
    return trace_write.write_traces(result.traces, run_id=run_id, cfg=cfg)


def behavior_check(
    adapter_path: str,
    base_path: str,
    *,
    old_base_path: str | None = None,
    probes: Sequence[str],
    backend: str = "transformers",
    max_new_tokens: int = 16,
    cfg=None,
) -> BehaviorResult:
    """Teacher-forced no-effect and degradation checks (see the module docstring).

    Parameters
    ----------
    adapter_path, base_path : str
        The adapter folder and the new base folder.
    old_base_path : str, optional
        The base the adapter was trained on; without it only no-effect is checked.
    probes : list of str
        Probe prompts (user messages; the chat template applies when the tokenizer has one).
    backend : str
        ``transformers`` (exact KL) or ``vllm`` (prompt logprobs, top-k KL estimate).
    max_new_tokens : int
        Length of each reference continuation.
    """
    if backend not in _SCORERS:
        raise BadInput(f"--backend must be vllm or transformers for the behavioral check, got {backend!r}")
    if max_new_tokens < 1:
        raise BadInput(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    adapter = Adapter(Path(adapter_path).name, str(adapter_path))
    same_base = old_base_path is None or Path(old_base_path).resolve() == Path(base_path).resolve()
    steps = 4 if same_base else 8
    bar = progress_bar(total=steps, desc=f"adapter check: {len(probes)} probes")
    res = BehaviorResult(backend=backend)
    res.per_probe["probe"] = list(probes)
    old = None
    if not same_base:
        started_before = {id(g) for g in loaded_engines()}
        old_scorer = _SCORERS[backend](old_base_path, cfg)
        old = _old_side(old_scorer, probes, adapter, max_new_tokens, bar, _Tracer(res, old_base_path, probes, cfg))
        # One vLLM engine at a time: free the old base's before the new one starts.
        if backend == "vllm" and id(old_scorer.gen) not in started_before:
            release(old_scorer.gen)
    new_scorer = _SCORERS[backend](base_path, cfg)
    prompts = [_prompt_ids(new_scorer.tokenizer, p) for p in probes]
    if old is not None and old["prompts"] != prompts:
        res.findings.append(
            Finding(
                "warning",
                "tokenizer",
                "tokenizer",
                expected="the old base's token ids",
                found="other token ids",
                message="the bases tokenize the probes differently: drift not compared",
            )
        )
        old = None
    if old:
        refs = old["refs_ad"]
    else:
        refs = _Tracer(res, base_path, probes, cfg).greedy(new_scorer, prompts, max_new_tokens, adapter, "new_adapter")
    bar.update()
    new_ad = new_scorer.score(prompts, refs, adapter)
    bar.update()
    new_base = new_scorer.score(prompts, refs, None)
    bar.update()
    effect = [kl(a, b) for a, b in zip(new_ad, new_base)]
    res.per_probe["adapter_effect_kl"] = [_mean([e]) for e in effect]
    m = res.metrics
    m["probes"] = len(probes)
    m["adapter_effect_kl"] = _mean(effect)
    m["nll_new_adapter"] = _mean([d.nll() for d in new_ad])
    if old is not None:
        new_on_base_refs = new_scorer.score(prompts, old["refs_base"], None)
        bar.update()
        _drift_metrics(res, old, new_ad, new_on_base_refs)
    bar.update(steps - bar.n)
    bar.close()
    _verdict_findings(res)
    return res


def _old_side(scorer, probes, adapter, n, bar, tracer: _Tracer) -> dict:
    prompts = [_prompt_ids(scorer.tokenizer, p) for p in probes]
    refs_ad = tracer.greedy(scorer, prompts, n, adapter, "old_adapter")
    bar.update()
    refs_base = tracer.greedy(scorer, prompts, n, None, "old_base")
    bar.update()
    old_ad = scorer.score(prompts, refs_ad, adapter)
    bar.update()
    old_plain = scorer.score(prompts, refs_ad, None)
    old_on_base_refs = scorer.score(prompts, refs_base, None)
    bar.update()
    return {
        "prompts": prompts,
        "refs_ad": refs_ad,
        "refs_base": refs_base,
        "old_ad": old_ad,
        "old_plain": old_plain,
        "old_on_base_refs": old_on_base_refs,
    }


class _Tracer:
    """Greedy reference continuations of one base, each kept as a generation trace."""

    def __init__(self, res: BehaviorResult, base_path: str, probes: Sequence[str], cfg: Settings | None):
        self.res, self.base_path, self.probes = res, str(base_path), list(probes)
        self.cfg = cfg or settings()

    def greedy(self, scorer, prompts, n: int, adapter: Adapter | None, role: str) -> list[list[int]]:
        started = time.time_ns()
        refs = scorer.greedy(prompts, n, adapter)
        ended = time.time_ns()
        # One batch: every continuation ran from its start to its end.
        side = trace_write.generation_attributes(
            model=Path(self.base_path).name + (f" + {adapter.name}" if adapter else ""),
            model_ref=self.base_path,
            # Cached by size and mtime: the check's own run digests the same files.
            model_digest=folder_digest(self.base_path, self.cfg),
            adapter=adapter.path if adapter else "",
            adapter_digest=adapter_digest(adapter.path, self.cfg) if adapter else "",
            sampling={"max_tokens": n, "temperature": 0.0, "ignore_eos": True},
            serving={"backend": scorer.backend, "dtype": scorer.gen.dtype, "device": scorer.gen.device},
            latency_s=(ended - started) / 1e9,
        )
        for i, (probe, prompt, ref) in enumerate(zip(self.probes, prompts, refs)):
            self.res.traces.append(
                trace_write.GenerationTrace(
                    name=f"adapter check {role}",
                    messages=[{"role": "user", "content": probe}],
                    response=scorer.tokenizer.decode(ref, skip_special_tokens=True),
                    attributes={
                        **side,
                        trace_write.PROMPT_TOKENS: len(prompt),
                        trace_write.COMPLETION_TOKENS: len(ref),
                    },
                    start_ns=started,
                    end_ns=ended,
                    tags={trace_write.KIND_TAG: "adapter_check", trace_write.ROLE_TAG: role, trace_write.CASE_TAG: i},
                )
            )
        return refs


def _drift_metrics(res: BehaviorResult, old: dict, new_ad, new_on_base_refs) -> None:
    m, p = res.metrics, res.per_probe
    adapter_drift = [kl(a, b) for a, b in zip(old["old_ad"], new_ad)]
    base_drift = [kl(a, b) for a, b in zip(old["old_on_base_refs"], new_on_base_refs)]
    old_effect = [kl(a, b) for a, b in zip(old["old_ad"], old["old_plain"])]
    p["adapter_drift_kl"] = [_mean([d]) for d in adapter_drift]
    p["base_drift_kl"] = [_mean([d]) for d in base_drift]
    m["adapter_effect_old_kl"] = _mean(old_effect)
    m["adapter_drift_kl"] = _mean(adapter_drift)
    m["base_drift_kl"] = _mean(base_drift)
    m["nll_old_adapter"] = _mean([d.nll() for d in old["old_ad"]])
    m["ppl_ratio_adapter"] = math.exp(m["nll_new_adapter"] - m["nll_old_adapter"])
    m["ppl_ratio_base"] = math.exp(
        _mean([d.nll() for d in new_on_base_refs]) - _mean([d.nll() for d in old["old_on_base_refs"]])
    )
    m["agreement_adapter"] = _agreement(new_ad)
    m["agreement_base"] = _agreement(new_on_base_refs)


def _verdict_findings(res: BehaviorResult) -> None:
    m, f = res.metrics, res.findings
    effect, old_effect = m["adapter_effect_kl"], m.get("adapter_effect_old_kl")
    lost = old_effect is not None and old_effect >= 10 * NO_EFFECT_KL and effect < NO_EFFECT_RELATIVE * old_effect
    if effect < NO_EFFECT_KL or lost:
        f.append(
            Finding(
                "warning",
                "no-effect",
                "adapter",
                expected=f"KL to base >= {NO_EFFECT_KL:g} nats/token"
                + (f" (was {old_effect:.3g} on the old base)" if old_effect is not None else ""),
                found=f"{effect:.3g} nats/token",
                message="the adapter barely moves the new base: serving it gives (almost) base-model output",
            )
        )
    if "adapter_drift_kl" in m:
        a, b = m["adapter_drift_kl"], m["base_drift_kl"]
        if a > DRIFT_RATIO * b + DRIFT_FLOOR:
            f.append(
                Finding(
                    "warning",
                    "degraded",
                    "adapter",
                    expected=f"adapter drift <= {DRIFT_RATIO:g} x base drift + {DRIFT_FLOOR:g}",
                    found=f"adapter drift {a:.3g} vs base drift {b:.3g} nats/token "
                    f"(perplexity x{m['ppl_ratio_adapter']:.2f} vs x{m['ppl_ratio_base']:.2f})",
                    message="on the new base the adapter's outputs moved far more than the base's own",
                )
            )
        gap = m["agreement_base"] - m["agreement_adapter"]
        if gap > AGREEMENT_GAP:
            f.append(
                Finding(
                    "warning",
                    "agreement",
                    "adapter",
                    expected=f"greedy agreement near the base's {m['agreement_base']:.0%}",
                    found=f"{m['agreement_adapter']:.0%}",
                    message=(
                        "new base + adapter picks other tokens than old base + adapter "
                        "far more often than the base alone"
                    ),
                )
            )
    summary = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
    f.append(
        Finding(
            "info",
            "behavior",
            "adapter",
            found=summary,
            message=f"teacher-forced on {m['probes']} probes ({res.backend})",
        )
    )
