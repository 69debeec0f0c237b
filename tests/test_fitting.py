import numpy as np
import pytest
from scipy.optimize import curve_fit

from xpcs_denoise import XPCSInputError, fit_g2, g2_model

LAGS = np.arange(1, 50, dtype=float)


def _noisy_curves(n, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    p = {"gamma": rng.uniform(0.02, 0.2, n), "beta": rng.uniform(0.2, 1.0, n),
         "baseline": rng.uniform(0.97, 1.03, n), "alpha": rng.uniform(0.8, 1.4, n)}
    y = g2_model(LAGS, *(p[k][:, None] for k in ("gamma", "beta", "baseline", "alpha")))
    return y + rng.normal(0, noise, y.shape) * p["beta"][:, None], p


def test_exact_curve_recovers_parameters():
    y = g2_model(LAGS, 0.07, 0.3, 1.01, 1.3)
    r = fit_g2(y)
    assert r.success and r.message == "ok"
    np.testing.assert_allclose([r.gamma, r.beta, r.baseline, r.alpha], [0.07, 0.3, 1.01, 1.3], rtol=1e-6)


def test_batch_matches_curve_fit_within_its_precision():
    y, _ = _noisy_curves(40, seed=1)
    r = fit_g2(y)
    assert r.success.all()
    f = lambda t, g, b, c, a: c + b * np.exp(-2 * (g * t) ** a)  # noqa: E731
    for i in range(0, 40, 4):
        p, cov = curve_fit(f, LAGS, y[i], p0=[0.05, 0.5, 1.0, 1.0],
                           bounds=([1e-3 / 49, 0, -np.inf, 0.2], [10, np.inf, np.inf, 3]))
        err = np.sqrt(np.diag(cov))
        ours = np.array([r.gamma[i], r.beta[i], r.baseline[i], r.alpha[i]])
        ours_err = np.array([r.gamma_err[i], r.beta_err[i], r.baseline_err[i], r.alpha_err[i]])
        # Same optimum to a small fraction of the fit's own standard error, and the same errors.
        assert np.all(np.abs(ours - p) < 0.01 * err)
        np.testing.assert_allclose(ours_err, err, rtol=0.01)


def test_noisy_fits_are_unbiased_and_errors_calibrated():
    y, p = _noisy_curves(400, seed=2, noise=0.03)
    r = fit_g2(y, fix={"alpha": p["alpha"]})
    ok = r.success
    assert ok.mean() > 0.98
    z = (r.gamma[ok] - p["gamma"][ok]) / r.gamma_err[ok]
    assert abs(np.median(z)) < 0.2
    assert 0.7 < np.std(z) < 1.4  # standard errors mean what they say


def test_fixed_parameters_are_held_and_have_zero_error():
    y = g2_model(LAGS, 0.05, 0.25, 1.0, 1.0)
    r = fit_g2(y, fix={"alpha": 1.0, "beta": 0.25})
    assert r.alpha == 1.0 and r.beta == 0.25 and r.alpha_err == 0 and r.beta_err == 0
    assert r.gamma == pytest.approx(0.05, rel=1e-6)


def test_flat_or_nan_curves_fail_with_a_reason_not_an_exception():
    y = np.vstack([np.ones(49), np.full(49, np.nan), g2_model(LAGS, 0.05, 0.3, 1.0)])
    r = fit_g2(y)
    assert list(r.success) == [False, False, True]
    assert np.isnan(r.gamma[0]) and np.isnan(r.gamma[1])
    assert all(m != "ok" for m in r.message[:2])


def test_nan_points_are_ignored():
    y = g2_model(LAGS, 0.05, 0.3, 1.0, 1.0)
    y[[3, 10, 20]] = np.nan
    r = fit_g2(y)
    assert r.success and r.gamma == pytest.approx(0.05, rel=1e-6)


def test_lags_in_seconds_give_gamma_per_second():
    dt = 0.01
    y = g2_model(LAGS * dt, 5.0, 0.3, 1.0, 1.0)
    r = fit_g2(y, LAGS * dt)
    assert r.gamma == pytest.approx(5.0, rel=1e-6)


def test_bad_arguments_raise_the_documented_error():
    with pytest.raises(XPCSInputError, match="lags"):
        fit_g2(np.ones(10), lags=np.arange(5))
    with pytest.raises(XPCSInputError, match="unknown parameter"):
        fit_g2(np.ones(10), fix={"tau": 1})
    with pytest.raises(ValueError):
        fit_g2(np.ones(10), lags=np.arange(10))  # lag 0


# --- convergence, bounds, covariance, reports ----------------------------------------------------------------

from xpcs_denoise import (  # noqa: E402
    cut_trust,
    fit_diffusion,
    fit_rows,
    one_time_from_two_time,
    sigma_for_fit,
)

BOUNDS_CF = ([1e-3 / 49, 0, -np.inf, 0.2], [10, np.inf, np.inf, 3])


def _f(t, g, b, c, a):
    return c + b * np.exp(-2 * (g * t) ** a)


def test_sum_of_squares_never_above_curve_fit_on_hard_noisy_curves():
    # Noisy curves (noise up to the contrast), fast and slow decays: bounded TRF from the true parameters is
    # a generous reference; fit_g2 from its own global start must converge and reach as low a sum of squares.
    rng = np.random.default_rng(5)
    y, p = _noisy_curves(60, seed=5, noise=0.3)
    y[:20] = g2_model(LAGS, rng.uniform(0.002, 0.6, 20)[:, None], 0.5, 1.0, 1.0) + rng.normal(0, 0.2, (20, 49))
    r = fit_g2(y)
    assert r.success.all()
    ssr = np.sum((y - r.model()) ** 2, axis=1)
    for i in range(len(y)):
        hi_b = 5 * np.ptp(y[i])
        p0 = np.clip([p["gamma"][i], p["beta"][i], p["baseline"][i], p["alpha"][i]], [1e-3, 1e-6, -9, 0.21],
                     [9.9, hi_b * 0.99, 9, 2.99])
        q, _ = curve_fit(_f, LAGS, y[i], p0=p0, bounds=(BOUNDS_CF[0], [10, hi_b, np.inf, 3]))
        assert ssr[i] <= np.sum((y[i] - _f(LAGS, *q)) ** 2) * (1 + 1e-6), i


def test_a_parameter_at_its_bound_is_flagged_not_failed():
    # A rising curve (negative contrast): the best β ≥ 0 is β = 0 at its lower bound. The fit converges (as
    # curve_fit does), keeps its estimate and says which parameter is at a bound.
    y = 1.0 - 0.3 * np.exp(-2 * 0.05 * LAGS) + np.random.default_rng(0).normal(0, 1e-3, 49)
    r = fit_g2(y, fix={"alpha": 1.0})
    assert r.success and r.at_bound and r.beta == 0.0
    assert r.at_bound_params[1] and not r.at_bound_params[2]
    assert np.isfinite(r.gamma) and np.isnan(r.gamma_err)  # kept, but undetermined without contrast
    assert "at bound:" in str(r.message) and r.baseline == pytest.approx(np.mean(y), rel=1e-9)
    clean = fit_g2(g2_model(LAGS, 0.07, 0.3, 1.0, 1.0))
    assert not clean.at_bound and not clean.at_bound_params.any() and clean.message == "ok"


def test_covariance_matches_curve_fit_and_marks_fixed_parameters():
    y, _ = _noisy_curves(5, seed=3)
    r = fit_g2(y)
    for i in range(5):
        p, cov = curve_fit(_f, LAGS, y[i], p0=[r.gamma[i], r.beta[i], r.baseline[i], r.alpha[i]],
                           bounds=BOUNDS_CF)
        np.testing.assert_allclose(r.covar[i], cov, rtol=0.02, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diagonal(r.covar, axis1=1, axis2=2)),
                               np.stack([r.gamma_err, r.beta_err, r.baseline_err, r.alpha_err], 1))
    rf = fit_g2(y, fix={"alpha": 1.0})
    assert np.isnan(rf.covar[:, 3, :]).all() and np.isnan(rf.covar[:, :, 3]).all()
    assert np.isfinite(rf.covar[:, :3, :3]).all()


