"""The default models come from PyPI packages; conversion is atomic and keyed by content."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from llmops_magics.backends import default_models
from llmops_magics.backends.files import sha256_file


def test_converted_folder_is_keyed_by_gguf_digest(default_model_dir, tmp_path):
    digest = sha256_file(default_models.chat_gguf(), cache_dir=tmp_path)
    assert default_model_dir.name == f"SmolLM2-135M-Instruct-{digest[:16]}"
    assert (default_model_dir / "model.safetensors").is_file()
    assert (default_model_dir / "chat_template.jinja").is_file() or "chat_template" in (
        default_model_dir / "tokenizer_config.json"
    ).read_text()


def test_default_embedding_model_ships_in_package():
    path = default_models.embedding_model_dir()
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


@pytest.mark.slow
def test_interrupted_conversion_leaves_no_half_model(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "from pathlib import Path; from llmops_magics.backends.default_models import chat_model_dir; "
        f"print(chat_model_dir(Path({str(cache)!r}), progress=False))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # Kill it while it is writing: the temporary folder appears first.
    deadline = time.time() + 120
    models = cache / "models"
    while time.time() < deadline and not (models.is_dir() and any(models.glob(".*.tmp-*"))):
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = [p for p in models.glob("SmolLM2-*") if not p.name.startswith(".")]
    assert finished == [], "a killed conversion must not leave a model folder"
    # The next run converts fully, ignoring the leftover temporary folder.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    target = models / out.stdout.strip().split("/")[-1]
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def test_digest_cache_reads_no_bytes_for_unchanged_file(tmp_path):
    from llmops_magics.backends import files

    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(1 << 20))
    before = files.bytes_hashed
    first = sha256_file(f, cache_dir=tmp_path)
    assert files.bytes_hashed - before == 1 << 20
    mid = files.bytes_hashed
    assert sha256_file(f, cache_dir=tmp_path) == first
    assert files.bytes_hashed == mid, "an unchanged file is not read again"
    f.write_bytes(os.urandom(1 << 20))
    assert sha256_file(f, cache_dir=tmp_path) != first
