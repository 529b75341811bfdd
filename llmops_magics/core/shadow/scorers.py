"""The user's MLflow scorers as shadow checks: each one scores both sides of every case.

A scorer is any ``mlflow.genai.scorers.Scorer``: a ``@scorer`` function, a built-in
(``Guidelines``, ``RegexMatch``...) or a ``make_judge`` judge. :func:`preflight` runs
before any generation: it refuses, in one line naming the scorer and the fix, what
cannot score one answer from its text (not a Scorer; a session-level scorer; one that
needs the answer's trace: a required ``trace`` argument, a built-in whose
``required_columns`` hold ``trace``, a judge whose instructions read ``{{ trace }}``),
two scorers of one name, and more calls than ``--max-scorer-calls`` allows.

:func:`score` calls each scorer through ``Scorer.run`` (MLflow's own entry point: it
passes only the arguments the scorer takes, checks the return type and bounds each call
with the scorer's timeout, 300 s by default) with the case's inputs, one side's output
text and the case's expectations. Results map to checks:

* ``bool``, yes/no (a ``CategoricalRating`` or text), pass/fail, true/false -> pass/fail:
  paired pass rates, exact McNemar (:func:`.stats.binary_scorer_check`);
* ``int`` / ``float`` -> paired differences, paired bootstrap, higher is better
  (:func:`.stats.numeric_scorer_check`);
* a ``Feedback`` -> its value, as above; a ``list[Feedback]`` -> one check per feedback
  name (``NAME/feedback``);
* anything else, a ``Feedback`` carrying an error, or a scorer that raises -> that case
  has no value on that side; the error is kept on the row (``score_errors``) and
  counted in one warning line per scorer. Never fatal.

A case missing a value on either side is left out of that check, and its reason says
how many were.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ...backends.progress import progress_bar
from ...errors import BadInput
from .stats import Check, Thresholds, binary_scorer_check, numeric_scorer_check

SIDES = ("primary", "candidate")
# Per-case columns: ``primary_score.NAME`` / ``candidate_score.NAME`` and the errors.
SCORE_COLUMNS = ("primary_score.", "candidate_score.")
ERRORS_COLUMN = "score_errors"

_PASS = {"yes", "pass", "passed", "true"}
_FAIL = {"no", "fail", "failed", "false"}


@dataclass(frozen=True)
class ScorerSet:
    """Scorers checked before any generation, and what running them will cost.

    Attributes
    ----------
    scorers : tuple of Scorer
        In the order given.
    n_cases : int
        Cases each scorer will score, on both sides.
    judges : tuple of str
        Names of the scorers that call an LLM (built-in judges, ``make_judge``).
    """

    scorers: tuple
    n_cases: int
    judges: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scorers)

    @property
    def calls(self) -> int:
        """Scorer calls: scorers x cases x 2 sides (a judge counts like any scorer)."""
        return len(self.scorers) * self.n_cases * 2

    @property
    def judge_calls(self) -> int:
        """How many of :attr:`calls` are LLM judge calls."""
        return len(self.judges) * self.n_cases * 2

    @property
    def summary(self) -> str:
        """One line to show before running, e.g. ``3 scorers x 40 cases x 2 sides = 240
        scorer calls, 80 of them LLM judge calls``."""
        k, n = len(self.scorers), self.n_cases
        judged = f"{self.judge_calls} of them LLM judge calls" if self.judges else "no LLM judge calls"
        return (
            f"{k} {_plural(k, 'scorer')} x {n} {_plural(n, 'case')} x 2 sides = "
            f"{self.calls} scorer {_plural(self.calls, 'call')}, {judged}"
        )


@dataclass(frozen=True)
class ScorerOutcome:
    """What the scorers found.

    Attributes
    ----------
    rows : list of dict
        The rows given, each with ``primary_score.NAME`` and ``candidate_score.NAME``
        per check (``True``/``False`` or a number; ``None`` when missing) and
        ``score_errors`` (one line per failed call of that case).
    checks : tuple of Check
        One quality check per scorer (per feedback name for ``list[Feedback]``), named
        ``scorer NAME``: pass it to :func:`.verdict.decide` as ``scorer_checks``.
    warnings : tuple of str
        One line each: a scorer's failed calls (count and the first error), mixed
        result types, a margin read as 1.
    """

    rows: list[dict]
    checks: tuple[Check, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def preflight(
    scorers: Sequence, n_cases: int, max_calls: int | None, *, thresholds: Thresholds | None = None
) -> ScorerSet:
    """Check the scorers before anything runs and count their calls.

    Parameters
    ----------
    scorers : sequence of Scorer
        MLflow scorers (``@scorer`` functions, built-ins, ``make_judge`` judges).
    n_cases : int
        Cases to compare.
    max_calls : int or None
        Refuse a run of more scorer calls than this (``--max-scorer-calls``).
    thresholds : Thresholds, optional
        When given, every ``scorer.NAME`` margin must name one of ``scorers``.

    Returns
    -------
    ScorerSet

    Raises
    ------
    BadInput
        One line naming the scorer and the fix: not a Scorer, a session-level or
        trace-reading scorer, two scorers of one name, a margin for no scorer, or too
        many calls.
    """
    from mlflow.genai.scorers import Scorer  # deferred: mlflow.genai takes a second to import

    items = list(scorers)
    for item in items:
        if not isinstance(item, Scorer):
            raise BadInput(_not_a_scorer(item))
        why = _needs_more_than_text(item)
        if why:
            raise BadInput(why)
    names = [s.name for s in items]
    for name in names:
        if names.count(name) > 1:
            raise BadInput(
                f"two scorers are named {name!r}: their checks and columns would collide; "
                "give one another name (@scorer(name=...), make_judge(name=...) or a built-in's name=...)"
            )
    if thresholds is not None:
        for key in thresholds.scorer_margins:
            if key.split("/", 1)[0] not in names:
                have = ", ".join(names) or "none"
                raise BadInput(
                    f"--threshold scorer.{key}: no scorer is named {key.split('/', 1)[0]!r} (scorers: {have}); "
                    "name one of them or drop the threshold"
                )
    found = ScorerSet(tuple(items), int(n_cases), tuple(s.name for s in items if _is_llm_judge(s)))
    if max_calls is not None and found.calls > max_calls:
        raise BadInput(
            f"{found.summary}: more than --max-scorer-calls {max_calls}; raise it "
            f"(--max-scorer-calls {found.calls}, or the max_scorer_calls setting), or compare fewer cases (--n)"
        )
    return found


def score(
    scorer_set: ScorerSet,
    cases: Sequence | None,
    rows: list[dict],
    *,
    thresholds: Thresholds | None = None,
    progress: bool = True,
    workers: int = 4,
) -> ScorerOutcome:
    """Run every scorer on both sides of every case and turn the results into checks.

    Parameters
    ----------
    scorer_set : ScorerSet
        From :func:`preflight`.
    cases : sequence or None
        The cases (``Case`` objects, one per row, in row order) or None; a row without
        a ``prompt`` takes its case's request text.
    rows : list of dict
        The compare stage's rows: ``primary_output``, ``candidate_output`` and
        ``prompt``; optionally ``scorer_inputs`` (a dict or text, passed as the scorer's
        ``inputs``; default the ``prompt`` text) and ``expectations`` (a dict or None).
    thresholds : Thresholds, optional
        Significance level, bootstrap and the margins (``scorer_margins``).
    progress : bool
        Show a progress bar over the calls.
    workers : int
        Calls run at once (MLflow's own evaluation runs scorers in threads too).

    Returns
    -------
    ScorerOutcome
    """
    t = thresholds or Thresholds()
    if cases is not None and len(cases) != len(rows):
        raise BadInput(f"{len(cases)} cases for {len(rows)} rows: give one case per row, in row order")
    scorers = scorer_set.scorers
    tasks = [(i, j, side) for i in range(len(rows)) for j in range(len(scorers)) for side in SIDES]
    results = _run_all(tasks, scorers, rows, cases, progress, workers)

    values: dict[tuple[int, str], dict[str, bool | float]] = {}
    errors: dict[int, list[str]] = {}
    failures: dict[str, dict[tuple[int, str], str]] = {}  # scorer -> (case, side) -> first problem
    order: list[str] = []
    for (i, j, side), (result, error) in zip(tasks, results):
        name = scorers[j].name
        found, problems = ({}, [error]) if error else read_result(result, name)
        for check_name, value in found.items():
            values.setdefault((i, side), {})[check_name] = value
            if check_name not in order:
                order.append(check_name)
        for problem in problems:
            line = f"{name} ({side}): {problem}"
            errors.setdefault(i, []).append(line)
            failures.setdefault(name, {}).setdefault((i, side), f"case {rows[i].get('id', i)} ({side}): {problem}")
    for s in scorers:  # a scorer with no value anywhere still gets its (inconclusive) check
        if not any(n == s.name or n.startswith(s.name + "/") for n in order):
            order.append(s.name)

    warnings = [
        f"scorer {name}: no value from {len(failed)} of {len(rows) * 2} calls; first, {next(iter(failed.values()))}"
        for name, failed in failures.items()
    ]
    checks = []
    for name in order:
        check, notes = _check(name, rows, values, t)
        checks.append(check)
        warnings += notes

    scored = []
    for i, row in enumerate(rows):
        out = dict(row)
        for name in order:
            for side in SIDES:
                out[f"{side}_score.{name}"] = values.get((i, side), {}).get(name)
        out[ERRORS_COLUMN] = list(row.get(ERRORS_COLUMN) or []) + errors.get(i, [])
        scored.append(out)
    return ScorerOutcome(scored, tuple(checks), tuple(warnings))


# ---------------------------------------------------------------- preflight helpers


def _not_a_scorer(item) -> str:
    if inspect.isfunction(item) or inspect.ismethod(item):
        return (
            f"scorer {item.__name__!r} is a plain function, not an MLflow Scorer: decorate it with "
            "@scorer (from mlflow.genai.scorers import scorer)"
        )
    return (
        f"scorer {_short(item)} is a {type(item).__name__}, not an MLflow Scorer: give a @scorer function, "
        "a built-in scorer (mlflow.genai.scorers) or a make_judge judge"
    )


def _needs_more_than_text(s) -> str | None:
    """Why ``s`` cannot score an answer from its text alone, or None."""
    fix = "give a scorer of inputs, outputs and expectations"
    if s.is_session_level_scorer:
        return (
            f"scorer {s.name!r} is session-level (it scores a whole conversation): shadow scores one answer "
            f"at a time; {fix}"
        )
    if "trace" in (getattr(s, "template_variables", None) or ()):
        return (
            f"judge {s.name!r} reads {{{{ trace }}}} in its instructions: shadow has each answer's text, "
            "not its trace; write the instructions with {{ inputs }}, {{ outputs }} and {{ expectations }}"
        )
    if "trace" in (getattr(s, "required_columns", None) or ()):
        return f"scorer {s.name!r} ({type(s).__name__}) needs each answer's trace: shadow has its text only; {fix}"
    try:
        param = inspect.signature(s.__call__).parameters.get("trace")
    except (TypeError, ValueError):  # no readable signature: MLflow would not know either
        param = None
    if param is not None and param.default is inspect.Parameter.empty:
        return f"scorer {s.name!r} takes a required `trace` argument: shadow has each answer's text only; {fix}"
    return None


def _is_llm_judge(s) -> bool:
    # LLM judges are Judge subclasses with a model: built-in judges declare a ``model``
    # field, make_judge's InstructionsJudge a ``model`` property; the rule-based
    # built-ins (RegexMatch, PIIDetection, ResponseLength) are Judges without one.
    from mlflow.genai.judges.base import Judge  # deferred: mlflow.genai takes a second to import

    cls = type(s)
    return isinstance(s, Judge) and ("model" in getattr(cls, "model_fields", {}) or hasattr(cls, "model"))


# ---------------------------------------------------------------- scoring helpers


def _run_all(tasks, scorers, rows, cases, progress: bool, workers: int) -> list[tuple[object, str | None]]:
    """(result, None) or (None, error line) per task, in task order."""

    def call(task):
        i, j, side = task
        row = rows[i]
        try:
            result = scorers[j].run(
                inputs=_inputs(row, cases[i] if cases is not None else None),
                outputs=row[f"{side}_output"],
                expectations=row.get("expectations"),
            )
        except Exception as e:  # a scorer's own failure costs that case, never the run
            return None, error_line(e)
        return result, None

    results: list = [None] * len(tasks)
    with progress_bar(total=len(tasks), desc="scorers", unit="call", disable=not progress or not tasks) as bar:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(call, task): k for k, task in enumerate(tasks)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    return results


def _inputs(row: dict, case) -> dict | str:
    if row.get("scorer_inputs") is not None:
        return row["scorer_inputs"]
    if row.get("prompt") is not None:
        return row["prompt"]
    return getattr(case, "request_text", "") if case is not None else ""


def read_result(result, name: str) -> tuple[dict[str, bool | float], list[str]]:
    """A scorer's result as {check name: value}, and what could not be read."""
    if isinstance(result, list):
        found, problems = {}, []
        for item in result:
            label = f"{name}/{getattr(item, 'name', '?')}"
            try:
                found[label] = _value(item)
            except _Unreadable as e:
                problems.append(f"{label}: {e}")
        return found, problems
    try:
        return {name: _value(result)}, []
    except _Unreadable as e:
        return {}, [str(e)]


class _Unreadable(Exception):
    pass


def _value(x) -> bool | float:
    """One result as a pass/fail or a number."""
    from mlflow.entities import Feedback  # deferred: mlflow takes a second to import

    if isinstance(x, Feedback):
        if x.error is not None:
            raise _Unreadable(f"feedback error: {getattr(x.error, 'error_message', None) or x.error}")
        x = x.value
    if isinstance(x, bool):
        return x
    if isinstance(x, numbers.Real):
        if not math.isfinite(float(x)):
            raise _Unreadable(f"returned {x}: not a finite number")
        return float(x)
    if isinstance(x, str):  # CategoricalRating is a str enum: its value is "yes" / "no"
        word = str(getattr(x, "value", x)).strip().lower()
        if word in _PASS:
            return True
        if word in _FAIL:
            return False
        raise _Unreadable(f"returned {_short(x)}: need yes/no or pass/fail text")
    if x is None:
        raise _Unreadable("returned no value")
    raise _Unreadable(f"returned a {type(x).__name__}: need a bool, a number, yes/no or pass/fail")


def _check(name: str, rows: list[dict], values: dict, t: Thresholds) -> tuple[Check, list[str]]:
    """The check of one scorer (or one feedback name), and its warnings."""
    pairs = [
        (i, values[(i, "primary")][name], values[(i, "candidate")][name])
        for i in range(len(rows))
        if name in values.get((i, "primary"), {}) and name in values.get((i, "candidate"), {})
    ]
    left_out = len(rows) - len(pairs)
    if not pairs:
        reason = f"no case has a value on both sides ({left_out} left out): see the scorer's errors"
        return Check(f"scorer {name}", "quality", "inconclusive", math.nan, None, reason, None, None, 0), []
    primary = [p for _, p, _ in pairs]
    candidate = [c for _, _, c in pairs]
    same = [rows[i]["primary_output"] == rows[i]["candidate_output"] for i, _, _ in pairs]
    margin, notes = t.margin_for(name), []
    binary = all(isinstance(v, bool) for v in primary + candidate)
    if binary:
        if margin > 1:
            notes.append(f"scorer.{name}={margin:g} is above 1, the most a pass rate can move: read as 1")
            margin = 1.0
        check = binary_scorer_check(name, primary, candidate, t, margin=margin, same_output=same, left_out=left_out)
        return check, notes
    if any(isinstance(v, bool) for v in primary + candidate):
        notes.append(f"scorer {name} returned both pass/fail and numbers: pass/fail read as 1/0")
    check = numeric_scorer_check(
        name,
        [float(v) for v in primary],
        [float(v) for v in candidate],
        t,
        margin=margin,
        same_output=same,
        left_out=left_out,
    )
    return check, notes


def error_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "(no message)"
    return f"{type(e).__name__}: {text[:200]}"


def _short(x, width: int = 40) -> str:
    text = repr(x)
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(k: int, word: str) -> str:
    return word if k == 1 else word + "s"
