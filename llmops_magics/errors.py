"""Typed errors. Core raises these; each edge (magic, CLI, widget) turns them into one line.

``str(error)`` is the whole message a user sees, so every message says what is wrong
and how to fix it.
"""

from __future__ import annotations


class LlmopsError(Exception):
    """Base of every error llmops_magics raises on purpose."""


class ConfigError(LlmopsError):
    """A setting has a value we cannot use."""


class BadInput(LlmopsError):
    """The user's input (cell body, option, ref) cannot be used as given."""


class ModelNotFound(LlmopsError):
    """A model ref names nothing we can load."""


class BackendUnavailable(LlmopsError):
    """A generation backend is not installed or would not start."""

    def __init__(self, message: str, *, extra: str | None = None):
        if extra:
            message = f"{message} (install it with: pip install 'llmops-magics[{extra}]')"
        super().__init__(message)
        self.extra = extra


class GenerationError(LlmopsError):
    """A backend accepted the request but failed to produce an answer."""


class TrackingError(LlmopsError):
    """MLflow could not be reached or refused a call."""


class PromptNotFound(LlmopsError):
    """A prompt ref names no prompt, version or alias in the registry."""


class DigestMismatch(LlmopsError):
    """Files or a lockfile do not match the digests recorded for them."""


class PinDrift(LlmopsError):
    """A pinned alias moved or pinned files changed since the pin (``%llm_pin --check``)."""


class PromotionRefused(LlmopsError):
    """``%llm_promote`` found no evidence that allows the move; the message says which is missing."""


class AliasProtected(LlmopsError):
    """A protected alias can only be moved by a promotion or a forced move with a reason."""


class AliasRace(LlmopsError):
    """An alias moved, or was being moved, while this process checked it: nothing was changed."""


class VerifyUsageError(LlmopsError):
    """``llmops-magics verify`` cannot run: no lockfile, a notebook saved without per-generation lineage."""
