"""Cases from what production did: MLflow traces, evaluation datasets, earlier runs.

The test plays an app that traces with MLflow (``@mlflow.trace``, ``mlflow.start_span``,
OpenAI-shaped autolog spans) into a real sqlite store, then reads its history back.
No model answers here: the whole shadow run on real vLLM is in test_shadow_production.py.
"""

from __future__ import annotations

import os
import time

import mlflow
import pytest

from llmops_magics import config
from llmops_magics.core.evidence import shapes
from llmops_magics.core.evidence.datasets import from_dataset
from llmops_magics.core.evidence.traces import from_traces, since_ms
from llmops_magics.core.shadow import validate
from llmops_magics.errors import BadInput, ConfigError

os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"  # the app's traces land before we read


def test_request_shapes_autologging_and_our_users_write_are_read():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert shapes.chat_request({"messages": msgs, "model": "gpt", "temperature": 0.7}) == tuple(msgs)
    assert shapes.chat_request(msgs) == tuple(msgs)
    assert shapes.chat_request({"prompt": "hi"}) == ({"role": "user", "content": "hi"},)
    assert shapes.chat_request({"question": "hi"}) == ({"role": "user", "content": "hi"},)
    assert shapes.chat_request("hi") == ({"role": "user", "content": "hi"},)
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert shapes.chat_request({"messages": parts}) == ({"role": "user", "content": "ab"},)
    # Not guessed at: two arguments, an image part, numbers, no user turn.
    assert shapes.chat_request({"question": "hi", "k": "3"}) is None
    assert shapes.chat_request([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]) is None
    assert shapes.chat_request({"x": 3}) is None
    assert shapes.chat_request([{"role": "system", "content": "only"}]) is None

    completion = {"choices": [{"message": {"role": "assistant", "content": "yes"}}], "usage": {"prompt_tokens": 3}}
    assert shapes.chat_response(completion) == "yes"
    assert shapes.chat_response("yes") == "yes"
    assert [shapes.chat_response({k: "yes"}) for k in ("content", "text", "answer")] == ["yes"] * 3
    assert shapes.chat_response({"result": 1}) is None and shapes.chat_response(None) is None
    assert shapes.usage(completion) == (3, 0)
    assert shapes.sampling({"messages": msgs, "temperature": 0.7, "max_tokens": 9}) == {
        "temperature": 0.7,
        "max_tokens": 9,
    }


def test_since_reads_durations_and_refuses_anything_else():
    assert since_ms("7d", now=1_000_000) == (1_000_000 - 7 * 86400) * 1000
    assert since_ms("30m", now=10_000) == (10_000 - 1800) * 1000
    assert since_ms(None) is None
    with pytest.raises(BadInput, match="--since 'last week' is not a duration"):
        since_ms("last week")


def _app_experiment(name: str) -> str:
    mlflow.set_tracking_uri(config.settings().resolved_tracking_uri)
    return mlflow.set_experiment(name).experiment_id


def _span(exp: str, name: str, inputs, outputs, *, tags=None, start_ns=None):
    span = mlflow.start_span_no_context(name, inputs=inputs, experiment_id=exp, tags=tags, start_time_ns=start_ns)
    span.set_outputs(outputs)
    span.end(end_time_ns=(start_ns + 250_000_000) if start_ns else None)
    return span.trace_id


