"""Fixtures for browser tests: one ``jupyter lab`` and one Chromium per session, a
fresh browser page per test. See ``lab_harness.py``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lab_harness import CHROMIUM_ARGS, JupyterLab, LabPage, chromium_path  # noqa: E402

# The README's screenshots: written only when asked to (see ``screenshot_dir``).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "browser tests need Debian's chromium: sudo apt-get install -y chromium "
            "(scripts/setup-system.sh does it for `make test`)"
        )
    return path


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory, chromium):
    """A real ``jupyter lab`` whose kernels use an isolated llmops home."""
    from llmops_magics import settings

    root = tmp_path_factory.mktemp("lab")
    env = {
        "LLMOPS_HOME": str(root / "llmops-home"),
        # The converted default model is per user and large: share it, don't rebuild it.
        "LLMOPS_MODEL_CACHE": str(settings().model_cache),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    # Run links point at a port nothing serves: the tests check the setting reaches them.
    settings_ = {"llmops-magics:plugin": {"mlflowUiUrl": "http://127.0.0.1:5999"}}
    lab = JupyterLab(root, env=env, user_settings=settings_).start()
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def browser(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    # Chromium's crash reporter and caches follow HOME / XDG_*: keep them in tmp too.
    home = tmp_path_factory.mktemp("chromium-home")
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS, env=env)
        yield b
        b.close()


@pytest.fixture
def lab_page(browser, jupyter_lab):
    """A fresh page; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e} at {(e.stack or '').splitlines()[1:3]}"))
    yield LabPage(page, jupyter_lab)
    context.close()
    # Kernels hold models (about 1 GB each): end them with the test that started them.
    jupyter_lab.end_sessions()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def screenshot_dir(tmp_path):
    """docs/img when LLMOPS_UPDATE_SCREENSHOTS=1 (to refresh the README's), else tmp: a test
    run leaves the working tree as it found it."""
    return SCREENSHOTS if os.environ.get("LLMOPS_UPDATE_SCREENSHOTS") == "1" else tmp_path


# MLflow's own first-visit guidance: a modal popover over the Traces tab ("Detect Issues in
# Your Traces") and an assistant panel that opens itself. A returning user has dismissed both;
# these are the keys MLflow 3.17 writes when they are dismissed.
MLFLOW_DISMISSED = {
    "mlflow.detectIssues.guidanceShown_v1": "true",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
}
MLFLOW_TIMEOUT_MS = 30_000


@pytest.fixture
def mlflow_page(browser):
    """A fresh 1400x900 page as a returning user sees the MLflow UI; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    dismissed = json.dumps(MLFLOW_DISMISSED)
    context.add_init_script(f"Object.entries({dismissed}).forEach(([k, v]) => localStorage.setItem(k, v));")
    page = context.new_page()
    page.set_default_timeout(MLFLOW_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e} at {(e.stack or '').splitlines()[1:3]}"))
    yield page
    context.close()
    assert not errors, f"errors in the MLflow UI: {errors}"
