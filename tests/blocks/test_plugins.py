"""Third-party blocks through the ``archsearch.blocks`` entry point.

The test installs tests/plugins/archsearch_demo_plugin.py as a tiny distribution (a module
and a ``*.dist-info`` with ``entry_points.txt``) in a temporary folder on ``sys.path``; the
toolkit finds it with importlib.metadata only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import blocks
from app.cli import main
from archspec import build_model, spec_from_dict
from archspec.errors import SpecError
from blocks import BLOCKS, PluginError, load_plugins, plugins
from tests.blocks.test_registry import check_block, check_documented_and_strict
from tests.conftest import ROOT

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "archsearch_demo_plugin.py"


def _install(folder: Path, dist: str, entry_points: str, module: str | None = None) -> None:
    """A minimal installed distribution: the module plus its dist-info metadata."""
    if module:
        shutil.copy(PLUGIN_SRC, folder / f"{module}.py")
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    before_loaded = set(plugins._loaded)
    before_blocks = set(BLOCKS.names())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(BLOCKS.names()) - before_blocks:
        BLOCKS.remove(name)
    plugins._loaded.clear()
    plugins._loaded.update(before_loaded)
    for mod in [m for m in sys.modules if m.startswith(("archsearch_demo_plugin", "broken_"))]:
        del sys.modules[mod]


def test_plugin_block_is_registered_validated_listed_and_checked(plugin_path, capsys):
    _install(plugin_path, "archsearch_demo_plugin",
             "[archsearch.blocks]\ndemo = archsearch_demo_plugin\n", module="archsearch_demo_plugin")
    assert "demo_plugin_scale" not in BLOCKS
    assert load_plugins() == ["demo"]
    assert load_plugins() == []  # loaded once
    entry = blocks.get("demo_plugin_scale")
    assert entry.source == "archsearch_demo_plugin:_scale"
    # the registry-wide checks every built-in block passes
    check_block("demo_plugin_scale")
    check_documented_and_strict("demo_plugin_scale")
    # the spec language validates and assembles it like any block
    spec = {"spec_version": 1, "name": "plugin_spec", "image": {"channels": 1, "size": 8},
            "model": {"nodes": {"x": {"block": "input"},
                                "y": {"block": "demo_plugin_scale", "in": ["x"], "gain": 2.0}},
                      "output": "y"}}
    model = build_model(spec_from_dict(spec))
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model(x, torch.zeros(2)), 2.0 * x)
    bad = {**spec, "model": {**spec["model"], "nodes": {
        **spec["model"]["nodes"], "y": {"block": "demo_plugin_scale", "in": ["x"], "gain": -1}}}}
    with pytest.raises(SpecError, match="model.nodes.y"):
        spec_from_dict(bad)
    # and `archsearch blocks` lists it, saying where it comes from
    assert main(["blocks", "--family", "demo_plugin"]) == 0
    out = capsys.readouterr().out
    assert "demo_plugin_scale" in out and "from: archsearch_demo_plugin:_scale" in out


def test_plugin_that_fails_to_import_is_a_clear_error(plugin_path):
    _install(plugin_path, "broken_plugin", "[archsearch.blocks]\nbroken = broken_missing_module\n")
    with pytest.raises(PluginError, match=r"block plugin 'broken' \(broken_missing_module from "
                                          r"broken_plugin 0\.1\) failed to load: "
                                          r"ModuleNotFoundError"):
        load_plugins()


def test_plugin_reusing_a_builtin_name_is_a_clear_error(plugin_path):
    (plugin_path / "broken_dup.py").write_text(
        "from blocks import register_block\n"
        "@register_block('conv', takes=('real',), gives='real', family='x')\n"
        "def _conv(p, inputs):\n    'dup'\n")
    _install(plugin_path, "broken_dup", "[archsearch.blocks]\ndup = broken_dup\n")
    with pytest.raises(PluginError, match="block 'conv' is already registered"):
        load_plugins()


def test_cli_reports_a_broken_plugin_in_one_line(tmp_path):
    _install(tmp_path, "broken_plugin", "[archsearch.blocks]\nbroken = broken_missing_module\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "app.cli", "blocks"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: block plugin 'broken'"), r.stderr
