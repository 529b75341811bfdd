"""A notebook of notebooks/ executed headless, as a new user's `make demo` leaves it:
used by test_notebooks.py and, once per session, by the UI tests (``executed_quickstart``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from llmops_magics.core.notebooks import run_notebook


class ExecutedNotebook:
    """A notebook of notebooks/ executed by nbclient in a copy of the folder, with its own
    embedded home, as a new user's `make demo` leaves it."""

    def __init__(self, source: Path, folder: Path):
        self.source = source
        self.folder = folder  # the copy of notebooks/ it ran in (its working directory)
        self.home = folder.parent / ".llmops"
        self.path = folder / f"executed-{source.name}"
        self.nb = None

    def run(self, timeout: int = 900) -> ExecutedNotebook:
        shutil.copytree(self.source.parent, self.folder)
        old = os.environ.get("LLMOPS_HOME")
        os.environ["LLMOPS_HOME"] = str(self.home)  # the kernel inherits it at start
        try:
            self.nb = run_notebook(self.folder / self.source.name, self.path, cwd=self.folder, timeout=timeout)
        finally:
            if old is None:
                os.environ.pop("LLMOPS_HOME", None)
            else:
                os.environ["LLMOPS_HOME"] = old
        return self
