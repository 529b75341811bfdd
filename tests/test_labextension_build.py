"""The JupyterLab extension as installed: listed and enabled, renderer and setting
declared, versions in step, and the front-end unit tests (vitest) passing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import llmops_magics

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "labextension"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NAME = "llmops-magics"


def isolated_env(tmp_path: Path) -> dict:
    """Jupyter and yarn state in tmp, so the user's own config cannot hide a problem."""
    env = dict(os.environ)
    for var, sub in (("HOME", "home"), ("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data")):
        (tmp_path / sub).mkdir(exist_ok=True)
        env[var] = str(tmp_path / sub)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def installed_dir() -> Path:
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        if (Path(base) / NAME / "package.json").exists():
            return Path(base) / NAME
    pytest.fail(
        f"{NAME} is not installed as a prebuilt extension: pip install -e . builds it "
        f"(needs node >= 20 and the npm registry)"
    )


def test_labextension_list_shows_it_enabled(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    listing = ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == 0, listing
    line = next((ln for ln in listing.splitlines() if ln.strip().startswith(NAME + " ")), None)
    assert line is not None, listing
    assert f"v{llmops_magics.__version__}" in line and "enabled" in line and "OK" in line


def test_installed_build_declares_renderer_setting_and_version():
    ext = installed_dir()
    meta = json.loads((ext / "package.json").read_text())
    assert meta["version"] == llmops_magics.__version__
    build = meta["jupyterlab"]["_build"]
    assert (ext / build["load"]).exists()
    assert "mimeExtension" in build and "extension" in build
    install = json.loads((ext / "install.json").read_text())
    assert install["packageName"] == NAME
    schema = json.loads((ext / "schemas" / NAME / "plugin.json").read_text())
    url = schema["properties"]["mlflowUiUrl"]
    assert url["default"].startswith("http") and url["type"] == "string"


def test_source_and_python_package_agree():
    meta = json.loads((SOURCE / "package.json").read_text())
    assert meta["version"] == llmops_magics.__version__
    assert meta["jupyterlab"]["outputDir"] == "../llmops_magics/labextension"
    model = (SOURCE / "src" / "model.ts").read_text()
    schema = json.loads((SOURCE / "schema" / "plugin.json").read_text())
    assert f"'{schema['properties']['mlflowUiUrl']['default']}'" in model


def jlpm_ready(tmp_path: Path, tool: str) -> tuple[str, dict]:
    """``jlpm`` and an isolated environment, with labextension/node_modules holding ``tool``."""
    if shutil.which("node") is None:
        pytest.fail("node >= 20 is needed to build and test the JupyterLab extension")
    env = isolated_env(tmp_path)
    jlpm = shutil.which("jlpm", path=env["PATH"])
    assert jlpm, "jlpm comes with jupyterlab (jupyter-builder): pip install -e '.[test]'"
    if not (SOURCE / "node_modules" / ".bin" / tool).exists():
        # The editable install normally leaves node_modules behind; a bare checkout needs one install.
        subprocess.run(
            [jlpm, "install", "--immutable"], cwd=SOURCE, env=env, check=True, capture_output=True, timeout=600
        )
    return jlpm, env


def test_frontend_unit_tests_pass(tmp_path):
    """Runs ``jlpm test`` (vitest: the lineage model, parser and views) in labextension/."""
    jlpm, env = jlpm_ready(tmp_path, "vitest")
    out = subprocess.run([jlpm, "test"], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=300)
    report = ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == 0, report[-4000:]
    assert re.search(r"Tests\s+\d+ passed", report), report[-2000:]
