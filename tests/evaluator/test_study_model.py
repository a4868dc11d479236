"""The study file: validation with paths, designs compiled into cells, sweeps that reuse
runs by spec hash, and the shipped example."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from archspec.errors import UserError
from evaluator.study.model import cells, load_study_file, plan, sweep_data
from tests.evaluator.study_helpers import tiny_study, write_study

ROOT = Path(__file__).resolve().parents[2]


def _err(tmp_path, data) -> list[str]:
    p = write_study(tmp_path, data)
    with pytest.raises(UserError) as e:
        load_study_file(p)
    return e.value.lines()


def test_every_problem_is_reported_with_its_path(tmp_path):
    data = tiny_study(seeds=[0, 1], colour="red")
    data["experiments"]["nfe"]["pipelines"] = ["spatial", "nope"]
    lines = _err(tmp_path, data)
    assert any("colour: unknown key" in x for x in lines)
    assert any(x.endswith("seeds: List should have at least 3 items after validation, not 2")
               for x in lines)
    assert all(x.startswith(str(tmp_path / "study.yaml")) for x in lines)


def test_references_are_checked(tmp_path):
    data = tiny_study()
    data["experiments"]["nfe"]["pipelines"] = ["spatial", "nope"]
    data["questions"]["q1"]["experiments"] = ["missing"]
    lines = _err(tmp_path, data)
    assert any("experiments.nfe.pipelines: unknown pipeline 'nope'" in x for x in lines)
    assert any("questions.q1.experiments: unknown experiment 'missing'" in x for x in lines)


def test_a_spec_of_the_wrong_size_for_its_budget_is_named(tmp_path):
    data = tiny_study()
    data["budgets"]["cpu"]["image_size"] = 32
    lines = _err(tmp_path, data)
    assert sum("image size 8, but budget 'cpu' is 32" in x for x in lines) == 2


def test_a_row_that_is_not_a_valid_spec_is_named(tmp_path):
    data = tiny_study()
    data["experiments"]["robustness"]["factors"]["lr"]["levels"] = [1e-3, -1.0]
    ls = load_study_file(write_study(tmp_path, data))
    with pytest.raises(UserError, match=r"experiments.robustness \(spectral, cpu\).*lr=-1.0"):
        plan(ls, "cpu")
    with pytest.raises(UserError, match="unknown budget 'gpu'"):
        plan(ls, "gpu")


def test_latin_design_runs_each_combination_once_with_balanced_seeds(tmp_path):
    data = tiny_study()
    data["experiments"]["weighting"].update(
        seeds=None, design={"type": "latin"},
        factors={"weighting": {"path": "diffusion.loss.time_weighting",
                               "levels": ["uniform", "min_snr", "p2"]},
                 "lr": {"path": "train.lr", "levels": [1e-3, 2e-3, 3e-3]}})
    ls = load_study_file(write_study(tmp_path, data))
    cs = cells(ls, "weighting", "cpu")
    assert len(cs) == 9
    assert len({tuple(c["levels"].values()) for c in cs}) == 9  # every combination once
    # a Latin square: every level of every factor meets every seed exactly once
    for f in ("weighting", "lr"):
        assert Counter((c["levels"][f], c["seed"]) for c in cs) == Counter(
            {(lv, s): 1 for lv in {c["levels"][f] for c in cs} for s in (0, 1, 2)})


def test_taguchi_design_crosses_the_array_with_the_seeds(tmp_path):
    data = tiny_study()
    data["experiments"]["stability"].update(
        seeds=None, design={"type": "taguchi", "array": "L4"},
        factors={"lr": {"path": "train.lr", "levels": [1e-3, 2e-3]},
                 "tw": {"path": "diffusion.loss.time_weighting", "levels": ["uniform", "p2"]},
                 "ema": {"path": "train.ema", "levels": [0.99, 0.999]}})
    ls = load_study_file(write_study(tmp_path, data))
    cs = cells(ls, "stability", "cpu")
    assert len(cs) == 4 * 3
    rows = {tuple(c["levels"].values()) for c in cs}
    assert len(rows) == 4  # an L4: half of the 2^3 grid, every pair of levels balanced
    for a, b in (("lr", "tw"), ("lr", "ema"), ("tw", "ema")):
        assert len({(c["levels"][a], c["levels"][b]) for c in cs}) == 4


def test_experiments_with_the_same_training_share_one_spec_hash(tmp_path):
    data = tiny_study()
    data["experiments"]["weighting"]["samplers"] = [{"name": "ddim", "steps": [4]}]
    data["experiments"]["weighting"]["overrides"] = ["train.lr=0.001"]
    data["experiments"]["robustness"]["samplers"] = [{"name": "ddim", "steps": [4]}]
    ls = load_study_file(write_study(tmp_path, data))
    p = {x["name"]: x for x in plan(ls, "cpu", check=False)}
    from evaluator.store.rundir import hash_spec
    from evaluator.sweeps.spec import resolve

    def hashes(name):
        ls_ = p[name]["sweep"]
        return {hash_spec(resolve(ls_, ls_.labels_of(i))) for i in ls_.rows}

    # robustness.spectral at lr 1e-3 with seeds 0/1 trains what weighting's
    # uniform cells train: same spec, same hash, one run
    shared = hashes("tiny.cpu.robustness.spectral") & hashes("tiny.cpu.weighting.spectral")
    assert len(shared) == 2
    d = sweep_data(ls, "nfe", "spatial", "cpu")
    assert d["objective"] == {"metric": "FD-synthetic8", "sampler": "ddim", "steps": 2,
                              "direction": "minimize"}


@pytest.mark.slow
def test_the_shipped_study_resolves_under_both_budgets():
    ls = load_study_file(ROOT / "examples/study/research_questions.yaml")
    assert len(ls.study.seeds) >= 3
    grid = ls.study.samplers
    assert sorted(grid.names) == ["ddim", "dpmsolver++", "unipc"]
    assert grid.nfe == [5, 10, 20, 50, 100] and grid.reference.steps == [1000]
    for budget, size in (("cpu", 8), ("full", 32)):
        sweeps = plan(ls, budget, check=budget == "cpu")  # every cpu row as a valid spec
        assert {s["experiment"] for s in sweeps} == set(ls.study.experiments)
        for s in sweeps:
            assert s["data"]["base"]["image"]["size"] == size
    cpu = {s["name"]: len(s["sweep"].rows) for s in plan(ls, "cpu", check=False)}
    full = {s["name"]: len(s["sweep"].rows) for s in plan(ls, "full", check=False)}
    assert sum(cpu.values()) < sum(full.values())  # fractional designs on the CPU


@pytest.mark.slow
def test_the_ablation_tables_resolve_as_a_study():
    ls = load_study_file(ROOT / "examples/study/ablations.yaml")
    sweeps = plan(ls, "cpu")
    assert {s["experiment"] for s in sweeps} == {"lr", "head", "norm", "act", "resample",
                                                  "loss", "lr_act", "targets"}
    assert all(s["data"]["budget"] == {"reference": False} for s in sweeps)  # as --short
    assert all(s["data"]["budget"] == {"reference": True}
               for s in plan(ls, "full", check=False))


# ---- experiments on an extra dataset ---------------------------------------------------
def _two_datasets(tmp_path, size: int = 16) -> dict:
    """tiny_study plus an experiment on ``synthetic16``, with a 16x16 spec per pipeline."""
    import yaml

    from tests.evaluator.study_helpers import tiny_pipeline

    for name, ch in (("spatial16", 8), ("spectral16", 12)):
        spec = tiny_pipeline(ch)
        spec["image"]["size"] = size
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    data = tiny_study()
    data["budgets"]["cpu"]["extra_datasets"] = {
        "synthetic16": {"image_size": 16, "train_steps": 12, "num_samples": 8}}
    for p in ("spatial", "spectral"):
        data["pipelines"][p]["specs_for"] = {"synthetic16": {"cpu": f"{p}16.yaml"}}
    data["experiments"]["big"] = {"dataset": "synthetic16", "pipelines": ["spatial", "spectral"],
                                  "seeds": 2, "samplers": [{"name": "ddim", "steps": [4]}],
                                  "clip_probe": {"policies": ["clip", "none"],
                                                 "samplers": [{"name": "ddim", "steps": [4]}]}}
    data["questions"]["big"] = {"text": "Bigger?", "analysis": "ablation",
                                "experiments": ["big"]}
    return data


def test_an_experiment_on_an_extra_dataset_trains_its_own_spec_and_sizes(tmp_path):
    ls = load_study_file(write_study(tmp_path, _two_datasets(tmp_path)))
    big = sweep_data(ls, "big", "spectral", "cpu")
    assert big["base"]["image"]["size"] == 16 and big["base"]["name"] == "mini12"
    assert big["objective"]["metric"] == "FD-synthetic16"
    assert {"train.dataset=synthetic16", "train.steps=12", "train.batch_size=8",
            "evaluate.num_samples=8"} <= set(big["overrides"])  # batch: the budget's
    small = sweep_data(ls, "robustness", "spectral", "cpu")  # no dataset: the budget's
    assert small["base"]["image"]["size"] == 8
    assert {"train.dataset=synthetic8", "train.steps=24",
            "evaluate.num_samples=16"} <= set(small["overrides"])
    p = {x["name"]: x for x in plan(ls, "cpu", check=False)}
    assert p["tiny.cpu.big.spatial"]["probes"]["clip"]["num_samples"] == 8
    from evaluator.study.model import from_data

    again = from_data(ls.to_data())  # as a worker restores it from the storage
    assert sweep_data(again, "big", "spectral", "cpu") == big


def test_extra_dataset_mistakes_are_named_with_their_paths(tmp_path):
    data = _two_datasets(tmp_path, size=8)  # the 16x16 specs are 8x8: wrong size
    data["experiments"]["other"] = {"dataset": "nowhere", "pipelines": ["spatial"]}
    data["questions"]["mixed"] = {"text": "Both?", "analysis": "ablation",
                                  "experiments": ["nfe", "big"]}
    del data["pipelines"]["spectral"]["specs_for"]
    data["pipelines"]["spatial"]["specs_for"]["synthetic32"] = {"cpu": "spatial16.yaml"}
    lines = _err(tmp_path, data)
    assert any(x.endswith("pipelines.spatial.specs_for.synthetic16.cpu: image size 8, but "
                          "budgets.cpu.extra_datasets.synthetic16 is 16") for x in lines)
    assert any(x.endswith("experiments.other.dataset: budget 'cpu' declares no extra dataset "
                          "'nowhere' (budgets.cpu.extra_datasets)") for x in lines)
    assert any("pipelines.spectral.specs_for: no spec for dataset 'synthetic16' under "
               "budget 'cpu' (experiment 'big' trains on it)" in x for x in lines)
    assert any("pipelines.spatial.specs_for.synthetic32: budget 'cpu' declares no extra "
               "dataset 'synthetic32'" in x for x in lines)
    assert any("questions.mixed.experiments: experiments on different datasets under "
               "budget 'cpu' (synthetic16, synthetic8)" in x for x in lines)
    assert all(x.startswith(str(tmp_path / "study.yaml")) for x in lines)


@pytest.mark.slow
def test_research_questions_keeps_its_stored_definition_trials_and_hashes():
    """A running research_questions study resumes only if its stored definition, sweeps
    and trials (cell labels, spec hashes) are what they were before the extra-dataset
    fields existed; the JSON was written by the toolkit before that change."""
    import hashlib
    import json

    from evaluator.store.rundir import hash_spec
    from evaluator.sweeps.spec import resolve

    def sha(d):
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    want = json.loads((ROOT / "tests/evaluator/data/research_questions_cpu_plan.json")
                      .read_text())
    ls = load_study_file(ROOT / "examples/study/research_questions.yaml")
    assert sha(ls.to_data()) == want["study_to_data_sha256"]
    sweeps, trials = {}, []
    for p in plan(ls, "cpu", check=False):
        sw = p["sweep"]
        sweeps[p["name"]] = sha([sw.to_data(), p["probes"]])
        trials += [[p["name"], sw.labels_of(i)["cell"],
                    hash_spec(resolve(sw, sw.labels_of(i)))] for i in sw.rows]
    assert sweeps == want["sweeps_sha256"]
    assert trials == want["trials"]


@pytest.mark.slow
def test_the_processes_study_resolves_with_its_cells():
    """examples/study/processes.yaml: every row a valid spec; 2 pipelines x 2 processes x
    3 seeds per dataset plus 3 paddings x 3 seeds; padding=zeros reuses the digits
    isotropic spectral runs, so 30 distinct runs."""
    from evaluator.store.rundir import hash_spec
    from evaluator.sweeps.spec import resolve

    ls = load_study_file(ROOT / "examples/study/processes.yaml")
    sweeps = {s["name"]: s for s in plan(ls, "cpu")}
    rows = {n: len(s["sweep"].rows) for n, s in sweeps.items()}
    assert rows == {"processes.cpu.process_digits.spatial": 6,
                    "processes.cpu.process_digits.spectral": 6,
                    "processes.cpu.process_spectro32.spatial": 6,
                    "processes.cpu.process_spectro32.spectral": 6,
                    "processes.cpu.padding.spectral": 9}
    specs = {(n, s["sweep"].labels_of(i)["cell"]): resolve(s["sweep"], s["sweep"].labels_of(i))
             for n, s in sweeps.items() for i in s["sweep"].rows}
    assert len({hash_spec(x) for x in specs.values()}) == 30
    for (n, cell), spec in specs.items():
        assert spec.train.dataset == ("spectro32" if "spectro32" in n else "digits")
        assert spec.image.size == (32 if "spectro32" in n else 8)
        assert [(x.name, x.steps) for x in spec.evaluate.samplers] == [
            ("dpmsolver++", [10, 20]), ("ddim", [50])]
        assert spec.diffusion.process.kind == (
            "equal_snr" if "equal_snr" in cell else "isotropic")
        assert sweeps[n]["data"]["objective"]["metric"] == f"FD-{spec.train.dataset}"
