"""The ablation examples: their specs validate and differ only where they say, and the
sampler-check script answers bad input with one line per problem and exit code 2."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from archspec import load_spec

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ROOT / "examples" / "ablations"
SCRIPT = ABLATIONS / "sampler_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("sampler_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", sorted(ABLATIONS.glob("*_head.yaml")), ids=lambda p: p.stem)
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
