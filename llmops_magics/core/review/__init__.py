"""Blind A/B review of a shadow run: votes spooled first, then written to MLflow."""

from .session import ReviewCase, ReviewSession, ReviewVerdict, Tally, open_review, rows_from_run, tally

__all__ = ["ReviewCase", "ReviewSession", "ReviewVerdict", "Tally", "open_review", "rows_from_run", "tally"]
