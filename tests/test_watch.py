"""``%llm_watch`` / ``watch()`` / ``llmops-magics watch`` end to end, on a real MLflow store.

The tests play an app over 20 backdated days (40 traces a day, written with the project's
own batch trace writer, ``llmops.*`` root-span attributes as ``%%llm`` writes them) and a
real ``@scorer`` decides each answer: a drop on day 12 when the model version changes,
a stable series, a shift of request topic with unchanged answers, and two canary variants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import pytest
from mlflow.genai.scorers import scorer

from llmops_magics.core import tracking
from llmops_magics.core.tracking.trace_write import GenerationTrace, generation_attributes, write_traces
from llmops_magics.core.watch.changes import Change, explain, served_changes
from llmops_magics.core.watch.decay import buckets
from llmops_magics.core.watch.observe import Observation
from llmops_magics.core.watch.result import INPUT_DRIFT
from llmops_magics.core.watch.run import PLOT_FILE, watch

DAY_MS = 86_400_000
DAYS, PER_DAY, DROP_DAY = 20, 40, 12

REFUNDS = [
    "How do I get a refund for order {k}?",
    "My parcel {k} arrived broken, can I return it?",
    "I was charged twice for order {k}, please fix it.",
    "When will the refund for order {k} reach my card?",
    "Can I cancel order {k} and get my money back?",
    "The shoes in order {k} do not fit, how do I exchange them?",
]
COOKING = [
    "What is a good recipe for banana bread with {k} grams of flour?",
    "How long should I roast a chicken of {k} grams?",
    "Which spices go well in a lentil soup for {k} people?",
    "How do I make fresh pasta dough for {k} servings?",
]


@scorer
def is_polite(outputs) -> bool:
    """The answer thanks the customer."""
    return "thank you" in str(outputs).lower()


def _day0_ms() -> int:
    """The start (UTC midnight) of the first of the 20 days; the last one ends at today's midnight."""
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    return today - DAYS * DAY_MS


def _trace(
    at_ms: int, request: str, polite: bool, *, version: int = 1, tags=None, model: str = "chat"
) -> GenerationTrace:
    answer = "Thank you for asking: it is on its way." if polite else "It is on its way."
    return GenerationTrace(
        name="support-app",
        messages=[{"role": "user", "content": request}],
        response=answer,
        attributes=generation_attributes(
            model=f"{model}/{version}",
            model_ref=f"{model}@champion",
            model_version=version,
            model_digest=f"{version:064x}",
            prompt_tokens=20 + len(request) // 4,
            completion_tokens=12,
            latency_s=0.4,
        ),
        start_ns=at_ms * 1_000_000,
        end_ns=(at_ms + 400) * 1_000_000,
        tags=dict(tags or {}),
    )


def _play(app: str, *, drop: bool = False, shift: bool = False, model: str = "chat") -> None:
    """20 days x 40 traces: 90% polite; from day 12 on, 50% with ``drop`` (model version 2
    then), cooking questions instead of refunds with ``shift`` (answers as polite as before)."""
    day0 = _day0_ms()
    traces = []
    for d in range(DAYS):
        late = d >= DROP_DAY
        for i in range(PER_DAY):
            at = day0 + d * DAY_MS + 600_000 + i * (DAY_MS - 1_200_000) // PER_DAY
            polite = (i % 2 == 0) if (drop and late) else (i % 10 != 0)
            topics = COOKING if (shift and late) else REFUNDS
            # The fill-ins come from one pool every day: only the topic may move.
            request = topics[(d * PER_DAY + i) % len(topics)].format(k=100 + (7 * i + 13 * d) % 50)
            traces.append(_trace(at, request, polite, version=2 if (drop and late) else 1, model=model))
    report = write_traces(traces, experiment_id=tracking.experiment_id(app))
    assert report.failed == 0, report.note


