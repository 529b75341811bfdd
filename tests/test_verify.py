"""``llmops-magics verify``: a saved notebook executed again under its lockfile, each
generating cell compared with the lineage it saved.

The kernel tests share one small notebook executed once (real nbclient kernel, real vLLM
default model, real MLflow sqlite store in the session's home); each verify run is one
more kernel (~1 min). The comparison itself is tested on constructed records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from adapter_helpers import make_adapter

from llmops_magics.core.lineage.record import MIME
from llmops_magics.core.verify import compare_cell, compare_generation, compare_shadow, verify
from llmops_magics.errors import VerifyUsageError

ROOT = Path(__file__).resolve().parents[1]

SETUP = """%load_ext llmops_magics
import os
from pathlib import Path
import llmops_magics
%config LlmopsMagics.engine_args = {"dtype": os.environ.get("VERIFY_DTYPE", "float32")}
%llm_pin prompt verify_greet@production"""
PROMPT_CELL = "%%llm --prompt verify_greet --max-tokens 24\nAda Lovelace"
DATA_CELL = 'llmops_magics.llm(Path("question.txt").read_text(), model="adapter", max_tokens=24)'
QUESTION = "Name three colours of the rainbow, one per line."


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmops_magics.cli", "verify", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory, default_model_dir):
    """A notebook folder (notebook, lockfile, adapter, data file), executed and saved once."""
    import llmops_magics
    from llmops_magics.core.notebooks import run_notebook

    folder = tmp_path_factory.mktemp("verify") / "notebooks"
    folder.mkdir()
    make_adapter(default_model_dir, folder / "adapter", seed=1)
    shutil.copytree(folder / "adapter", folder.parent / "adapter-original")
    (folder / "question.txt").write_text(QUESTION)
    llmops_magics.register_prompt("verify_greet", "Greet {{name}} in one short sentence.", alias="production")
    llmops_magics.pin("prompt", "verify_greet@production")
    llmops_magics.save_lock(folder / "llmops.lock.json")
    llmops_magics.clear_pins()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (SETUP, PROMPT_CELL, DATA_CELL)]
    nbformat.write(nb, folder.parent / "source.ipynb")
    path = folder / "x.ipynb"
    run_notebook(folder.parent / "source.ipynb", path, cwd=folder, timeout=900)
    # The alias moves after the save: verify must run the locked version 1, not version 2.
    llmops_magics.register_prompt("verify_greet", "Greet {{name}} like a pirate.", alias="production")
    return path


def _counts(path: Path) -> dict[str, int]:
    """Execution counts of the generating cells, by their source's first line."""
    nb = nbformat.read(path, as_version=4)
    return {c.source.splitlines()[0]: c.execution_count for c in nb.cells if c.cell_type == "code"}


def test_saved_notebook_records_every_generation(saved):
    nb = nbformat.read(saved, as_version=4)
    bundles = [o["data"][MIME] for c in nb.cells for o in c.outputs if MIME in o.get("data", {})]
    gens = [e for b in bundles for e in b["events"] if e["kind"] == "generation"]
    assert [b["version"] for b in bundles] and all(b["version"] == 2 for b in bundles)
    assert len(gens) == 2
    for g in gens:
        assert g["output_digests"][0].startswith("sha256:") and g["input_digests"][0].startswith("sha256:")
        assert g["dtype"] == "float32" and g["engine_version"].startswith("vllm ")
        assert g["hardware"]["device"] == "cpu" and g["hardware"]["class"] in ("amx", "avx512_bf16", "avx512", "avx2")
        assert g["sampling"]["max_tokens"] == 24 and g["base_digest"]
    assert gens[0]["prompt"]["version"] in (1, "1") and gens[1]["adapter_digest"]


