"""IPython edge: parse arguments, call one core function, return a display object."""

from .llm import LlmopsMagics

MAGICS = (LlmopsMagics,)

__all__ = ["LlmopsMagics", "MAGICS"]
