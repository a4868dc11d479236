"""Imports run one way: app -> evaluator -> archspec -> blocks (checked statically).

Every import statement in a package's files is read with ``ast`` (including imports
inside functions and ``try`` blocks, which is where upward imports used to hide), so a
lazy or guarded import is caught as surely as a top-level one. Inside ``evaluator`` the
sub-packages are ordered the same way (:data:`EVALUATOR_ORDER`), and no two modules of the
project import each other, directly or around a circle.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

from tests.conftest import ROOT

PACKAGES = ("blocks", "archspec", "evaluator", "app")
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


# ---- inside the evaluator: the flow spec -> train -> sample -> measure -> report ---------------
# Lower sub-packages never import higher ones; equal ranks may import each other (acyclically).
EVALUATOR_ORDER = {"device": 0, "store": 0, "data": 1, "diffusion": 2, "training": 3,
                   "measure": 4, "report": 5, "pipeline": 6, "sweeps": 7, "study": 8}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> dict[str, int]:
    """Project modules ``path`` imports (lazily or not; ``if TYPE_CHECKING:`` blocks aside)
    -> first line: ``from a.b import c`` counts as ``a.b.c`` when that is a module, else as
    ``a.b``."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never executed
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for name in targets:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != here:
                out.setdefault(name, node.lineno)
    return out


def project_files() -> list[Path]:
    return sorted(f for p in PACKAGES for f in (ROOT / p).rglob("*.py"))


def import_graph() -> nx.DiGraph:
    files = project_files()
    known = {module_name(f) for f in files}
    g = nx.DiGraph()
    g.add_nodes_from(known)
    for f in files:
        for mod, line in imported_modules(f, known).items():
            g.add_edge(module_name(f), mod, line=line)
    return g


def evaluator_rank(module: str) -> int | None:
    parts = module.split(".")
    return EVALUATOR_ORDER.get(parts[1]) if parts[0] == "evaluator" and len(parts) > 1 else None


def test_every_evaluator_subpackage_has_a_rank():
    subs = {p.stem if p.is_file() else p.name for p in (ROOT / "evaluator").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert subs == set(EVALUATOR_ORDER)


def test_evaluator_subpackages_import_only_downward():
    g = import_graph()
    bad = []
    for a, b, data in g.edges(data=True):
        ra, rb = evaluator_rank(a), evaluator_rank(b)
        if ra is not None and rb is not None and rb > ra:
            bad.append(f"{a.replace('.', '/')}.py:{data['line']} imports {b} "
                       f"({b.split('.')[1]} is above {a.split('.')[1]})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_in_the_project():
    g = import_graph()
    cycles = [c for c in nx.strongly_connected_components(g) if len(c) > 1]
    described = []
    for comp in cycles:
        cycle = nx.find_cycle(g.subgraph(comp))
        described.append(" -> ".join(f"{a} (line {g.edges[a, b]['line']})" for a, b in cycle)
                         + f" -> {cycle[0][0]}")
    assert not described, "import cycles:\n" + "\n".join(described)


def test_cycle_finder_sees_lazy_imports(tmp_path, monkeypatch):
    """The graph itself: a lazy import inside a function closes a circle."""
    import tests.test_layers as me

    for pkg, body in (("evaluator", "def f():\n    from app.x import y\n"),
                      ("app", "from evaluator.z import q\ny = 1\n")):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "evaluator" / "z.py").write_text("def f():\n    from app.x import y\nq = 1\n")
    (tmp_path / "app" / "x.py").write_text("from evaluator.z import q\ny = 1\n")
    monkeypatch.setattr(me, "ROOT", tmp_path)
    monkeypatch.setattr(me, "PACKAGES", ("evaluator", "app"))
    g = me.import_graph()
    assert g.has_edge("evaluator.z", "app.x") and g.has_edge("app.x", "evaluator.z")


APP_INVOCATION = re.compile(r"\bapp\.cli\b|-m\s+app\b|[\"']-m[\"'],\s*[\"']app")


@pytest.mark.parametrize("package", ["blocks", "archspec", "evaluator"])
def test_lower_layers_never_invoke_the_app(package):
    """Not even through a subprocess (``python -m app.cli``): benchmarks that drive the CLI
    live in ``benchmarks/``."""
    bad = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}"
           for f in sorted((ROOT / package).rglob("*.py"))
           for i, line in enumerate(f.read_text().splitlines(), 1) if APP_INVOCATION.search(line)]
    assert not bad, "\n".join(bad)


def test_app_invocation_pattern():
    assert APP_INVOCATION.search('subprocess.run([sys.executable, "-m", "app.cli", "x"])')
    assert APP_INVOCATION.search("python -m app sweep")
    assert not APP_INVOCATION.search("the app's runs table")
