"""The import graph, read from the code: no cycles, no upward imports, no hidden ones.

Layers, top to bottom (a module may import its own layer and any layer below):
``magics/``, ``widgets/``, ``cli.py`` -> ``core/`` -> ``backends/`` -> ``config.py``,
``errors.py``, ``version.py``. ``core/`` never imports IPython. A project import inside a
function is how a cycle hides, so none is allowed in the package, except one that defers
a heavy third-party import (vLLM, torch...) and says so: ``# deferred: <why>``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmops_magics"
ROOT = PACKAGE.name

# A layer may import itself and anything with a higher number (further down).
LAYERS = {
    "magics": 0,
    "widgets": 0,
    "cli": 0,
    "__init__": 0,
    "core": 1,
    "backends": 2,
    "config": 3,
    "errors": 3,
    "version": 3,
}
# The package's own __init__ wires the layers together (the magics and the views register
# themselves from there); nothing else may import the package root.
TOP = f"{ROOT}"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _deferred(lines: list[str], lineno: int) -> bool:
    """An import that says why it is deferred: ``# deferred: ...`` on its line, or on the
    comment line above the run of imports it belongs to."""
    i = lineno - 1
    if "# deferred:" in lines[i]:
        return True
    while i > 0 and lines[i - 1].strip().startswith(("from ", "import ")):
        i -= 1
    return i > 0 and "# deferred:" in lines[i - 1]


def _imports(path: Path):
    """(target module, line, inside a function and not marked deferred) per project import."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    local = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    # ``if TYPE_CHECKING:`` imports never run: they name types, they make no cycle.
    checks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    typing_only = {id(n) for c in checks for n in ast.walk(c) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import config`` imports the module config, not the package itself.
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if id(node) in typing_only:
            continue
        hidden = id(node) in local and not _deferred(lines, node.lineno)
        for module in dict.fromkeys(_existing(n) for n in names if n == ROOT or n.startswith(ROOT + ".")):
            yield module, node.lineno, hidden


def _existing(name: str) -> str:
    """The longest prefix of ``name`` that is a module of the package (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        rel = Path(*parts[1:]) if len(parts) > 1 else Path()
        if (PACKAGE.parent / Path(*parts)).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists():
            return ".".join(parts)
        parts = parts[:-1]
    return ROOT


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


FILES = sorted(p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts)


def _edges(path: Path) -> set[str]:
    """What importing ``path`` makes Python import: each target, and the ``__init__`` of every
    package above a target that the importer is not inside (Python runs those first, so a
    cycle through a package's ``__init__`` is a cycle too)."""
    mod = _module(path)
    out = set()
    for t, _, _ in _imports(path):
        parts = t.split(".")
        for i in range(2, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if i == len(parts) or not (mod == prefix or mod.startswith(prefix + ".")):
                out.add(prefix)
    out.discard(mod)
    return out


GRAPH = {_module(p): _edges(p) for p in FILES}


def test_no_project_import_hides_inside_a_function():
    hidden = [
        f"{p.relative_to(PACKAGE.parent)}:{line} imports {t}" for p in FILES for t, line, local in _imports(p) if local
    ]
    assert not hidden, "function-local project imports (import at the top; break the cycle instead):\n" + "\n".join(
        hidden
    )


def test_imports_only_point_down():
    upward = []
    for mod, targets in GRAPH.items():
        if mod == ROOT:
            continue
        for t in targets:
            if t == ROOT:
                upward.append(f"{mod} imports the package root")
            elif LAYERS[_layer(t)] < LAYERS[_layer(mod)]:
                upward.append(f"{mod} -> {t}")
    assert not upward, "imports against the layering:\n" + "\n".join(sorted(upward))


def test_backends_never_import_core_and_core_never_imports_ipython():
    wrong = []
    for p in FILES:
        mod = _module(p)
        tree = ast.parse(p.read_text())
        third = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        third += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level and n.module]
        if _layer(mod) == "core" and any(t.split(".")[0] in ("IPython", "ipywidgets", "ipykernel") for t in third):
            wrong.append(f"{mod} imports IPython")
        if _layer(mod) == "backends" and any(_layer(t) == "core" for t in GRAPH[mod]):
            wrong.append(f"{mod} imports core")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    # Tarjan's strongly connected components over the module graph.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index and v != ROOT:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("bad", ["cycle", "upward", "hidden"])
def test_the_checks_catch_what_they_forbid(bad, tmp_path, monkeypatch):
    # The graph reader must see each shape; otherwise the tests above pass vacuously.
    pkg = tmp_path / ROOT
    (pkg / "core").mkdir(parents=True)
    (pkg / "backends").mkdir()
    for d in (pkg, pkg / "core", pkg / "backends"):
        (d / "__init__.py").write_text("")
    sources = {
        "cycle": {"core/a.py": "from .b import x\n", "core/b.py": "from .a import y\n"},
        "upward": {"backends/a.py": "from ..core import b\n", "core/b.py": ""},
        "hidden": {
            "core/a.py": (
                "def f():\n    from ..backends import c\n\n\n"
                "def g():\n    # deferred: torch\n    from ..backends import d\n"
            ),
            "backends/c.py": "",
            "backends/d.py": "",
        },
    }[bad]
    for rel, text in sources.items():
        (pkg / rel).write_text(text)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    files = sorted(pkg.rglob("*.py"))
    found = [(_module(p), t, local) for p in files for t, _, local in _imports(p)]
    if bad == "cycle":
        assert (f"{ROOT}.core.a", f"{ROOT}.core.b", False) in found
        assert (f"{ROOT}.core.b", f"{ROOT}.core.a", False) in found
    elif bad == "upward":
        assert (f"{ROOT}.backends.a", f"{ROOT}.core.b", False) in found
    else:
        assert (f"{ROOT}.core.a", f"{ROOT}.backends.c", True) in found
        assert (f"{ROOT}.core.a", f"{ROOT}.backends.d", False) in found, "a marked deferral is allowed"
