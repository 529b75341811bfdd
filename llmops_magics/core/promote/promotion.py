"""The promotion gate: move an alias only on a recorded shadow run that compared exactly
what the alias points to now with the version to promote.

A pipeline of named stages over one :class:`Plan`: :func:`plan` (what moves where),
:func:`check` (the evidence, or why there is none), :func:`commit` (lock, re-read, move,
read back). Each stage can be called alone; :func:`promote` runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings, settings
from ...errors import AliasRace, BadInput, PromotionRefused
from .. import options
from ..display import esc
from ..registry.common import forced_why
from ..registry.history import AliasMove
from ..registry.kinds import kind_of
from ..registry.refs import check_alias_name, check_name
from ..tracking import bounded_command
from .evidence import ShadowEvidence, read_run, shadow_runs
from .gate import GateDecision, judge
from .lock import alias_lock


@dataclass(frozen=True)
class Plan:
    """What a promotion would move: ``alias`` of ``name`` from ``current`` to ``version``."""

    kind: str
    name: str
    alias: str
    version: int
    current: int | None
    candidate: object  # ModelRef / PromptRef of ``version``
    primary: object | None  # ModelRef / PromptRef of ``current``
    version_text: str  # as the user gave it ("challenger", "2")

    def label(self, v: int | None) -> str:
        return f"{self.name}/{v}"

    def shadow_command(self) -> str:
        """The ``%%shadow`` line that would record the missing evidence."""
        if self.kind == "model":
            return f"%%shadow --primary {self.name}@{self.alias} --candidate {self.name}/{self.version} ..."
        prompts = f"--prompt {self.name}@{self.alias} --candidate-prompt {self.name}/{self.version}"
        return f"%%shadow --primary MODEL {prompts} ..."


@dataclass(frozen=True)
class Promotion:
    """What a promotion did: the move (None when the alias was there already) and its evidence."""

    plan: Plan
    move: AliasMove | None
    decision: GateDecision | None = None
    forced_why: str | None = None

    @property
    def run_id(self) -> str | None:
        return self.decision.run_id if self.decision else None

    def __str__(self) -> str:
        p = self.plan
        if self.move is None:
            return f"{p.kind} {p.name}: {p.alias} already points to {p.version}; nothing moved"
        was = "unset" if p.current is None else p.current
        head = f"{p.kind} {p.name}: {p.alias} {was} -> {p.version}"
        if self.forced_why:
            return f"forced {head} without evidence ({self.forced_why})"
        d = self.decision
        review = f"; {d.win}" if d.win else ""
        return f"promoted {head} on shadow run {d.run_id[:8]} ({d.label}, {d.n_cases} cases{review})"

    def _repr_mimebundle_(self, include=None, exclude=None):
        text = str(self) + (f" ({self.move.note})" if self.move is not None and self.move.note else "")
        return {"text/plain": text, "text/html": f"<div class='llmops-promotion'>{esc(text)}</div>"}


def plan(kind: str, name: str, version, *, to: str, cfg: Settings) -> Plan:
    """Resolve what moves: the version to promote (a number or an alias) and where ``to`` points now."""
    registry = kind_of(kind)
    name, alias = check_name(name, f"{registry.name} name"), check_alias_name(to)
    text = str(version).strip()
    if text.isdigit():
        number = int(text)
    else:
        number = registry.alias_target(name, check_alias_name(text), cfg=cfg)
        if number is None:
            raise BadInput(f"{registry.name} {name} has no alias {text!r}: give a version number or a set alias")
    candidate = registry.load(name, number, cfg)
    current = registry.alias_target(name, alias, cfg=cfg)
    primary = registry.load(name, current, cfg) if current is not None else None
    return Plan(registry.name, name, alias, number, current, candidate, primary, text)


def check(
    p: Plan,
    *,
    require: str,
    min_cases: int,
    min_win_rate: float,
    review: bool,
    run_id: str | None,
    cfg: Settings,
) -> GateDecision:
    """The evidence that allows ``p``, or :class:`PromotionRefused` saying which is missing."""
    registry = kind_of(p.kind)
    cand = p.label(p.version)
    changed = registry.changed_files(p.candidate, cfg)
    if changed:
        raise PromotionRefused(
            f"the files of {p.kind} {cand} changed on disk since registration ({', '.join(changed[:3])}): "
            f"register them again and compare that version with {p.shadow_command()}"
        )
    if p.current is None:
        raise PromotionRefused(
            f"{p.kind} {p.name} has no alias {p.alias} yet, so nothing to compare {cand} with: "
            f"set the first one with %llm_alias {p.kind} {p.name} {p.alias} {p.version}"
        )
    run = _evidence(p, run_id, cfg)
    decision = judge(run, require=require, min_cases=min_cases, review=review, min_win_rate=min_win_rate, cfg=cfg)
    if not decision.ok:
        raise PromotionRefused(f"{decision.reason}: record new evidence with {p.shadow_command()}")
    return decision


def _evidence(p: Plan, run_id: str | None, cfg: Settings) -> ShadowEvidence:
    """The shadow run that compared exactly ``p.current`` with ``p.version`` (versions and digests)."""
    want = {"primary": (p.label(p.current), p.primary.digest), "candidate": (p.label(p.version), p.candidate.digest)}
    prim, cand = want["primary"][0], want["candidate"][0]
    missing = f"no shadow run compared {prim} ({p.alias} now) with {cand}"
    runs = [read_run(run_id, cfg)] if run_id else shadow_runs(p.kind, cand, cfg)
    if not runs:
        raise PromotionRefused(f"{missing}: run {p.shadow_command()}")
    for run in runs:
        if _mismatch(run, p, want) is None:
            return run
    # The newest run of this candidate says why it does not count.
    left = {m.from_version for m in kind_of(p.kind).history(p.name, p.alias, cfg=cfg).moves}
    raise PromotionRefused(f"{missing}: {_mismatch(runs[0], p, want, left)}; run {p.shadow_command()}")


def _mismatch(run: ShadowEvidence, p: Plan, want: dict, left: set = frozenset()) -> str | None:
    """Why ``run`` is not evidence for ``p`` (None when it is); ``left``: versions the alias moved away from."""
    for role in ("primary", "candidate"):
        label, digest = run.side(p.kind, role)
        want_label, want_digest = want[role]
        if label != want_label:
            compared = (
                f"compared {run.side(p.kind, 'primary')[0] or '?'} with {run.side(p.kind, 'candidate')[0] or '?'}"
            )
            moved = _moved_since(p, label, left) if role == "primary" else ""
            return f"shadow run {run.short_id} {compared}{moved}"
        if not digest:
            return f"shadow run {run.short_id} does not record the digest of its {role} {label}"
        if digest != want_digest:
            return (
                f"shadow run {run.short_id} compared {label} with digest {digest[:12]}, "
                f"the registry's {label} has digest {want_digest[:12]}"
            )
    return _confounded(run, p)


def _confounded(run: ShadowEvidence, p: Plan) -> str | None:
    """Why ``run`` changed more than ``p``'s kind (None when it did not): a model compared
    under two prompt versions, or a prompt on two models, says nothing of either alone."""
    other = "prompt" if p.kind == "model" else "model"
    sides = []
    for role in ("primary", "candidate"):
        label, digest = run.side(other, role)
        if other == "model":  # an unregistered model has no version: its ref and weights say what ran
            extra = ("ref", "base_digest", "adapter_digest")
            sides.append((label, digest, *(str(run.params.get(f"{role}_{k}") or "") for k in extra)))
        else:
            sides.append((label, digest))
    if sides[0] == sides[1]:
        return None
    shown = [s[0] or (s[2] if len(s) > 2 else "") or "none" for s in sides]
    return (
        f"shadow run {run.short_id} also changed the {other} ({shown[0]} vs {shown[1]}), "
        f"so it says nothing of the {p.kind} alone"
    )


def _moved_since(p: Plan, label: str, left: set) -> str:
    was = label.rpartition("/")[2]
    if label.startswith(f"{p.name}/") and was.isdigit() and int(was) in left:
        return f" ({p.alias} pointed to {was} and was moved to {p.current} since)"
    return ""


def commit(p: Plan, *, decision: GateDecision | None = None, why: str | None = None, cfg: Settings) -> AliasMove | None:
    """Move the alias under the lock, if it still points where the gate saw it; read it back."""
    registry = kind_of(p.kind)
    with alias_lock(registry, p.name, p.alias, cfg):
        move = registry.move_alias(
            p.name,
            p.alias,
            p.version,
            run_id=decision.run_id if decision else None,
            evidence=("shadow run + review" if decision.win else "shadow run") if decision else None,
            promotion=decision is not None,
            force=why is not None,
            why=why,
            expect_from=p.current,
            cfg=cfg,
        )
        now = registry.alias_target(p.name, p.alias, cfg=cfg)
    if now != p.version:
        raise AliasRace(
            f"{p.kind} {p.name}@{p.alias} points to {now} right after this promotion set it to {p.version}: "
            "another process moved it at once; check %llm_alias --history"
        )
    return move


@bounded_command
def promote(
    kind: str,
    name: str,
    version,
    *,
    to: str,
    require: str = "equivalent",
    min_cases: int = 50,
    min_win_rate: float = 0.4,
    review: bool = False,
    force: bool = False,
    why: str | None = None,
    run_id: str | None = None,
    cfg: Settings | None = None,
) -> Promotion:
    """Move ``to`` to ``version`` only on evidence (the Python twin of ``%llm_promote``).

    Parameters
    ----------
    kind : {"model", "prompt"}
    name : str
        The registered model or prompt.
    version : int or str
        A version number, or an alias of ``name`` (``challenger``).
    to : str
        The alias to move (``champion``, ``production``).
    require : {"equivalent", "better"}
        The quality verdict (``llmops.verdict``) the shadow run must have: ``equivalent``
        accepts equivalent or better.
    min_cases : int
        Fewest cases the run must have compared.
    min_win_rate : float
        With ``review``: the lower 95% bootstrap bound of the candidate's win share in the
        run's human review must reach it.
    review : bool
        Require the human review too.
    force, why : bool, str
        Move without evidence; ``why`` is required and recorded in the alias history.
    run_id : str, optional
        Use this shadow run as the evidence instead of searching for the newest one.

    Returns
    -------
    Promotion
        The move and the run it cites.

    Raises
    ------
    PromotionRefused
        One line: which evidence is missing and the ``%%shadow`` command that records it.
    AliasRace
        The alias moved (another promotion) while this one checked: nothing changed.
    """
    cfg = cfg or settings()
    why = forced_why(force, why)
    checked = options.check(require=require, min_cases=min_cases, min_win_rate=min_win_rate)
    require, min_cases, min_win_rate = checked["require"], checked["min_cases"], checked["min_win_rate"]
    p = plan(kind, name, version, to=to, cfg=cfg)
    if p.current == p.version:
        return Promotion(p, None)
    if force:
        return Promotion(p, commit(p, why=why, cfg=cfg), forced_why=why)
    decision = check(
        p, require=require, min_cases=min_cases, min_win_rate=min_win_rate, review=review, run_id=run_id, cfg=cfg
    )
    return Promotion(p, commit(p, decision=decision, cfg=cfg), decision)
