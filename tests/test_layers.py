"""The package's imports go one way, down the layers, and form no circle (every import, function-local ones and
importlib.import_module of a literal name too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# lower layers first; a module may import its own layer and the ones before it
LAYERS = ["io settings_values settings distributed", "data", "docids", "models", "training", "search", "evaluation",
          "workspace", "methods", "stages retriever", "pipeline live live_state", "dry_run", "cli serve"]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names.split()}


def modules(root: Path = SRC) -> dict[str, Path]:
    out = {}
    for p in (root / "genir").rglob("*.py"):
        name = ".".join(p.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The genir modules ``name`` imports (a ``from pkg import mod`` counts as the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts[: len(parts) - node.level + (path.name == "__init__.py")]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):  # importlib.import_module("genir...")
            targets = [node.args[0].value]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def layer(module: str) -> int:
    return LAYER[module.split(".")[1]]


def graph(root: Path = SRC) -> dict[str, set[str]]:
    known = modules(root)
    # the top package re-exports the public API: it is nobody's dependency inside the package
    return {m: imports(m, p, known) - {"genir"} for m, p in known.items() if m != "genir"}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in edges.items() for t in ts if layer(t) > layer(m))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert all(m.split(".")[1] in LAYER for m in graph())


def test_imports_go_down_the_layers():
    assert upward_imports(graph()) == []


def test_no_import_circles():
    assert circles(graph()) == []


def test_the_checks_catch_a_circle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "genir"
    for sub in ("models", "search"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("def f():\n    from genir.search.b import g\n")  # upward, in a function
    (pkg / "search" / "b.py").write_text("from genir.models import a\n")
    edges = graph(tmp_path)
    assert upward_imports(edges) == ["genir.models.a -> genir.search.b"]
    assert circles(edges) == [["genir.models.a", "genir.search.b"]]