def test_verified_again_is_identical_and_the_notebook_is_not_written(saved):
    before = saved.read_bytes()
    done = _cli(str(saved), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["exit_code"] == 0 and doc["status"] == "identical"
    # The prompt's alias moved to version 2 since the save: the lockfile's version 1 ran.
    assert [c["status"] for c in doc["cells"]] == ["identical", "identical"]
    assert all(c["differences"] == [] for c in doc["cells"])
    assert saved.read_bytes() == before


def test_engine_dtype_changed_is_named(saved, monkeypatch):
    monkeypatch.setenv("VERIFY_DTYPE", "bfloat16")
    result = verify(saved)
    for cell in result.cells:
        assert "engine dtype float32 -> bfloat16" in cell.named, cell.line()
    if any(c.changed for c in result.cells):
        assert result.exit_code == 3
        assert "changed: " in result.text() and "dtype" in result.text()
    else:  # the same answers in bf16 on this CPU: identical, the difference still said
        assert result.exit_code == 0 and "identical (but engine dtype float32 -> bfloat16)" in result.text()


def test_edited_data_file_is_a_change_with_pins_unchanged(saved):
    question = saved.parent / "question.txt"
    data_cell = _counts(saved)[DATA_CELL]
    try:
        question.write_text("Write a haiku about the sea.")
        result = verify(saved, cells=[data_cell])
    finally:
        question.write_text(QUESTION)
    assert [c.cell for c in result.cells] == [data_cell]  # --cells: only that cell
    assert result.exit_code == 1, result.text()
    line = result.cells[0].line()
    assert line.startswith(f"cell {data_cell}  changed (pins unchanged)") and "input changed" in line


def test_adapter_replaced_on_disk_is_named(saved, default_model_dir):
    adapter = saved.parent / "adapter"
    try:
        shutil.rmtree(adapter)
        make_adapter(default_model_dir, adapter, seed=7)  # same shapes and path, other weights
        done = _cli(str(saved))
    finally:
        shutil.rmtree(adapter, ignore_errors=True)
        shutil.copytree(saved.parent.parent / "adapter-original", adapter)
    counts = _counts(saved)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"cell {counts[PROMPT_CELL.splitlines()[0]]}  identical" in lines
    data_line = next(x for x in lines if x.startswith(f"cell {counts[DATA_CELL]}  "))
    assert data_line.startswith(f"cell {counts[DATA_CELL]}  changed: ") and "adapter digest" in data_line


def test_missing_lockfile_is_one_line_and_exit_2(saved, tmp_path):
    done = _cli(str(saved), "--lock", str(tmp_path / "none.lock.json"))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no lockfile at" in done.stderr
    with pytest.raises(VerifyUsageError, match="no lockfile"):
        verify(saved, lock=tmp_path / "none.lock.json")


def test_notebook_with_version_1_lineage_exits_2_and_says_how_to_fix(saved):
    nb = nbformat.read(saved, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            bundle = out.get("data", {}).get(MIME)
            if bundle:
                bundle["version"] = 1
                for e in bundle["events"]:
                    for key in ("input_digests", "output_digests", "hardware", "sampling"):
                        e.pop(key, None)
    old = saved.parent / "old.ipynb"
    nbformat.write(nb, old)
    done = _cli(str(old), "--lock", str(saved.parent / "llmops.lock.json"))
    assert done.returncode == 2
    assert "without per-generation lineage (lineage bundle version 1" in done.stderr and "run it again" in done.stderr


def test_bad_cells_exit_2(saved):
    for cells in ("x,3", "999"):
        done = _cli(str(saved), "--cells", cells)
        assert done.returncode == 2 and "--cells" in done.stderr, done.stderr
    done = _cli(str(saved), "--cells", "999", "--json")
    assert done.returncode == 2 and json.loads(done.stdout)["exit_code"] == 2


# ---------------------------------------------------------------- the comparison alone


def _gen(**over) -> dict:
    g = {
        "kind": "generation",
        "model": "chat/1",
        "model_digest": "sha256:m1",
        "prompt": {"name": "greet", "version": 1, "digest": "sha256:p1"},
        "dtype": "float32",
        "backend": "vllm",
        "device": "cpu",
        "input_digests": ["sha256:i"],
        "output_digests": ["sha256:o"],
        "sampling": {"max_tokens": 24, "temperature": 0.0, "seed": 0, "top_p": 1.0},
        "engine_args": {"dtype": "float32", "max_model_len": 2048},
        "engine_version": "vllm 0.11.0",
        "base_digest": "sha256:b",
        "adapter": "adapter",
        "adapter_digest": "sha256:a",
        "hardware": {"device": "cpu", "name": "Xeon", "class": "avx512"},
    }
    return {**g, **over}


def _bundle(*events, status="ok") -> dict:
    return {"version": 2, "cell_id": "c1", "status": status, "events": list(events)}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"model": "chat/2", "model_digest": "sha256:m2"}, ["model chat 1 -> 2", "model digest"]),
        ({"model": "other"}, ["model chat/1 -> other"]),
        ({"prompt": {"name": "greet", "version": 2, "digest": "sha256:p2"}}, ["prompt greet 1 -> 2", "prompt digest"]),
        ({"prompt": {"name": "greet", "version": 1, "digest": "sha256:p9"}}, ["prompt digest"]),
        ({"base_digest": "sha256:b2"}, ["base digest"]),
        ({"adapter_digest": "sha256:a2"}, ["adapter digest"]),
        ({"adapter": "other"}, ["adapter adapter -> other"]),
        (
            {"dtype": "bfloat16", "engine_args": {"dtype": "bfloat16", "max_model_len": 2048}},
            ["engine dtype float32 -> bfloat16"],
        ),
        ({"backend": "transformers"}, ["engine backend vllm -> transformers"]),
        ({"engine_args": {"dtype": "float32", "max_model_len": 4096}}, ["engine arg max_model_len 2048 -> 4096"]),
        ({"engine_version": "vllm 0.12.0"}, ["engine version vllm 0.11.0 -> vllm 0.12.0"]),
        (
            {"sampling": {"max_tokens": 32, "temperature": 0.0, "seed": 0, "top_p": 1.0}},
            ["sampling max_tokens 24 -> 32"],
        ),
        ({"hardware": {"device": "cpu", "name": "EPYC", "class": "avx2"}}, ["hardware cpu avx512 -> avx2"]),
        ({"hardware": {"device": "gpu", "name": "H100", "class": "H100"}}, ["hardware cpu avx512 -> gpu H100"]),
    ],
)
def test_every_named_difference(change, named):
    changed = compare_cell(_bundle(_gen()), _bundle(_gen(output_digests=["sha256:x"], **change)), cell=3, index=1)
    assert list(changed.named) == named and changed.exit_code == 3
    assert changed.line() == f"cell 3  changed: {' / '.join(named)}"
    same = compare_cell(_bundle(_gen()), _bundle(_gen(**change)), cell=3, index=1)
    assert same.exit_code == 0 and same.line() == f"cell 3  identical (but {' / '.join(named)})"


