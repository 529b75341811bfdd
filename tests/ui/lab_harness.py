"""Browser-test harness: a real ``jupyter lab`` on loopback and Debian's Chromium
driven by Playwright.

Everything the server, its kernels and the browser write stays inside one tmp dir
(HOME, JUPYTER_* and IPython dirs, the notebooks), so a test never touches the
user's Jupyter state. The server is a ``servers.ServerProcess`` (port, log, bounded
wait, stop). Chromium is the system binary (``apt-get install chromium``): no browser
is ever downloaded (never ``playwright install``).

Reused by every UI test (the lineage badges here, the A/B review widget elsewhere)::

    def test_something(lab_page):
        lab_page.new_notebook("t.ipynb")
        cell = lab_page.run_cell("1 + 1")
        assert "2" in cell.locator(".jp-OutputArea").inner_text()
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

import requests
from servers import ServerProcess  # tests/ is on sys.path (tests/conftest.py)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

IDLE = re.compile(r"\|\s*Idle")
EXECUTED = re.compile(r"\[\d+\]")


def chromium_path() -> str | None:
    """Debian's chromium binary, or None (the tests then skip, saying how to get it)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def empty_notebook(cells: list[dict] | None = None) -> dict:
    return {
        "cells": cells
        or [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [], "source": ""}],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class JupyterLab:
    """``jupyter lab`` in an isolated tmp dir, token auth, loopback only.

    Parameters
    ----------
    root : Path
        Holds ``home/``, the Jupyter dirs and ``work/`` (the server's root dir).
    env : dict, optional
        Extra environment for the server and its kernels.
    user_settings : dict, optional
        ``{"plugin-id": {...}}`` written as JupyterLab user settings before start.
    """

    def __init__(self, root: Path, env: dict | None = None, user_settings: dict | None = None):
        self.root = Path(root)
        self.work = self.root / "work"
        self.server = ServerProcess("jupyter lab", self.root / "jupyter-lab.log")
        self.token = secrets.token_hex(16)
        self._extra_env = dict(env or {})
        self._user_settings = {
            # No news prompt over the notebook.
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"},
            **(user_settings or {}),
        }

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def _env(self) -> dict:
        dirs = {
            name: self.root / name
            for name in ("home", "config", "data", "runtime", "ipython", "settings", "workspaces")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            HOME=str(dirs["home"]),
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(self._extra_env)
        for plugin, values in self._user_settings.items():
            pkg, _, name = plugin.partition(":")
            path = dirs["settings"] / pkg / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        return env

    def start(self, timeout_s: float = 90) -> JupyterLab:
        self.work.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.work}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self.server.start(
            cmd, ready_url=self.url("api/status"), env=self._env(), cwd=self.work, timeout_s=timeout_s, poll_s=0.3
        )
        return self

    def log_tail(self, n: int = 3000) -> str:
        return self.server.log_tail(n)

    def stop(self) -> None:
        """Ask the server to shut down (it ends its kernels), then make sure of it: no
        process it started is left."""
        self.server.stop(ask=lambda: requests.post(self.url("api/shutdown"), timeout=5).raise_for_status())

    def end_sessions(self, name: str | None = None) -> None:
        """Shut down the kernels of the notebook ``name`` (all notebooks when None)."""
        sessions = requests.get(self.url("api/sessions"), timeout=10).json()
        for s in sessions:
            if name is None or s.get("path") == name:
                requests.delete(self.url(f"api/sessions/{s['id']}"), timeout=30)

    def write_notebook(self, name: str, nb: dict | None = None) -> Path:
        """Write a notebook into the server's root; a kernel left on that path is ended
        so the notebook opens on a fresh one."""
        self.end_sessions(name)
        path = self.work / name
        path.write_text(json.dumps(nb or empty_notebook(), indent=1))
        return path

    def read_notebook(self, name: str) -> dict:
        return json.loads((self.work / name).read_text())


class LabPage:
    """One browser page on the lab, with the steps a notebook user takes."""

    def __init__(self, page, lab: JupyterLab):
        self.page = page
        self.lab = lab

    # -- notebooks -------------------------------------------------------------------
    def open(self, name: str, timeout_ms: float = 60_000) -> LabPage:
        """Open ``name`` in a fresh workspace and wait until its kernel is idle."""
        self.page.goto(self.lab.url(f"lab/tree/{name}?reset"))
        self.page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=timeout_ms)
        self.wait_idle(timeout_ms)
        return self

    def new_notebook(self, name: str, nb: dict | None = None) -> LabPage:
        self.lab.write_notebook(name, nb)
        return self.open(name)

    def wait_idle(self, timeout_ms: float = 60_000) -> None:
        # The notebook's own idle flag is true before the kernel attaches; the
        # status bar's "| Idle" means the kernel answered.
        status = self.page.locator("#jp-main-statusbar").get_by_text(IDLE)
        status.first.wait_for(timeout=timeout_ms)

    @property
    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:visible .jp-Notebook")

    @property
    def cells(self):
        return self.notebook.locator(".jp-Cell")

    def cell(self, index: int):
        return self.cells.nth(index)

    def run_cell(self, code: str, timeout_ms: float = 300_000):
        """Type ``code`` into the last cell, run it, wait for it to finish; return the cell."""
        index = self.cells.count() - 1
        cell = self.cell(index)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")
        cell.locator(".jp-InputPrompt").filter(has_text=EXECUTED).wait_for(timeout=timeout_ms)
        self.wait_idle(timeout_ms)
        return cell

    def command(self, label: str) -> None:
        """Run a command by its palette label."""
        self.page.keyboard.press("Control+Shift+C")
        palette = self.page.locator("#command-palette input")
        palette.fill(label)
        self.page.locator("#command-palette .lm-CommandPalette-item").filter(has_text=label).first.click()

    def save(self, name: str, timeout_s: float = 20) -> dict:
        """Save the notebook and return it as written on disk."""
        before = (self.lab.work / name).stat().st_mtime_ns
        self.notebook.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if (self.lab.work / name).stat().st_mtime_ns != before:
                time.sleep(0.2)
                return self.lab.read_notebook(name)
            time.sleep(0.1)
        raise AssertionError(f"{name} was not saved in {timeout_s} s")

    def screenshot(self, path: Path, locator=None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        (locator or self.page).screenshot(path=str(path))
        return path