def test_weighted_fit_matches_curve_fit_with_sigma_and_reduced_chi2_is_one():
    rng = np.random.default_rng(7)
    sigma = 0.002 + 0.02 * LAGS / 49  # noise growing with the lag, as along a 2TCF's shorter diagonals
    truth = (0.06, 0.4, 1.0, 1.0)
    y = g2_model(LAGS, *truth)[None] + rng.normal(0, 1, (300, 49)) * sigma
    r = fit_g2(y, sigma=sigma, fix={"alpha": 1.0})
    assert r.success.all() and r.weighted
    assert abs(np.mean(r.redchi) - 1) < 0.05  # χ²/dof of correctly weighted residuals
    p, cov = curve_fit(lambda t, g, b, c: _f(t, g, b, c, 1.0), LAGS, y[0], p0=[0.05, 0.3, 1.0], sigma=sigma,
                       bounds=([1e-3 / 49, 0, -np.inf], [10, np.inf, np.inf]))
    np.testing.assert_allclose([r.gamma[0], r.beta[0], r.baseline[0]], p, rtol=1e-5)
    np.testing.assert_allclose(r.gamma_err[0], np.sqrt(cov[0, 0]), rtol=0.01)
    z = (r.gamma - truth[0]) / r.gamma_err
    assert 0.8 < np.std(z) < 1.25


