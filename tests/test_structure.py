"""The shape of the code: no import cycle inside ``citytwin`` and no module over 800 lines (issue 11).

The import graph is read from the source with :mod:`ast`: every ``import``/``from ... import`` of a
citytwin module, at module level or inside a function (a lazy import still ties the two modules
together), except those under ``if TYPE_CHECKING:`` (never run). ``from package import name`` counts
as an import of the submodule where ``name`` is one, else of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 800

#: modules over MAX_LINES that another change is splitting now (keep this list short; remove a
#: name as soon as its module is split)
LONG_ALLOWED: dict[str, str] = {}  # none today (foundation/ingest.py, 1,668 lines, was split by issue 11)
#: import cycles (as sorted module lists) that another change is breaking now
CYCLES_ALLOWED: dict[tuple[str, ...], str] = {
    # being split by issue 11: the CLI's command modules and its main app import each other
    ("citytwin.cli.foundation", "citytwin.cli.main"): "being split by issue 11",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "citytwin").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The citytwin modules that module ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[tuple[str, ...]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                out.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_cycle_finder_finds_a_cycle() -> None:
    # the checker itself: a made-up graph with one cycle of three and a self-contained rest
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert _cycles(graph) == [("a", "b", "c")]


def test_import_graph_is_read() -> None:
    graph = _graph()
    # known edges, lazy (inside a function) and at module level, relative and absolute
    assert "citytwin.foundation.boundaries" in graph["citytwin.foundation.spacelink"]  # lazy, in link()
    assert "citytwin.foundation.coords" in graph["citytwin.foundation.boundaries"]
    assert "citytwin.foundation.ingest.run" in graph["citytwin.foundation.ingest"]


def test_no_import_cycle() -> None:
    cycles = [c for c in _cycles(_graph()) if c not in CYCLES_ALLOWED]
    assert not cycles, f"import cycles: {cycles}"


def test_coords_module_is_pure() -> None:
    # the GCJ-02/BD-09 transforms import nothing of citytwin but its errors (a leaf)
    graph = _graph()
    assert graph["citytwin.foundation.coords"] == {"citytwin.foundation.errors"}
    assert graph["citytwin.foundation.errors"] == set()


def test_no_module_over_800_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and name not in LONG_ALLOWED}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
