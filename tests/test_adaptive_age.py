"""The adaptive age stage (core.adaptive): faithful on clean data, finds steps, widens on stationary data, and
beats the fixed-width age smoother on ageing series."""

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle
from xpcs_denoise.core.adaptive import AgeStage, adaptive_age_band, adaptive_age_smooth
from xpcs_denoise.core.band import age_smooth, band_mask, to_band


def eq3(n, gamma, beta=0.2, alpha=1.0, base=1.0):
    t = np.arange(n)
    return base + beta * np.exp(-2 * (gamma * np.abs(np.subtract.outer(t, t))) ** alpha)


def ageing_clean(n, rate):
    """Noise-free 2TCF of an ageing series, Γ(t) given per frame (cumulative phase)."""
    phase = np.concatenate([[0.0], np.cumsum(rate[:-1])])
    return 1 + 0.2 * np.exp(-2 * np.abs(np.subtract.outer(phase, phase)))


@pytest.mark.parametrize("n", [5, 24, 50, 200, 700])
@pytest.mark.parametrize("gamma,alpha,base", [(0.005, 1.0, 1.0), (0.05, 0.7, 1.06), (0.3, 1.4, 1.0)])
def test_noise_free_stationary_unchanged(n, gamma, alpha, base):
    c2 = eq3(n, gamma, alpha=alpha, base=base)
    assert np.abs(adaptive_age_smooth(c2) - c2).max() < 1e-10


def test_lags_linear_in_age_unchanged():
    # A local line reproduces a band whose every lag changes linearly with age, whatever width it picks.
    n = 150
    t = np.arange(n)
    c2 = eq3(n, 0.05) + 1e-4 * np.add.outer(t, t)
    assert np.abs(adaptive_age_smooth(c2) - c2).max() < 1e-10


def test_finds_the_step_and_keeps_it():
    n = 400
    rate = np.where(np.arange(n) < 200, 0.08, 0.02)
    sim = simulate_speckle(n, 20000, gamma=rate, beta=0.2, mean_count=0.2, seed=3)
    c2 = sim.two_time()[0]
    k = 40
    band = to_band(c2, k)
    out, widths, cps = adaptive_age_band(band, band_mask(n, k))
    # (cells (i, i + k) straddle the step for start frames 200 − k … 199: pooled lags 1–20 put it at ~195)
    assert len(cps) == 1 and 188 <= cps[0] <= 200
    # Far from the step the widths grow well beyond a fixed smoother's; next to it they do not cross it.
    assert np.median(widths[:150]) >= 30 and np.median(widths[250:350]) >= 30
    clean = to_band(ageing_clean(n, rate), k)
    err_ours = np.abs(out - clean)[:5, 185:215].mean()
    err_gauss = np.abs(to_band(age_smooth(c2, 24.0, k), k) - clean)[:5, 185:215].mean()
    assert err_ours < 0.6 * err_gauss  # the fixed smoother blurs the step into the frames around it


def test_no_step_in_stationary_series():
    found = 0
    for seed in range(6):
        c2 = simulate_speckle(300, 5000, gamma=0.05, beta=0.2, mean_count=0.1, seed=seed).two_time()[0]
        _, widths, cps = adaptive_age_band(to_band(c2, 30), band_mask(300, 30))
        found += len(cps)
        assert np.median(widths) >= 77  # stationary: the widest lines survive
    assert found == 0


def test_smooth_ageing_better_than_fixed_widths():
    n = 400
    rate = 0.08 * 4.0 ** (-np.arange(n) / (n - 1))
    clean = to_band(ageing_clean(n, rate), 40)
    errs = {"ours": [], **{w: [] for w in (8, 16, 24, 48)}}
    for seed in range(3):
        c2 = simulate_speckle(n, 5000, gamma=rate, beta=0.2, mean_count=0.1, seed=seed).two_time()[0]
        errs["ours"].append(np.sqrt(np.mean((to_band(adaptive_age_smooth(c2, 40), 40) - clean)[:10] ** 2)))
        for w in (8, 16, 24, 48):
            errs[w].append(np.sqrt(np.mean((to_band(age_smooth(c2, w, 40), 40) - clean)[:10] ** 2)))
    best_fixed = min(np.mean(errs[w]) for w in (8, 16, 24, 48))
    assert np.mean(errs["ours"]) < 0.9 * best_fixed


def test_symmetric_float32_and_batch():
    c2 = simulate_speckle(80, 2000, gamma=0.05, beta=0.2, mean_count=0.3, seed=1).two_time()[0]
    out = adaptive_age_smooth(np.stack([c2, c2]).astype(np.float32), max_lag=20)
    assert out.shape == (2, 80, 80) and np.allclose(out[0], out[0].T) and np.allclose(out[0], out[1])
    # lags beyond max_lag and the diagonal keep their values
    assert np.allclose(np.diagonal(out[0], 30), np.diagonal(c2, 30), atol=1e-6)
    assert np.allclose(np.diag(out[0]), np.diag(c2), atol=1e-6)


