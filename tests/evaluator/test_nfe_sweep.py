"""NFE sweep (same noise, cached in the run folder) and per-panel checkpoint choice."""
from __future__ import annotations

import pytest
import torch

from tests.evaluator.helpers import mini_spec

pytestmark = pytest.mark.slow  # trains a tiny run and its feature extractor (~20 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from archspec import spec_from_dict
    from evaluator.training.loop import train

    data = mini_spec(evaluate={"convergence": {"every": 10, "sampler": "ddim", "steps": 3,
                                               "num_samples": 16}})
    res = train(spec_from_dict(data), root=tmp_path_factory.mktemp("nfe"), device="cpu",
                progress=False)
    assert res.status == "finished"
    return res.run


def test_sweep_matches_direct_sampling_and_is_cached(run):
    from evaluator.data.datasets import spec_dataset
    from evaluator.diffusion.schedules import NoiseSchedule
    from evaluator.measure.quality import feature_extractor
    from evaluator.measure.features import fd_kd
    from evaluator.pipeline.nfe_sweep import CACHE_FILE, nfe_sweep, sweep_caption
    from evaluator.diffusion.samplers import sample
    from evaluator.store.checkpoints import load_trained

    res = nfe_sweep([str(run.path)], sampler="ddim", steps=[2, 5], seed=4, n=16)
    (r,) = res["runs"]
    assert [p["steps"] for p in r["points"]] == [2, 5] and not r["points"][0]["cached"]
    metric = res["metric"]
    assert metric == "FD-digits"
    # independent: sample and score the 5-step point here
    model, spec = load_trained(run, "cpu", ema=True)
    s = sample(model, NoiseSchedule.from_spec(spec.diffusion), sampler="ddim", steps=5, n=16,
               shape=(1, 8, 8), seed=4, clip=spec.evaluate.clip,
               prediction=spec.diffusion.prediction)
    ref = {m["metric"]: m["value"] for m in fd_kd(
        s.images, spec_dataset(spec, "test"), extractor=feature_extractor("digits", spec))}
    assert r["points"][1][metric] == pytest.approx(ref[metric], rel=1e-5)
    assert (run.path / CACHE_FILE).is_file()
    again = nfe_sweep([str(run.path)], sampler="ddim", steps=[2, 5], seed=4, n=16)
    assert all(p["cached"] for p in again["runs"][0]["points"])
    assert again["runs"][0]["points"][1][metric] == r["points"][1][metric]
    assert "2/2 points from the cache" in sweep_caption(again) and "N=16" in sweep_caption(again)
    other = nfe_sweep([str(run.path)], sampler="ddim", steps=[5], seed=5, n=16)
    assert not other["runs"][0]["points"][0]["cached"]   # another seed is another point


def test_checkpoint_choice_loads_the_snapshot(run):
    from archspec.errors import UserError
    from evaluator.pipeline.nfe_sweep import checkpoint_options, models_for
    from evaluator.store.snapshots import list_snapshots, load_snapshot

    opts = checkpoint_options(run)
    assert opts[0] == ("final (step 30)", "final")
    assert [v for _, v in opts[1:]] == ["10", "20", "30"]
    cache: dict = {}
    got = models_for([str(run.path)], ["10"], "cpu", cache)
    (model, _spec), = got.values()
    snap = load_snapshot(dict(list_snapshots(run))[10])["ema"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), k
    final = models_for([str(run.path)], ["final"], "cpu", cache)
    (fmodel, _), = final.values()
    assert any(not torch.equal(v, snap[k]) for k, v in fmodel.state_dict().items())
    with pytest.raises(UserError, match="no snapshot at step 15"):
        models_for([str(run.path)], ["15"], "cpu", cache)


# Sweeps one run in a fresh interpreter; after scoring its first point it waits until the
# other process has scored one too, so both read the cache before either writes it (the
# race in which a plain read-modify-write loses the first writer's points).
_RACER = """
import json, sys, time
from pathlib import Path
from evaluator.pipeline import nfe_sweep as m
run, steps, me, other = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
score = m._score
def gated(*a, **k):
    out = score(*a, **k)
    me.touch()
    end = time.time() + 180
    while not other.exists() and time.time() < end:
        time.sleep(0.05)
    return out
m._score = gated
res = m.nfe_sweep([run], sampler="ddim", steps=[int(s) for s in steps.split(",")], seed=7,
                  n=16, device="cpu")
print(json.dumps(res["runs"][0]["points"]))
"""


def test_two_processes_filling_the_cache_at_once_keep_both_their_points(run, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from evaluator.pipeline.nfe_sweep import CACHE_FILE, nfe_sweep
    from tests.evaluator.sweep_helpers import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(run.path), steps, str(me),
                               str(other)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for steps, me, other in (("2", a, b), ("3", b, a))]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    (pa,), (pb,) = (json.loads(o) for o, _ in outs)
    stored = json.loads((run.path / CACHE_FILE).read_text())  # valid JSON, not torn
    assert all(isinstance(v, dict) for v in stored.values())
    again = nfe_sweep([str(run.path)], sampler="ddim", steps=[2, 3], seed=7, n=16)
    got = again["runs"][0]["points"]
    assert all(p["cached"] for p in got)  # neither process's point was lost
    metric = again["metric"]
    assert [p[metric] for p in got] == [pa[metric], pb[metric]]
