"""Imports run one way: app -> evaluator -> archspec -> blocks (checked statically).

Every import statement in a package's files is read with ``ast`` (including imports
inside functions and ``try`` blocks, which is where upward imports used to hide), so a
lazy or guarded import is caught as surely as a top-level one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# package -> packages it must never import
FORBIDDEN = {
    "blocks": {"archspec", "evaluator", "app"},
    "archspec": {"evaluator", "app"},
    "evaluator": {"app"},
}


def imported_packages(path: Path) -> dict[str, int]:
    """Top-level package of every import in ``path`` -> first line it is imported on."""
    tree = ast.parse(path.read_text(), str(path))
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) == "import_module" and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        else:
            continue
        for n in names:
            out.setdefault(n.split(".")[0], node.lineno)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no files under {package}/"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {pkg}"
           for f in files for pkg, line in imported_packages(f).items()
           if pkg in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_checker_sees_guarded_and_lazy_imports(tmp_path):
    """The checker itself: imports inside functions, try/except and import_module count."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    try:\n        from evaluator.datasets import X\n"
                 "    except ImportError:\n        pass\n"
                 "import importlib\nimportlib.import_module('app.cli')\n")
    assert {"evaluator", "app"} <= set(imported_packages(p))
