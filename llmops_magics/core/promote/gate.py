"""Does one recorded shadow run meet the bar: verdict, cases, and (with review) human votes.

:func:`gate_run` is ``llmops-magics gate RUN_ID`` (a pipeline step); the promotion gate
(:mod:`.promotion`) asks the same of the run it found.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import Settings, settings
from .. import options
from ..review.run_record import read_verdicts
from ..tracking import bounded_command
from .evidence import ShadowEvidence, read_run
from .winshare import WinShare, case_scores, win_share

# What each --require accepts, from the quality verdict (llmops.verdict).
ACCEPTS = {"equivalent": ("equivalent", "better"), "better": ("better",)}


@dataclass(frozen=True)
class GateDecision:
    """Whether one shadow run meets the bar, and why, in one line."""

    ok: bool
    reason: str
    run_id: str
    label: str
    n_cases: int
    win: WinShare | None = None

    @property
    def win_share(self) -> float | None:
        return self.win.share if self.win else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return (self.win.low, self.win.high) if self.win else None

    def __str__(self) -> str:
        return f"{'pass' if self.ok else 'fail'}: {self.reason}"


def judge(
    run: ShadowEvidence, *, require: str, min_cases: int, review: bool, min_win_rate: float, cfg: Settings
) -> GateDecision:
    """The decision on ``run``'s recorded verdict, case count and (``review``) human votes."""
    shown = f"shadow run {run.short_id} ({run.verdict or 'no verdict'}, {run.n_cases} cases)"

    def decide(ok: bool, why: str, win: WinShare | None = None) -> GateDecision:
        return GateDecision(ok, why, run.run_id, run.verdict, run.n_cases, win)

    if run.verdict not in ACCEPTS[require]:
        wanted = " or ".join(ACCEPTS[require])
        return decide(
            False, f"{shown}: the quality verdict is {run.verdict or 'missing'}, --require {require} needs {wanted}"
        )
    if run.n_cases < min_cases:
        return decide(False, f"{shown}: {run.n_cases} cases, --min-cases needs {min_cases}")
    if not review:
        return decide(True, f"{shown} meets --require {require}")
    win = win_share(case_scores(read_verdicts(run.run_id, cfg)))
    if win is None:
        return decide(
            False, f"{shown}: no review votes recorded; review it with llmops_magics.open_review('{run.run_id}')"
        )
    if win.low < min_win_rate:
        return decide(False, f"{shown}: candidate {win}, lower bound below --min-win-rate {min_win_rate:g}", win)
    return decide(True, f"{shown} meets --require {require}; candidate {win}", win)


@bounded_command
def gate_run(
    run_id: str,
    *,
    require: str = "equivalent",
    min_cases: int = 0,
    review: bool = False,
    min_win_rate: float = 0.4,
    cfg: Settings | None = None,
) -> GateDecision:
    """Whether a recorded shadow run's verdict meets the bar (``llmops-magics gate RUN_ID``).

    Parameters
    ----------
    run_id : str
        An MLflow run written by ``%%shadow``.
    require : {"equivalent", "better"}
        ``equivalent`` accepts an equivalent or better quality verdict; ``better`` only better.
    min_cases : int
        Fewest cases the run must have compared.
    review : bool
        Also require the human review: the lower 95% bootstrap bound of the candidate's
        win share (ties half, votes averaged per case) must reach ``min_win_rate``.

    Returns
    -------
    GateDecision
        ``.ok`` and a one-line ``.reason``.

    Raises
    ------
    BadInput
        An unknown run, a run that is not a shadow run, or a bad option.
    """
    cfg = cfg or settings()
    checked = options.check(require=require, min_cases=min_cases, min_win_rate=min_win_rate)
    require, min_cases, min_win_rate = checked["require"], checked["min_cases"], checked["min_win_rate"]
    run = read_run(run_id, cfg)
    return judge(run, require=require, min_cases=min_cases, review=review, min_win_rate=min_win_rate, cfg=cfg)
