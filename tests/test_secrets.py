"""A tracking URI's credentials never reach a cell, a log line, lineage or a file we write.

Users put ``http://user:password@host`` in ``LlmopsMagics.tracking_uri``; every message,
lockfile, lineage record, kept run and MLflow artifact must show it without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from IPython.core.error import UsageError

from llmops_magics import config
from llmops_magics.core import tracking
from llmops_magics.core.lineage.ship import EXPERIMENT, RECORDS_FILE

pytestmark = pytest.mark.slow

USER, SECRET = "analyst", "s3cr3t-pw-7f1c"


def _shown(value) -> str:
    bundle = getattr(value, "_repr_mimebundle_", None)
    return json.dumps(bundle(), default=str) if bundle else str(value)


def test_credentials_of_the_tracking_uri_never_appear(shell, mlflow_server, tmp_path, capfd, monkeypatch):
    home = tmp_path / "home"
    secret_uri = mlflow_server.uri.replace("http://", f"http://{USER}:{SECRET}@")
    config.configure(tracking_uri=secret_uri, home=home)
    monkeypatch.chdir(tmp_path)
    shown = []
    name = f"secret-{tmp_path.name[-6:]}".replace("_", "-")
    cells = [
        f"%%llm_prompt {name} -m first --alias staging\nAnswer in one word: {{{{q}}}}",
        f"%llm_pin prompt {name}@staging",
        "%llm_pin --save llmops.lock.json",
        f"%llm_alias --history prompt {name}",
        "%llm_model list",
        "%%llm --max-tokens 12 --backend vllm\nWhat is the capital of France?",
        "%%shadow --primary default --candidate default --max-tokens 4 --backend vllm --name 'secret check'\nhi\nho",
        "%llm_engines",
        "%lineage",
        "%lineage sync",
        "%lineage export --openlineage lineage.jsonl",
    ]
    for cell in cells:
        shown.append(_shown(shell.run_cell(cell)))
    # MLflow refused: the one-line errors and warnings name the server, never the password.
    config.configure(tracking_uri=secret_uri.replace(str(mlflow_server.port), "1"), home=home)
    shown.append(_shown(shell.run_cell("%%llm --max-tokens 4 --backend vllm\nhi")))
    with pytest.raises(UsageError) as refused:
        shell.run_cell(f"%llm_pin prompt {name}-other@staging")
    shown.append(str(refused.value))
    doctor = subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LLMOPS_TRACKING_URI": secret_uri, "LLMOPS_HOME": str(home)},
    )
    out, err = capfd.readouterr()
    shown += [out, err, doctor.stdout, doctor.stderr]
    written = [p.read_text(errors="replace") for p in [*home.rglob("*"), *tmp_path.glob("*.json*")] if p.is_file()]
    config.configure(tracking_uri=secret_uri, home=home)
    c = tracking.client()
    exp = c.get_experiment_by_name(EXPERIMENT)
    session = c.search_runs([exp.experiment_id], max_results=5)
    artifacts = [tracking.read_artifact(r.info.run_id, RECORDS_FILE) or "" for r in session]
    runs = c.search_runs([c.get_experiment_by_name(tracking.EXPERIMENT).experiment_id], max_results=50)
    logged = [json.dumps({"params": r.data.params, "tags": r.data.tags}) for r in runs]
    everything = "\n".join(shown + written + artifacts + logged)
    assert "Paris" in shown[5], "the cells really ran"
    assert any(name in a for a in artifacts), "the lineage records really reached MLflow"
    assert "127.0.0.1" in everything, "the server is named (without its credentials)"
    assert SECRET not in everything
    assert f"{USER}:" not in everything and f"{USER}@" not in everything
