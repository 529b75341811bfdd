"""Blind A/B review of a shadow run: votes spooled first, then written to MLflow (the run's
tables, and feedback on the traces of each case); several reviewers, and their agreement."""

from .agreement import Agreement, agreement, krippendorff_alpha
from .session import ReviewCase, ReviewSession, ReviewVerdict, Summary, Tally, open_review, rows_from_run, tally

__all__ = [
    "Agreement",
    "ReviewCase",
    "ReviewSession",
    "ReviewVerdict",
    "Summary",
    "Tally",
    "agreement",
    "krippendorff_alpha",
    "open_review",
    "rows_from_run",
    "tally",
]
