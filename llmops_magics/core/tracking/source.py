"""Where the work runs from (the notebook, the cell), for the runs it writes.

The IPython edge sets it before each cell (``magics/lineage_hooks.py``); :func:`log_run`
reads it when a run is made, so the run page's "Source" names the notebook and the cell,
and a run kept on disk and written later still names the cell that did the work.
Outside IPython the source is the script being run.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from ..paths import shown_path

NOTEBOOK_TAG = "llmops.lineage.notebook"
CELL_TAG = "llmops.lineage.cell"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"


@dataclass(frozen=True)
class WorkSource:
    """The notebook (as it may be shared: relative to the notebook's folder, ``~/...``)
    and the cell's execution count; either may be unknown."""

    notebook: str | None = None
    cell: int | None = None


_lock = threading.Lock()
_current = WorkSource()


def set_source(notebook: str | None = None, cell: int | None = None) -> WorkSource:
    """Record where the work about to run comes from (called once per cell).

    ``notebook`` may be absolute: it is kept as :func:`~llmops_magics.core.paths.shown_path`
    shows it, so no run names this machine's folders.
    """
    global _current
    source = WorkSource(shown_path(notebook) if notebook else None, int(cell) if cell is not None else None)
    with _lock:
        _current = source
    return source


def current_source() -> WorkSource:
    """What :func:`set_source` last recorded."""
    with _lock:
        return _current


def source_tags(source: WorkSource | None = None) -> dict:
    """MLflow's own source tags (``mlflow.source.name``/``type``) and ours for the notebook
    and cell. The run page shows the last part of the source name, so the cell goes in it
    too: ``notebooks/quickstart.ipynb · cell 11`` reads ``quickstart.ipynb · cell 11``."""
    source = source or current_source()
    tags = {}
    if source.cell is not None:
        tags[CELL_TAG] = str(source.cell)
    if source.notebook:
        tags[NOTEBOOK_TAG] = source.notebook
        where = source.notebook
        tags[SOURCE_TYPE_TAG] = "NOTEBOOK"
    elif source.cell is not None:
        where = "IPython"  # a terminal or a kernel that does not say which notebook
        tags[SOURCE_TYPE_TAG] = "NOTEBOOK"
    else:
        script = sys.argv[0] if sys.argv and sys.argv[0] else ""
        if not script or script == "-c":
            return tags
        where = shown_path(script)
        tags[SOURCE_TYPE_TAG] = "LOCAL"
    tags[SOURCE_NAME_TAG] = f"{where} · cell {source.cell}" if source.cell is not None else where
    return tags
