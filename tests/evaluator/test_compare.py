"""Bands, input checks, divergence flags and the metrics table of the comparison views."""
from __future__ import annotations

import math

import pytest
import torch

from evaluator.report.compare import (band_counts, band_edges, band_labels, bands_for, check_ints,
                               check_nfes, divergence, empty_bands, log10_ratio)


def _counts_by_radius(size: int, n: int) -> list[int]:
    # independent reference: count rfft bins by their radius, done with numpy's fftfreq
    import numpy as np

    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    r = np.sqrt(fy ** 2 + fx ** 2).flatten()[1:] / 0.5   # Nyquist units, DC dropped
    idx = np.minimum(np.floor(r * n + 1e-9 * n), n - 1).astype(int)
    return np.bincount(idx, minlength=n).tolist()


@pytest.mark.parametrize("size,n", [(8, 3), (8, 4), (16, 4), (28, 8)])
def test_band_counts_match_radius_binning(size, n):
    assert band_counts(size, n) == _counts_by_radius(size, n)


def test_bands_for_leaves_no_empty_band():
    assert bands_for(8) == 3 and empty_bands(8, 4) == [True, False, False, False]
    assert not any(empty_bands(8, bands_for(8)))
    assert bands_for(32) == 4
    assert band_edges(4) == [0.0, 0.125, 0.25, 0.375, 0.5]
    assert band_labels(2) == ["b0 0-0.25 c/px", "b1 0.25-0.5 c/px"]


def test_check_ints_refuses_fractions_and_out_of_range():
    assert check_ints({"steps": 20, "samples": 16, "seed": 0}) == []
    probs = check_ints({"steps": 0, "samples": 100000, "seed": 1.5})
    assert probs == ["steps: 0 is out of range 1..1000",
                     "samples: 100000 is out of range 1..256",
                     "seed: 1.5 is not a whole number"]
    assert check_ints({"steps": None, "samples": "x", "seed": 2.0})[:2] == [
        "steps: a whole number is required", "samples: 'x' is not a number"]


def test_check_nfes():
    assert check_nfes("50, 5,10 ,5") == ([5, 10, 50], [])
    steps, probs = check_nfes("5, abc, 0")
    assert steps == [5] and len(probs) == 2 and "'abc'" in probs[0]
    assert check_nfes("")[1]


def test_divergence_flags_non_finite_and_exploding():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8) * 0.3
    from evaluator.measure.spectral import band_energies

    data = band_energies(x, 3).tolist()
    assert divergence(x, data) is None
    assert "exploded" in divergence(x * 1000, data)   # 10^6 times the energy
    y = x.clone()
    y[2, 0, 0, 0] = math.nan
    assert divergence(y, data) == "1 of 8 samples hold NaN/inf values"


def test_log10_ratio():
    assert log10_ratio(10.0, 1.0) == pytest.approx(1.0) and log10_ratio(0.0, 1.0) is None


def _run_with_band_error(tmp_path, evaluated_run, n_bands: int):
    """A copy of the session's evaluated run whose first setting alone has a band error,
    of ``n_bands`` known ratios."""
    from tests.evaluator.conftest import copy_run

    run = copy_run(evaluated_run, tmp_path)
    evals = run.metrics()["eval"]
    rows = evals["quick"]["results"]
    for r in rows[1:]:
        del r["band_error"]
    ratios = [0.1 * (b + 1) for b in range(n_bands)]
    rows[0]["band_error"].update(band_edges=band_edges(n_bands), log10_ratio=ratios,
                                 abs_error=ratios, per_seed=[ratios], n=8, seeds=[0])
    run.update_metrics("eval", evals)
    return run


def test_report_marks_empty_bands(tmp_path, evaluated_run):
    from evaluator.report.tables import band_error_table

    run = _run_with_band_error(tmp_path, evaluated_run, 8)  # 8 bands at 8x8: three empty
    header, row = band_error_table([run])
    cells = row[5:13]
    empty = empty_bands(8, 8)
    assert sum(empty) == 3
    assert [c == "—" for c in cells] == empty
    assert "+0.00" not in row and cells[2] == "+0.30"
    assert row[-1].endswith("(+0.80)")               # the worst of the bands that exist


def test_stored_band_shares_use_one_band_definition(tmp_path, evaluated_run):
    from evaluator.report.compare import shares_from_raps, stored_band_shares
    from evaluator.measure.spectral import band_energy_shares, radial_power_spectrum
    from evaluator.store.atomic import write_json

    torch.manual_seed(1)
    # white noise: the RAPS-based estimate is close to the shares measured directly
    x = torch.randn(64, 1, 8, 8)
    _, raps = radial_power_spectrum(x)
    got = shares_from_raps(raps.tolist(), 8, 3)
    assert sum(got) == pytest.approx(1.0) and all(g > 0 for g in got)
    white = torch.ones_like(raps)     # flat spectrum: shares = weighted frequency counts
    from blocks import fourier
    w = fourier.rfft_multiplicity(8, 8).flatten()[1:]
    idx = fourier.band_index(8, 8, 3).flatten()[1:]
    wc = torch.zeros(3, dtype=torch.float64).index_add_(0, idx, w)
    assert shares_from_raps(white.tolist(), 8, 3) == pytest.approx((wc / wc.sum()).tolist())
    assert got == pytest.approx(band_energy_shares(x, 3).tolist(), abs=0.05)
    run = _run_with_band_error(tmp_path, evaluated_run, 3)
    write_json(run.spectra_file, {"data": {"raps": {"power": raps.tolist()}},
                                  "ddim_5": {"raps": {"power": white.tolist()}}})
    s = stored_band_shares(run)
    assert s["bands"] == band_labels(3) and set(s["series"]) == {"data", "ddim_5"}
