"""The `llmops-magics` command."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "llmops_magics.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


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
    line = next(l for l in out.stdout.splitlines() if " mlflow " in l)
    assert line.startswith("FAIL") and "tracking_uri" in line
    assert out.returncode == 1


def test_prepare_prints_model_folders():
    out = _cli("prepare")
    assert out.returncode == 0
    assert "default chat model:" in out.stdout and "SmolLM2-135M-Instruct-" in out.stdout