def test_bad_inputs_and_settings():
    c2 = eq3(30, 0.05)
    c2[3, 5] = np.nan
    with pytest.raises(XPCSInputError, match="NaN"):
        adaptive_age_smooth(c2)
    with pytest.raises(XPCSInputError):
        AgeStage(widths=(4.0, 2.0))
    with pytest.raises(XPCSInputError):
        AgeStage(step_threshold=-1)
    with pytest.raises(XPCSInputError):
        AgeStage.from_dict({"width": [1, 2]})
    for bad in ({"widths": ["a"]}, {"pool_lags": "x"}, {"ici_threshold": None}, {"pool_lags": True}):
        with pytest.raises(XPCSInputError, match="invalid adaptive age settings"):
            AgeStage.from_dict(bad)
    stage = AgeStage(widths=(2.0, 8.0), pool_lags=5)
    assert AgeStage.from_dict(stage.to_dict()) == stage


def test_default_model_applies_its_age_stage():
    from xpcs_denoise.nn.lagnet import LagDenoiser

    den = LagDenoiser.pretrained()
    assert den.age_stage == AgeStage()  # the core function's default is the shipped setting
    net_only = LagDenoiser(den.model, {k: v for k, v in den.card.items() if k != "age_stage"})
    n = 300
    rate = 0.08 * 4.0 ** (-np.arange(n) / (n - 1))
    clean = to_band(ageing_clean(n, rate), 20)
    c2 = simulate_speckle(n, 5000, gamma=rate, beta=0.2, mean_count=0.1, seed=11).two_time()[0]

    def rms(out):
        return np.sqrt(np.mean((to_band(out, 20) - clean)[:10, :250] ** 2))

    assert rms(den.denoise(c2)) < 0.8 * rms(net_only.denoise(c2))
    t = np.arange(60)
    still = 1.01 + 0.2 * np.exp(-2 * 0.05 * np.abs(np.subtract.outer(t, t)))
    assert np.abs(den.denoise(still) - still).max() < 1e-10  # still faithful


def test_cuts_of_a_denoised_file_carry_the_raw_cuts_errors(tmp_path):
    # Smoothing along age makes a plain cut fit's own errors too small: fit --cut-width on a denoised file (which
    # holds its raw 2TCF) reports the raw cuts' errors, like cut_fits.
    import csv

    from xpcs_denoise import denoise_file, fit_file, write_c2
    from xpcs_denoise.analysis.workflows import ageing_analysis

    n = 200
    rate = 0.08 * 4.0 ** (-np.arange(n) / (n - 1))
    c2 = simulate_speckle(n, 5000, gamma=rate, beta=0.2, mean_count=0.2, seed=5).two_time()
    write_c2(tmp_path / "raw.h5", c2)
    denoise_file(tmp_path / "raw.h5", tmp_path / "den.h5")
    fit_file(tmp_path / "den.h5", tmp_path / "cuts.csv", cut_width=3, fix_beta=True)
    rows = [r for r in csv.DictReader(open(tmp_path / "cuts.csv")) if r["success"] == "True"]
    err = np.array([float(r["gamma_err"]) for r in rows])
    raw = ageing_analysis(c2[0], width=3, max_lag=49)
    ages = np.array([float(r["age"]) for r in rows]).astype(int)
    raw_err = raw.fit.gamma_err[np.searchsorted(raw.ages, ages)]
    assert np.allclose(err, raw_err, rtol=1e-4, equal_nan=True)  # (the file stores float32)
    from xpcs_denoise import read_c2

    plain = ageing_analysis(read_c2(tmp_path / "den.h5").c2[0], width=3, max_lag=49)
    assert np.nanmedian(err) > 2 * np.nanmedian(plain.fit.gamma_err)  # what it used to report


def test_too_short_to_measure_the_noise_is_kept():
    c2 = simulate_speckle(20, 2000, gamma=0.05, beta=0.2, mean_count=0.3, seed=2).two_time()[0]
    out = adaptive_age_smooth(c2)
    assert np.allclose(out, 0.5 * (c2 + c2.T)) and not np.allclose(out, age_smooth(c2, 8.0))
    c2 = simulate_speckle(60, 2000, gamma=0.05, beta=0.2, mean_count=0.3, seed=2).two_time()[0]
    assert not np.allclose(adaptive_age_smooth(c2), 0.5 * (c2 + c2.T))  # 60 frames: smoothed


def test_cuts_of_a_denoised_file_without_raw_warn(tmp_path):
    import warnings as _w

    from xpcs_denoise import denoise, fit_file, write_c2

    c2 = simulate_speckle(120, 3000, gamma=0.05, beta=0.2, mean_count=0.3, seed=3).two_time()
    write_c2(tmp_path / "den.h5", denoise(c2), attrs={"method": "lagnet"})
    with _w.catch_warnings(record=True) as got:
        _w.simplefilter("always")
        fit_file(tmp_path / "den.h5", tmp_path / "cuts.csv", cut_width=3)
    assert any("understate" in str(w.message) for w in got)
