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