def test_report_reads_like_lmfit():
    r = fit_g2(g2_model(LAGS, 0.05, 0.3, 1.0, 1.0) + np.random.default_rng(1).normal(0, 1e-3, 49),
               fix={"alpha": 1.0}, frame_time=0.01)
    text = r.report()
    for part in ("[[Fit Statistics]]", "# data points      = 49", "# variables        = 3", "reduced chi-square",
                 "[[Variables]]", "gamma:", "1/s", "+/-", "alpha:     1 (fixed)", "[[Correlations]]",
                 "C(gamma, baseline)"):
        assert part in text, part
    batch = fit_g2(_noisy_curves(4)[0])
    assert "# fits             = 4" in batch.report() and "[[Variables]]" in batch.report(2)


def test_frame_time_gives_gamma_per_second():
    y, _ = _noisy_curves(6, seed=9)
    per_frame = fit_g2(y)
    per_s = fit_g2(y, frame_time=0.005)
    np.testing.assert_allclose(per_s.gamma, per_frame.gamma / 0.005, rtol=1e-6)
    np.testing.assert_allclose(per_s.gamma_err, per_frame.gamma_err / 0.005, rtol=1e-4)
    np.testing.assert_allclose(per_s.beta, per_frame.beta, rtol=1e-6)
    assert per_s.lag_unit == "s" and per_s.gamma_unit == "1/s" and per_frame.gamma_unit == "1/frame"
    np.testing.assert_allclose(per_s.lags, LAGS * 0.005)
    assert all(r["gamma_unit"] == "1/s" for r in fit_rows(per_s))
    for bad in (0, -1, np.nan, "fast"):
        with pytest.raises(XPCSInputError, match="frame_time"):
            fit_g2(y, frame_time=bad)


def test_fit_rows_one_row_per_fit_with_method_index_and_extra_columns():
    y, _ = _noisy_curves(3)
    fits = {"raw": fit_g2(y), "a1": fit_g2(y, fix={"alpha": 1.0})}
    rows = fit_rows(fits, [0.1, 0.2, 0.3], index_name="q", columns={"roi": np.array([1, 2, 3]), "tag": "x"})
    assert len(rows) == 6 and list(rows[0])[:4] == ["method", "q", "roi", "tag"]
    assert rows[4]["method"] == "a1" and rows[4]["q"] == 0.2 and rows[4]["roi"] == 2 and rows[4]["alpha"] == 1.0
    assert rows[1]["gamma"] == fits["raw"].gamma[1] and isinstance(rows[1]["success"], bool)


# --- standard errors of 1TCF points ---------------------------------------------------------------------------

def test_one_time_errors_are_the_spread_along_each_diagonal():
    rng = np.random.default_rng(0)
    c2 = rng.normal(1.2, 0.1, (3, 12, 12))
    c2 = (c2 + np.swapaxes(c2, 1, 2)) / 2
    g, err = one_time_from_two_time(c2, return_err=True)
    for b in range(3):
        for k in range(1, 11):
            d = np.diagonal(c2[b], k)
            assert g[b, k - 1] == pytest.approx(d.mean())
            assert err[b, k - 1] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))
    assert np.isnan(err[:, -1]).all()  # lag 11: one value, no spread
    np.testing.assert_array_equal(one_time_from_two_time(c2), g)
    masked = c2[0].copy()
    masked[4, :] = masked[:, 4] = np.nan  # a masked frame drops out of every diagonal
    g1, e1 = one_time_from_two_time(masked, return_err=True)
    d = np.diagonal(masked, 2)
    d = d[np.isfinite(d)]
    assert e1[1] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))


def test_sigma_for_fit_fills_undefined_points_and_floors_chance_small_ones():
    err = np.array([[0.01, 0.02, 0.001, np.nan, 0.0], [np.nan, np.nan, 0.0, 0.0, np.nan]])
    s = sigma_for_fit(err)
    # median of the usable values (0.01, 0.02, 0.001) is 0.01 → floor 0.0025; undefined → the largest, 0.02.
    np.testing.assert_allclose(s[0], [0.01, 0.02, 0.0025, 0.02, 0.02])
    np.testing.assert_allclose(s[1], 1.0)  # nothing usable: unweighted


# --- Γ = D q^n ------------------------------------------------------------------------------------------------

Q = np.array([0.003, 0.004, 0.005, 0.006, 0.008])


