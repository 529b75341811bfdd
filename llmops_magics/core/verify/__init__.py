"""Verify a saved notebook: run it again under its lockfile, compare with its lineage."""

from .compare import CellVerdict, compare_cell, compare_generation, compare_shadow
from .run import VerifyResult, verify

__all__ = ["CellVerdict", "VerifyResult", "compare_cell", "compare_generation", "compare_shadow", "verify"]
