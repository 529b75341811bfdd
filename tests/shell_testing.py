"""An IPython shell for tests (importable by name: tests/ holds two conftest modules)."""

from __future__ import annotations


class TestingShell:
    """An IPython shell whose cells raise instead of printing tracebacks."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell

        self.ip = InteractiveShell.instance()
        self.ip.history_manager.enabled = False

    def run_cell(self, source: str):
        result = self.ip.run_cell(source, store_history=True)
        result.raise_error()
        return result.result

    def __getattr__(self, name):
        return getattr(self.ip, name)