def test_identical_and_unnamed_changes():
    assert compare_cell(_bundle(_gen()), _bundle(_gen()), cell=2, index=0).line() == "cell 2  identical"
    moved = compare_cell(_bundle(_gen()), _bundle(_gen(output_digests=["sha256:x"])), cell=5, index=0)
    assert moved.exit_code == 1 and moved.line() == "cell 5  changed (pins unchanged)"
    fed = compare_cell(
        _bundle(_gen()), _bundle(_gen(input_digests=["sha256:j"], output_digests=["sha256:x"])), cell=5, index=0
    )
    assert fed.exit_code == 1 and fed.line() == "cell 5  changed (pins unchanged) · input changed"
    more = compare_cell(_bundle(_gen()), _bundle(_gen(), _gen()), cell=5, index=0)
    assert more.exit_code == 1 and "1 generating call(s) when saved, 2 now" in more.line()
    # Another CPU of the same class answers alike in bf16: said, not a named difference.
    other_cpu = _gen(hardware={"device": "cpu", "name": "EPYC", "class": "avx512"})
    assert compare_cell(_bundle(_gen()), _bundle(other_cpu), cell=2, index=0).exit_code == 0


def test_a_cell_that_fails_now():
    pin_error = (
        "UsageError: DigestMismatch: weights of chat/1 changed on disk since registration (adapter_model.safetensors)"
    )
    failed = compare_cell(_bundle(_gen()), None, cell=4, index=1, error=pin_error, error_type="UsageError")
    assert failed.exit_code == 3 and failed.line() == f"cell 4  changed: fails: {pin_error}"
    other = compare_cell(_bundle(_gen()), None, cell=4, index=1, error="ValueError: bad", error_type="ValueError")
    assert other.exit_code == 1 and other.line() == "cell 4  changed (pins unchanged) · fails now: ValueError: bad"
    skipped = compare_cell(_bundle(_gen()), None, cell=6, index=2, ran=False)
    assert skipped.changed and "not run: an earlier cell failed" in skipped.line()
    # Stopped by a pin error in a cell that generates nothing (%llm_pin --check): named, exit 3.
    drift = "UsageError: PinDrift: model chat@champion: alias moved 1 -> 2"
    behind = compare_cell(_bundle(_gen()), None, cell=6, index=2, ran=False, error=drift, error_type="UsageError")
    assert behind.exit_code == 3 and behind.line() == f"cell 6  changed: not run: an earlier cell fails: {drift}"
    # Words are not types: a message that merely mentions a digest is no pin error.
    vague = "ValueError: the digest of my input looks odd"
    assert compare_cell(_bundle(_gen()), None, cell=4, index=1, error=vague, error_type="ValueError").exit_code == 1


