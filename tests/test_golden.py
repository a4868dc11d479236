"""Golden output slices: each example spec's forward pass at a fixed seed against stored numbers.

In the manner of diffusers' slice tests: a change to a block, the assembly or an
initialiser that alters what an example computes shows up as a mismatch here, even when
every shape and gradient check still passes. The numbers live in tests/golden_slices.json.

Regenerate them only when a change of numbers is intended, and say so in the commit:

    python -m tests.test_golden --regenerate      (from the repository root)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "examples" / "specs").glob("*.yaml"))
GOLDEN = Path(__file__).with_name("golden_slices.json")
SEED = 0


def golden_output(path: Path) -> dict:
    """Build the spec at seed 0, give zero-initialised parameters (output convs, gates)
    small seeded values so the slice depends on every layer, run one eval-mode forward
    pass on seeded inputs, and keep the last 3x3 corner of the last channel of sample 0."""
    from archspec import build_model, load_spec

    spec = load_spec(path)
    torch.manual_seed(SEED)
    model = build_model(spec).eval()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        c, s = spec.image.channels, spec.image.size
        x = torch.randn(2, c, s, s, generator=g)
        t = torch.tensor([10, spec.diffusion.timesteps // 2])
        y = model(x, t)
    return {"shape": list(y.shape), "slice": y[0, -1, -3:, -3:].flatten().tolist(),
            "mean_abs": float(y.abs().mean())}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_forward_matches_its_golden_slice(path: Path) -> None:
    stored = json.loads(GOLDEN.read_text())
    assert path.stem in stored, f"no golden slice for {path.name}: see this module's docstring"
    want, got = stored[path.stem], golden_output(path)
    assert got["shape"] == want["shape"]
    torch.testing.assert_close(torch.tensor(got["slice"]), torch.tensor(want["slice"]),
                               rtol=1e-4, atol=1e-5)
    assert got["mean_abs"] == pytest.approx(want["mean_abs"], rel=1e-4)


def test_every_stored_slice_belongs_to_an_example() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == [p.stem for p in SPECS]


def regenerate() -> None:
    out = {p.stem: golden_output(p) for p in SPECS}
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} slices to {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python -m tests.test_golden --regenerate")
    regenerate()
