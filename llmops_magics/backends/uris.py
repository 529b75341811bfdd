"""URIs as they may be shown: without the credentials some of them carry."""

from __future__ import annotations

import re


def public_uri(uri: str) -> str:
    """The URI without credentials (``user:password@``), safe for messages, lockfiles and logs.

    Here, below ``core``, so every layer shows a tracking URI, a Ray address or a table
    URI the same way.
    """
    return re.sub(r"//[^/@]*@", "//", uri)
