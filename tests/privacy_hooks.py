"""A redaction hook as a user would write one (``%config LlmopsMagics.redact_text``)."""

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def scrub(text: str) -> str:
    return EMAIL.sub("<email>", text)
