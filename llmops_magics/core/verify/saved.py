"""What a saved notebook's cells recorded: the lineage bundle in each code cell's outputs."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import VerifyUsageError
from ..lineage.record import MIME
from .compare import generating_events

# The first bundle version with per-generation digests, sampling, serving and hardware.
VERIFIABLE_VERSION = 2
_FIX = "run it again with this llmops-magics (Run All, or llmops-magics demo) and save it, then verify"


@dataclass(frozen=True)
class CellRun:
    """One code cell as a notebook holds it: where it is and what it left."""

    index: int
    cell_id: str | None
    execution_count: int | None
    bundle: dict | None  # its lineage bundle, None when it has none
    error: str | None = None  # ``Type: message`` of its error output
    error_type: str | None = None

    @property
    def generating(self) -> bool:
        return bool(generating_events(self.bundle))


def cell_runs(nb) -> list[CellRun]:
    """Every code cell of ``nb`` (an nbformat notebook), in order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        bundle, error, error_type = None, None, None
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if isinstance(data.get(MIME), dict):
                bundle = data[MIME]  # the last one wins: a cell shows its record once
            if out.get("output_type") == "error":
                error_type = out.get("ename")
                value = (out.get("evalue") or "").strip().splitlines()
                error = f"{error_type}: {value[0] if value else ''}".strip()
        found.append(CellRun(index, cell.get("id"), cell.get("execution_count"), bundle, error, error_type))
    return found


def verifiable_cells(nb, where: str) -> list[CellRun]:
    """The generating cells of a saved notebook, once its lineage is known to be verifiable.

    Raises
    ------
    VerifyUsageError
        When the notebook holds no lineage, or lineage written before per-generation
        digests (bundle version 1).
    """
    runs = cell_runs(nb)
    if not any(r.bundle is not None for r in runs):
        raise VerifyUsageError(
            f"{where} holds no lineage (no {MIME} output): load the extension (%load_ext llmops_magics), {_FIX}"
        )
    generating = [r for r in runs if r.generating]
    old = [r for r in generating if not _verifiable(r.bundle)]
    if old:
        version = old[0].bundle.get("version", 1)
        raise VerifyUsageError(
            f"{where} was saved without per-generation lineage (lineage bundle version {version}, "
            f"cell {old[0].execution_count}): {_FIX}"
        )
    return generating


def _verifiable(bundle: dict) -> bool:
    try:
        version = int(bundle.get("version", 1))
    except (TypeError, ValueError):
        return False
    if version < VERIFIABLE_VERSION:
        return False
    return all("output_digests" in e for e in generating_events(bundle))


def select(cells: list[CellRun], wanted: list[int] | None, where: str) -> list[CellRun]:
    """The cells ``--cells`` names by execution count (all of them when None).

    Raises
    ------
    VerifyUsageError
        When a number names no generating cell of the saved notebook.
    """
    if not wanted:
        return cells
    counts = {c.execution_count: c for c in cells}
    missing = [n for n in wanted if n not in counts]
    if missing:
        known = ", ".join(str(c.execution_count) for c in cells) or "none"
        raise VerifyUsageError(
            f"--cells {','.join(map(str, missing))}: no generating cell with that execution count in {where} "
            f"(generating cells: {known})"
        )
    return [counts[n] for n in wanted]


def parse_cells(text: str | None) -> list[int] | None:
    """``"3,7"`` -> ``[3, 7]``.

    Raises
    ------
    VerifyUsageError
        For anything but comma-separated execution counts.
    """
    if text is None or not str(text).strip():
        return None
    try:
        numbers = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise VerifyUsageError(
            f"--cells {text!r}: give execution counts separated by commas, e.g. --cells 3,7"
        ) from None
    if not numbers or any(n < 1 for n in numbers):
        raise VerifyUsageError(f"--cells {text!r}: give execution counts separated by commas, e.g. --cells 3,7")
    return numbers
