"""Lineage in a real Jupyter kernel (jupyter_client), shipped to a real `mlflow server`.

One kernel serves the module, the way one notebook session would: its cells are the
test's cells. A second kernel is SIGKILLed right after a cell.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import Kernel, MlflowServer  # noqa: E402
from test_lineage_core import PLANTED, _validator  # noqa: E402

from llmops_magics.core.lineage.ship import EXPERIMENT, RECORDS_FILE, TABLE_FILE  # noqa: E402

MIME = "application/vnd.llmops.lineage+json"
NOTEBOOK = "analysis/summaries.ipynb"
UI_URL = "http://127.0.0.1:5123"  # as `llmops-magics ui --port 5123` tells the user to set
ENV_SECRET = "svc-" + uuid.uuid4().hex  # the value of a secret-looking env variable

pytestmark = pytest.mark.slow


def _env(home: Path, tracking_uri: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "JPY_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "LLMOPS_HOME": str(home),
            "LLMOPS_TRACKING_URI": tracking_uri,
            "JPY_SESSION_NAME": NOTEBOOK,
            "LLMOPS_UI_URL": UI_URL,
            "MY_SERVICE_TOKEN": ENV_SECRET,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("lineage-mlflow")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("lineage-home")


@pytest.fixture(scope="module")
def kernel(server, home):
    k = Kernel(_env(home, server.uri), home)
    k.run("%load_ext llmops_magics")
    yield k
    k.stop()


@pytest.fixture
def client(server):
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.uri)


def _spool(home: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((home / "lineage").glob("*.jsonl")) for line in p.read_text().splitlines()]


def _by_cell(home: Path, cell_id: str) -> dict:
    found = [r for r in _spool(home) if r["cell_id"] == cell_id]
    assert len(found) == 1, f"{len(found)} records for cell {cell_id}"
    return found[0]


def _session_run(client, session_id: str):
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`llmops.lineage.session_id` = '{session_id}'")
    assert len(runs) == 1, f"{len(runs)} session runs"
    return runs[0]


def _mlflow_records(client, run_id: str, tmp_path: Path) -> list[dict]:
    local = client.download_artifacts(run_id, RECORDS_FILE, str(tmp_path / uuid.uuid4().hex))
    return [json.loads(line) for line in Path(local).read_text().splitlines()]


def test_records_for_ok_and_failing_cells_with_pins(kernel, home):
    # Real pins: a prompt registered in the server's Prompt Registry, pinned by alias.
    reply, outputs = kernel.run(
        "import llmops_magics as lm\n"
        "lm.register_prompt('summarize', 'Summarize: {{text}}', message='first', alias='production')\n"
        "pinned = lm.pin('prompt', 'summarize@production').get('prompt', 'summarize')",
        "c-pins",
    )
    assert reply["status"] == "ok", outputs
    digest = kernel.text("print(pinned.digest)").strip()
    reply, _ = kernel.run("total = sum(range(10))", "c-ok")
    assert reply["status"] == "ok"
    reply, _ = kernel.run("{}['missing']", "c-err")
    assert reply["status"] == "error"
    ok, err = _by_cell(home, "c-ok"), _by_cell(home, "c-err")
    assert (ok["status"], ok["error_type"], ok["source"]) == ("ok", None, "total = sum(range(10))")
    assert (err["status"], err["error_type"], err["error"]) == ("error", "KeyError", "'missing'")
    assert ok["notebook"] == NOTEBOOK and ok["session_id"] == err["session_id"]
    assert err["execution_count"] == ok["execution_count"] + 1
    assert [(p["kind"], p["name"], p["alias"], p["digest"]) for p in ok["pins"]] == [
        ("prompt", "summarize", "production", digest)
    ]
    pin_cell = _by_cell(home, "c-pins")  # the cell that pinned did llmops work: events recorded
    assert "prompt_registered" in {e["kind"] for e in pin_cell["events"]}
    assert ok["source_digest"].startswith("sha256:") and ok["duration_s"] >= 0


def test_llm_cell_shows_a_bundle_and_links_to_its_run(kernel, home, client, tmp_path):
    reply, outputs = kernel.run("%%llm --backend transformers --max-tokens 8\nWhat is the capital of France?", "c-llm")
    assert reply["status"] == "ok", outputs
    bundles = [o["data"] for o in outputs if o["type"] == "display_data" and MIME in o["data"]]
    assert len(bundles) == 1
    b, text = bundles[0][MIME], bundles[0]["text/plain"]
    assert b["version"] == 2 and b["cell_id"] == "c-llm" and b["status"] == "ok"
    assert b["models"][0]["backend"] == "transformers" and b["tokens"]["completion"] > 0
    run = b["runs"][0]
    assert text.startswith("lineage: model default · run ") and run["run_id"][:8] in text
    generation = client.get_run(run["run_id"])
    assert generation.info.experiment_id == run["experiment_id"]
    assert b["pins"][0]["name"] == "summarize"
    # Plain cells show nothing.
    _, plain = kernel.run("y = 1", "c-plain")
    assert not [o for o in plain if o["type"] == "display_data"]

    synced = kernel.text("%lineage sync")
    assert "shipped" in synced, synced
    session = _session_run(client, b["session_id"])
    generation = client.get_run(run["run_id"])
    assert generation.data.tags["llmops.lineage.session_run_id"] == session.info.run_id
    assert generation.data.tags["llmops.lineage.record_id"] == b["record_id"]
    table = json.loads(Path(client.download_artifacts(session.info.run_id, TABLE_FILE, str(tmp_path))).read_text())
    row = next(r for r in table["data"] if r[table["columns"].index("record_id")] == b["record_id"])
    assert run["run_id"] in row[table["columns"].index("runs")]
    # The table leads with what a person scans for; the frontend's cell id fills its column.
    assert table["columns"][:5] == ["cell", "status", "summary", "source", "duration_s"]
    assert row[table["columns"].index("cell_id")] == "c-llm"
    # The kernel's one link setting reaches JupyterLab with the record.
    assert b["ui_url"] == UI_URL


def test_mlflow_outage_every_record_arrives_exactly_once(kernel, home, server, client, tmp_path):
    kernel.text("%lineage sync")
    server.stop()
    for i in range(3):
        kernel.run(f"during_outage_{i} = {i}", f"c-out-{i}")
    waiting = kernel.text("%lineage sync")
    assert "wait in the spool" in waiting, waiting
    server.start()
    kernel.run("after_outage = True", "c-after")
    synced = kernel.text("%lineage sync")
    assert "shipped" in synced and "0 waiting" in synced, synced
    # The sync cell's own record is written after it ran: the background shipper sends it.
    deadline = time.time() + 30
    while True:
        spooled = _spool(home)
        session_id = spooled[-1]["session_id"]
        shipped = _mlflow_records(client, _session_run(client, session_id).info.run_id, tmp_path)
        ids = [r["record_id"] for r in shipped]
        if len(ids) >= len(spooled) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["record_id"] for r in spooled if r["session_id"] == session_id}
    assert {"c-out-0", "c-out-1", "c-out-2", "c-after"} <= {r["cell_id"] for r in shipped}


def test_planted_secrets_reach_neither_spool_mlflow_nor_export(kernel, home, server, client, tmp_path):
    planted = list(PLANTED.values()) + [ENV_SECRET, "hunter2-" + ENV_SECRET[-6:]]
    kernel.run(
        f"openai_key = '{PLANTED['openai']}'\nhf = '{PLANTED['hf']}'\naws = '{PLANTED['aws']}'\n"
        f"gh = '{PLANTED['github']}'\nslack = '{PLANTED['slack']}'\ncopied = '{ENV_SECRET}'\n"
        f"dsn = 'db://me?password={planted[-1]}'\nheaders = {{'Authorization': 'Bearer {ENV_SECRET[::-1]}'}}",
        "c-secrets",
    )
    planted.append(ENV_SECRET[::-1])
    kernel.run(f"raise ValueError('rejected key {PLANTED['openai']}')", "c-secret-error")
    out = tmp_path / "lineage.jsonl"
    assert "OpenLineage RunEvents" in kernel.text(f"%lineage export --openlineage {out}")
    assert "shipped" in kernel.text("%lineage sync")
    assert _by_cell(home, "c-secrets")["source"].count("[REDACTED]") == 8
    stores = {"spool": home / "lineage", "mlflow server": server.root, "export": out}
    for where, root in stores.items():
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        blob = b"".join(p.read_bytes() for p in files)
        assert b"c-secrets" in blob or where == "export"  # the records are really there
        for secret in planted:
            assert secret.encode() not in blob, f"a planted secret reached the {where}"
    validator, _ = _validator()
    for line in out.read_text().splitlines():
        validator.validate(json.loads(line))


def test_sigkill_right_after_a_cell_keeps_its_record(tmp_path):
    # No server: nothing but the spool could hold the record.
    k = Kernel(_env(tmp_path, "http://127.0.0.1:9"), tmp_path)
    try:
        k.run("%load_ext llmops_magics")
        marker = uuid.uuid4().hex
        reply, _ = k.run(f"last_words = '{marker}'", "c-last")
        assert reply["status"] == "ok"
        os.kill(k.km.provisioner.process.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while k.km.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert not k.km.is_alive()
    finally:
        k.stop()
    record = _by_cell(tmp_path, "c-last")
    assert marker in record["source"] and record["status"] == "ok"
