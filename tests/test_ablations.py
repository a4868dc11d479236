"""The ablation examples: their specs and sweep files validate and differ only where they
say, the study script resolves its screening budget, and the sampler-check script answers
bad input with one line per problem and exit code 2."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from archspec import load_spec

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ROOT / "examples" / "ablations"
SCRIPT = ROOT / "benchmarks" / "sampler_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("sampler_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*_unet_8_*.yaml")), ids=lambda p: p.stem)
def test_ablation_specs_validate(path):
    assert load_spec(path).name == path.stem


def test_head_ablation_pair_differs_only_in_the_head_options():
    bare, normed = (yaml.safe_load((ABLATIONS / f"spectral_unet_8_{k}_head.yaml").read_text())
                    for k in ("bare", "normed"))
    hp = [d["model"]["nodes"]["eps"]["head"].pop("params") for d in (bare, normed)]
    assert hp == [{"norm": "none", "act": "none", "zero_init": False},
                  {"norm": "group", "act": "crelu", "zero_init": True}]
    for d in (bare, normed):
        d.pop("name"), d.pop("description")
    assert bare == normed


@pytest.mark.parametrize("args,message", [
    (["--steps", "ten"], "--steps: expected comma-separated integers"),
    (["--clips", "soft"], "--clips: unknown policy 'soft'"),
    (["--samplers", "ddimm"], "--samplers: unknown sampler 'ddimm' (did you mean 'ddim'"),
    (["--samplers", "euler", "--clips", "dynamic"], "'euler'"),
])
def test_sampler_check_bad_input(args, message, tmp_path, capsys):
    spec = ROOT / "examples" / "specs" / "tiny_unet_8.yaml"
    assert _script().main([str(spec), "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())                 # nothing trained or written


def test_sampler_check_missing_spec(tmp_path, capsys):
    assert _script().main([str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope.yaml'}: no such spec file"


SPECS = ("spectral_unet_8_", "hybrid_unet_8_")  # spec files; every other YAML is a sweep
SWEEPS = sorted(p for p in ABLATIONS.glob("*.yaml") if not p.stem.startswith(SPECS))
ONE_FACTOR = [p for p in SWEEPS if p.stem != "targets"]


def _study():
    spec = importlib.util.spec_from_file_location("study", ABLATIONS / "study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", ONE_FACTOR, ids=lambda p: p.stem)
def test_ablation_sweeps_vary_one_factor_of_an_example_at_the_full_budget(path):
    from evaluator.sweeps.spec import load_sweep, resolve_rows

    ls = load_sweep(path)
    assert ls.sweep.design.type == "grid" and len(ls.factor_names) <= 2
    assert ls.sweep.repeats >= 3 and ls.sweep.budget == "full"
    rows = resolve_rows(ls)
    assert all(not r.problems for r in rows) and len({r.spec_hash for r in rows}) == len(rows)
    specs = [r.spec for r in rows]
    assert len({s.train.steps for s in specs}) == 1 and specs[0].train.steps == 2000
    assert all(s.evaluate.num_samples == 360 for s in specs)
    assert len({s.name for s in specs}) == 1  # one example, one factor changed


def test_every_table_names_existing_sweep_files():
    study = _study()
    names = {n for t, ns in study.TABLES.items() if t != "warm" for n in ns}  # warm: generated
    assert names == {p.stem for p in SWEEPS}


def test_short_budget_sweep_drops_the_reference_and_keeps_n(tmp_path):
    from evaluator.pipeline.budgets import sampler_plan
    from evaluator.sweeps.spec import budget_of, load_sweep, resolve_rows

    path = _study().sweep_file("norm", tmp_path, short=True, warm_from=None)
    ls = load_sweep(path)
    assert ls.sweep.name == "norm_spectral_unet_8_short"
    spec = resolve_rows(ls)[0].spec
    assert spec.train.steps == 400 and spec.train.batch_size == 64
    assert sampler_plan(spec, budget_of(ls.sweep)) == [("dpmsolver++", 20)]
    assert [m.key for m in ls.sweep.secondary] == ["train.loss_last"]


def test_targets_levels_are_the_example_specs_as_shipped():
    from archspec import arch_hash
    from evaluator.sweeps.spec import load_sweep, resolve_rows

    ls = load_sweep(ABLATIONS / "targets.yaml")
    rows = resolve_rows(ls)
    assert [r.levels["pipeline"] for r in rows] == ["spatial", "spectral", "hybrid"]
    for r in rows:
        example = load_spec(ROOT / "examples" / "specs" / f"{r.spec.name}.yaml")
        assert arch_hash(r.spec) == arch_hash(example), r.spec.name
        assert r.spec.train == example.train and r.spec.diffusion == example.diffusion
        assert r.spec.evaluate == example.evaluate  # so evaluate reuses the trained runs
