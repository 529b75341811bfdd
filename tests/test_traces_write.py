"""Generations written as MLflow traces (issue 18): many, fast, linked to their run, none lost.

Synthetic generations test the writer itself (no model needed) on the session's sqlite
store and on a real ``mlflow server``; ``%%llm``, ``shadow()`` and the behavioral adapter
check then write traces of real generations (the default model on vLLM, tiny Llamas).
"""

from __future__ import annotations

import hashlib
import math
import time

import pytest
from adapter_helpers import make_adapter, tiny_llama

import llmops_magics
from llmops_magics.core import tracking
from llmops_magics.core.tracking import trace_write as tw

MANY = 2000


def synthetic(n: int, tag: str) -> list[tw.GenerationTrace]:
    """``n`` generations as a caller builds them: distinct text, attributes, real times."""
    now = time.time_ns()
    return [
        tw.GenerationTrace(
            name="generation",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"{tag} question {i}"}],
            response=f"{tag} answer {i}",
            attributes=tw.generation_attributes(
                model="chat/3",
                model_ref="chat@champion",
                model_version=3,
                model_digest="ab" * 32,
                sampling={"max_tokens": 16, "temperature": 0.0, "seed": i},
                engine_args={"dtype": "float32"},
                serving={"backend": "vllm", "dtype": "float32", "device": "cpu"},
                prompt_tokens=10 + i % 7,
                completion_tokens=5 + i % 3,
                latency_s=0.25,
            ),
            start_ns=now - 2_000_000_000 + i * 1000,
            end_ns=now - 1_750_000_000 + i * 1000,
            tags={tw.ROLE_TAG: "primary", tw.CASE_TAG: i, "test.batch": tag},
        )
        for i in range(n)
    ]


def new_run(cfg) -> str:
    return tracking.log_run(run_name="traces test", tags={"llmops.kind": "test"}, params={}, metrics={}, cfg=cfg)


def found_by_run(run_id: str, cfg) -> list:
    import mlflow

    mlflow.set_tracking_uri(cfg.resolved_tracking_uri)
    exp = tracking.experiment_of(run_id)
    return mlflow.search_traces(locations=[exp], run_id=run_id, return_type="list", max_results=10 * MANY)


def assert_all_readable(traces: list[tw.GenerationTrace], found: list, ids: list[str]) -> None:
    """Every trace found by its run, with its request, answer, attributes, tags and times."""
    by_id = {t.info.trace_id: t for t in found}
    assert set(by_id) == set(ids), f"{len(set(ids) - set(by_id))} traces missing from the run"
    for want, trace_id in zip(traces, ids):
        got = by_id[trace_id]
        span = got.data.spans[0]
        i = int(want.tags[tw.CASE_TAG])
        assert span.span_type == "CHAT_MODEL"
        assert span.inputs == {"messages": want.messages}
        assert span.outputs["choices"][0]["message"] == {"role": "assistant", "content": want.response}
        assert span.outputs["usage"]["prompt_tokens"] == 10 + i % 7
        assert span.attributes[tw.SAMPLING]["seed"] == i
        assert span.attributes[tw.MODEL_VERSION] == "3" and span.attributes[tw.DTYPE] == "float32"
        assert got.info.tags["llmops.role"] == "primary" and got.info.tags["llmops.case"] == str(i)
        assert got.info.request_time == want.start_ns // 1_000_000
        assert got.info.execution_duration == (want.end_ns - want.start_ns) // 1_000_000
        assert got.info.token_usage["output_tokens"] == 5 + i % 3


def expected_calls(n: int) -> int:
    return 2 * math.ceil(n / tw.TRACES_PER_CALL)


def test_2000_traces_on_sqlite_are_all_found_by_their_run(monkeypatch, capfd):
    cfg = llmops_magics.settings()
    store = tracking.client(cfg).raw._tracking_client.store
    made = []
    for name in ("log_spans", "link_traces_to_run", "start_trace"):
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))

    run_id = new_run(cfg)
    traces = synthetic(MANY, "sqlite")
    capfd.readouterr()
    report = tw.write_traces(traces, run_id=run_id, cfg=cfg)
    assert capfd.readouterr() == ("", ""), "writing traces prints nothing into a cell"
    assert (report.written, report.failed, report.unlinked, report.note) == (MANY, 0, 0, None)
    assert len(made) == report.calls == expected_calls(MANY) == 40, "two calls per 100 traces, not 2 per trace"
    assert "start_trace" not in made
    assert_all_readable(traces, found_by_run(run_id, cfg), report.trace_ids)

    made.clear()
    small = tw.write_traces(synthetic(50, "small"), run_id=run_id, cfg=cfg)
    assert small.written == 50 and len(made) == 2