@pytest.fixture
def app_traces():
    """An app's week: chat traces of every supported shape, a few of none, two routes."""
    exp = _app_experiment(f"support-app-{time.time_ns()}")
    now_ns = time.time_ns()
    ids = {}
    completion = lambda text: {"choices": [{"message": {"role": "assistant", "content": text}}]}  # noqa: E731
    old = now_ns - 10 * 86400 * 10**9  # ten days ago: outside --since 7d
    ids["old"] = _span(exp, "chat", {"messages": [{"role": "user", "content": "old question"}]}, "old", start_ns=old)
    shapes_in = [
        ({"messages": [{"role": "user", "content": "Refund for jane@example.com?"}], "temperature": 0.0}, "Sure."),
        ({"prompt": "Where is my parcel?"}, {"answer": "On its way."}),
        ({"question": "Can I return shoes?"}, completion("Yes, within 30 days.")),
        ("plain text request", {"content": "plain answer"}),
    ]
    for i, (inputs, outputs) in enumerate(shapes_in):
        ids[f"ok{i}"] = _span(exp, "chat", inputs, outputs, tags={"route": "refunds"}, start_ns=now_ns + i * 10**6)
    ids["no_request"] = _span(exp, "embed", {"vectors": [1, 2]}, "x", tags={"route": "refunds"})
    ids["no_answer"] = _span(exp, "chat", {"prompt": "silent"}, {"result": 42}, tags={"route": "refunds"})
    ids["other_route"] = _span(exp, "chat", {"prompt": "billing?"}, "billing", tags={"route": "billing"})
    return exp, ids


def test_from_traces_finds_every_supported_trace_and_counts_the_rest(app_traces):
    exp, ids = app_traces
    cfg = config.settings()
    ev = from_traces(exp, filter_string="tags.route = 'refunds'", need_answers=True, cfg=cfg)
    got = [item["trace_id"] for item in ev.items]
    assert got == [ids[f"ok{i}"] for i in range(4)], "oldest first, only the readable ones"
    assert [a.text for a in ev.answers] == ["Sure.", "On its way.", "Yes, within 30 days.", "plain answer"]
    assert ev.items[2]["messages"] == [{"role": "user", "content": "Can I return shoes?"}]
    assert ev.answers[0].latency_s == pytest.approx(0.25, abs=0.01)
    notes = " | ".join(ev.notes)
    assert f"skipped 1 traces with no chat request: first trace id {ids['no_request']}" in notes
    assert f"skipped 1 traces with no readable response: first trace id {ids['no_answer']}" in notes
    # Without --primary recorded an answer is not needed: the silent trace is a case too.
    ev2 = from_traces(exp, filter_string="tags.route = 'refunds'", cfg=cfg)
    assert ids["no_answer"] in [i["trace_id"] for i in ev2.items] and ev2.answers is None
    # --since drops the old one; no filter brings the other route back.
    ev3 = from_traces(exp, since="7d", cfg=cfg)
    got3 = {i["trace_id"] for i in ev3.items}
    assert ids["old"] not in got3 and ids["other_route"] in got3
    assert ids["old"] in {i["trace_id"] for i in from_traces(exp, cfg=cfg).items}


def test_traces_are_redacted_before_anything_sees_them(app_traces, monkeypatch):
    exp, ids = app_traces
    config.configure(redact_text="privacy_hooks:scrub")
    ev = from_traces(exp, filter_string="tags.route = 'refunds'", need_answers=True, cfg=config.settings())
    assert ev.items[0]["messages"][0]["content"] == "Refund for <email>?"
    assert "jane@example.com" not in repr(ev)
    config.configure(redact_text="privacy_hooks:nothing_here")
    with pytest.raises(ConfigError, match="redact_text 'privacy_hooks:nothing_here' cannot be loaded"):
        from_traces(exp, cfg=config.settings())


def test_bad_trace_sources_are_one_line_each(app_traces):
    exp, _ = app_traces
    cfg = config.settings()
    with pytest.raises(BadInput, match="no MLflow experiment named 'no-such-app'"):
        from_traces("no-such-app", cfg=cfg)
    with pytest.raises(BadInput, match=r"--filter 'tags.route = ' is not a trace filter MLflow accepts"):
        from_traces(exp, filter_string="tags.route = ", cfg=cfg)
    with pytest.raises(BadInput, match="no usable traces in experiment .* matching \"tags.route = 'nowhere'\""):
        from_traces(exp, filter_string="tags.route = 'nowhere'", cfg=cfg)
    with pytest.raises(BadInput, match="--primary recorded needs recorded answers"):
        validate(None, primary="recorded", candidate="default")
    with pytest.raises(BadInput, match="--from-traces and --baseline both give the cases"):
        validate(None, primary="recorded", candidate="default", from_traces=exp, baseline="r1")
    with pytest.raises(BadInput, match="--filter and --since select traces"):
        validate(["hi"], primary="default", candidate="default", since="7d")
    with pytest.raises(BadInput, match="replays whole recorded requests: drop --prompt"):
        validate(None, primary="recorded", candidate="default", from_traces=exp, prompt="summarize")
    with pytest.raises(BadInput, match="drop --primary default"):
        validate(None, primary="default", candidate="default", baseline="r1")