def test_shadow_differences():
    a = {
        "kind": "shadow",
        "primary_label": "chat/1",
        "candidate_label": "chat/2",
        "serving": {"primary": {"dtype": "float32"}, "candidate": {"dtype": "float32"}},
        "input_digests": ["sha256:i"],
        "output_digests": {"primary": ["sha256:p"], "candidate": ["sha256:c"]},
        "hardware": {"device": "cpu", "class": "avx512"},
    }
    b = {
        **a,
        "candidate_label": "chat/3",
        "serving": {"primary": {"dtype": "float32"}, "candidate": {"dtype": "bfloat16"}},
        "output_digests": {"primary": ["sha256:p"], "candidate": ["sha256:c2"]},
    }
    d = compare_shadow(a, b)
    assert d.named == ["candidate chat/2 -> chat/3", "candidate engine dtype float32 -> bfloat16"]
    assert d.outputs_changed and not compare_shadow(a, dict(a)).outputs_changed
    assert compare_generation(_gen(), _gen()).named == []


def test_shadow_digests_and_candidate_prompt_are_named():
    a = {
        "kind": "shadow",
        "primary_label": "chat/1",
        "candidate_label": "chat/1",
        "prompt": "summarize/1",
        "candidate_prompt": "summarize/2",
        "digests": {"primary_prompt_digest": "p1", "candidate_prompt_digest": "p2", "candidate_adapter_digest": "a1"},
        "output_digests": {"primary": ["sha256:p"], "candidate": ["sha256:c"]},
    }
    b = {
        **a,
        "candidate_prompt": "summarize/3",
        "digests": {**a["digests"], "candidate_prompt_digest": "p3", "candidate_adapter_digest": "a2"},
        "output_digests": {"primary": ["sha256:p"], "candidate": ["sha256:c2"]},
    }
    d = compare_shadow(a, b)
    assert d.named == [
        "candidate prompt summarize/2 -> summarize/3",
        "candidate adapter digest",
        "candidate prompt digest",
    ]
    assert d.outputs_changed


def test_an_adapter_added_or_removed_is_named():
    plain = _gen(adapter=None, adapter_digest=None)
    tuned = _gen(adapter="adapters/in-short", adapter_digest="a" * 64)
    added = compare_generation(plain, {**tuned, "output_digests": ["sha256:other"]})
    assert added.named == ["adapter none -> adapters/in-short", "adapter digest"] and added.outputs_changed
    # A record without the field (written before it existed) names nothing.
    older = {k: v for k, v in plain.items() if k not in ("adapter", "adapter_digest")}
    assert compare_generation(older, tuned).named == []
