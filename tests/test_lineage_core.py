"""Lineage without a kernel: redaction, the spool, shipping to a real MLflow store,
OpenLineage export against the OpenLineage JSON Schemas, the %lineage magic."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from llmops_magics.core import events
from llmops_magics.core.lineage import record as lineage
from llmops_magics.core.lineage.openlineage import record_events
from llmops_magics.core.lineage.ship import EXPERIMENT, RECORDS_FILE, TABLE_FILE, ship_once
from llmops_magics.core.lineage.spool import Spool, acked_ids, pending, read_records, spool_dir
from llmops_magics.core.tracking.redact import REDACTED, redact, secret_env_values

SCHEMAS = Path(__file__).parent / "openlineage"

# Built by concatenation so this file itself holds no token-shaped strings.
PLANTED = {
    "openai": "sk-" + "proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2",
    "hf": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWx12",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "github": "ghp_" + "0123456789abcdefghijABCDEFGHIJ",
    "slack": "xoxb-" + "1234567890-abcdefghij",
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_token_shapes_are_redacted(kind):
    secret = PLANTED[kind]
    out = redact(f"client = Client(api_key='{secret}')  # {kind}")
    assert secret not in out and REDACTED in out
    assert out.startswith("client = Client(api_key='") and out.endswith(f"# {kind}")


@pytest.mark.parametrize(
    "text, secret",
    [
        ("headers = {'Authorization': 'Bearer abc.def-ghi_jkl'}", "abc.def-ghi_jkl"),
        ("db = connect(password='hunter2!x')", "hunter2!x"),
        ('url = "postgres://u@h/db?password=s3cr3t-pw"', "s3cr3t-pw"),
        ("PASSWORD: correct-horse", "correct-horse"),
    ],
)
def test_bearer_and_password_values_are_redacted(text, secret):
    out = redact(text)
    assert secret not in out and REDACTED in out


def test_ordinary_code_is_left_alone():
    text = "skip = 3\ntokens = count_tokens(x)\npassword_hint = None\nprint('task-1234567890abcdefghij')"
    assert redact(text) == text


def test_secret_looking_env_values_are_redacted_and_others_kept():
    env = {"MY_SERVICE_TOKEN": "tok-value-42", "HOME": "/root", "DB_PASSWORD": "pw", "LANG": "C.UTF-8"}
    values = secret_env_values(env)
    assert values == ["tok-value-42"]  # "pw" is too short to search for; HOME/LANG not secret
    out = redact("requests.get(url, auth=('me', 'tok-value-42')) # /root", values)
    assert "tok-value-42" not in out and "/root" in out


def test_spool_keeps_every_line_and_skips_a_torn_one(tmp_path):
    spool = Spool(tmp_path, "s1")
    for i in range(3):
        spool.append({"record_id": f"r{i}", "n": i})
    with open(spool.path, "ab") as f:
        f.write(b'{"record_id": "torn", "n"')  # power lost mid-line
    spool.close()
    assert [r["record_id"] for r in read_records(spool.path)] == ["r0", "r1", "r2"]


def test_spool_rejects_an_unknown_fsync_mode(tmp_path):
    from llmops_magics.errors import ConfigError

    with pytest.raises(ConfigError, match="'background' or 'cell'"):
        Spool(tmp_path, "s1", fsync="sometimes")


def _record(rec: lineage.LineageRecorder, source: str, count: int, error=None, evs=()):
    rec.begin_cell(source, cell_id=f"cell-{count}")
    for kind, payload in evs:
        events.emit(events.EVENTS[kind](**payload))
    return rec.end_cell(count, error)


@pytest.fixture
def recorder(tmp_path):
    rec = lineage.LineageRecorder(tmp_path, notebook="work/analysis.ipynb", ship=False)
    yield rec
    rec.close(0)


def test_recorder_captures_status_events_pins_and_redacts(recorder, tmp_path):
    pins = [
        {
            "kind": "prompt",
            "name": "summarize",
            "version": "4",
            "alias": "production",
            "alias_now": "4",
            "digest": "sha256:ab",
            "drift": False,
            "message": "",
        }
    ]
    previous = events._context.get("pins")
    events.provide_context("pins", lambda: pins)
    try:
        ok = _record(recorder, "x = 1", 1)
        bad = _record(recorder, f"key = '{PLANTED['openai']}'\n1/0", 2, ZeroDivisionError("division by zero"))
        gen = _record(
            recorder,
            "%%llm\nhi",
            3,
            evs=[
                (
                    "generation",
                    {
                        "model": "chat/2",
                        "backend": "vllm",
                        "prompt_tokens": 7,
                        "completion_tokens": 5,
                        "run_id": "0123456789abcdef",
                        "experiment_id": "1",
                        "latency_s": 0.5,
                        "prompt": {"name": "summarize", "version": 4, "digest": "sha256:ab"},
                    },
                )
            ],
        )
    finally:
        # Put back the real provider (core.pins) for the tests that come after.
        events._context.pop("pins", None)
        if previous is not None:
            events.provide_context("pins", previous)
    assert (ok.status, ok.error_type, ok.did_llm_work) == ("ok", None, False)
    assert (bad.status, bad.error_type, bad.error) == ("error", "ZeroDivisionError", "division by zero")
    assert PLANTED["openai"] not in bad.source and REDACTED in bad.source
    assert ok.pins == pins and ok.cell_id == "cell-1" and ok.notebook == "work/analysis.ipynb"
    b = gen.bundle()
    assert b["version"] == 2 and b["status"] == "ok" and b["execution_count"] == 3
    assert b["models"] == [{"name": "chat", "version": "2", "digest": None, "backend": "vllm"}]
    assert b["prompts"] == [{"name": "summarize", "version": "4", "digest": "sha256:ab"}]
    assert b["runs"] == [{"run_id": "0123456789abcdef", "experiment_id": "1", "kind": "generation"}]
    assert b["tokens"] == {"prompt": 7, "completion": 5} and b["latency_s"] == 0.5
    assert b["summary"] == "prompt summarize/4 · model chat/2 · run 01234567"
    assert gen.text_line() == "lineage: prompt summarize/4 · model chat/2 · run 01234567"
    on_disk = read_records(recorder.spool.path)
    assert [r["record_id"] for r in on_disk] == [ok.record_id, bad.record_id, gen.record_id]
    assert PLANTED["openai"] not in recorder.spool.path.read_text()


def test_a_failing_pins_provider_cannot_hide_the_cell(recorder):
    # A provider is other code; the spool append happens whatever it does.
    def broken():
        raise RuntimeError("registry down")

    previous = events._context.get("pins")
    events.provide_context("pins", broken)
    try:
        record = _record(recorder, "y = 2", 1)
    finally:
        # Put back the real provider (core.pins) for the tests that come after.
        events._context.pop("pins", None)
        if previous is not None:
            events.provide_context("pins", previous)
    assert read_records(recorder.spool.path)[-1]["record_id"] == record.record_id
    assert record.pins == [] and "registry down" in record.context["context_error"]


def _session_runs(client, session_id):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`llmops.lineage.session_id` = '{session_id}'")


def _shipped_records(client, run_id, tmp_path) -> list[dict]:
    local = client.download_artifacts(run_id, RECORDS_FILE, str(tmp_path))
    return [json.loads(line) for line in Path(local).read_text().splitlines()]


def test_shipping_to_mlflow_is_idempotent_by_record_id(tmp_path, llmops_home):
    from llmops_magics.core import tracking
    from llmops_magics.core.lineage import ship as lineage_ship

    rec = lineage.LineageRecorder(tmp_path / "home", notebook="nb.ipynb", ship=False)
    ids = [_record(rec, f"a = {i}", i + 1).record_id for i in range(3)]
    rec.spool.sync()
    directory = spool_dir(tmp_path / "home")
    first = ship_once(directory)
    assert first.error is None and first.shipped == 3 and first.pending == 0
    # Lose the acknowledgements and this process's memory of what MLflow holds: a replay.
    rec.spool.path.with_suffix(".acked").unlink()
    lineage_ship._known.clear()
    ids.append(_record(rec, "b = 4", 4).record_id)
    second = ship_once(directory)
    assert second.error is None and second.shipped == 1
    client = tracking.client()
    runs = _session_runs(client, rec.session_id)
    assert len(runs) == 1
    shipped = _shipped_records(client, runs[0].info.run_id, tmp_path / "dl")
    assert sorted(r["record_id"] for r in shipped) == sorted(ids)
    table = json.loads(
        Path(client.download_artifacts(runs[0].info.run_id, TABLE_FILE, str(tmp_path / "t"))).read_text()
    )
    assert len(table["data"]) == 4
    assert table["columns"][:5] == ["cell", "status", "summary", "source", "duration_s"]
    # Plain cells: no row has a run, tokens or an error, so those columns are left out.
    assert not {"error_type", "runs", "prompt_tokens", "completion_tokens"} & set(table["columns"])
    assert [row[0] for row in table["data"]] == [1, 2, 3, 4]
    assert table["data"][0][table["columns"].index("cell_id")] == "cell-1"  # what the frontend sent
    assert runs[0].data.tags["mlflow.source.name"] == "nb.ipynb"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "cell_duration_s")] == [1, 2, 3, 4]
    assert pending(directory) == {} and set(ids) <= acked_ids(rec.spool.path)
    rec.close(0)


def _validator():
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    core = json.loads((SCHEMAS / "OpenLineage.json").read_text())
    return Draft202012Validator(core, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER), registry


def test_openlineage_events_validate_against_the_spec(recorder, tmp_path):
    from jsonschema import Draft202012Validator

    ok = _record(
        recorder,
        "x = 1",
        1,
        evs=[("migration_step", {"table": "docs", "version_before": 3, "version_after": 4, "step": "backfill"})],
    )
    bad = _record(
        recorder,
        "1/0",
        2,
        ZeroDivisionError("division by zero"),
        evs=[
            (
                "generation",
                {
                    "model": "chat/2",
                    "backend": "vllm",
                    "prompt_tokens": 1,
                    "completion_tokens": 2,
                    "run_id": "ab" * 16,
                    "prompt": {"name": "summarize", "version": 4, "digest": "sha256:ab"},
                },
            )
        ],
    )
    validator, registry = _validator()
    evs = record_events(ok.to_dict()) + record_events(bad.to_dict())
    assert [e["eventType"] for e in evs] == ["START", "COMPLETE", "START", "FAIL"]
    for e in evs:
        validator.validate(e)
        facets = {**e["run"]["facets"], **e["job"]["facets"]}
        for ds in e["inputs"] + e["outputs"]:
            facets.update({f"{ds['name']}:{k}": v for k, v in ds["facets"].items()})
        for facet in facets.values():
            if facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/"):
                Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry).validate(facet)
    fail = evs[3]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "ZeroDivisionError: division by zero"
    assert [d["name"] for d in fail["inputs"]] == ["prompts:/summarize/4", "models:/chat/2"]
    assert evs[1]["outputs"][0]["facets"]["version"]["datasetVersion"] == "4"


def test_validator_discriminates():
    from jsonschema import ValidationError

    validator, _ = _validator()
    good = record_events(
        {
            "record_id": "ab" * 16,
            "session_id": "cd" * 16,
            "started": "2026-01-01T00:00:00+00:00",
            "duration_s": 1.0,
            "status": "ok",
            "source": "x",
            "events": [],
        }
    )[1]
    validator.validate(good)
    broken = {**good, "run": {"runId": "not-a-uuid"}}
    with pytest.raises(ValidationError):
        validator.validate(broken)
    with pytest.raises(ValidationError):
        validator.validate({k: v for k, v in good.items() if k != "job"})


def test_lineage_magic_in_a_shell(shell, tmp_path):
    shell.run_cell("a = 40 + 2")
    table = shell.run_cell("%lineage")
    assert any(r.source == "a = 40 + 2" for r in table.records)
    assert "a = 40 + 2" in table._repr_mimebundle_()["text/plain"]
    count = next(r.execution_count for r in table.records if r.source == "a = 40 + 2")
    one = shell.run_cell(f"%lineage cell {count}")
    assert one.source == "a = 40 + 2" and one.status == "ok"
    out = tmp_path / "ol.jsonl"
    result = shell.run_cell(f"%lineage export --openlineage {out}")
    assert result.events == 2 * result.records and len(out.read_text().splitlines()) == result.events
    fig = table.plot()
    assert fig.data[0].type == "bar"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%lineage cell 99999", "no lineage record for cell '99999'"),
        ("%lineage export", "needs --openlineage PATH"),
        ("%lineage frobnicate", "cannot read %lineage 'frobnicate'"),
        ("%lineage export --openlineage /no/such/folder/x.jsonl", "folder /no/such/folder does not exist"),
    ],
)
def test_bad_lineage_lines_are_one_line(shell, line, message):
    with pytest.raises(UsageError) as err:
        shell.run_cell(line)
    assert message in str(err.value) and "\n" not in str(err.value).strip()


def test_html_views_escape_cell_source(shell):
    shell.run_cell("s = '<script>alert(1)</script>'")
    table = shell.run_cell("%lineage")
    record = next(r for r in table.records if "<script>" in r.source)
    for html in (table._repr_mimebundle_()["text/html"], record._repr_mimebundle_()["text/html"]):
        assert "<script>" not in html and "&lt;script&gt;" in html


def test_uninstalled_hooks_record_nothing_and_reinstall_records_again(shell):
    from llmops_magics.magics import lineage_hooks

    lineage_hooks.uninstall(shell.ip, ship_timeout_s=0)
    assert lineage.current_recorder() is None
    shell.run_cell("quiet = 1")
    rec = lineage_hooks.install(shell.ip)
    shell.run_cell("loud = 1")
    assert [r.source for r in rec.records] == ["loud = 1"]
    assert not any("quiet = 1" in r["source"] for r in read_records(rec.spool.path))


def test_alias_moves_pins_and_table_writes_reach_the_cells_lineage(shell, tmp_path):
    # While events were free dicts, these three never reached a cell's lineage: their
    # registry kind hid the event kind, and a table write outside a migration was ignored.
    name = f"lineage-{uuid.uuid4().hex[:6]}"
    db = str(tmp_path / "lance")
    shell.run_cell("import llmops_magics as m")
    shell.run_cell(f"m.register_prompt({name!r}, 'hi {{{{x}}}}', alias='staging')")
    shell.run_cell(f"m.pin('prompt', '{name}@staging')")
    shell.run_cell(f"m.create_index('notes', ['Bees make honey.', 'Tea is a drink.'], db={db!r})")
    table = shell.run_cell("%lineage")
    registered, pinned, indexed = table.records[-3:]
    moved = registered.bundle()
    assert moved["aliases"] == [{"kind": "prompt", "name": name, "alias": "staging", "from": None, "to": 1}]
    assert moved["prompts"] == [{"name": name, "version": "1", "digest": moved["prompts"][0]["digest"]}]
    # Issue 19 changes the summary's wording: the registration and its alias read as one phrase.
    assert moved["summary"] == f"registered prompt {name}/1 · staging -> 1"
    assert moved["registry"][0] == {**moved["registry"][0], "action": "registered", "kind": "prompt", "version": "1"}
    assert pinned.bundle()["prompts"][0]["name"] == name and pinned.bundle()["prompts"][0]["version"] == "1"
    assert pinned.bundle()["summary"] == f"pinned prompt {name}/1"
    tables = indexed.bundle()["tables"]
    assert [(t["table"], t["step"], t["rows"]) for t in tables] == [("notes", "write", 2)]
    assert "table notes new→v" in indexed.bundle()["summary"]
    for record in (registered, pinned, indexed):
        assert {e["kind"] for e in record.events} <= set(events.EVENTS)


def test_an_event_of_another_shape_is_skipped_not_the_cell():
    from llmops_magics.core.lineage.derive import derive

    odd = {"kind": "generation", "model": "chat/2", "prompt": "summarize/4", "prompt_tokens": "many"}
    good = {"kind": "shadow", "name": "s", "verdict": "equivalent", "primary": "a", "candidate": "b", "run_id": "r1"}
    d = derive([odd, good, {"kind": "from-a-newer-version"}, {"kind": "alias"}])
    assert d["shadow"] == [{"name": "s", "verdict": "equivalent", "run_id": "r1"}]
    assert d["summary"] == "shadow s equivalent · run r1"


def _registry_summary(*evs) -> str:
    from llmops_magics.core.lineage.derive import derive

    return derive([events.EVENTS[kind](**payload).to_record() for kind, payload in evs])["summary"]


@pytest.mark.parametrize(
    "evs, summary",
    [
        (
            [
                ("model_registered", {"name": "chat", "version": 2, "model_kind": "adapter", "digest": "d2"}),
                ("alias", {"registry": "model", "name": "chat", "alias": "challenger", "to": 2}),
            ],
            "registered model chat/2 · challenger -> 2",
        ),
        (
            [("alias", {"registry": "model", "name": "chat", "alias": "champion", "from_": 1, "to": 2})],
            "chat@champion 1 -> 2",
        ),
        (
            [("alias", {"registry": "prompt", "name": "summarize", "alias": "old", "from_": 3, "to": None})],
            "summarize@old unset (was 3)",
        ),
        (
            [
                ("pin", {"registry": "prompt", "name": "summarize", "version": 1, "alias": "production"}),
                ("pin", {"registry": "model", "name": "chat", "version": 1, "alias": "champion"}),
            ],
            "pinned prompt summarize/1 · pinned model chat/1",
        ),
    ],
)
def test_registry_work_reads_as_what_was_done(evs, summary):
    # Issue 19: these cells showed "alias chat@challenger -→2" (a stray "-" for "unset"), or only
    # the versions, as if they had merely been used.
    assert _registry_summary(*evs) == summary


def test_the_bundle_carries_the_kernels_ui_url_and_the_registry_work(recorder):
    from llmops_magics import config

    config.configure(ui_url="http://127.0.0.1:5123")
    try:
        rec = _record(
            recorder,
            "%llm_pin model chat@champion",
            4,
            evs=[("pin", {"registry": "model", "name": "chat", "version": 1, "alias": "champion"})],
        )
        b = rec.bundle()
    finally:
        config.configure(ui_url="")
    assert b["ui_url"] == "http://127.0.0.1:5123"
    assert b["registry"] == [
        {
            "action": "pinned",
            "kind": "model",
            "name": "chat",
            "version": "1",
            "alias": "champion",
            "from": None,
            "to": None,
        }
    ]
    assert rec.bundle()["ui_url"] is None  # unset: the lab falls back to its own setting


def test_the_session_run_names_its_notebook_relative(tmp_path, llmops_home, monkeypatch):
    from llmops_magics.core import tracking

    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    absolute = str(tmp_path / "work" / "quick.ipynb")  # what JupyterLab gives the kernel (JPY_SESSION_NAME)
    rec = lineage.LineageRecorder(tmp_path / "home", notebook=absolute, ship=False)
    _record(rec, "a = 1", 1)
    rec.spool.sync()
    assert ship_once(spool_dir(tmp_path / "home")).error is None
    run = _session_runs(tracking.client(), rec.session_id)[0]
    assert run.data.tags["mlflow.source.name"] == "work/quick.ipynb"
    assert run.data.tags["llmops.lineage.notebook"] == "work/quick.ipynb"
    assert str(tmp_path) not in rec.spool.path.read_text()
    rec.close(0)