def test_from_dataset_fills_the_request_and_keeps_expectations():
    from mlflow.genai.datasets import create_dataset

    mlflow.set_tracking_uri(config.settings().resolved_tracking_uri)
    name = f"refunds-golden-{time.time_ns()}"
    ds = create_dataset(name=name)
    ds.merge_records(
        [
            {"inputs": {"question": "Can I get a refund?"}, "expectations": {"expected_response": "Yes"}},
            {"inputs": {"question": "Is shipping free?"}, "expectations": {"expected_response": "Over 50 EUR"}},
        ]
    )
    ev = from_dataset(name, has_prompt=False, cfg=config.settings())
    questions = sorted(i["messages"][0]["content"] for i in ev.items)
    assert questions == ["Can I get a refund?", "Is shipping free?"]
    by_q = {i["messages"][0]["content"]: e for i, e in zip(ev.items, ev.expectations)}
    assert by_q["Can I get a refund?"] == {"expected_response": "Yes"}
    assert all(isinstance(x, dict) and "question" in x for x in ev.scorer_inputs)
    # With a prompt the inputs are its variables, as they are.
    assert sorted(i["question"] for i in from_dataset(name, has_prompt=True, cfg=config.settings()).items) == questions
    with pytest.raises(BadInput, match="no MLflow evaluation dataset named 'nope'"):
        from_dataset("nope", has_prompt=False, cfg=config.settings())
    odd = f"odd-{time.time_ns()}"
    create_dataset(name=odd).merge_records([{"inputs": {"topic": "x"}}])
    with pytest.raises(BadInput, match="has no messages, question or prompt input \\(it has topic\\)"):
        from_dataset(odd, has_prompt=False, cfg=config.settings())


def test_from_traces_reads_a_real_server_and_a_frozen_one_fails_in_bounded_time(mlflow_server):
    """The same reader against a real ``mlflow server``; a frozen server (SIGSTOP) fails
    within the MLflow budget with one line, not after MLflow's minutes of retries."""
    from llmops_magics.errors import TrackingError

    config.configure(tracking_uri=mlflow_server.uri, mlflow_timeout_s=3)
    mlflow.set_tracking_uri(mlflow_server.uri)
    name = f"server-app-{time.time_ns()}"
    exp = mlflow.set_experiment(name).experiment_id
    for i in range(3):
        _span(exp, "chat", {"prompt": f"question {i}"}, f"answer {i}")
    ev = from_traces(name, need_answers=True, cfg=config.settings())
    assert [a.text for a in ev.answers] == ["answer 0", "answer 1", "answer 2"]
    mlflow_server.freeze()
    try:
        t0 = time.monotonic()
        with pytest.raises(TrackingError, match="does not answer|did not answer"):
            from_traces(name, cfg=config.settings())
        assert time.monotonic() - t0 < 10, "bounded by the budget, not by MLflow's retries"
    finally:
        mlflow_server.thaw()


def test_a_recording_sampled_otherwise_than_the_new_side_is_said():
    from llmops_magics.backends.base import Sampling
    from llmops_magics.core.evidence.recorded import RecordedModel
    from llmops_magics.core.shadow.recorded import sampling_warning

    sampled = RecordedModel(label="app", sampling={"temperature": 0.7})
    greedy = RecordedModel(label="app", sampling={"temperature": 0})
    assert "were sampled (temperature 0.7) but the new side is greedy" in sampling_warning(sampled, Sampling())
    assert "were greedy but the new side is sampled" in sampling_warning(greedy, Sampling(temperature=0.5))
    assert sampling_warning(greedy, Sampling()) is None
    assert sampling_warning(RecordedModel(label="app"), Sampling()) is None, "unknown: nothing claimed"
