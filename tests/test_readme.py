"""The README's examples are the real thing: its spec is the example file, and the
"Extending" recipes (block, metric, dataset, plugin) register and work as printed."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block_after(marker: str, lang: str) -> str:
    """The first ```lang fenced block after ``marker`` in the README."""
    start = README.index(marker)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    assert m, f"no ```{lang} block after {marker!r}"
    return m.group(1)


def test_readme_spec_is_the_example_file():
    text = _block_after("A spec, `examples/specs/tiny_unet_8.yaml` in full", "yaml")
    assert text == (ROOT / "examples" / "specs" / "tiny_unet_8.yaml").read_text()


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """Import a README snippet as a module; undo its registrations afterwards."""
    from blocks import BLOCKS
    from evaluator.data.datasets import DATASETS
    from evaluator.measure.registry import METRICS

    registries = (BLOCKS, METRICS, DATASETS)
    before = [set(r.names()) for r in registries]
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def load(marker: str, module: str):
        (tmp_path / f"{module}.py").write_text(_block_after(marker, "python"))
        names.append(module)
        return importlib.import_module(module)

    yield load
    for reg, old in zip(registries, before):
        for n in set(reg.names()) - old:
            reg.remove(n)
    for n in names:
        sys.modules.pop(n, None)


def test_block_recipe(recipe):
    from archspec import build_model, spec_from_dict
    from tests.blocks.test_registry import check_block, check_documented_and_strict

    recipe("**A block**", "readme_block")
    check_block("my_gain")
    check_documented_and_strict("my_gain")
    spec = spec_from_dict({"name": "g", "image": {"channels": 1, "size": 8},
                           "model": {"nodes": {"x": {"block": "input"},
                                               "y": {"block": "my_gain", "in": ["x"],
                                                     "gain": 2.0}}, "output": "y"}})
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(build_model(spec)(x, torch.zeros(2)), 2 * x)


def test_metric_recipe(recipe):
    from evaluator.measure.quality import quality_metrics
    from evaluator.report.tables import metric_columns

    recipe("**A metric**", "readme_metric")
    samples, data = torch.full((4, 1, 8, 8), 0.5), torch.full((6, 1, 8, 8), -0.25)
    got = {m["metric"]: m for m in quality_metrics(samples, data, None)}
    assert got["mean-gap"]["status"] == "ok" and got["mean-gap"]["value"] == pytest.approx(0.75)
    assert "mean-gap" in metric_columns([{"metrics": {"mean-gap": {"mean": 0.75}}}])


def test_dataset_recipe(recipe):
    from evaluator.data.datasets import load_dataset

    recipe("**A dataset**", "readme_data")
    tr, te = load_dataset("checker8"), load_dataset("checker8", split="test")
    assert (len(tr), len(te)) == (48, 16) and tr.image_shape == (1, 8, 8)
    assert float(tr.images.abs().max()) <= 1.0


def test_plugin_recipe_names_the_real_entry_point_group():
    from blocks.plugins import ENTRY_POINT_GROUP

    toml = _block_after("**A plugin package**", "toml")
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in toml