def test_a_missing_run_fails_every_trace_in_one_line():
    cfg = llmops_magics.settings()
    report = tw.write_traces(synthetic(5, "nowhere"), run_id="0" * 32, cfg=cfg)
    assert (report.written, report.failed, report.trace_ids) == (0, 5, [None] * 5)
    assert report.note.startswith("5 of 5 traces could not be written: ") and "\n" not in report.note


def test_2000_traces_on_a_server_in_two_requests_per_100(mlflow_server, capfd):
    """Counted on the server's access log: every HTTP request the writer made."""
    # A server just started spends its first seconds starting its job runners: its first
    # span writes took 7-11 s each here on 2 busy cores (0.5 s once warm).
    cfg = llmops_magics.configure(tracking_uri=mlflow_server.uri, mlflow_timeout_s=60)
    log = mlflow_server.root / "server.log"
    run_id = new_run(cfg)
    capfd.readouterr()

    def write(n: int, tag: str):
        offset = len(log.read_text())
        traces = synthetic(n, tag)
        report = tw.write_traces(traces, run_id=run_id, cfg=cfg)
        requests = [line for line in log.read_text()[offset:].splitlines() if 'HTTP/1.1"' in line]
        pings = sum(" /health " in line for line in requests)
        return traces, report, len(requests) - pings, pings

    write(100, "warm")  # the client asks the server's version once per process
    traces, report, calls, pings = write(MANY, "server")
    assert capfd.readouterr() == ("", ""), "writing traces prints nothing into a cell"
    # Each call has the MLflow budget of its own (10 s by default), so 2,000 traces are
    # not cut short by one command's budget; the budget pings the server before each.
    assert (report.written, report.failed, report.unlinked) == (MANY, 0, 0), report.note
    assert calls == report.calls == expected_calls(MANY) == 40, "two requests per 100 traces (MLflow's link cap)"
    assert pings <= calls
    found = [t for t in found_by_run(run_id, cfg) if t.info.tags.get("test.batch") == "server"]
    assert_all_readable(traces, found, report.trace_ids)


def test_a_silent_server_costs_one_budget_and_every_trace_is_counted(mlflow_server, capfd):
    cfg = llmops_magics.configure(tracking_uri=mlflow_server.uri, mlflow_timeout_s=4)
    run_id = new_run(cfg)
    capfd.readouterr()
    mlflow_server.freeze()
    try:
        t0 = time.monotonic()
        report = tw.write_traces(synthetic(300, "frozen"), run_id=run_id, cfg=cfg)
        took = time.monotonic() - t0
    finally:
        mlflow_server.thaw()
    assert took < 4 + 2, f"bounded by the MLflow budget, took {took:.1f} s"
    assert (report.written, report.failed, report.trace_ids) == (0, 300, [None] * 300)
    assert report.note.startswith("300 of 300 traces could not be written: MLflow at ")
    assert "\n" not in report.note
    assert capfd.readouterr() == ("", "")


# ------------------------------------------------------------------ real generations


