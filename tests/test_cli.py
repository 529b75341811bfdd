"""The `llmops-magics` command."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_doctor_reports_each_component():
    out = _cli("doctor")
    lines = out.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    for name in ("python", "torch", "gpu", "vllm", "chat", "embedding", "mlflow", "labextension"):
        assert name in names, out.stdout
    assert all(line[:4] in ("ok  ", "warn", "FAIL") for line in lines)


def test_doctor_flags_a_broken_tracking_uri(tmp_path):
    import os

    env = {**os.environ, "LLMOPS_TRACKING_URI": "http://127.0.0.1:9/"}
    out = _cli("doctor", env=env)
    line = next(text for text in out.stdout.splitlines() if " mlflow " in text)
    assert line.startswith("FAIL") and "tracking_uri" in line
    assert out.returncode == 1


def test_prepare_prints_model_folders():
    out = _cli("prepare")
    assert out.returncode == 0
    assert "default chat model:" in out.stdout and "SmolLM2-135M-Instruct-" in out.stdout


def test_ui_serves_the_mlflow_ui_on_loopback(tmp_path):
    import os
    import signal
    import time

    import requests

    sys.path.insert(0, os.path.dirname(__file__))
    from servers import free_port

    port = free_port()
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmops_magics.cli", "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first and str(tmp_path / "mlflow.db") in first
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            raise AssertionError("the MLflow UI did not answer")
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
