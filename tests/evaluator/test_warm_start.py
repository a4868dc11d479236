"""train.init_from: copy matching tensors from a finished run, keep the seeded init of the rest."""
from __future__ import annotations

import pytest
import torch
import yaml

from archspec import build_model, spec_from_dict, spec_hash
from archspec.errors import SpecError
from evaluator.device import seed_everything
from evaluator.store.rundir import RunDir
from evaluator.training.warm_start import warm_start
from evaluator.store.checkpoints import load_checkpoint
from evaluator.training.loop import train
from tests.evaluator.helpers import mini_spec


def _target(init_from: str | None = None) -> dict:
    """The mini spec with an extra 4-channel block ``h`` in front of ``eps``: ``temb`` and
    part of ``eps`` match the source in name and shape, ``h`` and ``eps``'s first
    convolution do not."""
    d = mini_spec(train={"steps": 4, "seed": 7, **({"init_from": init_from} if init_from
                                                   else {})})
    d["model"]["nodes"]["h"] = {"block": "resblock", "in": ["x", "temb"], "channels": 4}
    d["model"]["nodes"]["eps"]["in"] = ["h", "temb"]
    return d


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    res = train(spec_from_dict(mini_spec(train={"steps": 10})), root=root, device="cpu",
                progress=False)
    assert res.status == "finished"
    return res.run


def test_matching_tensors_are_copied_and_the_rest_keeps_the_seeded_init(source):
    spec = spec_from_dict(_target(str(source.path)))
    seed_everything(spec.train.seed)
    fresh = {k: v.clone() for k, v in build_model(spec).state_dict().items()}
    seed_everything(spec.train.seed)
    model = build_model(spec)
    info = warm_start(model, source.path)
    src = load_checkpoint(source.checkpoint_file)["ema"]
    state = model.state_dict()
    # computed independently of warm_start: same name and shape in both
    expect = sorted(k for k in state if k in src and src[k].shape == state[k].shape)
    assert sorted(info["copied"]) == expect
    assert {"node_modules.temb.mlp.0.weight", "node_modules.eps.conv2.weight"} <= set(expect)
    skipped = {n["name"]: n["reason"] for n in info["not_copied"]}
    assert set(skipped) | set(expect) == set(state) and not set(skipped) & set(expect)
    assert skipped["node_modules.h.conv1.weight"] == "not in the source"
    assert skipped["node_modules.eps.conv1.weight"].startswith("source (1, 1, 3, 3)")
    for k in expect:
        torch.testing.assert_close(state[k], src[k], rtol=0, atol=0)
    for k in skipped:
        torch.testing.assert_close(state[k], fresh[k], rtol=0, atol=0)


def test_training_records_what_was_copied_in_log_and_metrics(source, tmp_path):
    spec = spec_from_dict(_target(str(source.path)))
    res = train(spec, root=tmp_path, device="cpu", progress=False)
    assert res.status == "finished"
    rec = res.run.metrics()["train"]["init_from"]
    assert rec["source"] == str(source.path) and rec["source_hash"] == source.hash
    assert "node_modules.temb.mlp.0.weight" in rec["copied"]
    assert any(n["name"] == "node_modules.h.conv1.weight" for n in rec["not_copied"])
    log = res.run.log_file.read_text()
    assert f"init_from {source.path} ({source.hash}): copied {len(rec['copied'])} tensors" in log
    assert f"kept the seeded init of {len(rec['not_copied'])} tensors" in log


def test_init_from_is_part_of_the_hash(source):
    assert spec_hash(spec_from_dict(_target(str(source.path)))) != spec_hash(
        spec_from_dict(_target()))


def test_a_missing_or_unfinished_run_is_a_located_error(source, tmp_path):
    with pytest.raises(SpecError) as e:
        spec_from_dict(_target(str(tmp_path / "nope")))
    assert [str(p) for p in e.value.problems] == [
        f"train.init_from: {tmp_path / 'nope'}: no such run folder"]
    unfinished = RunDir.create(spec_from_dict(mini_spec(train={"steps": 3})), tmp_path)
    with pytest.raises(SpecError) as e:
        spec_from_dict(_target(str(unfinished.path)))
    assert "run is not finished (status created)" in str(e.value.problems[0])


def test_cli_validate_reports_a_missing_run_with_its_path_and_exit_2(tmp_path, capsys):
    from app.cli import main

    f = tmp_path / "warm.yaml"
    f.write_text(yaml.safe_dump(_target(str(tmp_path / "gone"))))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{f}: train.init_from: {tmp_path / 'gone'}: no such run folder"]


def test_a_warm_started_run_stays_readable_after_its_source_is_gone(tmp_path):
    import shutil

    from evaluator.store.checkpoints import load_trained

    src = train(spec_from_dict(mini_spec(train={"steps": 3})), root=tmp_path / "a",
                device="cpu", progress=False).run
    res = train(spec_from_dict(_target(str(src.path))), root=tmp_path / "b", device="cpu",
                progress=False)
    shutil.rmtree(src.path)
    model, spec = load_trained(res.run)
    assert spec.train.init_from == str(src.path)
    # a new spec naming the deleted run is still refused
    with pytest.raises(SpecError):
        spec_from_dict(_target(str(src.path)))
