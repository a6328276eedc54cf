"""The house has no import circle (issue 25): no module of medxai/ or cli/ reaches itself through imports,
counting imports inside functions and under TYPE_CHECKING (a circle there is still a knot in the design)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for folder, package in (("medxai", "medxai"), ("cli", "medxai.cli")):
        for path in (root / folder).rglob("*.py"):
            parts = [package, *path.relative_to(root / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            names = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        else:
            continue
        targets.update(name for name in names if name in known and name != module)
    return targets


def import_circles(root: Path = ROOT) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    modules = _modules(root)
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return circles


def test_no_module_imports_itself_through_others():
    assert import_circles() == []


def test_the_check_sees_a_circle(tmp_path):
    """The detector itself: two modules importing each other (one lazily) are one circle."""
    (tmp_path / "medxai").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "medxai" / "a.py").write_text("from medxai import b\n")
    (tmp_path / "medxai" / "b.py").write_text("def f():\n    from medxai.a import x\n")
    (tmp_path / "medxai" / "c.py").write_text("from medxai import a\n")
    assert import_circles(tmp_path) == [["medxai.a", "medxai.b"]]
