"""Models registered in MLflow without copying weights: manifest, digests, resolution."""

from __future__ import annotations

import shutil

import pytest
from IPython.core.error import UsageError
from registry_helpers import linked_default, mlflow_client, one_line, sqlite_store, store, uniq  # noqa: F401

import llmops_magics
from llmops_magics.backends import files
from llmops_magics.core.generation.resolve import resolve_model
from llmops_magics.core.registry.models import find_model, register_model
from llmops_magics.errors import BadInput, DigestMismatch, ModelNotFound, PinDrift


def test_538_mb_are_hashed_once_then_never_again(sqlite_store, uniq, linked_default):
    name = uniq("chat")
    size = sum(p.stat().st_size for p in linked_default.iterdir())
    assert size > 500e6
    before = files.bytes_hashed
    first = register_model(name, str(linked_default), revision="smollm2-q4_1")
    assert first.created and files.bytes_hashed - before == size, "every byte hashed once"
    before = files.bytes_hashed
    second = register_model(name, str(linked_default), revision="smollm2-q4_1")
    assert not second.created and second.model.version == 1
    assert str(second).startswith(f"unchanged: still {name}/1")
    llmops_magics.pin("model", name)
    assert files.bytes_hashed - before == 0, "a second register and a pin read no weight bytes"
    assert resolve_model(name).base_path == str(linked_default)


def test_registration_is_an_external_model_without_weights(sqlite_store, uniq, default_model_dir):
    name = uniq("chat")
    reg = register_model(name, "default", params=["max_model_len=2048", "dtype=float32"], message="first")
    c = mlflow_client()
    mv = c.get_model_version(name, "1")
    assert mv.tags["llmops.digest"] == reg.model.digest
    model_id = mv.model_id or mv.tags["llmops.model_id"]  # sqlite leaves mv.model_id empty
    logged = c.get_logged_model(model_id)
    assert logged.tags["mlflow.model.isExternal"] == "true"
    artifacts = {a.path: a.file_size for a in c.list_logged_model_artifacts(model_id)}
    assert set(artifacts) == {"MLmodel", "manifest.json"}, "weights are not copied"
    assert sum(artifacts.values()) < 50_000
    resolved = resolve_model(f"{name}/1")
    assert resolved.base_path == str(default_model_dir) and resolved.version == "1"
    assert resolved.params == {"max_model_len": 2048, "dtype": "float32"}
    # The manifest lists every file with its sha256.
    names = {f.path for f in reg.model.files}
    assert {"config.json", "model.safetensors"} <= names and all(len(f.sha256) == 64 for f in reg.model.files)


def test_weight_change_on_disk_is_detected(store, uniq, lora_adapter, default_model_dir, tmp_path):
    name = uniq("sharp")
    adapter = tmp_path / "adapter"
    shutil.copytree(lora_adapter, adapter)
    reg = register_model(name, "default", adapter=str(adapter), alias="champion")
    resolved = resolve_model(f"{name}@champion")
    assert resolved.adapter.path == str(adapter) and resolved.base_path == str(default_model_dir)
    llmops_magics.pin("model", f"{name}@champion")
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the LoRA weights
    weights.write_bytes(bytes(data))
    flags = llmops_magics.pins()._repr_mimebundle_()["text/plain"]
    assert "touched on disk" in flags, "the cheap view notices the files were touched"
    with pytest.raises(PinDrift) as err:
        llmops_magics.check_pins()
    assert f"weights of {reg.model.label} changed on disk since registration (adapter_model.safetensors)" in str(
        err.value
    )
    assert "changed on disk since registration" in llmops_magics.pins()._repr_mimebundle_()["text/plain"]
    with pytest.raises(DigestMismatch, match="register a new version"):
        llmops_magics.pin("model", name)
    # Registering the changed adapter makes a new version.
    assert register_model(name, "default", adapter=str(adapter)).model.version == 2


def test_unknown_models_say_what_exists(sqlite_store, uniq):
    name = uniq("chat")
    register_model(name, "default", alias="champion")
    with pytest.raises(ModelNotFound, match=rf"unknown model 'x{name}' \(registered models: .*{name}"):
        resolve_model(f"x{name}")
    with pytest.raises(ModelNotFound, match=r"has no version 4 \(versions: 1\)"):
        resolve_model(f"{name}/4")
    with pytest.raises(ModelNotFound, match=r"has no alias 'staging' \(aliases: champion\)"):
        resolve_model(f"{name}@staging")
    assert resolve_model("default").name == "default", "the embedded default stays itself"
    with pytest.raises(BadInput, match="not a local folder"):
        register_model(name, "/no/such/folder")
    with pytest.raises(BadInput, match="not KEY=VALUE"):
        register_model(name, "default", params=["oops"])


def test_llm_model_magic_register_list_show(shell, sqlite_store, uniq):
    name = uniq("minilm")
    out = shell.run_cell(f"%llm_model register {name} --base default --kind embedding -m 'the default embedder'")
    assert out.created and out.model.kind == "embedding"
    assert resolve_model(name, kind="embedding").kind == "embedding"
    listing = shell.run_cell("%llm_model list")._repr_mimebundle_()["text/plain"]
    assert name in listing and "embedding" in listing
    shown = shell.run_cell(f"%llm_model show {name}/1")._repr_mimebundle_()
    assert shown["text/plain"].startswith(f"{name}/1") and "<" not in shown["text/html"].replace("<div", "").replace(
        "</div>", ""
    )


@pytest.mark.parametrize(
    "line, message",
    [
        ("%llm_model register", "needs a NAME"),
        ("%llm_model register x", "needs --base"),
        ("%llm_model register x --base default --param nokey", "is not KEY=VALUE"),
        ("%llm_model register x --base /nope", "not a local folder"),
        ("%llm_model register default --base default", "embedded default model's name"),
        ("%llm_model show nothing-here-xyz", "unknown model 'nothing-here-xyz'"),
        ("%llm_model fly", "invalid choice"),
        ("%llm_model register 'x", "check the quotes"),
    ],
)
def test_bad_model_lines_are_one_line(shell, sqlite_store, line, message):
    with pytest.raises(UsageError) as err:
        shell.run_cell(line)
    assert message in str(err.value) and one_line(str(err.value))


def test_generation_through_a_pinned_registered_model(shell, sqlite_store, uniq):
    name = uniq("chat")
    register_model(name, "default", alias="champion")
    shell.run_cell(f"%llm_pin model {name}@champion")
    register_model(name, "default", params=["note=second"], alias="champion")  # champion -> 2
    result = shell.run_cell(f"%%llm --model {name} --max-tokens 16\nWhat is the capital of France?")
    assert result.model.label == f"{name}/1", "a pinned name runs its pinned version"
    assert "Paris" in result.answer
    assert find_model(f"{name}@champion").version == 2
