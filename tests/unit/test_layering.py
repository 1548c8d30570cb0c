"""The layering rules of ARCHITECTURE.md, checked on the import graph (not by convention alone)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SDKS = {"boto3", "botocore", "redis", "requests", "yfinance"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", [*python_files("chalicelib"), REPO_ROOT / "app.py"], ids=str)
def test_shipped_code_never_imports_local_only_code(path: Path) -> None:
    assert "infra" not in imported_top_levels(path)
    assert "tests" not in imported_top_levels(path)


@pytest.mark.parametrize("path", python_files("chalicelib/services"), ids=str)
def test_services_import_no_sdk(path: Path) -> None:
    assert imported_top_levels(path).isdisjoint(SDKS)


def test_handlers_import_no_sdk() -> None:
    assert imported_top_levels(REPO_ROOT / "app.py").isdisjoint(SDKS)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def chalicelib_import_graph() -> dict[str, set[str]]:
    """Module -> the chalicelib modules it imports, at any depth of the file (functions included).

    ``from package import name`` counts as importing ``package.name`` when that is a module, else
    ``package``; importing ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__``), which count too.
    """
    files = python_files("chalicelib")
    modules = {_module_name(path): path for path in files}

    def closure(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules.keys()

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= closure(alias.name)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, path.name == "__init__.py", node)
                targets |= closure(source)
                for alias in node.names:
                    targets |= closure(f"{source}.{alias.name}") - closure(source)
        # A package's __init__ running is not a cycle with its own submodules' parents.
        graph[module] = {t for t in targets if t != module and not module.startswith(f"{t}.")}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_sees_function_level_and_relative_imports() -> None:
    """The checker itself: a cycle closed by an import inside a function is still a cycle."""
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    nested = ast.parse("def f():\n    from . import sibling\n").body[0]
    assert isinstance(nested, ast.FunctionDef)
    node = nested.body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve("chalicelib.services.jobs", False, node) == "chalicelib.services"


def test_graph_counts_imports_inside_functions() -> None:
    # The container imports the fan-out dispatcher's adapter on first use (chalicelib/lazy.py): the
    # ``if TYPE_CHECKING:`` import that names it still counts as a dependency.
    assert "chalicelib.adapters.lambda_dispatcher" in chalicelib_import_graph()["chalicelib.container"]


def test_no_import_cycle_inside_chalicelib() -> None:
    assert import_cycles(chalicelib_import_graph()) == []


# A concept that outgrows this becomes a package of smaller modules (re-exporting its names), so each
# module can be read in one sitting.
MAX_MODULE_LINES = 350


def test_no_module_in_chalicelib_is_over_350_lines() -> None:
    lengths = {
        str(path.relative_to(REPO_ROOT)): len(path.read_text().splitlines()) for path in python_files("chalicelib")
    }
    assert len(lengths) > 100  # the walk found the package
    assert {name: lines for name, lines in lengths.items() if lines > MAX_MODULE_LINES} == {}
