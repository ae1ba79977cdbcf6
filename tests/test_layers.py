"""The layering of design.md: each module imports only its own layer or lower ones (imports
inside functions included), every module belongs to a layer, and no two modules import each
other, directly or through others."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mien"

# bottom to top (design.md, "The way data flows")
LAYERS = [
    {"errors", "config", "io"},
    {"data", "nn"},
    {"models", "diffusion", "evaluator"},
    {"train", "zoo"},
    {"control", "metrics"},
    {"experiments", "report"},
    {"cli", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a mien module in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "mien"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "mien":
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, node.module)] if node.module != "mien" else [(node.lineno, n) for n in names]
    return found


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(target: str) -> str | None:
    """The module file an import names (``mien.a.b`` may be module a.b or a name in module a)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def test_every_module_is_in_a_layer():
    stray = sorted(m for m in MODULES if m != "mien" and top(m) not in LEVEL)
    assert not stray, f"modules in no layer of design.md: {stray}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for name, path in MODULES.items():
        if name == "mien":
            continue
        for line, target in imports(path):
            if target in ("mien", "mien.__version__"):
                continue  # the package root: the public API and its version
            if LEVEL.get(top(target), -1) > LEVEL.get(top(name), len(LAYERS)):
                upward.append(f"{path.relative_to(SRC.parent)}:{line} imports {target}")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_package_root_imports_only_what_it_exports():
    """``mien/__init__`` is the public API; it may import the layers it re-exports, lazily."""
    for _, target in imports(MODULES["mien"]):
        assert top(target) in LEVEL, target


def test_no_import_cycles_between_modules():
    graph = {m: {r for _, t in imports(p) if (r := resolve(t)) and r != m and r != "mien"} for m, p in MODULES.items()}
    # a package __init__ that re-exports its own modules is not a cycle with them
    graph = {m: {r for r in deps if not (m.startswith(r + ".") and MODULES[r].name == "__init__.py")}
             for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for r in sorted(graph.get(m, ())):
            if state.get(r) == "open":
                cycles.append(" -> ".join(stack[stack.index(r):] + [r]))
            elif r not in state:
                visit(r, stack + [r])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source,expected", [
    ("from mien.models.base import x\n", [(1, "mien.models.base")]),
    ("def f():\n    import mien.metrics.fid\n", [(2, "mien.metrics.fid")]),
    ("from mien import __version__, train\n", [(1, "mien.__version__"), (1, "mien.train")]),
    ("import numpy\nfrom . import x\n", []),
])
def test_import_finder(tmp_path, source, expected):
    f = tmp_path / "m.py"
    f.write_text(source)
    assert imports(f) == expected
