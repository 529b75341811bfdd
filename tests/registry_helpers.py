"""Fixtures shared by the prompt/model registry and pin tests (issue 3).

Every test runs against the embedded sqlite store and against a real `mlflow server`
process (the session's ``mlflow_server`` fixture); names are unique per test so the
stores can be shared by the whole session (a fresh sqlite schema costs seconds).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

STORES = ["sqlite", "server"]


@pytest.fixture(params=STORES)
def store(request):
    """The tracking store a test runs against; pins start and end empty."""
    import llmops_magics
    from llmops_magics.core.registry import pins

    pins.clear_pins()
    if request.param == "server":
        llmops_magics.configure(tracking_uri=request.getfixturevalue("mlflow_server").uri)
    yield request.param
    pins.clear_pins()


@pytest.fixture
def sqlite_store():
    """The embedded sqlite store only (for behaviour that does not depend on the store)."""
    from llmops_magics.core.registry import pins

    pins.clear_pins()
    yield "sqlite"
    pins.clear_pins()


@pytest.fixture
def uniq():
    """A name maker: uniq("summarize") -> "summarize-3fa2c1"."""
    tag = uuid.uuid4().hex[:6]
    return lambda base: f"{base}-{tag}"


@pytest.fixture(scope="session")
def linked_default(tmp_path_factory, default_model_dir) -> Path:
    """The default model's files hard-linked into a new folder: same bytes, new paths,
    so the digest cache has never seen them (the first registration must hash them)."""
    out = tmp_path_factory.mktemp("linked") / "smollm2"
    out.mkdir()
    for p in Path(default_model_dir).iterdir():
        if p.is_file():
            try:
                os.link(p, out / p.name)
            except OSError:  # another filesystem: copy instead
                import shutil

                shutil.copy2(p, out / p.name)
    return out


def mlflow_client():
    from llmops_magics.core.tracking import client

    return client()


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text