def test_diffusion_fixed_power_is_the_weighted_line_through_the_origin():
    rng = np.random.default_rng(2)
    g = 1500.0 * Q**2 * (1 + rng.normal(0, 0.05, Q.size))
    err = 0.05 * 1500.0 * Q**2
    d = fit_diffusion(Q, g, err)
    x, w = Q**2, 1 / err**2
    expect = np.sum(w * x * g) / np.sum(w * x * x)
    chi2 = np.sum(w * (g - expect * x) ** 2)
    assert d.D == pytest.approx(expect, rel=1e-12) and d.power == 2.0 and d.power_err == 0.0
    assert d.redchi == pytest.approx(chi2 / (Q.size - 1))
    assert d.D_err == pytest.approx(np.sqrt(d.redchi / np.sum(w * x * x)))
    assert fit_diffusion(Q, g, err, absolute_sigma=True).D_err == pytest.approx(np.sqrt(1 / np.sum(w * x * x)))
    plain = fit_diffusion(Q, g)  # unweighted: ordinary least squares through the origin
    assert plain.D == pytest.approx(np.sum(x * g) / np.sum(x * x))
    assert "D:" in d.report() and d.D_unit == "Å^2/frame"


def test_diffusion_free_power_recovers_exact_power_laws_and_matches_curve_fit():
    exact = fit_diffusion(Q, 40.0 * Q**1.7, power=None)
    assert exact.D == pytest.approx(40.0, rel=1e-8) and exact.power == pytest.approx(1.7, abs=1e-9)
    rng = np.random.default_rng(4)
    g = 40.0 * Q**1.7 * (1 + rng.normal(0, 0.05, Q.size))
    err = 0.05 * g
    d = fit_diffusion(Q, g, err, power=None)
    p, cov = curve_fit(lambda q, a, n: a * q**n, Q, g, p0=[30, 1.5], sigma=err)
    assert d.D == pytest.approx(p[0], rel=1e-5) and d.power == pytest.approx(p[1], rel=1e-6)
    assert d.D_err == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-3)
    assert d.power_err == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-3)
    assert not d.power_fixed and d.n_points == Q.size


def test_diffusion_skips_failed_points_and_rejects_too_few():
    g = 1000.0 * Q**2
    g[1] = np.nan  # a failed fit
    d = fit_diffusion(Q, g)
    assert d.n_points == 4 and not d.used[1] and d.D == pytest.approx(1000.0)
    with pytest.raises(XPCSInputError, match="at least 2"):
        fit_diffusion(Q[:1], g[:1], power=None)
    with pytest.raises(XPCSInputError, match="one Γ per q"):
        fit_diffusion(Q, g[:3])


# --- trust regions of time-resolved cuts ------------------------------------------------------------------------

def test_cut_trust_flags_decays_too_fast_or_too_slow_for_the_lags():
    # t½ = (ln 2 / 2)^(1/α) / Γ; with α = 1: t½ = 0.3466 / Γ frames.
    lags = np.arange(1, 50, dtype=float)
    gam = np.array([0.3466 / 4.0, 0.3466 / 6.0, 0.3466 / 20.0, 0.3466 / 30.0])  # t½ = 4, 6, 20, 30 frames
    y = g2_model(lags, gam[:, None], 0.3, 1.0, 1.0)
    fit = fit_g2(y, lags, fix={"alpha": 1.0})
    # t½ = 4: only lags 1..3 before half decay (< 5) → not trusted; 6 and 20: trusted; 30: lags reach 49 < 60.
    np.testing.assert_array_equal(cut_trust(fit, y), [False, True, True, False])
    short = y.copy()
    short[1, 10:] = np.nan  # a cut leaving the matrix after lag 10 frames: 10 < 2 t½ = 12
    np.testing.assert_array_equal(cut_trust(fit, short)[:2], [False, False])


def test_ageing_cuts_carry_trust_flags_in_their_table():
    from xpcs_denoise.analysis.workflows import ageing_analysis

    n = 120
    t = np.arange(n)
    gam = np.where(t < 60, 0.05, 0.004)  # the second half decays too slowly for 49 lags
    c2 = 1 + 0.3 * np.exp(-2 * gam[np.minimum.outer(t, t)] * np.abs(np.subtract.outer(t, t)))
    r = ageing_analysis(c2, width=1, beta=0.3, fix={"alpha": 1.0})
    fit = r.fit
    assert fit.trusted is not None and fit.trusted.shape == r.ages.shape
    assert fit.trusted[(r.ages > 10) & (r.ages < 40)].all()
    assert not fit.trusted[r.ages > 90].any()
    rows = fit_rows(fit, r.ages, index_name="age")
    assert all("trusted" in row for row in rows)
