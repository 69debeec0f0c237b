"""fit_two_time's three steps (path, one fit, stored calibration), the calibration object, and the helpers."""

import json
import warnings

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle
from xpcs_denoise.analysis.calibration import FitCalibration, cell_key, fit_calibration, load_calibration
from xpcs_denoise.analysis.uncertainty import (
    PATH_NAMES,
    calibration_scale,
    fit_denoised,
    fit_two_time,
    residual_bootstrap,
)


def _lag_matrix(n):
    t = np.arange(n)
    return np.abs(t[:, None] - t[None, :]).astype(float)


def _series(gamma, n, seed, pixels=3000, count=0.5):
    return simulate_speckle(n, pixels, gamma=gamma, beta=0.2, mean_count=count, seed=seed).two_time()[0]


EDGES = (0.0, 0.5, 1.5, 4.0, 12.0)


def test_calibration_checks_itself_and_round_trips():
    cal = FitCalibration(EDGES, {"lagnet/short/free": [[1.2, 0.1]] * 5, "lagnet/*": [[1.5, 0.0]]})
    assert FitCalibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal
    for bad in ({"edges": (0.5, 1.0)}, {"edges": (0.0, 2.0, 1.0)}, {"cells": {}},
                {"cells": {"lagnet/short/free": [[1.0, 0.0]] * 4}},  # one pair per bin
                {"cells": {"lagnet/*": [[-1.0, 0.0]]}}, {"cells": {"lagnet/*": [[1.0, float("nan")]]}},
                {"cells": {"lagnet/*": [[0.0, 0.0]]}},
                {"version": 2}, {"long_frames": 0}, {"alpha_bounds": (2.0, 0.5)}, {"alpha_bounds": (0.0, 2.0)},
                {"alpha_bounds": ("a", 2)}, {"alpha_bounds": (0.5, float("inf"))}, {"alpha_bounds": "12"},
                {"alpha_bounds": (True, 2)}, {"alpha_bounds": (0.5, 1.0, 2.0)}):
        kw = {"edges": EDGES, "cells": {"lagnet/*": [[1.0, 0.0]]}, **bad}
        with pytest.raises(XPCSInputError):
            FitCalibration(**kw)
    with pytest.raises(XPCSInputError, match="not a valid calibration"):
        FitCalibration.from_dict({"edges": EDGES, "cells": {"lagnet/*": [[1.0, 0.0]]}, "extra": 1})


