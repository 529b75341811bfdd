"""%llm_watch's scorers on a real MLflow sqlite store: scores land on the traces as feedback,
a second watch reuses them, and a writer killed mid-way loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.entities import Feedback
from mlflow.genai.scorers import scorer

from llmops_magics import settings
from llmops_magics.core.tracking import experiment_id, feedback_exists, log_feedback, trace_read
from llmops_magics.core.tracking.trace_write import GenerationTrace, write_traces
from llmops_magics.core.watch.observe import Observation
from llmops_magics.core.watch.scoring import load_scorer, plan_scores, score, scorer_digest
from llmops_magics.core.watch.spool import ScoreSpool, SpooledScore, ship_pending
from llmops_magics.errors import BadInput

TESTS = Path(__file__).resolve().parent
CALLS: list[str] = []  # every call of the scorers below, by name


@scorer
def is_polite(outputs) -> bool:
    CALLS.append("is_polite")
    return "please" in outputs


@scorer
def brevity(outputs) -> float:
    CALLS.append("brevity")
    return 1.0 / len(outputs.split())


def plain_length(outputs) -> float:
    return float(len(outputs))


def stricter_is_polite():
    """A scorer of the same name as ``is_polite`` whose code changed."""

    @scorer
    def is_polite(outputs) -> bool:
        return "please enjoy" in outputs

    return is_polite


# ---------------------------------------------------------------- the app and its traces


def play_app(n: int) -> str:
    """A fresh experiment with ``n`` chat traces (every third answer without "please")."""
    name = f"watch-scoring-{uuid.uuid4().hex[:8]}"
    exp = experiment_id(name)
    t0 = time.time_ns() - n * 1_000_000_000
    traces = [
        GenerationTrace(
            name="chat",
            messages=[{"role": "user", "content": f"question {i}"}],
            response=("here you go, please enjoy answer " if i % 3 else "answer ") + str(i),
            start_ns=t0 + i * 1_000_000_000,
            end_ns=t0 + i * 1_000_000_000 + 5_000_000,
        )
        for i in range(n)
    ]
    for lo in range(0, n, 100):
        report = write_traces(traces[lo : lo + 100], experiment_id=exp)
        assert report.written == len(traces[lo : lo + 100]), report.note
    return exp


def observations(exp: str) -> list[Observation]:
    """The experiment's traces as watch observations, read back from the store (assessments included)."""
    out = []
    for t in trace_read.read_traces(exp):
        messages = t.data.spans[0].inputs["messages"]
        response = t.data.spans[0].outputs["choices"][0]["message"]["content"]
        request = messages[-1]["content"]
        out.append(
            Observation(
                trace_id=t.info.trace_id,
                time_ms=int(t.info.request_time),
                request=request,
                response=response,
                scorer_inputs=request,
                request_chars=len(request),
                prompt_tokens=None,
                completion_tokens=None,
                latency_s=None,
                assessments=tuple(a for a in t.info.assessments or () if isinstance(a, Feedback) and a.valid),
            )
        )
    return out


