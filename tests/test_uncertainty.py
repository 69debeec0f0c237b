"""Uncertainties and path choice of fit_two_time: bootstrap replicates, binning, calibration, paths."""

import warnings

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle
from xpcs_denoise.analysis.uncertainty import bin_two_time, calibration_scale, fit_two_time, residual_bootstrap


def _lag_matrix(n):
    t = np.arange(n)
    return np.abs(t[:, None] - t[None, :]).astype(float)


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


def test_bin_two_time_of_known_lag_functions():
    n, k = 60, 4
    tau = _lag_matrix(n)
    # A 2TCF linear in the lag: off-diagonal blocks average exactly to k × (block lag).
    b = bin_two_time(tau, k)
    big = _lag_matrix(n // k)
    off = big > 0
    np.testing.assert_allclose(b[off], k * big[off])
    # diagonal blocks hold lags 1..k-1 only (lag 0 left out): mean |a - b| over a != b = (k + 1) / 3
    np.testing.assert_allclose(np.diag(b), (k + 1) / 3)
    with pytest.raises(XPCSInputError):
        bin_two_time(tau, 40)


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


@pytest.mark.slow
def test_paths_follow_the_dynamics():
    """Fast dynamics → raw fit; slow dynamics in a long series → binned; long in range → raw; else denoised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit_two_time(_series(0.35, 50, 1), n_boot=4, method="cned")
        mid = fit_two_time(_series(0.05, 50, 2, n_pixels=500, mean_count=0.2), n_boot=4, method="cned")
        slow = fit_two_time(_series(0.0015, 400, 3), n_boot=4, method="cned")
        long = fit_two_time(_series(0.05, 300, 5, n_pixels=500, mean_count=0.2), n_boot=4, method="cned")
        long_raw = fit_two_time(_series(0.05, 300, 5, n_pixels=500, mean_count=0.2), method="none", n_boot=4)
    assert str(fast.path) == "raw: fast"
    assert str(mid.path) == "denoised"
    assert str(slow.path).startswith("binned")  # degenerate raw fit: little decay within the lags
    assert str(long.path) == "raw: long series"  # in range, long: the raw fit of every frame pair is kept
    assert float(long.fit.gamma) == float(long_raw.fit.gamma)
    for r, g in ((fast, 0.35), (mid, 0.05), (slow, 0.0015), (long, 0.05)):
        assert r.fit.success
        assert abs(float(r.fit.gamma) - g) < 4 * float(r.fit.gamma_err) + 0.3 * g


def test_no_contrast_is_recorded_not_denoised():
    flat = np.ones((50, 50)) + np.eye(50) * 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(np.stack([flat, _series(0.05, 50, 4)]), n_boot=4, method="cned")
    assert r.path[0] == "raw: no contrast"
    assert r.path[1] != "raw: no contrast"
    assert not r.fit.success[0]
    np.testing.assert_array_equal(r.denoised[0], flat)


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


def test_raw_fits_at_a_bound_carry_the_bound_floor():
    """A raw fit ending at a parameter bound gets σ(Γ) ≥ RAW_BOUND_FLOOR·Γ̂ and ≥ RAW_BOUND_SPAN / (longest lag);
    the others keep their own σ."""
    from xpcs_denoise.analysis.uncertainty import RAW_BOUND_FLOOR, RAW_BOUND_SPAN
    from xpcs_denoise.core.simulation import simulate_crops

    crops, _, _ = simulate_crops(40, 50, seed=3, gamma_range=(0.004, 0.03), count_range=(0.02, 0.1),
                                 pixel_range=(200, 600))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(crops, method="none", n_boot=4, seed=1)
    ok = r.fit.success
    bound = ok & r.fit.at_bound
    assert bound.sum() >= 3 and (ok & ~r.fit.at_bound).sum() >= 3  # slow noisy crops: both kinds occur
    g, e = r.fit.gamma, r.fit.gamma_err
    assert np.all(e[bound] >= RAW_BOUND_FLOOR * np.abs(g[bound]) * (1 - 1e-9))
    # …and at least RAW_BOUND_SPAN over the longest lag (49 frames): a Γ̂ collapsed to ~0 still gets a scale
    assert np.all(e[bound] >= RAW_BOUND_SPAN / 49 * (1 - 1e-9))
    assert np.any(e[bound] < 2 * RAW_BOUND_SPAN / 49)  # where Γ̂ collapsed, the absolute floor is what σ is
    free = ok & ~r.fit.at_bound
    # a fit that moved C∞ away from 1 traded baseline for rate: its σ(Γ) covers that trade
    from xpcs_denoise.analysis.uncertainty import RAW_BASELINE_FLOOR

    traded = RAW_BASELINE_FLOOR * np.abs(g) * np.abs(r.fit.baseline - 1) / np.maximum(np.abs(r.fit.beta), 1e-3)
    assert np.all(e[ok] >= traded[ok] * (1 - 1e-9))
    assert np.any(traded[free] > r.fit_error["gamma"][free])  # the floor matters for some of these fits


def test_held_alpha_raw_fits_with_a_sunk_baseline_cover_fast_decays(monkeypatch):
    """Fast α = 1 decays in noisy 50-frame crops, fitted raw with α held at 1: many fits read a slow decay with a
    sunk baseline (Γ̂ ≈ 0.01 Γ); those get σ(Γ) ≥ RAW_SUNK_SPAN / (longest lag), so the truth stays within 2σ for
    most crops, while fits that kept their baseline keep their σ."""
    import xpcs_denoise.analysis.uncertainty as U
    from xpcs_denoise.core.simulation import simulate_crops

    crops, _, prm = simulate_crops(200, 50, seed=12, gamma_range=(0.08, 0.4), alpha_range=(1.0, 1.0),
                                   count_range=(0.01, 0.3), pixel_range=(100, 3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(crops, method="none", seed=1, fix={"alpha": 1.0})
        monkeypatch.setattr(U, "RAW_SUNK_SPAN", 0.0)
        r0 = fit_two_time(crops, method="none", seed=1, fix={"alpha": 1.0})
    f, ok = r.fit, r.fit.success
    sunk = ok & (f.baseline - 1 < -U.RAW_SUNK_OFFSET * np.abs(f.beta))
    assert sunk.sum() >= 10 and (ok & ~sunk).sum() >= 100
    assert np.all(f.gamma_err[sunk] >= 10.0 / 49 * (1 - 1e-9))
    np.testing.assert_array_equal(f.gamma_err[ok & ~sunk], r0.fit.gamma_err[ok & ~sunk])
    z = np.abs(f.gamma - prm["gamma"]) / f.gamma_err
    z0 = np.abs(f.gamma - prm["gamma"]) / r0.fit.gamma_err
    assert np.mean(z[ok] < 2) >= 0.85 and np.mean(z[ok] < 2) >= np.mean(z0[ok] < 2) + 0.05


def test_short_raw_fits_scale_their_own_error_and_draw_no_replicates(monkeypatch):
    """A raw fit of a short series: Γ's own error times RAW_FIT_SCALE (RAW_FIXED_FIT_SCALE with a parameter held
    fixed), the other parameters' errors as the fit gives them, never exactly 0, and no bootstrap replicates; a
    long series still draws them."""
    import xpcs_denoise.analysis.uncertainty as U
    from xpcs_denoise.core.simulation import simulate_crops

    crops, _, _ = simulate_crops(30, 50, seed=4, gamma_range=(0.004, 0.2), count_range=(0.02, 0.3),
                                 pixel_range=(200, 3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(crops, method="none", seed=1)
        rf = fit_two_time(crops, method="none", seed=1, fix={"alpha": 1.0})
        monkeypatch.setattr(U, "RAW_FIT_SCALE", 1.0)
        monkeypatch.setattr(U, "RAW_FIXED_FIT_SCALE", 1.0)
        r1 = fit_two_time(crops, method="none", seed=1)
        rf1 = fit_two_time(crops, method="none", seed=1, fix={"alpha": 1.0})
    monkeypatch.undo()
    ok = r.fit.success
    assert ok.sum() >= 25 and np.all(np.isnan(r.raw_boot_error))  # no replicates drawn
    np.testing.assert_allclose(r.fit_error["gamma"][ok], U.RAW_FIT_SCALE * r1.fit_error["gamma"][ok])
    np.testing.assert_allclose(rf.fit_error["gamma"][rf.fit.success],
                               U.RAW_FIXED_FIT_SCALE * rf1.fit_error["gamma"][rf.fit.success])
    assert U.RAW_FIXED_FIT_SCALE > U.RAW_FIT_SCALE  # fewer free parameters: a covariance that shrinks more
    for k in ("beta", "baseline", "alpha"):
        np.testing.assert_array_equal(r.fit_error[k], r1.fit_error[k])
        e = getattr(r.fit, k + "_err")[ok]
        assert np.all(np.isnan(e) | (e > 0))  # unknown where the covariance is singular, never a claimed 0
    long, _, _ = simulate_crops(1, 200, seed=5, gamma_range=(0.05, 0.05), count_range=(0.2, 0.2),
                                pixel_range=(2000, 2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rl = fit_two_time(long[0], method="none", n_boot=8, seed=1)
        scale = U.RAW_LONG_FIT_SCALE
        monkeypatch.setattr(U, "RAW_LONG_FIT_SCALE", 1.0)
        rl1 = fit_two_time(long[0], method="none", n_boot=8, seed=1)
    assert np.isfinite(rl.raw_boot_error) and rl.raw_boot_error > 0
    # a long series: Γ's error adds the finite duration's, c·√(Γ̂/N), to the scaled fit's, the replicates', r·Γ̂
    # and the traded-baseline floor
    g = float(rl.fit.gamma)
    np.testing.assert_allclose(rl.fit_error["gamma"], scale * rl1.fit_error["gamma"])
    traded = U.RAW_BASELINE_FLOOR * g * abs(float(rl.fit.baseline) - 1) / abs(float(rl.fit.beta))
    expect = np.sqrt(rl.fit_error["gamma"] ** 2 + (U.RAW_LONG_BOOT_SCALE * rl.raw_boot_error) ** 2
                     + U.RAW_LONG_DURATION_FLOOR**2 * g / 200 + (U.RAW_LONG_REL_FLOOR * g) ** 2 + traded**2)
    np.testing.assert_allclose(rl.fit.gamma_err, expect, rtol=1e-9)


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


@pytest.mark.slow
def test_slow_crops_take_the_priors_pooled_from_resolved_ones():
    """One call with slow (Γ 0.01–0.02 frames⁻¹: about one decay time in 50 frames) and resolved crops, C∞ = 1:
    the slow ones are refitted with priors on (C∞ − 1)/β and α pooled from the resolved ones (offset near 0),
    which removes much of their error; with pool_baseline=False nothing is pooled."""
    from xpcs_denoise.core.simulation import simulate_crops

    judged = {"beta_range": (0.1, 0.4), "alpha_range": (0.8, 1.4), "count_range": (0.05, 0.5),
              "pixel_range": (500, 5000)}
    slow, _, ps = simulate_crops(40, 50, seed=21, gamma_range=(0.01, 0.02), **judged)
    fast, _, pf = simulate_crops(30, 50, seed=22, gamma_range=(0.08, 0.18), **judged)
    c2, truth = np.concatenate([slow, fast]), np.concatenate([ps["gamma"], pf["gamma"]])
    import xpcs_denoise.analysis.uncertainty as U
    from xpcs_denoise.analysis.consistent import POOL_MODEL_WEIGHT, consistent_fit

    weights = []

    def spy(*args, **kwargs):  # which weight each batched consistent fit gets
        weights.append(kwargs.get("weight"))
        return consistent_fit(*args, **kwargs)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(U, "consistent_fit", spy)
        r = fit_two_time(c2, seed=0, method="cned")
        off = fit_two_time(c2, seed=0, pool_baseline=False, method="cned")
    assert weights.count(POOL_MODEL_WEIGHT) == 1 and weights.count(None) == 2  # the pooled refit only
    (centre, width), n = r.priors["offset"], r.priors["n_fits"]
    assert n >= 20 and abs(centre) < 0.05 and 0.02 <= width < 0.15
    assert 0.8 < r.priors["alpha"][0] < 1.4
    assert r.pooled[:40].mean() > 0.8 and r.pooled[40:].mean() < 0.2  # (a fast crop fitted slow is pooled too)
    assert all("priors pooled from" in m for m in r.fit.message[r.pooled])
    assert off.priors is None and not off.pooled.any()
    err = np.abs(r.fit.gamma[:40] / truth[:40] - 1)
    err_off = np.abs(off.fit.gamma[:40] / truth[:40] - 1)
    assert np.median(err) < 0.75 * np.median(err_off)
    assert abs(np.median(r.fit.gamma[:40] / truth[:40] - 1)) < 0.15
    kept = ~r.pooled
    np.testing.assert_array_equal(r.fit.gamma[kept], off.fit.gamma[kept])  # resolved fits are left as they are


def test_no_pooled_calibration_in_the_card_means_no_pooling():
    """A card from before the pooled priors (e.g. an older fine-tuned model's) has no calibration for them; their
    σ would be too small, so the slow decays are fitted without the priors, with a note."""
    import copy

    from xpcs_denoise import Denoiser
    from xpcs_denoise.core.simulation import simulate_crops

    den = Denoiser.pretrained()
    card = copy.deepcopy(den.card)
    card["uncertainty"].pop("pooled")
    old = Denoiser(den.model, card)
    judged = {"beta_range": (0.2, 0.3), "alpha_range": (1.0, 1.0), "count_range": (0.2, 0.5),
              "pixel_range": (2000, 5000)}
    slow, _, _ = simulate_crops(3, 50, seed=31, gamma_range=(0.01, 0.015), **judged)
    fast, _, _ = simulate_crops(8, 50, seed=32, gamma_range=(0.09, 0.12), **judged)
    c2 = np.concatenate([slow, fast])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_cal = fit_two_time(c2, model=den, n_boot=4)
        without = fit_two_time(c2, model=old, n_boot=4)
    assert with_cal.pooled.any() and with_cal.priors is not None
    assert not without.pooled.any() and without.priors is None
    assert any("no calibration for fits with pooled priors" in n for n in without.notes)


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
