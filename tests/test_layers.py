"""The layers import downwards only: schemas, the spine, three wings that never import each other,
and the composition layer (``aftershock``) on top, which nothing below imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"schemas", "spine", "generators", "injector", "analyzers", "aftershock"}
ALLOWED: dict[str, set[str]] = {
    "schemas": {"schemas"},
    "spine": {"schemas", "spine"},
    "generators": {"schemas", "spine", "generators"},
    "injector": {"schemas", "spine", "injector"},
    "analyzers": {"schemas", "spine", "analyzers"},
}


def _imports(path: Path) -> set[tuple[str, int]]:
    """Every first-party top-level package a module imports, at any depth of the module."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".", 1)[0]
            if top in FIRST_PARTY:
                found.add((top, node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for top, line in sorted(_imports(path))
        if top not in ALLOWED[package]
    ]
    assert wrong == []


def test_the_rule_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    from aftershock.cli import main\n", encoding="utf-8")
    assert _imports(module) == {("aftershock", 2)}


def test_every_package_error_root_derives_from_the_one_root() -> None:
    from aftershock.report.errors import GamedayError
    from analyzers.errors import AnalyzerError
    from generators.errors import GeneratorError
    from injector.errors import InjectorError
    from injector.proxy.errors import ProxyError
    from spine.errors import AftershockError

    for root in (GeneratorError, InjectorError, ProxyError, AnalyzerError, GamedayError):
        assert issubclass(root, AftershockError), root