def test_llm_cell_leaves_a_trace_of_what_produced_the_answer(shell, default_model_dir):
    """A registered version of the default model: ref, version, digests, sampling, dtype."""
    import uuid

    from llmops_magics.core.generation.digests import folder_digest

    name = f"traced-{uuid.uuid4().hex[:6]}"
    shell.run_cell(f"%llm_model register {name} --base default")
    result = shell.run_cell(f"%%llm --model {name} --max-tokens 8 --seed 3\nWhat is the capital of France?")
    assert result.run_id and len(result.trace_ids) == 1 and result.trace_ids[0]
    cfg = llmops_magics.settings()
    [trace] = found_by_run(result.run_id, cfg)
    assert trace.info.trace_id == result.trace_ids[0]
    span = trace.data.spans[0]
    a = span.attributes
    assert span.inputs == {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    assert span.outputs["choices"][0]["message"]["content"] == result.answer
    assert (a[tw.MODEL], a[tw.MODEL_REF], a[tw.MODEL_VERSION]) == (f"{name}/1", name, "1")
    assert a[tw.MODEL_DIGEST] == folder_digest(str(default_model_dir), cfg)
    assert a[tw.REGISTRY_DIGEST] == result.model.digest and len(a[tw.REGISTRY_DIGEST]) == 64
    assert a[tw.SAMPLING] == {"max_tokens": 8, "temperature": 0.0, "seed": 3, "top_p": 1.0}
    assert (a[tw.DTYPE], a[tw.DEVICE], a[tw.BACKEND]) == (result.dtype, result.device, result.backend)
    assert a[tw.ENGINE_ARGS].get("dtype") == result.dtype
    assert a[tw.COMPLETION_TOKENS] == result.completion_tokens
    assert trace.info.tags["llmops.kind"] == "generation"


def test_shadow_traces_both_sides_of_every_case_and_names_them_in_the_rows():
    from llmops_magics.core.shadow.traces import trace_records, trace_shadow

    cfg = llmops_magics.settings()
    inputs = ["Name a river.", "Name a colour.", "Name a bird."]
    result = llmops_magics.shadow(inputs, primary="default", candidate="default", max_tokens=6, log=False)
    messages = [({"role": "user", "content": text},) for text in inputs]
    # A side read from a recording keeps the trace it came with; none is written for it.
    result.rows[0]["primary_recorded"], result.rows[0]["primary_trace_id"] = True, "tr-recorded"
    assert len(trace_records(result, messages)) == 5
    run_id = new_run(cfg)
    report = trace_shadow(result, messages, run_id, cfg)
    assert (report.written, report.failed, result.warnings) == (5, 0, [])
    assert result.rows[0]["primary_trace_id"] == "tr-recorded"
    found = {t.info.trace_id: t for t in found_by_run(run_id, cfg)}
    assert len(found) == 5
    for row, text in zip(result.rows, inputs):
        for role in ("primary", "candidate"):
            if row.get(f"{role}_recorded"):
                continue
            trace = found[row[f"{role}_trace_id"]]
            span = trace.data.spans[0]
            assert span.inputs == {"messages": [{"role": "user", "content": text}]}
            assert span.outputs["choices"][0]["message"]["content"] == row[f"{role}_output"]
            assert span.attributes[tw.MODEL_DIGEST] == result.params[f"{role}_base_digest"]
            assert span.attributes[tw.SAMPLING]["max_tokens"] == 6
            assert span.attributes[tw.DTYPE] == result.serving[role]["dtype"]
            assert span.attributes[tw.COMPLETION_TOKENS] == row[f"{role}_tokens_out"]
            assert trace.info.tags["llmops.role"] == role and trace.info.tags["llmops.case"] == str(row["id"])


def test_adapter_check_generations_are_traced_and_linked_to_its_run(tmp_path, default_model_dir):
    from llmops_magics.core.adapter.behavior import behavior_check, write_behavior_traces
    from llmops_magics.core.generation.digests import adapter_digest

    old = tiny_llama(tmp_path / "old", tokenizer_from=default_model_dir)
    new = tiny_llama(tmp_path / "new", tokenizer_from=default_model_dir, seed=1)
    adapter = make_adapter(old, tmp_path / "ad")
    probes = ["Say hi.", "Count to three."]
    res = behavior_check(str(adapter), str(new), old_base_path=str(old), probes=probes, max_new_tokens=4)
    cfg = llmops_magics.settings()
    run_id = new_run(cfg)
    report = write_behavior_traces(res, run_id, cfg)
    assert (report.written, report.failed) == (4, 0)
    found = found_by_run(run_id, cfg)
    roles = sorted(t.info.tags["llmops.role"] for t in found)
    assert roles == ["old_adapter", "old_adapter", "old_base", "old_base"]
    for t in found:
        a = t.data.spans[0].attributes
        assert t.data.spans[0].inputs["messages"][0]["content"] in probes
        assert a[tw.MODEL_DIGEST] == hashlib.sha256((old / "model.safetensors").read_bytes()).hexdigest()
        assert a[tw.COMPLETION_TOKENS] == 4 and a[tw.SAMPLING]["max_tokens"] == 4
        if t.info.tags["llmops.role"] == "old_adapter":
            assert a[tw.ADAPTER_DIGEST] == adapter_digest(str(adapter), cfg)
        else:
            assert tw.ADAPTER not in a
