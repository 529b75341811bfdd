"""The user's MLflow scorers on production traces: score what is new, reuse what was scored.

A watch over 10,000 traces must not call 10,000 scorers every time it runs. Every score
it logs is an MLflow feedback on its trace (name, value, source ``CODE`` or
``LLM_JUDGE``) whose metadata carries :func:`scorer_digest` (``llmops.scorer_digest``):
a digest of what decides the scorer's output (its class, name and code; a judge's
instructions and model). :func:`plan_scores` counts, before anything runs, which
(trace, scorer) pairs already hold a valid feedback of that name and digest, or a score
spooled locally and not yet written, and which still need a call; ``rescore`` ignores
both. :func:`score` calls only those, in threads, through ``Scorer.run`` (MLflow's entry
point, as ``%%shadow`` does), reads the results with shadow's rules (a bool, a number,
yes/no, a ``Feedback``, a ``list[Feedback]`` as ``NAME/feedback`` checks) and hands the
new ones to the spool and its background writer (:mod:`.spool`). A scorer that raises
costs that trace's value, never the run: one warning line per scorer.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
import queue
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...backends.progress import progress_bar
from ...config import Settings
from ...errors import BadInput
from ..shadow.scorers import error_line, preflight, read_result
from ..tracking import assessment_id
from .spool import DIGEST_KEY, AssessmentWriter, ScoreSpool, SpooledScore

WORKERS = 4  # calls at once: judges wait on a network; code scorers share the GIL either way
CHUNK = 32  # calls per pool task: one future per call costs more than a trivial scorer
SPOOL_EVERY = 256  # new scores per spool transaction


# ---------------------------------------------------------------------- scorer identity


def scorer_digest(scorer) -> str:
    """A digest of what decides a scorer's output, stable across processes.

    Parameters
    ----------
    scorer : Scorer
        A ``@scorer`` function (its source: a changed body changes the digest; the
        simple values, str/int/float/bool/None or tuples of those, of the closure and
        of the globals its code names count too), a ``make_judge`` judge (instructions, model, output
        type) or a built-in (its fields).

    Returns
    -------
    str
        16 hex digits (sha256 of class, name and definition).
    """
    cls = type(scorer)
    text = json.dumps(
        {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "name": getattr(scorer, "name", ""),
            "definition": _mlflow_definition(scorer) or _own_definition(scorer),
            "closure": _closure_values(scorer),
            "globals": _global_values(scorer),
        },
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mlflow_definition(scorer) -> str | None:
    """MLflow's own digest of the scorer's serialized form (what ``register()`` stores)."""
    try:  # a private helper of MLflow 3.17: another version may lack it, then ours below serves
        from mlflow.genai.scorers.scorer_utils import get_scorer_definition_digest
    except ImportError:
        return None
    return get_scorer_definition_digest(scorer)


def _own_definition(scorer) -> dict:
    """What MLflow could not serialize: a function with no source file (exec'd), or a subclass."""
    func = getattr(scorer, "_original_func", None)  # where @scorer keeps the decorated function
    if func is not None:
        try:
            return {"source": textwrap.dedent(inspect.getsource(func))}
        except (OSError, TypeError):
            return {"code": _code_fingerprint(func.__code__)}
    found: dict = {}
    for attr in ("instructions", "model", "feedback_value_type"):
        value = getattr(scorer, attr, None)
        if value is not None:
            found[attr] = repr(value)
    try:
        from pydantic import BaseModel  # deferred: pydantic comes with mlflow, needed only here

        found["fields"] = BaseModel.model_dump(scorer, mode="json")
    except Exception:  # not a pydantic model after all: its class source below still says what it is
        pass
    try:
        found["class_source"] = inspect.getsource(type(scorer))
    except (OSError, TypeError):
        found["class_code"] = _code_fingerprint(type(scorer).__call__.__code__)
    return found


def _code_fingerprint(code) -> list:
    # The code object without addresses or line numbers: stable across processes.
    consts = [_code_fingerprint(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return [code.co_code.hex(), list(code.co_names), consts]


def _closure_values(scorer) -> list:
    # A threshold captured from the notebook changes the scores without changing the source.
    func = getattr(scorer, "_original_func", None)
    cells = getattr(func, "__closure__", None) or ()
    out = []
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, (bool, int, float, str, type(None))):
            out.append(repr(value))
    return out


def _global_values(scorer) -> dict[str, str]:
    # A notebook threshold (`th = 0.9` in another cell) is a global the body reads: a new
    # value must not reuse the old value's scores. Only simple values: a module or a list
    # says nothing stable about the output.
    func = getattr(scorer, "_original_func", None)
    code = getattr(func, "__code__", None)
    namespace = getattr(func, "__globals__", None)
    if code is None or not isinstance(namespace, dict):
        return {}
    out = {}
    for name in sorted(_names(code)):
        if name in namespace and _simple(namespace[name]):
            out[name] = repr(namespace[name])
    return out


def _names(code) -> set[str]:
    # co_names of the function and of every code object inside it (lambdas, comprehensions, inner defs).
    found = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            found |= _names(const)
    return found


def _simple(value) -> bool:
    if isinstance(value, tuple):
        return all(_simple(v) for v in value)
    return isinstance(value, (bool, int, float, str, type(None)))


def load_scorer(spec: str):
    """The scorer named by ``module:function`` (or ``module:attr``), as an MLflow Scorer.

    A plain function is wrapped with ``@scorer`` under its own name.

    Raises
    ------
    BadInput
        One line: the spec's shape, a module that does not import, a missing name, or
        something that is not a scorer.
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise BadInput(f"--scorer {spec!r}: give module:function, e.g. --scorer mypkg.scorers:is_polite")
    module = _import(module_name.strip(), spec)
    obj = module
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise BadInput(f"--scorer {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    from mlflow.genai.scorers import Scorer, scorer  # deferred: mlflow.genai takes a second to import

    if isinstance(obj, Scorer):
        return obj
    if inspect.isfunction(obj):
        try:
            return scorer(obj)
        except Exception as e:  # MLflow refuses the signature (session mixed with inputs...)
            raise BadInput(f"--scorer {spec!r} cannot be an MLflow scorer: {error_line(e)}") from None
    raise BadInput(
        f"--scorer {spec!r} is a {type(obj).__name__}, not a scorer: name a @scorer function, "
        "a plain function of inputs/outputs, a built-in scorer or a make_judge judge"
    )


def _import(module_name: str, spec: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # A console script does not put the working folder on sys.path; the user's module lives there.
        here = os.getcwd()
        if e.name == module_name.split(".")[0] and here not in sys.path:
            sys.path.insert(0, here)
            return _import(module_name, spec)
        raise BadInput(f"--scorer {spec!r}: cannot import {module_name!r} ({error_line(e)})") from None
    except Exception as e:  # the user's module failed while importing
        raise BadInput(f"--scorer {spec!r}: importing {module_name!r} failed: {error_line(e)}") from None


# ---------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ScorePlan:
    """What scoring will cost, known before any scorer runs.

    Attributes
    ----------
    scorers : tuple of Scorer
    digests : tuple of str
        :func:`scorer_digest` of each scorer.
    judges : tuple of str
        Names of the scorers that call an LLM.
    reused : int
        (trace, scorer) pairs with a score already: a valid feedback of this name and
        digest on the trace, or one spooled and not yet written.
    calls, judge_calls : int
        Scorer calls still to make, and how many of them call an LLM (traces whose
        response could not be read are not calls: they are skipped).
    summary : str
        One line to show before scoring.
    unreadable : tuple of str
        Traces with no readable response that would have needed a call (skipped).
    notes : tuple of str
        One line per spool problem met while planning (a rebuilt or unusable spool).
    """

    scorers: tuple
    digests: tuple[str, ...]
    judges: tuple[str, ...]
    reused: int
    calls: int
    judge_calls: int
    summary: str
    rescore: bool = False
    todo: frozenset = field(default=frozenset(), repr=False)  # {(trace_id, scorer index)}
    found: Mapping = field(default_factory=dict, repr=False)  # trace_id -> {check name: value}
    previous: Mapping = field(
        default_factory=dict, repr=False
    )  # (trace_id, check) -> assessment id the new score overrides (a rescore, or another digest's)
    unreadable: tuple[str, ...] = field(default=(), repr=False)
    notes: tuple[str, ...] = field(default=(), repr=False)

    def needs(self, trace_id: str) -> bool:
        """Whether this trace still needs a scorer call (its text must be read)."""
        return any((trace_id, j) in self.todo for j in range(len(self.scorers)))


def plan_scores(
    infos: Sequence,
    scorers: Sequence,
    *,
    rescore: bool = False,
    max_calls: int | None = None,
    cfg: Settings,
) -> ScorePlan:
    """Check the scorers and count, per trace, what is reused and what must be scored.

    Parameters
    ----------
    infos : sequence of Observation
        The traces (their ``trace_id`` and ``assessments``; no text needed).
    scorers : sequence of Scorer
    rescore : bool
        Score everything again, ignoring earlier feedback and the spool.
    max_calls : int, optional
        Refuse when more scorer calls than this are needed (``--max-scorer-calls``).
    cfg : Settings

    Raises
    ------
    BadInput
        Not a Scorer, session-level, needs the trace, two of one name, or too many calls.
    """
    checked = _preflight(scorers, len(infos))
    items = tuple(checked.scorers)
    digests = tuple(scorer_digest(s) for s in items)
    spooled: dict[str, dict[str, object]] = {}
    notes: tuple[str, ...] = ()
    if not rescore and items:
        spool = ScoreSpool(cfg)
        for row in spool.unwritten((o.trace_id for o in infos), written_too=True):
            spooled.setdefault(row.trace_id, {})[(row.name, row.digest)] = (row.value, row.assessment_id)
        notes = tuple(spool.notes)
    todo, found, previous, unreadable = set(), {}, {}, {}
    for obs in infos:
        feedback = _our_feedback(getattr(obs, "assessments", ()) or ())
        for j, (s, digest) in enumerate(zip(items, digests)):
            known = _of_scorer(feedback, s.name, digest)
            values = {} if rescore else {check: value for check, (value, _) in known.items()}
            if not values and not rescore:
                # A written row whose feedback another version of the scorer has since overridden is stale.
                replaced = {getattr(a, "overrides", None) for a in getattr(obs, "assessments", ()) or ()}
                values = {
                    check: value
                    for (check, d), (value, aid) in spooled.get(obs.trace_id, {}).items()
                    if d == digest and _belongs(check, s.name) and aid not in replaced
                }
            if values:
                found.setdefault(obs.trace_id, {}).update(values)
            elif _unreadable(obs):  # nothing to score: neither a call nor a span read next time round
                unreadable[obs.trace_id] = None
            else:
                todo.add((obs.trace_id, j))
                previous.update(_replaced(obs.trace_id, feedback, s.name, digest, known if rescore else {}))
    judge_index = {j for j, s in enumerate(items) if s.name in checked.judges}
    calls, judge_calls = len(todo), sum(1 for _, j in todo if j in judge_index)
    skipped_pairs = sum(1 for o in infos for j in range(len(items)) if o.trace_id in unreadable) if unreadable else 0
    reused = len(infos) * len(items) - calls - skipped_pairs
    k, n = len(items), len(infos)
    summary = (
        f"{k} {_plural(k, 'scorer')} x {n:,} {_plural(n, 'trace')}: {reused:,} {_plural(reused, 'score')} reused, "
        f"{calls:,} scorer {_plural(calls, 'call')} ({judge_calls:,} LLM judge {_plural(judge_calls, 'call')})"
    )
    if unreadable:
        u = len(unreadable)
        summary += f"; {u:,} {_plural(u, 'trace')} with no readable response skipped"
    if max_calls is not None and calls > max_calls:
        raise BadInput(
            f"{summary}: more than --max-scorer-calls {max_calls}; raise --max-scorer-calls (to {calls}) "
            "or score fewer traces with --n"
        )
    return ScorePlan(
        items,
        digests,
        tuple(checked.judges),
        reused,
        calls,
        judge_calls,
        summary,
        rescore=rescore,
        todo=frozenset(todo),
        found=found,
        previous=previous,
        unreadable=tuple(unreadable),
        notes=notes,
    )


def _unreadable(obs) -> bool:
    """Its text was read, and it has no response a scorer could take."""
    return obs.response is None and (obs.request is not None or obs.scorer_inputs is not None)


def _replaced(trace_id: str, feedback: dict, name: str, digest: str, rescored: dict) -> dict:
    """{(trace, check): the assessment id the new score overrides}.

    A rescore overrides this digest's own feedback; otherwise the newest valid feedback of
    the same check left by another version of the scorer (ours, by its digest metadata) is
    overridden, so the MLflow UI never shows two disagreeing valid feedbacks of one name.
    """
    newest: dict[str, tuple[int, str]] = {}
    for (check, d), (_, aid, when) in feedback.items():
        if d != digest and _belongs(check, name) and (check not in newest or when >= newest[check][0]):
            newest[check] = (when, aid)
    out = {(trace_id, check): aid for check, (_, aid) in newest.items()}
    out.update({(trace_id, check): aid for check, (_, aid) in rescored.items()})
    return out


def _preflight(scorers: Sequence, n: int):
    """Shadow's refusals (not a Scorer, session-level, needs the trace, two of one name), said for watch."""
    try:
        return preflight(scorers, n, None)
    except BadInput as e:
        raise BadInput(str(e).replace("shadow ", "watch ")) from None


def _our_feedback(assessments) -> dict[tuple[str, str], tuple[object, str, int]]:
    """{(name, our digest): (value, assessment id, time)} of the valid, error-free feedback; newest wins."""
    out: dict[tuple[str, str], tuple[object, str, int]] = {}
    for a in assessments:
        digest = (getattr(a, "metadata", None) or {}).get(DIGEST_KEY)
        if not digest or getattr(a, "valid", True) is False or getattr(a, "error", None) is not None:
            continue
        if not hasattr(a, "value"):  # an expectation, not a feedback
            continue
        when = int(getattr(a, "create_time_ms", 0) or 0)
        key = (a.name, digest)
        if key not in out or when >= out[key][2]:
            out[key] = (a.value, a.assessment_id, when)
    return out


def _of_scorer(feedback: dict, name: str, digest: str) -> dict[str, tuple[object, str]]:
    """This scorer's readable feedback on one trace: {check name: (value, assessment id)}."""
    out = {}
    for (check, d), (value, aid, _) in feedback.items():
        if d != digest or not _belongs(check, name):
            continue
        got, problems = read_result(value, check)
        if problems:  # a value our rules cannot read is scored again
            return {}
        out.update({c: (v, aid) for c, v in got.items()})
    return out


def _belongs(check: str, name: str) -> bool:
    return check == name or check.startswith(name + "/")


# ---------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scores:
    """Every trace's score per check, and what it took.

    Attributes
    ----------
    values : mapping
        Check name -> one value per observation, in order: True/False, a float, or
        None (no score). A ``list[Feedback]`` scorer gives one check per feedback,
        ``NAME/feedback``.
    errors : tuple of str
        One line per scorer that failed on some traces (count and the first error),
        and one for traces with no response to score.
    called, reused : int
        Scorer calls made; (trace, scorer) pairs taken from earlier scores.
    writer : AssessmentWriter or None
        The background writer of the new scores (None when nothing was new).
    """

    values: Mapping[str, tuple]
    errors: tuple[str, ...]
    called: int
    reused: int
    writer: AssessmentWriter | None = None


def score(plan: ScorePlan, items: Sequence, *, cfg: Settings, progress: bool = True) -> Scores:
    """Run the planned scorer calls and spool every new score for the background writer.

    Parameters
    ----------
    plan : ScorePlan
        From :func:`plan_scores` over the same traces.
    items : sequence of Observation
        The traces, their texts loaded where :meth:`ScorePlan.needs` said so.
    cfg : Settings
    progress : bool
        Show a progress bar over the calls.

    Returns
    -------
    Scores
        Its ``writer`` keeps writing after this returns: ``writer.wait(timeout)`` to wait.
    """
    scorers, n = plan.scorers, len(items)
    columns: dict[str, list] = {}
    reused, tasks, silent = 0, [], []
    for i, obs in enumerate(items):
        known = plan.found.get(obs.trace_id, {})
        for j, s in enumerate(scorers):
            if (obs.trace_id, j) in plan.todo:
                if obs.response is None:
                    silent.append(obs.trace_id)
                else:
                    tasks.append((i, j))
                continue
            got = {c: v for c, v in known.items() if _belongs(c, s.name)}
            reused += bool(got)
            for check, value in got.items():
                columns.setdefault(check, [None] * n)[i] = value

    spool = ScoreSpool(cfg)
    writer = AssessmentWriter(spool, cfg=cfg) if tasks else None
    failures: dict[str, list] = {}  # scorer name -> [count, first problem]
    waiting: list[SpooledScore] = []
    kinds = [_source(s, plan.judges) for s in scorers]

    def keep(rows: list[SpooledScore], force: bool = False) -> None:
        if rows and (force or len(rows) >= SPOOL_EVERY):
            # A result taken twice (Ctrl-C landed between taking it and saying so) is one row.
            rows[:] = {(r.trace_id, r.name): r for r in rows}.values()
            # On disk before the writer sees them; a spool that cannot keep them (a note says
            # so) still lets the writer log them: their ids make a second copy impossible.
            spool.add(rows, replace=plan.rescore)
            writer.put(list(rows))
            rows.clear()

    def take(i: int, j: int, result, error) -> None:
        s, obs = scorers[j], items[i]
        found, problems = ({}, [error]) if error else read_result(result, s.name)
        for check, value in found.items():
            columns.setdefault(check, [None] * n)[i] = value
            waiting.append(_row(plan, obs.trace_id, check, plan.digests[j], value, kinds[j]))
        if problems:
            entry = failures.setdefault(s.name, [0, f"trace {obs.trace_id}: {problems[0]}"])
            entry[0] += 1

    calls = _Calls(tasks, scorers, items)
    try:
        with progress_bar(total=len(tasks), desc="scoring", unit="call", disable=not progress or not tasks) as bar:
            for (i, j), (result, error) in calls:
                take(i, j, result, error)
                calls.taken()
                bar.update(1)
                keep(waiting)
    finally:
        # Ctrl-C or an error: queued calls are cancelled, and every score computed so far is kept.
        try:
            for (i, j), (result, error) in calls.stop():
                take(i, j, result, error)
        finally:
            if writer is not None:
                keep(waiting, force=True)
                writer.close()

    calls_of = {s.name: sum(1 for _, j in tasks if j == k) for k, s in enumerate(scorers)}
    errors = [
        f"scorer {name}: no value from {count:,} of {calls_of[name]:,} calls; first, {first}"
        for name, (count, first) in failures.items()
    ]
    if plan.unreadable or silent:
        silent = [*plan.unreadable, *silent]
        traces = len(set(silent))
        errors.append(
            f"{traces:,} {_plural(traces, 'trace')} with no readable response were not scored: "
            f"first trace id {silent[0]}"
        )
    errors.extend(note for note in (*plan.notes, *spool.notes) if note not in errors)
    return Scores(
        _ordered(columns, scorers, n), tuple(errors), len(tasks), reused, writer if writer and writer.total else None
    )


class _Calls:
    """The scorer calls, run by a few threads; iterate for ((i, j), (result, error)) as each call ends.

    At most ``WINDOW`` chunks are queued at once, and each worker checks a stop flag
    between calls, so :meth:`stop` (Ctrl-C, an error) ends the work at once: no queued
    call runs after it, and a call already running is left to finish in its thread.
    """

    WINDOW = 2 * WORKERS  # chunks queued at once: the workers never idle, Ctrl-C never waits on a backlog

    def __init__(self, tasks, scorers, items):
        self.tasks, self.scorers, self.items = tasks, scorers, items
        # Results are appended, never taken out: Ctrl-C between a read and its use loses none.
        self._results: list = []
        self._wake: queue.SimpleQueue = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._kept = 0  # results before this index are kept by the caller

    def _work(self, chunk) -> None:
        for i, j in chunk:
            if self._stopped.is_set():
                return
            obs = self.items[i]
            try:
                got = (self.scorers[j].run(inputs=obs.scorer_inputs, outputs=obs.response), None)
            except Exception as e:  # a scorer's own failure costs that trace, never the run
                got = (None, error_line(e))
            self._results.append(((i, j), got))  # list.append is atomic
            self._wake.put(None)

    def __iter__(self):
        chunks = iter([self.tasks[lo : lo + CHUNK] for lo in range(0, len(self.tasks), CHUNK)])
        if not self.tasks:
            return
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="llmops-watch-scorer")
        running: set = set()
        left = len(self.tasks)
        while left:
            for future in [f for f in running if f.done()]:
                running.discard(future)
                future.result()  # a worker killed by a BaseException (SystemExit...) says so here
            while len(running) < self.WINDOW and (chunk := next(chunks, None)) is not None:
                running.add(self._pool.submit(self._work, chunk))
            handed = len(self.tasks) - left
            if handed >= len(self._results):
                with contextlib.suppress(queue.Empty):
                    # A short wait: Ctrl-C lands between waits even where a blocked get would hide it.
                    self._wake.get(timeout=0.2)
                continue
            left -= 1
            yield self._results[handed]
        self.stop()

    def taken(self) -> None:
        """The caller kept one more result."""
        self._kept += 1

    def stop(self) -> list:
        """Stop: cancel what has not started, and return the results that came in but were not kept."""
        self._stopped.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        out, self._kept = self._results[self._kept :], len(self._results)
        return out


def _row(plan: ScorePlan, trace_id: str, check: str, digest: str, value, kind: tuple[str, str]) -> SpooledScore:
    old = plan.previous.get((trace_id, check))
    if old is None:
        aid = assessment_id(trace_id, check, digest)
    elif plan.rescore:  # a rescore replaces the earlier feedback: a new id, and MLflow marks the old one invalid
        aid = assessment_id(trace_id, check, digest, "rescore", time.time_ns())
    else:  # a changed scorer replaces its old version's feedback: one id per (new, old) pair, exactly once
        aid = assessment_id(trace_id, check, digest, "overrides", old)
    return SpooledScore(trace_id, check, digest, value, kind[0], kind[1], aid, old)


def _source(s, judges: Sequence[str]) -> tuple[str, str]:
    # MLflow's evaluation names a code scorer's source by the scorer's name, a judge's by its model URI.
    if s.name not in judges:
        return "CODE", s.name
    model = getattr(s, "model", None)
    if not model:
        try:
            from mlflow.genai.judges.utils import get_default_model  # deferred: mlflow.genai is heavy

            model = get_default_model()
        except Exception:  # another MLflow version: the judge's name still says who scored
            model = s.name
    return "LLM_JUDGE", str(model)


def _ordered(columns: dict[str, list], scorers: Sequence, n: int) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for s in scorers:
        mine = [c for c in columns if _belongs(c, s.name)]
        for check in mine or [s.name]:
            out[check] = tuple(columns.get(check, [None] * n))
    return out


def _plural(k: int, word: str) -> str:
    return word if k == 1 else word + "s"
