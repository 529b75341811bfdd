"""The tree is formatted and lint-clean on both sides: ruff for Python, eslint and
prettier for the JupyterLab extension. Fix with ``ruff format . && ruff check --fix .``
and ``cd labextension && jlpm format``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_labextension_build import ANSI, SOURCE, jlpm_ready

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_python_is_formatted_by_ruff():
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, f"run `ruff format .`:\n{out.stdout[-3000:]}{out.stderr[-2000:]}"


def test_python_passes_ruff_lint():
    out = _ruff("check", "--output-format", "concise", ".")
    assert out.returncode == 0, f"run `ruff check --fix .`:\n{out.stdout[-3000:]}{out.stderr[-2000:]}"


def test_labextension_passes_eslint_and_prettier(tmp_path):
    jlpm, env = jlpm_ready(tmp_path, "eslint")
    out = subprocess.run([jlpm, "lint"], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, "run `jlpm format` in labextension/:\n" + ANSI.sub("", out.stdout + out.stderr)[-4000:]