def ours(trace_id: str, name: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(settings().resolved_tracking_uri)
    return [a for a in mlflow.get_trace(trace_id).info.assessments if a.name == name]


# ---------------------------------------------------------------- tests


def test_scores_land_on_the_traces_and_a_second_watch_reuses_them():
    cfg = settings()
    exp = play_app(30)
    obs = observations(exp)
    CALLS.clear()
    plan = plan_scores(obs, [is_polite, brevity], cfg=cfg)
    assert (plan.calls, plan.reused, plan.judge_calls) == (60, 0, 0)
    assert plan.summary == "2 scorers x 30 traces: 0 scores reused, 60 scorer calls (0 LLM judge calls)"
    assert all(plan.needs(o.trace_id) for o in obs)

    got = score(plan, obs, cfg=cfg, progress=False)
    assert sorted(CALLS) == ["brevity"] * 30 + ["is_polite"] * 30
    assert got.values["is_polite"] == tuple("please" in o.response for o in obs)
    assert got.values["brevity"] == pytest.approx([1 / len(o.response.split()) for o in obs])
    assert (got.called, got.reused, got.errors) == (60, 0, ())
    assert got.writer.wait(60), got.writer.status()
    assert got.writer.status().startswith("wrote 60 of 60 scores to MLflow (")

    digest = scorer_digest(is_polite)
    for o in obs:
        (a,) = ours(o.trace_id, "is_polite")
        assert a.value == ("please" in o.response)
        assert a.source.source_type == "CODE" and a.source.source_id == "is_polite"
        assert a.metadata["llmops.scorer_digest"] == digest
        (b,) = ours(o.trace_id, "brevity")
        assert b.value == pytest.approx(1 / len(o.response.split()))

    again = observations(exp)  # read again: the assessments come back with the traces
    CALLS.clear()
    plan2 = plan_scores(again, [is_polite, brevity], cfg=cfg)
    assert (plan2.calls, plan2.reused) == (0, 60)
    assert not any(plan2.needs(o.trace_id) for o in again)
    got2 = score(plan2, again, cfg=cfg, progress=False)
    assert CALLS == []
    assert got2.writer is None and (got2.called, got2.reused) == (0, 60)
    assert got2.values["is_polite"] == got.values["is_polite"]
    assert got2.values["brevity"] == pytest.approx(got.values["brevity"])


def test_a_changed_scorer_body_is_scored_again_overrides_the_old_feedback_and_rescore_replaces():
    cfg = settings()
    exp = play_app(12)
    first = score(plan_scores(observations(exp), [is_polite], cfg=cfg), observations(exp), cfg=cfg, progress=False)
    assert first.writer.wait(60)

    stricter = stricter_is_polite()
    assert stricter.name == "is_polite" and scorer_digest(stricter) != scorer_digest(is_polite)
    obs = observations(exp)
    plan = plan_scores(obs, [stricter, brevity], cfg=cfg)
    assert (plan.calls, plan.reused) == (24, 0)  # the new body and brevity; the old scores are not this scorer's
    got = score(plan, obs, cfg=cfg, progress=False)
    assert got.writer.wait(60), got.writer.status()
    # The MLflow UI shows one valid is_polite per trace: the new body's overrides the old body's.
    for o in obs:
        old, new = sorted(
            ours(o.trace_id, "is_polite"), key=lambda a: a.metadata["llmops.scorer_digest"] != scorer_digest(is_polite)
        )
        assert old.metadata["llmops.scorer_digest"] == scorer_digest(is_polite) and not old.valid
        assert new.metadata["llmops.scorer_digest"] == scorer_digest(stricter) and new.valid
        assert new.overrides == old.assessment_id and new.value == ("please enjoy" in o.response)

    obs = observations(exp)
    assert plan_scores(obs, [stricter, brevity], cfg=cfg).calls == 0
    # Back to the old body: its feedback was overridden, so it is scored again (and overrides the stricter one).
    assert (plan_scores(obs, [is_polite, brevity], cfg=cfg).calls, plan_scores(obs, [is_polite], cfg=cfg).reused) == (
        12,
        0,
    )
    CALLS.clear()
    forced = plan_scores(obs, [stricter, brevity], rescore=True, cfg=cfg)
    assert (forced.calls, forced.reused) == (24, 0)
    again = score(forced, obs, cfg=cfg, progress=False)
    assert CALLS == ["brevity"] * 12
    assert again.writer.wait(60), again.writer.status()
    # A rescore replaces: MLflow keeps the old feedback, marked invalid, and one valid per name.
    for name in ("is_polite", "brevity"):
        (valid,) = [a for a in ours(obs[1].trace_id, name) if a.valid]
        assert len(ours(obs[1].trace_id, name)) == (3 if name == "is_polite" else 2)
    assert valid.metadata["llmops.scorer_digest"] == scorer_digest(brevity)


def test_too_many_calls_are_refused_in_one_line_before_any_call():
    exp = play_app(10)
    CALLS.clear()
    with pytest.raises(BadInput) as e:
        plan_scores(observations(exp), [is_polite, brevity], max_calls=15, cfg=settings())
    text = str(e.value)
    assert "\n" not in text and "--max-scorer-calls" in text and "--n" in text and "20 scorer calls" in text
    assert CALLS == []


def test_scorers_that_cannot_score_a_trace_are_refused_before_anything_runs():
    exp = play_app(3)
    obs = observations(exp)

    @scorer
    def whole_chat(session) -> bool:
        return True

    for bad, words in [
        ([whole_chat], "session-level"),
        ([plain_length], "not an MLflow Scorer"),
        ([is_polite, is_polite], "two scorers are named 'is_polite'"),
    ]:
        with pytest.raises(BadInput, match=words) as e:
            plan_scores(obs, bad, cfg=settings())
        assert "shadow" not in str(e.value)


def test_a_scorer_that_raises_on_some_traces_costs_only_those_values_and_warns_once():
    cfg = settings()
    exp = play_app(9)
    obs = observations(exp)

    @scorer
    def picky(outputs) -> bool:
        if outputs.endswith(("3", "6")):
            raise ValueError("cannot judge this one")
        return True

    got = score(plan_scores(obs, [picky, is_polite], cfg=cfg), obs, cfg=cfg, progress=False)
    assert got.values["picky"] == tuple(None if o.response.endswith(("3", "6")) else True for o in obs)
    assert None not in got.values["is_polite"]
    assert len(got.errors) == 1
    assert got.errors[0].startswith("scorer picky: no value from 2 of 9 calls; first, trace ")
    assert "ValueError: cannot judge this one" in got.errors[0]
    assert got.writer.wait(60) and got.writer.total == 7 + 9
    failed = [o for o in obs if o.response.endswith("3")][0]
    assert ours(failed.trace_id, "picky") == [] and len(ours(failed.trace_id, "is_polite")) == 1


def test_digests_follow_the_code_not_the_object():
    @scorer
    def is_polite(outputs) -> bool:  # the same body as the module's, so the same digest
        CALLS.append("is_polite")
        return "please" in outputs

    assert scorer_digest(is_polite) == scorer_digest(globals()["is_polite"])
    threshold = 0.5

    @scorer
    def short(outputs) -> bool:
        return len(outputs) < threshold

    first = scorer_digest(short)
    threshold = 0.9  # noqa: F841  (read by `short` through its closure)
    assert scorer_digest(short) != first

    from mlflow.genai.judges import make_judge

    def judge(text):
        return make_judge(name="polite_judge", instructions=text, model="openai:/gpt-4o-mini", feedback_value_type=bool)

    a, b = judge("Is {{ outputs }} polite?"), judge("Is {{ outputs }} rude?")
    assert scorer_digest(a) == scorer_digest(judge("Is {{ outputs }} polite?")) != scorer_digest(b)
    plan = plan_scores([], [a], cfg=settings())
    assert plan.judges == ("polite_judge",)


def test_load_scorer_takes_module_colon_name():
    assert load_scorer("test_watch_scoring:is_polite") is is_polite
    wrapped = load_scorer("test_watch_scoring:plain_length")
    assert wrapped.name == "plain_length" and wrapped.run(outputs="abc") == 3.0
    for spec, words in [
        ("is_polite", "give module:function"),
        ("test_watch_scoring:missing", "has no 'missing'"),
        ("no_such_module_here:x", "cannot import 'no_such_module_here'"),
        ("test_watch_scoring:CALLS", "is a list, not a scorer"),
    ]:
        with pytest.raises(BadInput, match=words):
            load_scorer(spec)


def test_a_score_that_landed_without_an_answer_is_not_written_twice():
    cfg = settings()
    exp = play_app(4)
    obs = observations(exp)
    spool = ScoreSpool(cfg)
    digest = scorer_digest(is_polite)
    from llmops_magics.core.tracking import assessment_id

    rows = [
        SpooledScore(o.trace_id, "is_polite", digest, True, "CODE", "is_polite", assessment_id(o.trace_id, "x", digest))
        for o in obs
    ]
    spool.add(rows)
    spool.mark_tried(rows)
    # The first landed before its process died, unconfirmed: MLflow has it, the spool does not know.
    log_feedback(obs[0].trace_id, name="is_polite", value=True, source_id="is_polite", source_type="CODE",
                 metadata={"llmops.scorer_digest": digest}, assessment_id=rows[0].assessment_id, cfg=cfg)  # fmt: skip
    writer = ship_pending(cfg)
    assert writer.wait(60) and (writer.total, writer.written) == (4, 4), writer.status()
    assert all(feedback_exists(r.trace_id, r.assessment_id, cfg) for r in rows)
    assert [len(ours(o.trace_id, "is_polite")) for o in obs] == [1, 1, 1, 1]
    assert ship_pending(cfg).total == 0
    # Spooled, not yet written: reused by the next plan without a call.
    extra = SpooledScore(obs[0].trace_id, "brevity", scorer_digest(brevity), 0.25, "CODE", "brevity", "a-" + "0" * 32)
    spool.add([extra])
    plan = plan_scores(obs, [brevity], cfg=cfg)
    assert plan.reused == 1 and not plan.needs(obs[0].trace_id)
    spool.drop([extra])


KILLED_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_watch_scoring import brevity, is_polite, observations
from llmops_magics import settings
from llmops_magics.core.watch import scoring
obs = observations({exp!r})
plan = scoring.plan_scores(obs, [is_polite, brevity], cfg=settings())
print(json.dumps(list(plan.digests)), flush=True)
got = scoring.score(plan, obs, cfg=settings(), progress=False)
got.writer.wait(600)
print("finished", flush=True)
"""


def test_a_writer_killed_mid_way_loses_and_duplicates_nothing(tmp_path):
    cfg = settings()
    n = 300
    exp = play_app(n)
    script = tmp_path / "watch_killed.py"
    script.write_text(KILLED_SCRIPT.format(tests=str(TESTS), exp=exp))
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    spool_file = Path(cfg.home) / "watch" / "scores.sqlite"
    store = ScoreSpool(cfg).store

    def counts() -> tuple[int, int]:
        with sqlite3.connect(spool_file, timeout=30) as conn:
            rows = conn.execute(
                "SELECT written, count(*) FROM scores s WHERE store = ? AND trace_id IN "
                "(SELECT value FROM json_each(?)) GROUP BY written",
                (store, json.dumps(ids)),
            ).fetchall()
        got = dict(rows)
        return got.get(1, 0), got.get(0, 0)

    ids = [o.trace_id for o in observations(exp)]
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            written, waiting = counts() if spool_file.exists() else (0, 0)
            if written + waiting == 2 * n and 0 < written < 2 * n:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-write: {out.decode()[-500:]} {err.decode()[-1500:]}"
    digests = json.loads(out.decode().splitlines()[0])
    assert digests == [scorer_digest(is_polite), scorer_digest(brevity)]  # the same code, another process
    written, waiting = counts()
    assert written > 0 and waiting > 0

    t0 = time.monotonic()
    writer = ship_pending(cfg)
    assert time.monotonic() - t0 < 1.0 and writer.total == waiting  # handed over, not written in the foreground
    assert writer.wait(120) and writer.written == waiting, writer.status()
    assert counts() == (2 * n, 0)
    obs = observations(exp)
    for o in obs:
        names = sorted(a.name for a in o.assessments)
        assert names == ["brevity", "is_polite"], (o.trace_id, names)
    CALLS.clear()
    assert plan_scores(obs, [is_polite, brevity], cfg=cfg).calls == 0


def test_a_server_that_stops_answering_stops_the_writer_and_the_rest_is_written_later(mlflow_server):
    from llmops_magics import configure

    configure(tracking_uri=mlflow_server.uri)
    n = 30
    exp = play_app(n)
    obs = observations(exp)
    configure(mlflow_timeout_s=3)
    cfg = settings()
    got = score(plan_scores(obs, [is_polite, brevity], cfg=cfg), obs, cfg=cfg, progress=False)
    deadline = time.monotonic() + 60
    while got.writer.written < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    mlflow_server.freeze()  # mid-write: the call in flight gets no answer
    try:
        t0 = time.monotonic()
        assert not got.writer.wait(30)
        assert time.monotonic() - t0 < 10, "one MLflow budget, not MLflow's minutes of retries"
        line = got.writer.status()
        before = got.writer.written
        assert 0 < before < 2 * n and "\n" not in line
        assert f"wrote {before} of {2 * n} scores to MLflow (" in line
        assert f"{2 * n - before} kept to write later: MLflow at {mlflow_server.uri} did not answer" in line
        # A watch started now does not wait on the backlog while the server still hangs.
        t0 = time.monotonic()
        backlog = ship_pending(cfg)
        assert time.monotonic() - t0 < 1.0 and backlog.total == 2 * n - before
        assert not backlog.wait(30) and "kept to write later" in backlog.status()
    finally:
        mlflow_server.thaw()
    # A thawed server first answers the requests it held; on a busy 2-core machine that
    # takes longer than the 3 s that made the outage quick to see.
    configure(mlflow_timeout_s=30)
    cfg = settings()
    writer = ship_pending(cfg)
    assert writer.wait(120) and writer.written == 2 * n - before, writer.status()
    for o in observations(exp):
        assert sorted(a.name for a in o.assessments) == ["brevity", "is_polite"], o.trace_id


def test_a_notebook_global_the_scorer_reads_is_part_of_its_digest():
    cell = (
        "from mlflow.genai.scorers import scorer\n"
        "@scorer\n"
        "def short(outputs) -> bool:\n"
        "    return all(len(w) < th for w in outputs.split())  # th: read inside a generator's own code\n"
    )
    notebook = {"th": 5, "__name__": "__main__"}
    exec(compile(cell, "<cell 3>", "exec"), notebook)
    at_5 = scorer_digest(notebook["short"])
    notebook["th"] = 9
    assert scorer_digest(notebook["short"]) != at_5
    notebook["th"] = (5,)
    assert scorer_digest(notebook["short"]) not in (at_5,)
    notebook["th"] = 5
    assert scorer_digest(notebook["short"]) == at_5
    notebook["unrelated"] = 1  # a global the scorer never names changes nothing
    assert scorer_digest(notebook["short"]) == at_5


def test_ctrl_c_stops_scoring_at_once_and_keeps_every_score_made():
    import _thread

    cfg = settings()
    exp = play_app(200)
    obs = observations(exp)
    made: list[str] = []

    @scorer
    def slow(outputs) -> bool:
        made.append(outputs)
        if len(made) == 20:
            _thread.interrupt_main()  # what Ctrl-C does
        time.sleep(0.02)
        return True

    plan = plan_scores(obs, [slow], cfg=cfg)
    assert plan.calls == 200
    with pytest.raises(KeyboardInterrupt):
        score(plan, obs, cfg=cfg, progress=False)
    time.sleep(0.3)  # a call running at the interrupt ends in its thread; nothing queued starts
    assert 20 <= len(made) < 60, len(made)
    ids = [o.trace_id for o in obs]
    spooled = ScoreSpool(cfg).unwritten(ids, written_too=True)
    assert 20 - 4 <= len(spooled) <= len(made)
    # The spooled scores are reused by the next watch, and written to MLflow in the background.
    again = plan_scores(observations(exp), [slow], cfg=cfg)
    assert (again.reused, again.calls) == (len(spooled), 200 - len(spooled))
    deadline = time.monotonic() + 60
    while ScoreSpool(cfg).counts()[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(feedback_exists(r.trace_id, r.assessment_id, cfg) for r in spooled)


def test_a_corrupt_score_spool_is_rebuilt_with_one_note_and_the_watch_goes_on():
    from llmops_magics.core.watch import facts

    cfg = settings()
    exp = play_app(6)
    obs = observations(exp)
    spool_file = Path(cfg.home) / "watch" / "scores.sqlite"
    spool_file.parent.mkdir(parents=True, exist_ok=True)
    spool_file.write_bytes(b"garbage, not a database " * 400)
    Path(str(spool_file) + "-wal").write_bytes(b"a stale log " * 100)
    plan = plan_scores(obs, [is_polite], cfg=cfg)
    (note,) = plan.notes
    assert "\n" not in note and "was unreadable" in note and "rebuilt" in note
    got = score(plan, obs, cfg=cfg, progress=False)
    assert got.values["is_polite"] == tuple("please" in o.response for o in obs)
    assert note in got.errors and len(got.errors) == 1
    assert got.writer.wait(60), got.writer.status()
    assert all(len(ours(o.trace_id, "is_polite")) == 1 for o in obs)
    aside = sorted(p.name for p in spool_file.parent.glob("scores.sqlite.corrupt-*"))
    # the stale log (and the index sqlite made while failing to read it) went aside with the file
    assert aside and aside[0].startswith("scores.sqlite.corrupt-")
    assert set(aside[1:]) <= {aside[0] + "-wal", aside[0] + "-shm"}
    live_log = Path(str(spool_file) + "-wal")
    assert not live_log.exists() or b"a stale log" not in live_log.read_bytes()
    wal = Path(str(spool_file) + "-wal")  # the stale log went aside with its file (or sqlite reset it): never replayed
    assert not wal.exists() or b"a stale log" not in wal.read_bytes()
    assert ScoreSpool(cfg).store == facts.store_key(cfg)  # one store key for the facts cache and the spool


def test_a_locked_spool_costs_keeping_not_scores(monkeypatch):
    from llmops_magics.core.watch import spool as spool_module

    cfg = settings()
    exp = play_app(5)
    obs = observations(exp)
    ScoreSpool(cfg)  # the file exists
    monkeypatch.setattr(spool_module, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(Path(cfg.home) / "watch" / "scores.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another kernel holds the write lock for longer than the timeout
    try:
        got = score(plan_scores(obs, [is_polite], cfg=cfg), obs, cfg=cfg, progress=False)
        assert got.values["is_polite"] == tuple("please" in o.response for o in obs)
        assert any(
            e.startswith("score spool unavailable: could not keep new scores (database is locked)") for e in got.errors
        )
        assert all("\n" not in e and "Traceback" not in e for e in got.errors)
        assert got.writer.wait(60), got.writer.status()  # written to MLflow all the same
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(len(ours(o.trace_id, "is_polite")) == 1 for o in obs)
