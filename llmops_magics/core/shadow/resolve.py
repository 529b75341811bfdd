"""The resolve stage: a spec's refs turned into models, a prompt and the cases.

Everything here reads the registry (or a pin, or the lockfile) and the inputs, and
starts nothing: a ref that names no model, a judge that is not a chat model or an
input row that misses a template variable fails here, before any engine starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings
from ...errors import BadInput, LlmopsError
from ..generation.resolve import ResolvedModel, resolution_note, resolve_chat_model
from ..registry.prompts import PromptRef
from ..registry.resolve import resolve_prompt
from .inputs import Case, build_cases
from .recorded import recorded_side
from .sides import Side, resolve_side
from .spec import ShadowSpec


@dataclass(frozen=True)
class Resolved:
    """What a spec's refs name: both sides, the judge, the prompt (and the candidate's
    version of it, when the comparison is between prompt versions), its response format,
    and the cases both sides will answer."""

    primary: Side
    candidate: Side
    judge: ResolvedModel | None
    prompt: PromptRef | None
    schema: dict | None  # the response format the answers must satisfy, if any
    cases: tuple[Case, ...]
    notes: tuple[str, ...] = ()  # what the result should say about how the refs resolved
    candidate_prompt: PromptRef | None = None  # the candidate's own prompt version, if any

    def prompt_of(self, role: str) -> PromptRef | None:
        """The prompt version the side named ``role`` fills (both share one unless the
        candidate has its own)."""
        if role == "candidate" and self.candidate_prompt is not None:
            return self.candidate_prompt
        return self.prompt

    @property
    def compares_prompts(self) -> bool:
        """Whether the two sides fill different prompt versions."""
        theirs = self.candidate_prompt
        return theirs is not None and self.prompt is not None and prompt_label(theirs) != prompt_label(self.prompt)

    @property
    def same_tokenizer(self) -> bool:
        """Whether token ids of the two sides' answers are comparable (same base)."""
        return self.primary.model.base_path == self.candidate.model.base_path


def resolve(spec: ShadowSpec) -> Resolved:
    """Resolve both sides, the judge and the prompt, and build the cases."""
    notes = ()
    if spec.recorded:
        primary, note = recorded_side(spec)
        notes = (note,) if note else ()
    else:
        primary = resolve_side("primary", spec.primary, spec.primary_engine_args, spec.cfg, spec.backend)
    candidate = resolve_side("candidate", spec.candidate, spec.candidate_engine_args, spec.cfg, spec.backend)
    judge = resolve_judge(spec.judge, spec.cfg)
    prompt = resolve_prompt(spec.prompt) if spec.prompt is not None else None
    theirs = resolve_prompt(spec.candidate_prompt) if spec.candidate_prompt is not None else None
    notes += prompt_notes(prompt, theirs)
    # An explicit response format overrides the prompt's; with two prompt versions the
    # primary's format is the one both sides' answers are held to.
    schema = spec.response_format if spec.response_format is not None else getattr(prompt, "response_format", None)
    cases = build_cases(list(spec.items), list(spec.indices), prompt, spec.system, candidate_prompt=theirs)
    return Resolved(primary, candidate, judge, prompt, schema, tuple(cases), notes, candidate_prompt=theirs)


def comparison_name(resolved: Resolved) -> str | None:
    """The default name of a comparison of two prompt versions (``summarize/2-vs-summarize/3
    -on-chat/1``), so the run's name says what was compared; None for any other comparison."""
    if not resolved.compares_prompts:
        return None
    mine, theirs = resolved.primary.model.label, resolved.candidate.model.label
    on = mine if mine == theirs else f"{mine}-vs-{theirs}"
    return f"{prompt_label(resolved.prompt)}-vs-{prompt_label(resolved.candidate_prompt)}-on-{on}"


def prompt_label(prompt: PromptRef | None) -> str:
    """``summarize/3`` ("" without a prompt): the version as the run's params name it."""
    return f"{prompt.name}/{prompt.version}" if prompt is not None else ""


def prompt_notes(prompt: PromptRef | None, theirs: PromptRef | None) -> tuple[str, ...]:
    """What to say about the two prompt versions: one compared with itself, or two
    versions whose response formats differ (only the primary's is checked)."""
    if theirs is None or prompt is None:
        return ()
    if prompt_label(prompt) == prompt_label(theirs):
        return (f"prompt {prompt_label(prompt)} is compared with itself: both sides fill the same version",)
    if getattr(prompt, "response_format", None) != getattr(theirs, "response_format", None):
        return (
            f"{prompt_label(prompt)} and {prompt_label(theirs)} declare different response formats: "
            f"both sides' answers are checked against {prompt_label(prompt)}'s",
        )
    return ()


def judge_unavailable(judge: str, why) -> BadInput:
    """The one error a judge that cannot serve raises, whatever the cause."""
    return BadInput(f"judge {judge!r} is unavailable: {why}; give a chat model ref or drop --judge")


def resolve_judge(judge: str | None, cfg: Settings) -> ResolvedModel | None:
    """Resolve the judge before any generation, so a bad ref fails fast."""
    if judge is None:
        return None
    try:
        return resolve_chat_model(judge, cfg=cfg)
    except LlmopsError as e:
        raise judge_unavailable(judge, e) from None


def resolution_notes(spec: ShadowSpec, resolved: Resolved) -> list[str]:
    """One line per ref resolved without the registry (from a pin or the lockfile)."""
    notes = (
        resolution_note(spec.primary, resolved.primary.model) if not spec.recorded else None,
        resolution_note(spec.candidate, resolved.candidate.model),
        resolution_note(spec.prompt, resolved.prompt) if resolved.prompt is not None else None,
        resolution_note(spec.candidate_prompt, resolved.candidate_prompt)
        if resolved.candidate_prompt is not None
        else None,
    )
    return [n for n in notes if n] + list(resolved.notes)
