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
