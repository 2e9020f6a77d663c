"""No import cycles between the project's modules.

A module depends on every project module that one of its module-level import statements names
(imports under `if TYPE_CHECKING:` included; imports inside functions are not run at import):
`import a.b` names `a.b`; `from a import b` names `a`, and `a.b` too when that is a module. So a
package `__init__` that imports a submodule which imports names from the package is a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingest", "shared", "stripe_ingest", "worker")


@dataclass(frozen=True)
class Import:
    target: str
    where: str  # path:line, for the failure message


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported: not inside a def or lambda."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, []):
                    if isinstance(child, ast.stmt):
                        yield from _module_level([child])
                    elif isinstance(child, ast.excepthandler | ast.match_case):
                        yield from _module_level(child.body)


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def graph(root: Path, packages: Iterable[str]) -> dict[str, dict[str, Import]]:
    """{module: {module it imports: where}} over the project's modules only."""
    known = modules(root, packages)
    edges: dict[str, dict[str, Import]] = {name: {} for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _module_level(tree.body):
            where = f"{path.relative_to(root)}:{node.lineno}"
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base(name, is_package, node)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                if target in known and target != name:
                    edges[name].setdefault(target, Import(target, where))
    return edges


def strongly_connected(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm: the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def a_cycle(edges: dict[str, dict[str, Import]], component: list[str]) -> list[Import]:
    """A shortest cycle through the component's first module, as the imports that make it."""
    start = component[0]
    members = set(component)
    reached: dict[str, tuple[str, Import]] = {}  # module: (the module importing it, how)
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, imp in sorted(edges[node].items()):
                if target == start:
                    steps = [imp]
                    while node != start:
                        node, step = reached[node]
                        steps.append(step)
                    return steps[::-1]
                if target in members and target not in reached:
                    reached[target] = (node, imp)
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {component}")


def cycles(root: Path, packages: Iterable[str]) -> list[str]:
    edges = graph(root, packages)
    report = []
    for component in strongly_connected(edges):
        if len(component) > 1:
            steps = a_cycle(edges, component)
            chain = " -> ".join([component[0], *(s.target for s in steps)])
            lines = "".join(f"\n      {s.where} imports {s.target}" for s in steps)
            report.append(f"{len(component)} modules: {', '.join(component)}\n    {chain}{lines}")
    return report


def test_no_import_cycles_between_the_projects_modules() -> None:
    found = cycles(ROOT, PACKAGES)
    assert not found, "import cycles:\n  " + "\n  ".join(found)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_sees_a_package_init_that_its_submodules_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "",
            "other/__init__.py": "",
            "other/c.py": "from other.d import X\n",
            "other/d.py": "def f():\n    from other import c\n",
        },
    )
    (found,) = cycles(tmp_path, ["pkg", "other"])
    assert found.startswith("2 modules: pkg, pkg.a\n    pkg -> pkg.a -> pkg")
    assert "pkg/a.py:1 imports pkg" in found


def test_the_check_sees_type_checking_and_relative_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .sub.b import X\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": (
                "from typing import TYPE_CHECKING\n"
                "X = 1\n"
                "if TYPE_CHECKING:\n"
                "    from ..c import Y\n"
            ),
            "pkg/c.py": "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
        },
    )
    (found,) = cycles(tmp_path, ["pkg"])
    assert found.startswith("3 modules: pkg.a, pkg.c, pkg.sub.b\n")
    assert "pkg/sub/b.py:4 imports pkg.c" in found
