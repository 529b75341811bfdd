"""IPython hooks that feed the lineage recorder: ``pre_run_cell`` / ``post_run_cell``.

Kept apart from core because they read IPython objects (``ExecutionInfo``,
``ExecutionResult``) and call ``display``. Whatever goes wrong while recording must
never break the user's cell: it is reported once on stderr and recording goes on.
"""

from __future__ import annotations

import os
import sys

from ..core import tracking
from ..core.lineage import record as lineage

_hooks: dict = {}
_warned = False


def _warn(e: Exception) -> None:
    global _warned
    if not _warned:
        _warned = True
        print(f"llmops lineage: recording failed ({type(e).__name__}: {e}); cells still run", file=sys.stderr)


def _notebook(shell) -> str | None:
    # JupyterLab tells the kernel through JPY_SESSION_NAME; VS Code through a variable.
    return lineage.default_notebook() or shell.user_ns.get("__vsc_ipynb_file__")


def install(shell, *, fsync: str | None = None) -> lineage.LineageRecorder | None:
    """Start recording and register the hooks on ``shell`` (idempotent).

    ``LLMOPS_LINEAGE=off`` in the environment turns recording off.
    """
    if os.environ.get("LLMOPS_LINEAGE", "").lower() in ("0", "off", "false", "no"):
        return None
    rec = lineage.start_recording(notebook=_notebook(shell), fsync=fsync)
    if rec.preload_error:
        print(
            f"llmops: MLflow is not ready ({rec.preload_error}); cells still run and lineage waits in the spool",
            file=sys.stderr,
        )
    if _hooks:
        return rec

    def pre(info):
        try:
            # Runs this cell writes name it as their source. IPython has counted the cell
            # already when it stores history, so the cell's own number is one less.
            count = shell.execution_count - (1 if getattr(info, "store_history", True) else 0)
            tracking.set_source(_notebook(shell), count)
            rec.begin_cell(info.raw_cell, getattr(info, "cell_id", None))
        except Exception as e:
            _warn(e)

    def post(result):
        try:
            error = result.error_before_exec or result.error_in_exec
            record = rec.end_cell(result.execution_count, error)
        except Exception as e:
            _warn(e)
            return
        if record is not None and record.did_llm_work:
            from IPython.display import display

            display({lineage.MIME: record.bundle(), "text/plain": record.text_line()}, raw=True)

    shell.events.register("pre_run_cell", pre)
    shell.events.register("post_run_cell", post)
    _hooks.update(pre_run_cell=pre, post_run_cell=post)
    return rec


def uninstall(shell, ship_timeout_s: float = 5.0) -> None:
    """Unregister the hooks, one last bounded shipping try, close the spool."""
    for name, fn in list(_hooks.items()):
        try:
            shell.events.unregister(name, fn)
        except ValueError:
            pass
    _hooks.clear()
    lineage.stop_recording(ship_timeout_s)
