"""Reading an app's traces for ``%llm_watch``: the window, the sample, the facts cache.

A real sqlite store: the test plays the app over a few backdated hours, with our own
``write_traces`` (100 traces per call) and with MLflow's ``start_span_no_context`` as an
app traced with MLflow would. No mocks: a second read proves it read no spans by the
count the reader reports and by the facts file it leaves.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest

from llmops_magics import config
from llmops_magics.core.tracking import experiment_id, trace_read
from llmops_magics.core.tracking import trace_write as tw
from llmops_magics.core.vectors import embedders
from llmops_magics.core.watch import facts, observe
from llmops_magics.errors import BadInput

os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"  # the app's traces land before we read

MINUTE_MS = 60_000
N_OURS = 60
TEXT_FIELDS = dict(request=None, response=None, scorer_inputs=None)


def _ours(i: int, start_ms: int, **extra) -> tw.GenerationTrace:
    version = 1 if i < N_OURS // 2 else 2
    attrs = tw.generation_attributes(
        model=f"chat/{version}",
        model_ref="chat@champion",
        model_version=version,
        model_digest=f"sha-{version}",
        prompt="summarize",
        prompt_version=3,
        prompt_digest="p3",
        prompt_tokens=10 + i,
        completion_tokens=5,
    )
    return tw.GenerationTrace(
        name="chat",
        messages=[{"role": "system", "content": "be kind"}, {"role": "user", "content": f"question {i}"}],
        response=f"answer {i}",
        attributes=attrs,
        start_ns=start_ms * 1_000_000,
        end_ns=(start_ms + 400) * 1_000_000,
        tags={"variant": "canary" if i % 5 == 0 else "control", tw.CASE_TAG: i},
        **extra,
    )


def _app_span(exp: str, inputs, outputs, start_ms: int, tags=None) -> str:
    span = mlflow.start_span_no_context(
        "answer", inputs=inputs, experiment_id=exp, tags=tags, start_time_ns=start_ms * 10**6
    )
    span.set_outputs(outputs)
    span.end(end_time_ns=(start_ms + 250) * 10**6)
    return span.trace_id


@pytest.fixture(scope="module")
def app():
    """An app's afternoon: 60 traces of ours a minute apart, three traced by the app
    itself (one of no chat shape), one just before the window and one at its end."""
    cfg = config.settings()
    exp_name = f"watch-read-{time.time_ns()}"
    exp = experiment_id(exp_name, cfg)
    start = (int(time.time() * 1000) - 2 * 86_400_000) // MINUTE_MS * MINUTE_MS
    end = start + 100 * MINUTE_MS
    report = tw.write_traces([_ours(i, start + i * MINUTE_MS) for i in range(N_OURS)], experiment_id=exp, cfg=cfg)
    assert report.written == N_OURS, report.note
    outside = tw.write_traces([_ours(0, start - 1), _ours(0, end)], experiment_id=exp, cfg=cfg)
    mlflow.set_tracking_uri(cfg.resolved_tracking_uri)
    app_ids = {
        "email": _app_span(
            exp,
            {"messages": [{"role": "user", "content": "Refund for jane@example.com?"}]},
            {"choices": [{"message": {"role": "assistant", "content": "Mailed jane@example.com today"}}]},
            start + 70 * MINUTE_MS,
            tags={"variant": "control"},
        ),
        "question": _app_span(exp, {"question": "Where is my parcel?"}, "On its way.", start + 71 * MINUTE_MS),
        "vectors": _app_span(exp, {"vectors": [1, 2]}, "x", start + 72 * MINUTE_MS),
    }
    return {
        "name": exp_name,
        "id": exp,
        "start": start,
        "end": end,
        "ours": report.trace_ids,
        "outside": outside.trace_ids,
        **app_ids,
    }


def _read(app, **kw):
    return observe.read_window(app["name"], start_ms=app["start"], end_ms=app["end"], cfg=config.settings(), **kw)


def _without_text(items):
    return [dataclasses.replace(o, **TEXT_FIELDS) for o in items]


def test_the_window_is_read_oldest_first_with_what_served_each_trace(app):
    obs = _read(app, need_text=lambda t: True)
    ids = [o.trace_id for o in obs.items]
    # [start, end): a trace a millisecond before the start and one at the end are not in it.
    assert not set(app["outside"]) & set(ids)
    assert ids == app["ours"] + [app["email"], app["question"]], "oldest first, the unreadable one left out"
    assert [o.time_ms for o in obs.items] == sorted(o.time_ms for o in obs.items)
    assert obs.items[0].time_ms == app["start"], "a trace at the very start is in the window"
    assert obs.skipped == 1 and f"first trace id {app['vectors']}" in obs.notes[0]
    first, last = obs.items[0], obs.items[N_OURS - 1]
    assert first.served == {
        "model": "chat/1",
        "model_ref": "chat@champion",
        "model_name": "chat",
        "model_version": "1",
        "model_digest": "sha-1",
        "prompt": "summarize",
        "prompt_version": "3",
        "prompt_digest": "p3",
    }
    assert last.served["model_version"] == "2" and last.served["model"] == "chat/2"
    assert (first.prompt_tokens, first.completion_tokens, first.latency_s) == (10, 5, pytest.approx(0.4))
    assert first.request == "question 0" and first.response == "answer 0" and first.request_chars == 10
    app_trace = obs.items[N_OURS]
    assert app_trace.served == {} and app_trace.latency_s == pytest.approx(0.25)
    # --split: tags, metadata and our attributes, exact or by bare key.
    assert observe.split_value(first, "tags.variant") == "canary"
    assert observe.split_value(obs.items[1], "variant") == "control"
    assert observe.split_value(last, "attributes.llmops.model_version") == "2"
    assert observe.split_value(last, "llmops.model_version") == "2"
    assert observe.split_value(app_trace, "metadata.mlflow.trace_schema.version") == "3"
    assert observe.split_value(obs.items[-1], "variant") is None
    assert observe.split_value(first, "metadata.variant") is None
    # MLflow's metadata previews the request text: never a split key (it is not redacted).
    assert not any(k.startswith("metadata.mlflow.traceInputs") for o in obs.items for k in o.keys)


def test_requests_and_responses_are_redacted_before_anything_sees_them(app):
    config.configure(redact_text="privacy_hooks:scrub")
    obs = _read(app, need_text=lambda t: t == app["email"])
    (o,) = [o for o in obs.items if o.trace_id == app["email"]]
    assert o.request == "Refund for <email>?" and o.response == "Mailed <email> today"
    assert o.request_chars == len("Refund for <email>?") and o.scorer_inputs == "Refund for <email>?"
    assert "jane@example.com" not in repr(o)
    # The facts file keeps numbers and names, never text.
    raw = b"".join(p.read_bytes() for p in (config.settings().home / "watch").glob("facts.sqlite*"))
    assert b"jane@example.com" not in raw and b"Refund for" not in raw and b"question 0" not in raw


def test_n_keeps_a_reproducible_sample_in_time_order(app):
    everything = [o.trace_id for o in _read(app).items]
    a, b = _read(app, n=12, sample_seed=3), _read(app, n=12, sample_seed=3)
    ids = [o.trace_id for o in a.items]
    assert ids == [o.trace_id for o in b.items] and len(set(ids)) == 12
    assert set(ids) <= set(everything) and ids == [t for t in everything if t in set(ids)]
    assert ids != [o.trace_id for o in _read(app, n=12, sample_seed=4).items]
    with pytest.raises(BadInput, match="--n 0"):
        _read(app, n=0)


def test_a_second_read_comes_from_the_facts_cache_and_reads_no_spans(app):
    first = _read(app, need_text=lambda t: True)
    again = _read(app)
    assert again.spans_read == 0, "everything was cached by the first read"
    assert _without_text(again.items) == _without_text(first.items)
    assert all(o.request is None and o.scorer_inputs is None for o in again.items)
    assert again.skipped == first.skipped == 1, "an unreadable trace is remembered too"
    # The scorers still need two of them: only those two are read, with their text.
    wanted = {app["ours"][3], app["question"]}
    some = _read(app, need_text=lambda t: t in wanted)
    assert some.spans_read == 2
    assert {o.trace_id for o in some.items if o.request is not None} == wanted
    assert next(o for o in some.items if o.trace_id == app["question"]).scorer_inputs == {
        "question": "Where is my parcel?"
    }


def test_assessments_come_with_the_infos(app):
    target = app["ours"][7]
    mlflow.set_tracking_uri(config.settings().resolved_tracking_uri)
    mlflow.log_feedback(trace_id=target, name="is_polite", value=True)
    (o,) = [o for o in _read(app).items if o.trace_id == target]
    assert [(a.name, a.value) for a in o.assessments] == [("is_polite", True)]


def test_a_corrupt_facts_file_is_moved_aside_and_rebuilt(app):
    _read(app)
    path = config.settings().home / "watch" / facts.FILE
    for p in path.parent.glob("facts.sqlite-*"):  # the write-ahead log would survive otherwise
        p.unlink()
    path.write_bytes(b"this is not a database" * 200)
    obs = _read(app)
    assert obs.spans_read == N_OURS + 3, "nothing cached any more: every trace read again"
    (note,) = [n for n in obs.notes if "facts cache" in n]
    assert "moved aside" in note and "rebuilt" in note
    assert list(path.parent.glob("facts.sqlite.corrupt-*"))
    assert _read(app).spans_read == 0, "the rebuilt file caches again"


def test_two_processes_write_the_same_facts_file(tmp_path):
    path = tmp_path / "facts.sqlite"
    script = (
        "import sys; from llmops_magics.core.watch.facts import FactsCache\n"
        f"c = FactsCache({str(path)!r})\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "for i in range(300): c.put_facts('s', [(f'b{i}-{j}', {'n': j}) for j in range(20)])\n"
        "assert not c.notes, c.notes\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cache = facts.FactsCache(path)
    assert other.stdout.readline().strip() == "ready"
    other.stdin.write("go\n")
    other.stdin.flush()  # both write from here on, at the same time
    for i in range(300):
        cache.put_facts("s", [(f"a{i}-{j}", {"n": j}) for j in range(20)])
    assert other.wait(timeout=120) == 0
    assert not cache.notes, "no write was dropped as busy"
    ids = [f"{p}{i}-{j}" for p in "ab" for i in range(300) for j in range(20)]
    assert len(cache.facts("s", ids)) == 12_000
    cache.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_embeddings_are_cached_per_trace_and_embedder(app, monkeypatch):
    cfg = config.settings()
    items = _read(app, need_text=lambda t: True).items
    vectors = observe.embeddings(items, cfg=cfg)
    assert vectors.shape == (len(items), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    spec = embedders.get_embedder(None, cfg=cfg).spec
    direct = embedders.get_embedder(None, cfg=cfg).embed(["question 5"])[0]
    assert float(vectors[5] @ direct) == pytest.approx(1.0, abs=1e-5), "the request text is what is embedded"
    with facts.open_cache(cfg) as cache:
        kept = cache.vectors(facts.store_key(cfg), spec.digest, [o.trace_id for o in items])
    assert set(kept) == {o.trace_id for o in items}
    # From the cache, with no text in memory: the embedder is not loaded again.
    monkeypatch.setattr(embedders, "_loaded", {})
    cached = _read(app).items
    assert all(o.request is None for o in cached)
    assert np.array_equal(observe.embeddings(cached, cfg=cfg), vectors)
    assert embedders._loaded == {}, "every vector came from the facts cache"


def test_a_bad_filter_or_experiment_is_one_line():
    cfg = config.settings()
    with pytest.raises(BadInput, match="no MLflow experiment named 'no-such-app'"):
        observe.read_window("no-such-app", start_ms=0, cfg=cfg)
    name = f"watch-empty-{time.time_ns()}"
    experiment_id(name, cfg)
    with pytest.raises(BadInput, match="--filter .* is not a trace filter MLflow accepts"):
        observe.read_window(name, start_ms=0, filter_string="tags.route === 'x'", cfg=cfg)
    assert observe.read_window(name, start_ms=0, cfg=cfg).items == ()
    assert list(trace_read.fetch_spans(["tr-" + "0" * 31 + "1"], cfg=cfg)) == [], "a trace that is gone is left out"