def _backdated_alias_move(name: str, at_ms: int) -> None:
    """An alias move recorded as ``move_alias`` records it (one tag per move), at a past time:
    the registry has no way to move an alias in the past, and the series is 20 days old."""
    from llmops_magics.core.registry.history import TAG_PREFIX

    at = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc).isoformat()
    value = {"alias": "champion", "from": 1, "to": 2, "user": "alice", "at": at}
    tracking.client().set_registered_model_tag(name, f"{TAG_PREFIX}{at_ms:013d}.a1b2c3", json.dumps(value))


@pytest.fixture(scope="module")
def series():
    """The apps, written once for the module: name -> what was planted."""
    from llmops_magics.core.registry.aliases import move_alias
    from llmops_magics.core.registry.models import register_model

    stamp = f"{os.getpid()}-{int(time.time())}"
    apps = {kind: f"watch-{kind}-{stamp}" for kind in ("drop", "stable", "shift", "canary")}
    model = f"watchchat{os.getpid()}"
    register_model(model, "default", message="first")
    register_model(model, "default", params=["note=second"], message="second")
    move_alias("model", model, "champion", 1)
    _play(apps["drop"], drop=True, model=model)
    _backdated_alias_move(model, _day0_ms() + DROP_DAY * DAY_MS + 60_000)
    _play(apps["stable"], model="steady")  # a name never registered: no alias history, silently
    _play(apps["shift"], shift=True, model=model)
    now = int(time.time() * 1000)
    canary = [
        _trace(
            now - 36 * 3_600_000 + i * 300_000,
            REFUNDS[i % len(REFUNDS)].format(k=i),
            (i // 2 % 10 != 0) if i % 2 == 0 else (i // 2 % 10 < 6),  # 0.9 vs 0.6
            # "arm": the same groups under values where the worse one sorts first (and a metric-unsafe name)
            tags={"variant": "control" if i % 2 == 0 else "v2", "arm": "b" if i % 2 == 0 else "a (beta)!"},
            model=model,
        )
        for i in range(400)
    ]
    assert write_traces(canary, experiment_id=tracking.experiment_id(apps["canary"])).failed == 0
    return {"apps": apps, "model": model}


def _day(d: int) -> str:
    return datetime.fromtimestamp((_day0_ms() + d * DAY_MS) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


# ------------------------------------------------------------------ decay


def test_a_drop_on_day_12_is_flagged_there_and_names_the_model_version_change(series):
    model = series["model"]
    result = watch(
        series["apps"]["drop"], scorers=[is_polite], since="21d", by="day", drift=False, log=False, alpha=0.01
    )
    if result.writer is not None:
        assert result.writer.wait(120), result.writer_status
    assert result.counts["traces"] == DAYS * PER_DAY
    scorer_flags = [f for f in result.flags if f.scorer == "is_polite"]
    flagged_days = sorted(f.bucket for f in scorer_flags)
    assert flagged_days[0] == _day(DROP_DAY), flagged_days  # on day 12, not before
    assert set(flagged_days) <= {_day(d) for d in range(DROP_DAY, DAYS)}
    first = scorer_flags[0]
    assert first.bucket == _day(DROP_DAY) and first.diff < -0.25
    assert "99% CI" in first.line() and "95% CI" not in first.line()  # the level asked for, not a fixed 95%
    said = [c.text for c in first.changes]
    assert any(f"{model}/1 -> {model}/2" in t and c.kind == "model version" for t, c in zip(said, first.changes)), said
    assert any(c.kind == "alias move" and "champion 1 -> 2" in c.text for c in first.changes), said
    assert result.dropped and result.line().startswith("FLAGGED")
    # the baseline is the leading third of the traffic; every bucket before the drop is within it or unflagged
    rows = {r["bucket"]: r for r in result.measure("is_polite")}
    assert abs(rows[_day(3)]["estimate"] - 0.9) < 1e-9 and abs(rows[_day(15)]["estimate"] - 0.5) < 1e-9
    assert rows[_day(15)]["ci_low"] < 0.5 < rows[_day(15)]["ci_high"]
    frame = result.to_pandas()
    assert set(frame["measure"]) >= {"is_polite", "requests", "latency s"}


def test_a_stable_series_of_the_same_size_gives_no_flag(series):
    result = watch(series["apps"]["stable"], scorers=[is_polite], since="21d", drift=False, log=False)
    if result.writer is not None:  # the next test reads these scores back from MLflow
        assert result.writer.wait(120), result.writer_status
    assert result.counts["traces"] == DAYS * PER_DAY
    assert result.flags == [] and not result.dropped and result.judged
    assert result.line().startswith("OK · ")
    assert result.changes == []  # one version of an unregistered model served throughout: nothing moved


def test_a_second_watch_reuses_the_scores_and_makes_no_scorer_call(series):
    app = series["apps"]["stable"]
    first = watch(app, scorers=[is_polite], since="21d", drift=False, log=False)
    if first.writer is not None:
        assert first.writer.wait(120), first.writer_status
    again = watch(app, scorers=[is_polite], since="21d", drift=False, log=False)
    assert again.counts["scorer_calls"] == 0 and again.counts["scores_reused"] == DAYS * PER_DAY
    assert again.counts["spans_read"] == 0, (first.counts, first.warnings, again.counts, again.warnings)


def test_a_stable_series_gives_no_flag_with_input_drift_on(series):
    # half the traces, sampled (the scores are reused from the tests above): the embedder's time stays small
    result = watch(series["apps"]["stable"], scorers=[is_polite], since="21d", n=400, sample_seed=1, log=False)
    assert result.counts["traces"] == 400
    assert len([r for r in result.measure(INPUT_DRIFT) if r["n"]]) >= DAYS - 8  # measured on each tested day
    assert result.flags == [] and not result.dropped and result.judged
    assert result.line().startswith("OK · ")


def test_a_topic_shift_with_unchanged_scores_is_input_drift(series):
    result = watch(series["apps"]["shift"], scorers=[is_polite], since="21d", log=False)
    assert not [f for f in result.flags if f.scorer == "is_polite"]
    drift = [f for f in result.flags if f.scorer == INPUT_DRIFT]
    assert drift, result.measure(INPUT_DRIFT)
    assert min(f.bucket for f in drift) == _day(DROP_DAY)
    assert drift[0].estimate > 0.5 and drift[0].examples
    assert any(w in drift[0].examples[0].lower() for w in ("recipe", "roast", "soup", "pasta"))
    assert not result.dropped  # news, not a drop: a scheduled job does not fail on it
    assert result.line().startswith("DRIFT · ")
    bundle = result._repr_mimebundle_()
    # the examples are shown under the drift flag, in both views, and the header is not "flagged red"
    assert f'e.g. "{drift[0].examples[0]}"' in bundle["text/plain"]
    assert drift[0].examples[0] in bundle["text/html"] and "color:#9a6700" in bundle["text/html"]


# ------------------------------------------------------------------ canary


def test_a_canary_at_0_6_against_0_9_is_worse(series):
    result = watch(
        series["apps"]["canary"], scorers=[is_polite], split="tags.variant", canary="v2", since="2d", log=False
    )
    (check,) = result.canary
    assert (check.control, check.canary) == ("control", "v2")
    assert (check.n_control, check.n_canary) == (200, 200)
    assert check.verdict == "worse", check.reason
    assert result.dropped and not [f for f in result.flags if f.scorer != INPUT_DRIFT]
    # a worse canary is named first, even when a bucket's input drift is flagged too
    assert result.line().startswith("WORSE · ") and "canary v2 worse than control" in result.line()


def test_without_canary_the_worse_of_equal_groups_is_a_drop_even_as_the_control(series):
    # "a (beta)!" is the 0.6 group; equal sizes put it first by name, as the control
    result = watch(series["apps"]["canary"], scorers=[is_polite], split="tags.arm", since="2d", drift=False)
    (check,) = result.canary
    assert (check.control, check.verdict) == ("a (beta)!", "better"), check.reason
    assert result.dropped
    assert result.line().startswith("WORSE · ") and "a (beta)! worse than b on is_polite" in result.line()
    # the split value makes a metric key MLflow accepts: the run was logged, with its canary diff
    assert result.run_id, result.warnings
    metrics = tracking.client().get_run(result.run_id).data.metrics
    assert metrics["canary_diff.is_polite.b"] > 0.2


def test_nothing_tested_is_not_ok(series):
    # --since 1d --by day: yesterday's traces are the only bucket with traffic, so all baseline
    one = watch(series["apps"]["stable"], scorers=[is_polite], since="1d", by="day", drift=False, log=False)
    assert not one.judged and not one.flags and not one.dropped
    assert one.line().startswith("CANNOT JUDGE · ") and "every trace is in the baseline" in one.line()
    assert "give --baseline 14d or a longer --since / a smaller --by" in one.line()
    # --baseline 14d before a window whose traffic started within it: no baseline traces
    none = watch(series["apps"]["canary"], scorers=[is_polite], since="2d", baseline="14d", drift=False, log=False)
    assert not none.judged and "no traces in the baseline" in none.line()


def test_the_filter_logged_as_a_param_is_redacted():
    from llmops_magics.core.watch.spec import validate

    secret = "sk-proj-" + "A1b2C3d4" * 4
    spec = validate("some-app", scorers=[is_polite], filter=f"tags.key = '{secret}'")
    assert spec.filter.endswith(f"'{secret}'")  # the search itself uses the filter as given
    assert secret not in spec.params()["filter"] and "[REDACTED]" in spec.params()["filter"]


def test_canary_without_split_is_refused_before_any_read():
    from llmops_magics.errors import BadInput

    with pytest.raises(BadInput, match="canary"):
        watch("no-such-app", scorers=[is_polite], canary="v2")


# ------------------------------------------------------------------ changes (pure)


def _obs(at_ms: int, **served) -> Observation:
    return Observation("tr-x", at_ms, None, None, None, 10, None, None, None, served=served)


def test_served_changes_start_from_the_first_value_and_a_digest_moves_with_its_version():
    items = [
        _obs(1000, model="chat/1", model_name="chat", model_digest="a" * 64),
        _obs(2000, model="chat/1", model_name="chat", model_digest="a" * 64),
        _obs(3000, model="chat/2", model_name="chat", model_digest="b" * 64),
        _obs(4000, model="chat/1", model_name="chat", model_digest="a" * 64),  # canary traffic: nothing new
        _obs(5000, model="chat/2", model_name="chat", model_digest="c" * 64),  # the base moved under version 2
    ]
    changes = served_changes(items)
    assert [(c.at_ms, c.kind) for c in changes] == [(3000, "model version"), (5000, "model digest")]
    assert "chat/1 -> chat/2" in changes[0].text


def test_explain_names_changes_from_the_previous_bucket_to_the_flagged_one_newest_first():
    bkts = buckets(0, 4 * DAY_MS, "day")
    at = [Change(t, "model version", "model chat", f"c{t}", "traces") for t in (10, DAY_MS + 5, 2 * DAY_MS + 5)]
    assert [c.at_ms for c in explain(2, bkts, at)] == [2 * DAY_MS + 5, DAY_MS + 5]
    assert explain(3, bkts, at[:1]) == ()


# ------------------------------------------------------------------ the doors


SCORER_MODULE = """
from mlflow.genai.scorers import scorer


@scorer
def is_polite(outputs) -> bool:
    return "thank you" in str(outputs).lower()
"""


def _cli(tmp_path, *args):
    (tmp_path / "watchscorers.py").write_text(textwrap.dedent(SCORER_MODULE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", "watch", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_cli_exits_0_stable_1_flagged_2_bad_usage_one_line_each(series, tmp_path):
    apps = series["apps"]
    common = ["--scorer", "watchscorers:is_polite", "--since", "21d", "--no-drift", "--no-log"]
    stable = _cli(tmp_path, apps["stable"], *common)
    assert stable.returncode == 0, stable.stderr[-2000:]
    assert len(stable.stdout.strip().splitlines()) == 1 and stable.stdout.startswith("OK")
    flagged = _cli(tmp_path, apps["drop"], *common)
    assert flagged.returncode == 1, flagged.stderr[-2000:]
    assert len(flagged.stdout.strip().splitlines()) == 1 and flagged.stdout.startswith("FLAGGED")
    assert _day(DROP_DAY) in flagged.stdout
    nothing = _cli(tmp_path, apps["stable"], "--scorer", "watchscorers:is_polite", "--since", "1d", "--no-log")
    assert nothing.returncode == 2, nothing.stderr[-2000:]
    assert nothing.stdout.startswith("CANNOT JUDGE") and len(nothing.stdout.strip().splitlines()) == 1
    for bad in (["--since", "yesterday"], ["--scorer", "watchscorers:no_such_scorer"]):
        out = _cli(tmp_path, apps["stable"], "--scorer", "watchscorers:is_polite", *bad)
        assert out.returncode == 2, (bad, out.stdout, out.stderr[-2000:])
        assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr


def test_a_cli_usage_error_is_one_line_naming_the_subcommand(capsys):
    from llmops_magics.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["watch", "some-app", "--bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: unrecognized arguments: --bogus (llmops-magics watch --help)\n"
    with pytest.raises(SystemExit):
        main(["watch"])
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the following arguments are required: experiment (llmops-magics watch --help)"
    ]


def test_the_magic_binds_watch_and_logs_a_run_with_the_plot(series, shell):
    shell.ip.user_ns["is_polite"] = is_polite
    app = series["apps"]["drop"]
    shell.run_line_magic("llm_watch", f"{app} --scorer is_polite --since 21d --by day --no-drift")
    result = shell.ip.user_ns["_watch"]
    assert result.flags and result.run_id
    page = tracking.read_artifact(result.run_id, PLOT_FILE)
    assert page and "plotly" in page and "is_polite" in page
    assert tracking.read_artifact(result.run_id, "watch.json")
    run = tracking.client().get_run(result.run_id)
    assert run.data.params["by"] == "day" and run.data.tags["llmops.kind"] == "watch"
    history = tracking.client().get_metric_history(result.run_id, "is_polite")
    assert len(history) == DAYS and {m.timestamp for m in history} >= {_day0_ms() + DROP_DAY * DAY_MS}
    bundle = result._repr_mimebundle_()
    assert "FLAGGED" in bundle["text/plain"] and "<table" in bundle["text/html"]
    assert "95% CI" in bundle["text/plain"]
    plot = result.plot()
    assert plot.figure.data and "application/vnd.plotly.v1+json" in plot._repr_mimebundle_()
    titles = [a.text for a in plot.figure.layout.annotations]
    assert any(t.startswith("tokens per request") for t in titles) and any(t.startswith("latency") for t in titles)
    # each change is a line through every panel (paper y from 0 to 1), its hover on a marker at y = 0
    lines = [sh for sh in plot.figure.layout.shapes if sh.yref == "paper" and sh.y0 == 0 and sh.y1 == 1]
    assert len(lines) == len(result.changes) >= 2
    (marks,) = [t for t in plot.figure.data if t.name == "changes"]
    assert list(marks.y) == [0] * len(result.changes) and "model version" in " ".join(marks.hovertext)


def test_the_magic_refuses_an_unknown_scorer_in_one_line(shell):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no variable named 'nope'"):
        shell.run_line_magic("llm_watch", "some-app --scorer nope")
