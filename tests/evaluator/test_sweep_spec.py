"""Sweep files: factor paths and bundles, design fit, and invalid rows found before training."""
from __future__ import annotations

import re

import pytest

from archspec.errors import UserError
from evaluator.sweeps.spec import check_rows, from_data, load_sweep, resolve
from tests.evaluator.sweep_helpers import cli, tiny_sweep, write_sweep


def test_factor_paths_and_bundles_resolve_into_the_spec():
    ls = from_data(tiny_sweep())
    rows = check_rows(ls)
    assert len(rows) == 4 and ls.array == "L4"
    for r in rows:
        spec = r.spec
        assert spec.train.lr == float(r.levels["lr"])
        assert spec.diffusion.loss.time_weighting == r.levels["tw"]
        # the bundle sets two paths per level
        want = {"pixel": ("pixel", "uniform"), "fourier": ("fourier", "power_law")}
        assert (spec.diffusion.loss.domain,
                spec.diffusion.loss.freq_weighting) == want[r.levels["loss"]]
    # every L4 row differs, so every spec hash does
    assert len({r.spec_hash for r in rows}) == 4


def test_repeats_change_the_training_seed_and_budget_caps_steps():
    ls = from_data(tiny_sweep(steps=50, repeats=3,
                              budget={"train_steps": 7, "batch_size": 4}))
    levels = ls.labels_of(ls.rows[0])
    seeds = [resolve(ls, levels, r).train.seed for r in range(3)]
    assert seeds == [0, 1, 2]
    spec = resolve(ls, levels, 0)
    assert (spec.train.steps, spec.train.batch_size) == (7, 4)


def test_a_row_whose_spec_is_invalid_is_reported_with_its_number_and_levels():
    data = tiny_sweep()
    # level 2 of "width" breaks the resblock (channels must be > 0) -> rows 3 and 4 of L4
    data["factors"]["width"] = data["factors"].pop("tw")
    data["factors"]["width"] = {"path": "model.nodes.eps.channels", "levels": [1, 0]}
    ls = from_data(data)
    with pytest.raises(UserError) as e:
        check_rows(ls)
    lines = e.value.lines()
    w = ls.factor_names.index("width")
    bad_rows = {i + 1 for i, idx in enumerate(ls.rows) if idx[w] == 1}
    assert len(lines) >= len(bad_rows) and all("width=0" in ln for ln in lines)
    assert {int(ln.split()[1]) for ln in lines} == bad_rows
    assert all("model.nodes.eps.channels" in ln for ln in lines)


def test_a_combination_the_trainer_would_refuse_is_caught_before_training():
    data = tiny_sweep()
    # power-law frequency weights with a pixel loss: valid schema, refused by the loss
    data["factors"]["loss"] = {"path": "diffusion.loss.freq_weighting",
                               "levels": ["uniform", "power_law"]}
    with pytest.raises(UserError) as e:
        check_rows(from_data(data))
    lines = e.value.lines()
    assert len(lines) == 2 and all(
        re.match(r"row \d \(.*loss=power_law\): diffusion\.loss.*needs.*fourier", ln)
        for ln in lines), lines


@pytest.mark.parametrize("change, message", [
    (lambda d: d["factors"].update(x={"path": "train.no_such", "levels": [1, 2]}),
     "factors.x: train.no_such: unknown path"),
    (lambda d: d["factors"].update(x={"path": "nope.a", "levels": [1, 2]}),
     "factors.x: nope.a: unknown path"),
    (lambda d: d["design"].update(array="L99"), "design.array: unknown orthogonal array"),
    (lambda d: d["factors"].update(lr={"path": "vars.widht", "levels": [1, 2]}),
     "factors.lr: vars.widht: no variable 'widht' in the base spec's vars"),
    (lambda d: d["factors"].update(lr={"path": "train.lr", "levels": [1e-3, 2e-3, 3e-3]}),
     "factors.lr: L4: 4 runs, 2^3 has no free 3-level column"),
    (lambda d: d["factors"].update(a={"path": "train.seed", "levels": [1, 2]},
                                   b={"path": "train.steps", "levels": [1, 2]}),
     "factors: 5 factors, but L4: 4 runs, 2^3 has only 3 columns"),
    (lambda d: d.update(repeats=0), "repeats: Input should be greater than or equal to 1"),
    (lambda d: d.update(bogus=1), "bogus: unknown key"),
    (lambda d: d["factors"]["lr"].update(levels=[1, 1]), "factors.lr: levels repeat"),
    (lambda d: d["design"].update(type="tpe", array=None), "design: a tpe design needs 'trials'"),
    (lambda d: d["objective"].update(sampler="ddim"), "objective: give both 'sampler' and"),
])
def test_bad_sweeps_are_clear_errors(change, message):
    data = tiny_sweep()
    change(data)
    with pytest.raises(UserError) as e:
        check_rows(from_data(data, source="s.yaml"))
    assert any(message in ln for ln in e.value.lines()), e.value.lines()
    assert all(ln.startswith("s.yaml: ") for ln in e.value.lines())


def test_the_objective_sampler_must_be_evaluated_under_the_budget():
    data = tiny_sweep(objective={"metric": "FD-digits", "sampler": "ddim", "steps": 50})
    with pytest.raises(UserError, match=r"objective: \(ddim, 50\) is not evaluated"):
        check_rows(from_data(data))


def test_base_path_is_relative_to_the_sweep_file(tmp_path):
    import yaml

    data = tiny_sweep()
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mini.yaml").write_text(yaml.safe_dump(data["base"]))
    data["base"] = "specs/mini.yaml"
    ls = load_sweep(write_sweep(tmp_path, data))
    assert ls.base["name"] == "mini" and len(check_rows(ls)) == 4


@pytest.mark.slow
def test_cli_bad_sweep_exit_2_one_located_line_per_problem(tmp_path):
    data = tiny_sweep()
    data["factors"]["x"] = {"path": "train.no_such", "levels": [1, 2]}
    data["repeats"] = -1
    p = write_sweep(tmp_path, data)
    r = cli("sweep", "validate", str(p))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{p}: repeats:")  # schema layer first
    data["repeats"] = 1
    write_sweep(tmp_path, data)
    r = cli("sweep", "validate", str(p))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"{p}: factors.x: train.no_such: unknown path (no 'train.no_such' in the base spec)")
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01")
    r = cli("sweep", "validate", str(tmp_path / "bin.yaml"))
    assert r.returncode == 2 and "binary file" in r.stderr


@pytest.mark.slow
def test_cli_validate_and_dry_run_print_the_rows(tmp_path):
    p = write_sweep(tmp_path, tiny_sweep())
    r = cli("sweep", "validate", str(p))
    assert r.returncode == 0 and "4 rows" in r.stdout, r.stderr
    r = cli("sweep", "run", str(p), "--dry-run", "--no-profile")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["row", "lr", "tw", "loss"] and len(lines) == 5
    assert not (tmp_path / "results").exists()  # a dry run trains and stores nothing


@pytest.mark.parametrize("path", sorted(
    (__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "sweeps")
    .glob("*.yaml")), ids=lambda p: p.name)
def test_example_sweeps_are_valid_in_every_row(path):
    ls = load_sweep(path)
    rows = check_rows(ls)
    assert rows and all(r.spec is not None and not r.problems for r in rows)
    if ls.sweep.name == "spectral_toggles_l8":
        assert ls.array == "L8" and len(ls.factor_names) == 7 and len(rows) == 8
        assert all(len(f.labels()) == 2 for f in ls.sweep.factors.values())
        assert len({r.spec_hash for r in rows}) == 8
