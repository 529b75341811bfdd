"""``verify()``: execute a saved notebook again under its lockfile and compare every
generating cell with the lineage it saved. The Python twin of ``llmops-magics verify``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import LlmopsError, VerifyUsageError
from ..display import esc
from ..notebooks import run_notebook
from ..paths import shown_path, shown_text
from ..registry.pins import LOCK_ENV
from .compare import CellVerdict, compare_cell
from .saved import CellRun, cell_runs, parse_cells, select, verifiable_cells

LOCKFILE = "llmops.lock.json"


@dataclass
class VerifyResult:
    """What ``verify`` found: one verdict per generating cell and the exit code."""

    notebook: str
    lockfile: str
    cells: list[CellVerdict]
    run_error: str | None = None  # the first cell that failed now, in one line
    notes: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 nothing changed; 1 changed with the same pins and hardware; 3 changed and
        something named differs."""
        return max((c.exit_code for c in self.cells), default=0)

    @property
    def status(self) -> str:
        return {0: "identical", 1: "changed (pins unchanged)", 3: "changed"}[self.exit_code]

    def lines(self) -> list[str]:
        return [c.line() for c in self.cells] or ["no generating cell to compare"]

    def text(self) -> str:
        """The table: one line per generating cell, then the outcome."""
        changed = sum(c.changed for c in self.cells)
        tail = f"{self.notebook}: {len(self.cells)} generating cell(s), {changed} changed -> exit {self.exit_code}"
        return "\n".join([*self.lines(), *self.notes, tail])

    def to_dict(self) -> dict:
        return {
            "notebook": self.notebook,
            "lockfile": self.lockfile,
            "status": self.status,
            "exit_code": self.exit_code,
            "cells": [c.to_dict() for c in self.cells],
            "run_error": self.run_error,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None):
        rows = "".join(f"<tr><td>cell {c.cell}</td><td>{esc(c.line().split('  ', 1)[1])}</td></tr>" for c in self.cells)
        html = f"<table class='llmops-verify'>{rows}</table><div>{esc(self.text().splitlines()[-1])}</div>"
        return {"text/plain": self.text(), "text/html": html}


def verify(path, lock=None, cells=None, *, timeout: int = 600) -> VerifyResult:
    """Execute a saved notebook headless under its lockfile and compare each generating
    cell with the lineage it saved. The notebook itself is never written.

    Parameters
    ----------
    path : str or Path
        The executed, saved notebook.
    lock : str or Path, optional
        The lockfile whose pins are in force (default ``llmops.lock.json`` beside the notebook).
    cells : str or list of int, optional
        Execution counts (of the saved notebook) to compare: ``"3,7"`` or ``[3, 7]``.
    timeout : int
        Seconds per cell.

    Returns
    -------
    VerifyResult
        ``.exit_code`` (0, 1 or 3), ``.cells`` (a :class:`CellVerdict` each), ``.text()``.

    Raises
    ------
    VerifyUsageError
        No notebook, no lockfile, lineage without per-generation digests, bad ``cells``.
    """
    # deferred: nbformat is needed only where notebooks are read
    import nbformat

    notebook = Path(path)
    if not notebook.is_file():
        raise VerifyUsageError(f"no notebook at {shown_path(notebook)}")
    lockfile = Path(lock) if lock else notebook.parent / LOCKFILE
    if not lockfile.is_file():
        raise VerifyUsageError(
            f"no lockfile at {shown_path(lockfile)}: save the notebook's pins with %llm_pin --save, or pass --lock PATH"
        )
    wanted = parse_cells(cells) if isinstance(cells, str) or cells is None else [int(c) for c in cells]
    where = shown_path(notebook)
    saved = select(verifiable_cells(nbformat.read(notebook, as_version=4), where), wanted, where)
    now, run_error = _execute(notebook, lockfile, timeout)
    stopped = next((r for _, r in sorted(now.items()) if r.error is not None), None)
    verdicts = [_judge(cell, now, stopped) for cell in saved]
    if run_error is not None and stopped is not None:
        # The cell where the run stopped, in words with no machine path (it may be no generating cell).
        run_error = shown_text(f"cell {stopped.execution_count or '?'} failed: {stopped.error}")
    elif run_error is not None:
        run_error = shown_text(run_error)
    result = VerifyResult(where, shown_path(lockfile), verdicts, run_error)
    if run_error:
        result.notes.append(f"run stopped: {run_error}")
    return result


def _execute(notebook: Path, lockfile: Path, timeout: int) -> tuple[dict[int, CellRun], str | None]:
    """Run the notebook on a fresh kernel in its folder; its code cells now, by position."""
    # deferred: nbformat is needed only where notebooks are read
    import nbformat

    with tempfile.TemporaryDirectory(prefix="llmops-verify-") as tmp:
        # A cleared copy: cells after a failing one must read as not run, not keep the saved outputs.
        source, output = Path(tmp) / "source" / notebook.name, Path(tmp) / notebook.name
        source.parent.mkdir()
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.get("cell_type") == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, source)
        run_error = None
        with _kernel_env(lockfile):
            try:
                run_notebook(source, output, timeout=timeout, cwd=notebook.parent)
            except LlmopsError as e:  # a cell failed: its executed copy is still written
                if not output.is_file():
                    raise
                run_error = str(e)
        return {r.index: r for r in cell_runs(nbformat.read(output, as_version=4))}, run_error


@contextmanager
def _kernel_env(lockfile: Path) -> Iterator[None]:
    """The kernel inherits this process's environment: the lockfile in force, lineage on."""
    saved = {k: os.environ.get(k) for k in (LOCK_ENV, "LLMOPS_LINEAGE")}
    os.environ[LOCK_ENV] = str(lockfile.resolve())
    os.environ.pop("LLMOPS_LINEAGE", None)  # lineage off would leave nothing to compare
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _judge(saved: CellRun, now: dict[int, CellRun], stopped: CellRun | None) -> CellVerdict:
    current = now.get(saved.index)
    ran = current is not None and current.execution_count is not None
    # A cell that did not run is read against the cell that stopped the run.
    cause = current if ran else stopped
    return compare_cell(
        saved.bundle or {},
        current.bundle if current else None,
        cell=saved.execution_count or 0,
        index=saved.index,
        error=shown_text(cause.error) if cause is not None and cause.error else None,
        error_type=cause.error_type if cause is not None else None,
        ran=ran,
    )
