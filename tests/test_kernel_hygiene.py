"""What a notebook user sees and what can break a kernel at random, in real kernels.

* The first vLLM cell shows the answer, our status line and our progress bar, and no
  engine output (weight-loading bars, vLLM's own bars, warnings, log lines).
* Engine output is captured per thread: another thread's output during an engine start
  still reaches the console.
* mlflow is never first imported off the main thread (two threads importing it at once
  fail with "partially initialized module 'mlflow.tracking'").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import Kernel  # noqa: E402

from llmops_magics.core.notebooks import run_notebook  # noqa: E402

pytestmark = pytest.mark.slow

# Text that engines write and a cell must never show.
ENGINE_NOISE = (
    "Loading safetensors",
    "checkpoint shards",
    "est. speed",
    "Processed prompts",
    "Rendering conversations",
    "Adding requests",
    "FutureWarning",
    "UserWarning",
    "Warning:",
    " INFO ",
    "WARNING",
    "Triton",
    "Downcasting",
    "Loading weights",
    "View run",
)


def _outputs_text(cell) -> list[tuple[str, str]]:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(("stream:" + o["name"], o["text"]))
        elif "data" in o:
            out.append((",".join(sorted(o["data"])), o["data"].get("text/plain", "")))
        else:
            out.append((o["output_type"], str(o)))
    return out


def _kernel_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "JPY_"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "LLMOPS_HOME": str(home),
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def test_first_vllm_cell_of_a_real_kernel_shows_no_engine_output(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext llmops_magics"),
        nbformat.v4.new_code_cell("%%llm --max-tokens 24 --backend vllm\nWhat is the capital of France?"),
        nbformat.v4.new_code_cell("%%llm --max-tokens 8 --backend vllm --each-line\nWhat is 2+2?\nName a color."),
    ]
    path = tmp_path / "quiet.ipynb"
    nbformat.write(nb, path)
    executed = run_notebook(path, tmp_path / "quiet.out.ipynb", cwd=tmp_path, timeout=600)
    first, second = (_outputs_text(c) for c in executed.cells[1:3])
    for kind, text in first + second:
        assert not kind.startswith("stream"), f"a stream reached the cell: {text[:300]!r}"
        for noise in ENGINE_NOISE:
            assert noise not in text, f"engine output in the cell: {text[:300]!r}"
    kinds = [k for k, _ in first]
    # Our status line and bar are saved finished (one line of text each), never as "0%|".
    lines = [t for k, t in first if k == "text/plain" and "engine for default" in t]
    assert len(lines) == 1 and "vLLM engine for default ready" in lines[0], "one finished status line of ours"
    answer = next(t for k, t in first if "text/html" in k)
    assert "Paris" in answer and re.search(r"\((float32|bfloat16|float16), (cpu|cuda)\)", answer)
    assert sum("application/vnd.llmops.lineage+json" in k for k in kinds) == 1
    bars = [t for k, t in second if k == "text/plain" and t.startswith("generating with default")]
    assert len(bars) == 1 and "2/2" in bars[0], "one progress bar of ours (not vLLM's), saved finished"
    assert not any("0%|" in t for _, t in first + second)
    # The kernel's own console (its TCP warning) went to a log beside the output, not here.
    assert (tmp_path / "quiet.out.kernel.log").is_file()


CAPTURE = textwrap.dedent("""
    import logging, os, sys, threading, time, warnings
    from pathlib import Path
    from llmops_magics.backends import engine_logs

    home = Path(sys.argv[1])
    engine_logs.route_engine_logs(home / "engines.log")
    stop = threading.Event()
    def ticker():
        n = 0
        while not stop.is_set():
            print(f"tick {n}", flush=True)
            n += 1
            time.sleep(0.01)
    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.1)
    with engine_logs.engine_output(home / "own.log") as console:
        print("engine says hello")
        warnings.warn("engine warning")
        os.write(2, b"native bytes from the engine\\n")
        logging.getLogger("vllm.worker").warning("engine log record")
        child = threading.Thread(target=lambda: print("engine child thread"))
        child.start(); child.join()
        print("our status line", file=console, flush=True)
        time.sleep(0.3)
    stop.set(); t.join()
    print("after the block")
""")


def test_engine_output_is_captured_for_the_engine_thread_only(tmp_path):
    out = subprocess.run([sys.executable, "-c", CAPTURE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    own = (tmp_path / "own.log").read_text()
    for line in (
        "engine says hello",
        "engine warning",
        "native bytes from the engine",
        "engine log record",
        "engine child thread",
    ):
        assert line in own, f"{line!r} should be in the engine's own log"
        assert line not in out.stdout + out.stderr, f"{line!r} leaked to the console"
    assert "engine says hello" in (tmp_path / "engines.log").read_text(), "the shared log has it too"
    ticks = [x for x in out.stdout.splitlines() if x.startswith("tick")]
    assert len(ticks) >= 20, "another thread kept printing to the console during the block"
    assert "tick" not in own, "another thread's output is not the engine's"
    assert "our status line" in out.stderr and "after the block" in out.stdout


AUDIT = """
import sys, threading
_off_main = []
def _audit(event, args):
    if event != "import" or args[0].split(".")[0] != "mlflow":
        return
    if threading.current_thread() is not threading.main_thread():
        _off_main.append((args[0], threading.current_thread().name))
sys.addaudithook(_audit)
"""


@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_mlflow_is_never_first_imported_off_the_main_thread(tmp_path, store, mlflow_server):
    """An audit hook in a real kernel sees every first import of an mlflow module and the
    thread that did it, while the lineage shipper runs beside the cells."""
    env = _kernel_env(tmp_path / "home")
    if store == "server":
        env["LLMOPS_TRACKING_URI"] = mlflow_server.uri
    kernel = Kernel(env, tmp_path)
    try:
        kernel.run(AUDIT)
        kernel.run("%load_ext llmops_magics")
        for cell in (
            "%%llm_prompt hygiene -m first\nSay {{x}} twice.",
            "%%llm --max-tokens 4 --backend transformers\nhi",
            "%llm_pin prompt hygiene",
            "%lineage sync",
            "import time; time.sleep(2)",
            "%lineage sync",
        ):
            reply, outputs = kernel.run(cell)
            assert reply["status"] == "ok", outputs
        reply, outputs = kernel.run("print(sorted(set(_off_main)))")
        text = "".join(o.get("text", "") for o in outputs)
        assert text.strip() == "[]", f"mlflow modules first imported off the main thread: {text}"
    finally:
        kernel.stop()


def test_fresh_kernels_touching_mlflow_while_the_shipper_starts(tmp_path):
    """Three fresh kernels: MLflow work in the very cell after the extension loads."""
    for i in range(3):
        kernel = Kernel(_kernel_env(tmp_path / f"home{i}"), tmp_path)
        try:
            reply, outputs = kernel.run(
                "%load_ext llmops_magics\n"
                "import mlflow.entities, mlflow.tracking\n"
                "from llmops_magics.core.tracking import client\n"
                "client().search_experiments(max_results=5)"
            )
            assert reply["status"] == "ok", outputs
            reply, outputs = kernel.run("%%llm_prompt fresh -m first\nHello {{name}}")
            assert reply["status"] == "ok", outputs
        finally:
            kernel.stop()
