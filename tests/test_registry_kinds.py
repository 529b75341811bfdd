"""The registry's shape: kinds as objects, one import direction, names MLflow classifies.

The import checks read the code (no MLflow); the rest runs against the embedded store.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from registry_helpers import sqlite_store, uniq  # noqa: F401

from llmops_magics.core import registry
from llmops_magics.core.registry import MODELS, PROMPTS, ModelRef, PromptRef, kind_of, resolve
from llmops_magics.errors import BadInput, ModelNotFound, PromptNotFound

PACKAGE = Path(registry.__file__).parent


def _sibling_imports(path: Path) -> list[tuple[str, bool]]:
    """(sibling module, inside a function) for each import of the registry by ``path``."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    local = {id(n) for f in functions for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            out += [(n, id(node) in local) for n in names]
        elif isinstance(node, ast.ImportFrom) and node.level > 1 and id(node) in local:
            out.append(("(another package)", True))
    return out


GRAPH = {p.stem: _sibling_imports(p) for p in PACKAGE.glob("*.py")}


def test_registry_modules_import_in_one_direction():
    edges = {m: {t for t, _ in deps if t in GRAPH and t != m} for m, deps in GRAPH.items()}
    done: set[str] = set()
    while len(done) < len(edges):
        ready = {m for m in edges if m not in done and edges[m] <= done}
        assert ready, f"import cycle among {sorted(set(edges) - done)}"
        done |= ready
    assert not any("__init__" in deps for m, deps in edges.items() if m != "__init__"), "siblings, not __init__"


def test_no_function_local_project_import_in_the_registry():
    hidden = [f"{m} imports {t}" for m, deps in GRAPH.items() for t, local in deps if local]
    assert not hidden


def test_the_registry_never_imports_generation():
    knows = sorted(p.stem for p in PACKAGE.glob("*.py") if "..generation" in p.read_text())
    assert knows == []


def test_the_registry_imports_before_generation_and_after_it():
    # Each order, in a fresh interpreter, without the package root choosing one first.
    for first in ("registry", "generation"):
        code = (
            "import importlib, sys, types\n"
            f"root = types.ModuleType('llmops_magics'); root.__path__ = [{str(PACKAGE.parents[1])!r}]\n"
            "sys.modules['llmops_magics'] = root\n"
            f"importlib.import_module('llmops_magics.core.{first}')\n"
            "from llmops_magics.core.generation.resolve import _named_resolvers\n"
            "from llmops_magics.core.generation.registered import resolve_registered\n"
            "assert resolve_registered in _named_resolvers\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (first, done.stderr[-2000:])


def test_kinds_are_looked_up_once_by_name():
    assert kind_of("prompt") is PROMPTS and kind_of("model") is MODELS and kind_of(PROMPTS) is PROMPTS
    assert (PROMPTS.not_found, MODELS.not_found) == (PromptNotFound, ModelNotFound)
    for bad in ("prompts", None, 3):
        with pytest.raises(BadInput, match="choose prompt or model"):
            kind_of(bad)
    with pytest.raises(BadInput, match="choose prompt or model"):
        registry.move_alias("dataset", "x", "production", 1)


def test_a_name_taken_by_the_other_kind_is_refused_in_one_line(sqlite_store, uniq):
    model, prompt = uniq("taken-m"), uniq("taken-p")
    registry.register_model(model, "default")
    registry.register_prompt(prompt, "hi {{x}}")
    with pytest.raises(BadInput, match="is a registered model, not a prompt"):
        registry.register_prompt(model, "hi {{x}}")
    with pytest.raises(BadInput, match="is a registered prompt, not a model"):
        registry.register_model(prompt, "default")
    with pytest.raises(BadInput, match="is a registered model, not a prompt"):
        registry.resolve_prompt(f"{model}/1")


def test_resolve_gives_either_kind_from_a_uri(sqlite_store, uniq):
    name = uniq("both")
    registry.register_prompt(name, "hi {{x}}", alias="production")
    registry.register_model(name + "-m", "default", alias="champion")
    prompt = resolve(f"prompts:/{name}@production")
    assert isinstance(prompt, PromptRef) and prompt.version == 1 and prompt.via == ""
    model = resolve(f"models:/{name}-m@champion")
    assert isinstance(model, ModelRef) and model.version == 1
    assert resolve(f"{name}-m", "model") == model
    registry.pin("model", f"{name}-m@champion")
    assert resolve(f"models:/{name}-m").via == "pin"
    with pytest.raises(BadInput, match="say what"):
        resolve(name)
    assert registry.alias_history("prompt", name).current() == {"production": 1}