def test_the_calibrations_bounds_of_alpha_hold_for_short_free_fits_only():
    """α's bounds are part of the calibration: a short series fitted with α free stays within them (here a
    noise-free compressed decay, α = 2.6, comes out at 2); a long series, or α held, is fitted as before. A row
    says α was held, and the fitter's flags say "at bound", only where its α (after pooling with the raw fit) is at
    the bound."""
    cal = FitCalibration(EDGES, {"raw/*": [[1.0, 0.0]]}, alpha_bounds=(0.5, 2.0))
    assert FitCalibration.from_dict(json.loads(json.dumps(cal.to_dict()))).alpha_bounds == (0.5, 2.0)

    def clean(n):
        return 1.0 + 0.2 * np.exp(-2 * (0.05 * _lag_matrix(n)) ** 2.6)

    def alpha(c2, calibration, fix=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fit_denoised(c2, c2, method="none", calibration=calibration, fix=fix).fit.alpha)

    free = FitCalibration(EDGES, {"raw/*": [[1.0, 0.0]]})
    assert alpha(clean(50), free) == pytest.approx(2.6, abs=0.01)
    assert alpha(clean(50), cal) == pytest.approx(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = str(fit_denoised(clean(50), clean(50), method="none", calibration=cal).fit.message)
    assert "α held within the calibration's 0.5–2" in msg
    assert alpha(clean(150), cal) == pytest.approx(2.6, abs=0.01)  # long: 150 >= long_frames
    assert alpha(clean(50), cal, fix={"alpha": 2.6}) == 2.6
    # pooled with a raw fit whose α lies inside the bounds: the row's α is not the bound, and it says so
    from dataclasses import replace

    raw = 1.0 + 0.2 * np.exp(-2 * (0.05 * _lag_matrix(50)) ** 1.5)
    pooled = replace(cal, cells={"lagnet/*": [[1.0, 0.0]]}, raw_pool={"floor": 0.2, "resolved": 1.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_denoised(raw, clean(50), method="lagnet", calibration=pooled).fit
        alone = fit_denoised(raw, clean(50), method="lagnet", calibration=replace(pooled, raw_pool=None)).fit
    assert float(alone.alpha) == pytest.approx(2.0) and "α held" in str(alone.message)
    assert "at bound: alpha" in str(alone.message) and bool(alone.at_bound)
    assert 1.4 < float(r.alpha) < 2.0 and "α held" not in str(r.message)
    # the fitter's own flags describe the pooled values too
    assert str(r.message) == "ok" and not bool(r.at_bound) and not np.any(r.at_bound_params)


def test_calibrated_sigma_follows_the_cell_and_the_decay_times_spanned():
    pairs = [[1.0, 0.0], [2.0, 0.0], [1.0, 0.5], [3.0, 0.0], [1.0, 0.0]]  # σ = hypot(s·u, r·Γ̂)
    cal = FitCalibration(EDGES, {"raw/short/free": pairs, "raw/*": [[10.0, 0.0]]})
    gamma = np.array([0.005, 0.02, 0.05, 0.1, 0.5])  # × 49 lags: 0.25, 0.98, 2.45, 4.9, 24.5 decay times
    u = np.full(5, 0.01)
    np.testing.assert_allclose(cal.sigma("raw/short/free", gamma, u, 49),
                               [0.01, 0.02, np.hypot(0.01, 0.025), 0.03, 0.01])
    # an unmeasured cell: the same path's α-held cell if any, else the path's pooled pair
    np.testing.assert_allclose(cal.sigma("raw/long/free", gamma, u, 49), 0.1)
    with pytest.raises(XPCSInputError, match="no cell"):
        cal.sigma("lagnet/short/free", gamma, u, 49)
    assert cell_key("lagnet", 50, None, 100) == "lagnet/short/free"
    assert cell_key("raw", 100, {"alpha": 1.0}, 100) == "raw/long/alpha"


def test_the_bins_run_over_decay_times_and_then_over_relative_error():
    cal = FitCalibration((0.0, 2.0), {"raw/short/free": [[1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [6, 0]],
                                      "raw/*": [[1.0, 0.0]]}, rel_edges=(0.0, 0.1, 0.5))
    assert cal.n_bins == 6
    gamma = np.array([0.01, 0.01, 0.01, 0.1, 0.1, 0.1])  # × 49 lags: 0.49 (bin 0) and 4.9 (bin 1) decay times
    u = gamma * np.array([0.05, 0.2, 1.0, 0.05, 0.2, 1.0])  # u/Γ̂ in each of the three relative bins
    np.testing.assert_allclose(cal.sigma("raw/short/free", gamma, u, 49), u * np.arange(1, 7))
    with pytest.raises(XPCSInputError, match="must hold 6 pairs"):
        FitCalibration((0.0, 2.0), {"raw/short/free": [[1, 0]] * 2}, rel_edges=(0.0, 0.1, 0.5))


def test_fit_calibration_recovers_a_known_scale_and_floor():
    """Residuals of 2 u (Gaussian): s = 2, r = 0 and |z| < 1 for 68 % of unseen ones; a bin of fits whose error
    is 30 % of Γ whatever u says: its pair covers that with the floor."""
    rng = np.random.default_rng(3)
    n = 4000
    u = rng.uniform(0.001, 0.01, n)
    gamma = rng.uniform(0.002, 0.2, n)
    resolved = gamma * 49
    resid = rng.normal(0, 1, n) * 2 * u
    fast = resolved > 4
    resid[fast] = rng.normal(0, 0.3, fast.sum()) * gamma[fast]
    cal = fit_calibration({"raw/short/free": {"residual": resid, "u": u, "gamma": gamma, "resolved": resolved}},
                          EDGES)
    s, r = cal.cells["raw/short/free"][0]
    assert s == pytest.approx(2.0, rel=0.08) and r < 0.05
    resid2 = np.where(fast, rng.normal(0, 0.3, n) * gamma, rng.normal(0, 1, n) * 2 * u)  # unseen
    z = np.abs(resid2 / cal.sigma("raw/short/free", gamma, u, 49))
    assert 0.63 < np.mean(z[~fast] < 1) < 0.73 and 0.63 < np.mean(z[fast] < 1) < 0.73
    assert np.mean(z < 2) > 0.92


def test_the_shipped_calibrations_load_and_cover_simulated_crops():
    """Each path's stored calibration, on 40 crops of known Γ it never saw: |z| < 2 for most of them."""
    for method in ("lagnet", "none", "cned"):
        cal = load_calibration(method)
        assert isinstance(cal, FitCalibration) and cal.coverage and cal.source
    rng = np.random.default_rng(11)
    gam = np.exp(rng.uniform(np.log(0.01), np.log(0.15), 40))
    c2 = np.stack([_series(g, 50, 100 + i) for i, g in enumerate(gam)])
    from xpcs_denoise.analysis.uncertainty import POOLED_PATH_NAMES

    assert load_calibration("lagnet").raw_pool is not None  # the shipped lagnet fit is pooled with the raw one
    for method, path in (("lagnet", POOLED_PATH_NAMES["lagnet"]), ("none", PATH_NAMES["none"])):
        r = fit_two_time(c2, method=method)
        assert set(r.path) == {path}
        z = np.abs(r.fit.gamma - gam) / r.fit.gamma_err
        assert np.mean(z < 2) >= 0.8, (method, np.mean(z < 2))
        assert np.all(r.fit.gamma_err > 0)


def test_no_contrast_fails_with_its_reason():
    flat = np.ones((50, 50)) + np.eye(50) * 0.3
    r = fit_two_time(np.stack([flat, _series(0.05, 50, 4)]), method="none")
    assert r.path[0] == "failed: no contrast" and r.path[1] == "raw: plain fit"
    assert not r.fit.success[0] and np.isnan(r.fit.gamma[0]) and "no contrast" in r.fit.message[0]
    assert r.fit.success[1]


def test_fit_denoised_is_the_raw_fit_for_raw_data_and_states_its_lags():
    c2 = _series(0.03, 60, 2)
    a = fit_two_time(c2, method="none", frame_time=0.01)
    b = fit_denoised(c2, c2, method="none", frame_time=0.01)
    assert a.fit.gamma == b.fit.gamma and a.fit.gamma_err == b.fit.gamma_err
    assert a.lag_range == (0.01, 0.59) and a.fit.lag_unit == "s"
    with pytest.raises(XPCSInputError, match="differ in shape"):
        fit_denoised(c2, c2[:-1, :-1])


def test_held_parameters_take_their_own_cell_and_no_error():
    c2 = _series(0.03, 50, 5)
    r = fit_two_time(c2, fix={"alpha": 1.0})
    assert str(r.cell) == "lagnet/short/alpha" and r.fit.alpha == 1.0 and r.fit.alpha_err == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert str(fit_two_time(c2).cell) == "lagnet/short/free"


def test_residual_bootstrap_permutes_frames_of_the_residual():
    rng = np.random.default_rng(0)
    n = 30
    model = 1 + 0.2 * np.exp(-0.1 * _lag_matrix(n))
    noise = rng.normal(0, 0.05, (n, n))
    noise = noise + noise.T
    reps = residual_bootstrap(model + noise, model, n_boot=5, seed=1)
    assert reps.shape == (5, n, n)
    for r in reps:
        res = r - model
        np.testing.assert_allclose(res, res.T)  # symmetric
        # the same multiset of residuals, the diagonal staying the diagonal
        np.testing.assert_allclose(np.sort(res.ravel()), np.sort(noise.ravel()))
        np.testing.assert_allclose(np.sort(np.diag(res)), np.sort(np.diag(noise)))
    assert not np.allclose(reps[0], reps[1])
    np.testing.assert_array_equal(reps, residual_bootstrap(model + noise, model, n_boot=5, seed=1))
    with pytest.raises(XPCSInputError):
        residual_bootstrap(model, model[:-1, :-1])


def test_calibration_scale_recovers_a_known_factor():
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.5, 2, 20000)
    resid = rng.normal(0, 1, sigma.size) * sigma
    # the bootstrap part reports half the true error: the scale must come out ≈ 2
    s = calibration_scale(resid, np.zeros_like(sigma), sigma / 2)
    assert s == pytest.approx(2.0, rel=0.05)


def _series(gamma, n_frames, seed, n_pixels=3000, mean_count=0.3):
    sim = simulate_speckle(n_frames, n_pixels, gamma=gamma, beta=0.25, mean_count=mean_count, seed=seed)
    return sim.two_time()[0]


def test_calibrate_needs_no_floor_for_gaussian_errors_and_one_for_a_bias():
    from xpcs_denoise.analysis.uncertainty import calibrate

    rng = np.random.default_rng(5)
    n = 20000
    b = rng.uniform(0.5, 2, n)
    value = np.full(n, 10.0)
    s, r = calibrate(rng.normal(0, 1, n) * 2 * b, np.zeros(n), b, value)
    assert s == pytest.approx(2.0, rel=0.05) and r == 0.0
    # a systematic error of 20 % of the value on half the cases: only a floor brings |z| < 2 to 93 %
    value = np.full(n, 100.0)
    resid = rng.normal(0, 1, n) * b + np.where(rng.random(n) < 0.5, 0.2 * value, 0.0)
    s, r = calibrate(resid, np.zeros(n), b, value)
    sig = np.sqrt((s * b) ** 2 + (r * value) ** 2)
    assert r > 0 and np.mean(np.abs(resid) < sig) == pytest.approx(0.683, abs=0.01)
    assert np.mean(np.abs(resid) < 2 * sig) >= 0.93
    # 9 % of the cases far off (a tail no floor of the value covers): z2 wins over z1, with no floor
    resid = rng.normal(0, 1, n) * b + np.where(rng.random(n) < 0.09, 50 * b, 0.0)
    s, r = calibrate(resid, np.zeros(n), b, np.full(n, 10.0), z1=0.7, z2=0.9)
    assert r == 0.0 and np.mean(np.abs(resid) < 2 * s * b) == pytest.approx(0.9, abs=0.002)
    assert np.mean(np.abs(resid) < s * b) > 0.72
    # errors that scale with the value alone (no bootstrap part to scale): the floor carries it, 10 % here
    value = rng.uniform(5, 20, n)
    resid = rng.normal(0, 0.1, n) * value
    s, r = calibrate(resid, np.zeros(n), np.full(n, 1e-6), value, z1=0.683, z2=0.93)
    assert r == pytest.approx(0.1, abs=0.011)
    sig = np.hypot(s * 1e-6, r * value)
    assert np.mean(np.abs(resid) < 2 * sig) >= 0.93


def test_calibrate_takes_the_floor_with_the_most_within_two_sigma():
    """Two kinds of error: a Gaussian core of known σ, and 12 % of cases whose σ says almost nothing while their
    error scales with the value. Floors from 0.02 to 0.11 reach both targets (0.02 only just: 90.5 % within 2σ); the
    one chosen has the largest |z| < 2 share among them (94 %, within 0.5 %)."""
    from xpcs_denoise.analysis.uncertainty import calibrate, calibration_scale

    rng = np.random.default_rng(9)
    n = 20000
    value, blind = rng.uniform(5, 20, n), rng.random(n) < 0.12
    b = np.where(blind, 0.01, rng.uniform(0.5, 2, n))
    resid = np.where(blind, rng.normal(0, 0.1, n) * value, rng.normal(0, 1, n) * b)
    s, r = calibrate(resid, np.zeros(n), b, value, z1=0.71, z2=0.9)
    assert r > 0.03  # not the smallest floor that reaches both

    def shares(s_, r_):
        sig = np.hypot(s_ * b, r_ * value)
        return np.mean(np.abs(resid) < sig), np.mean(np.abs(resid) < 2 * sig)

    z1, z2 = shares(s, r)
    assert z1 == pytest.approx(0.71, abs=0.01) and z2 >= 0.9
    for rel in np.arange(0.0, 0.3, 0.01):  # any other floor that reaches both has no more within 2σ (+0.5 %)
        s_other = calibration_scale(resid, rel * value, b, 0.71)
        o1, o2 = shares(s_other, rel)
        if o2 >= 0.9 and o1 <= 0.72:
            assert z2 >= o2 - 0.005


def test_coverage_counts_z_over_all_rates():
    """Shares of |z| < 1 and < 2 over fits in the Γ range, failed fits and masked ones left out."""
    from xpcs_denoise.analysis.evaluation import coverage
    from xpcs_denoise.core.fitting import PARAMETERS, FitResult

    g = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5])  # the last outside 0.003–0.4
    fit = FitResult(**{k: np.ones(6) for k in PARAMETERS}, **{k + "_err": np.ones(6) for k in PARAMETERS},
                    success=np.array([1, 1, 1, 1, 0, 1], bool), message=np.array([""] * 6),
                    redchi=np.ones(6), n_iter=np.zeros(6, int), lags=np.arange(1, 5.0))
    fit.gamma[:] = g + np.array([0.5, 1.5, 3.0, 0.2, 0.0, 0.0]) * 0.01
    fit.gamma_err[:] = 0.01
    c = coverage(fit, {"gamma": g})
    assert c == {"n": 4, "z1": 0.5, "z2": 0.75}
    fit.gamma_err[0] = 0.0  # σ̂ = 0 off the truth: a miss
    assert coverage(fit, {"gamma": g}) == {"n": 4, "z1": 0.25, "z2": 0.5}
    from xpcs_denoise.analysis.evaluation import bias_table

    first = next(r for r in bias_table(fit, {"gamma": g}, params=("gamma",)) if r["bin"].startswith("0.01-"))
    assert first["z1"] == 0.0 and first["z2"] == 0.5  # the bins count σ̂ = 0 as a miss too
    assert coverage(fit, {"gamma": g}, select=[1, 0, 1, 1, 1, 1])["n"] == 3


def test_the_raw_pool_weight_is_inverse_variance_with_a_floor_for_the_denoised_fit():
    """w = 1 / (1 + (u / (c·Γ̂))²) where the decay is resolved (Γ̂·L ≥ m) by the raw fit and the denoised one; 0
    where it is not or the raw fit failed; pooled Γ is the weighted geometric mean, β and C∞ the weighted mean."""
    from xpcs_denoise.analysis.calibration import pool_values, raw_pool_weight

    w = raw_pool_weight([0.05, 0.05, 0.05, 0.02, np.nan, -0.05], [0.0025, 0.005, 0.02, 1e-4, 0.001, 0.001], 49,
                        floor=0.1, resolved=1.5)
    np.testing.assert_allclose(w, [0.8, 0.5, 1 / 17, 0.0, 0.0, 0.0])  # 0.02·49 < 1.5: unresolved
    # both fits must resolve the decay: a raw fit that reads a slow decay fast is not pooled in
    both = raw_pool_weight([0.05] * 3, [0.0025] * 3, 49, floor=0.1, resolved=1.5, gamma_den=[0.04, 0.02, np.nan])
    np.testing.assert_allclose(both, [0.8, 0.0, 0.0])
    np.testing.assert_allclose(pool_values([0.04, 0.04], [0.09, 0.09], [0.5, 0.0], log=True), [0.06, 0.04])
    np.testing.assert_allclose(pool_values([1.0, 1.0], [1.2, np.nan], [0.25, 0.9]), [1.05, 1.0])
    for bad in ({"floor": 0.0, "resolved": 1.5}, {"floor": 0.1}, {"floor": "0.1", "resolved": 1.5},
                {"floor": 0.1, "resolved": -1.0}, {"floor": float("inf"), "resolved": 1.5}, [0.1, 1.5]):
        with pytest.raises(XPCSInputError, match="raw_pool"):
            FitCalibration(EDGES, {"lagnet/*": [[1.0, 0.0]]}, raw_pool=bad)
    cal = FitCalibration(EDGES, {"lagnet/*": [[1.0, 0.0]]}, raw_pool={"floor": 0.1, "resolved": 2})
    assert FitCalibration.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal


def test_a_pooling_calibration_pools_the_raw_fit_as_the_calibration_script_does():
    """With ``raw_pool`` the lagnet path's Γ is the pooled value of its two fits (each made as before), the row
    says so and gives the raw fit's weight; a bright decay is the raw fit's, a noisy one the denoised fit's. The
    calibration script's ``pool_records`` gives the same Γ and u."""
    from dataclasses import replace

    from xpcs_denoise.analysis.calibration import pool_values
    from xpcs_denoise.analysis.uncertainty import POOLED_PATH_NAMES, calibration_records, pool_records

    bright = simulate_speckle(50, 20000, gamma=0.08, beta=0.2, mean_count=2.0, seed=3).two_time()[0]
    dim = simulate_speckle(50, 300, gamma=0.08, beta=0.2, mean_count=0.05, seed=4).two_time()[0]
    x = np.stack([bright, dim])
    plain = FitCalibration(EDGES, {"lagnet/*": [[1.0, 0.0]], "raw/*": [[1.0, 0.0]]}, alpha_bounds=(0.5, 2.0))
    pool = {"floor": 0.1, "resolved": 1.5}
    pooled = replace(plain, raw_pool=pool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        den = fit_two_time(x, calibration=plain)
        raw = fit_two_time(x, method="none", calibration=plain)
        r = fit_two_time(x, calibration=pooled)
    w = r.raw_weight
    assert set(r.path) == {POOLED_PATH_NAMES["lagnet"]} and set(den.path) == {PATH_NAMES["lagnet"]}
    np.testing.assert_array_equal(den.raw_weight, 0.0)
    np.testing.assert_array_equal(raw.raw_weight, 1.0)
    assert w[0] > 0.9 and w[1] < 0.1  # bright: the raw fit decides; dim: the denoised one
    np.testing.assert_allclose(r.fit.gamma, pool_values(den.fit.gamma, raw.fit.gamma, w, log=True), rtol=1e-12)
    np.testing.assert_allclose(r.fit.baseline, pool_values(den.fit.baseline, raw.fit.baseline, w), rtol=1e-12)
    rec = pool_records(calibration_records(x, np.array([0.08, 0.08]), "lagnet", alpha_bounds=(0.5, 2.0)), pool)
    np.testing.assert_allclose(rec["gamma"], r.fit.gamma, rtol=1e-12)
    np.testing.assert_allclose(rec["u"], r.gamma_err_fit, rtol=1e-12)
    np.testing.assert_allclose(rec["raw_weight"], w, rtol=1e-12)


@pytest.mark.slow
def test_recalibrating_the_lagnet_path_keeps_its_pooling_and_measures_pooled_fits():
    """recalibrate on the lagnet path (what a fine-tuned lag-band model would store): the stored calibration's
    pooling and α bounds are carried, and the pairs are measured on the pooled fits: σ from them covers fresh
    simulated crops fitted by fit_two_time."""
    from xpcs_denoise.analysis.uncertainty import recalibrate
    from xpcs_denoise.core.simulation import JUDGED_RANGES, simulate_crops

    stored = load_calibration("lagnet")
    cal = recalibrate("lagnet", n=240, seed=3)
    assert cal.raw_pool == stored.raw_pool and cal.alpha_bounds == stored.alpha_bounds
    assert {"lagnet/short/free", "lagnet/short/alpha", "lagnet/*"} <= set(cal.cells)
    x, _, prm = simulate_crops(120, 50, seed=11, **JUDGED_RANGES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(x, calibration=cal)
    ok = r.path == "lagnet: denoised and raw fits pooled by precision"
    assert ok.mean() > 0.9  # the rest: "failed: no contrast"
    z = np.abs(r.fit.gamma[ok] - prm["gamma"][ok]) / r.fit.gamma_err[ok]
    assert 0.5 < np.mean(z < 1) < 0.9 and np.mean(z < 2) > 0.85
