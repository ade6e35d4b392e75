"""The layers of service/ and their contract: import-linter keeps them, and would say so.

`pyproject.toml` declares a `layers` contract (no layer imports one above it) and an
`acyclic_siblings` contract (no cycle between the siblings of any package); `scripts/test`
runs `lint-imports`. These tests plant the two mistakes the contracts exist for in a copy of
the tree and show the linter refusing each, imports inside functions included.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the `service` package under `tree`, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of service/ and pyproject.toml, to plant imports in."""
    shutil.copytree(
        ROOT / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_the_tree_keeps_both_contracts(tree):
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tree):
    """kit/ is the bottom layer: an import of the composition root from it is refused."""
    plant(tree / "service" / "kit" / "clock.py", "from ..app import create_app  # noqa")
    result = lint(tree)
    assert result.returncode != 0
    assert "Layers: no layer of service/ imports one above it BROKEN" in result.stdout
    assert "service.kit.clock -> service.app" in result.stdout


def test_a_cycle_hidden_in_a_function_breaks_the_cycle_contract(tree):
    """flow imports return_urls; return_urls importing flow inside a function (the way a
    cycle hides from Python at import time) is still a cycle of auth/'s siblings."""
    plant(
        tree / "service" / "auth" / "return_urls.py",
        "def _planted() -> object:\n    from .flow import LoginFlow\n\n    return LoginFlow",
    )
    result = lint(tree)
    assert result.returncode != 0
    assert "Layers: no layer of service/ imports one above it KEPT" in result.stdout
    assert "No import cycles between the siblings of any package of service/ BROKEN" in (
        result.stdout
    )
    assert ".return_urls -> .flow" in result.stdout or ".flow -> .return_urls" in result.stdout


def test_no_test_module_imports_another():
    """Shared helpers live in tests/support/; a test module imports no other test module."""
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("tests.test_", "tests.conftest")), (path.name, name)


def test_the_readme_layout_names_every_package_and_module():
    """README's Layout block lists each package of service/ with every module in it."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    rows = {line.split()[0]: line for line in block.splitlines() if line.strip()}
    for package in sorted(p for p in (ROOT / "service").iterdir() if (p / "__init__.py").is_file()):
        row = rows.get(f"{package.name}/")
        assert row is not None, package.name
        for module in sorted(package.glob("*.py")):
            if module.stem != "__init__":
                assert module.stem in row, (package.name, module.stem)
    for module in sorted((ROOT / "service").glob("*.py")):
        if module.stem != "__init__":
            assert module.stem in block, module.stem
