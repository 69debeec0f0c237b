"""The model-consistent fit: Eq. 3 through the ensemble recovers known Γ where the plain denoised fit is biased."""

import warnings

import numpy as np
import pytest

from xpcs_denoise import Denoiser, XPCSInputError, denoise, fit_g2, one_time_from_two_time
from xpcs_denoise.analysis.consistent import consistent_fit
from xpcs_denoise.core.simulation import simulate_crops


@pytest.fixture(scope="module")
def den():
    return Denoiser.pretrained()


def _stationary(gamma, beta, baseline, alpha=1.0, n=50):
    tau = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(float)
    return baseline + beta * np.exp(-2 * (gamma * tau) ** alpha)


def test_stationary_response_is_the_denoised_one_time(den):
    """The forward operator equals denoising the stationary 2TCF and averaging its diagonals."""
    g = 1 + 0.8 * np.exp(-2 * 0.04 * np.arange(50.0))
    g[0] = g[1]  # lag 0 as the model sees it
    c2 = g[np.abs(np.arange(50)[:, None] - np.arange(50)[None, :])]
    mean, _ = den.predict_model_units(c2[None])
    np.testing.assert_allclose(den.stationary_response(g[None])[0], one_time_from_two_time(mean)[0], atol=2e-5)
    with pytest.raises(XPCSInputError):
        den.stationary_response(g[None, :40])


@pytest.mark.parametrize("gamma, baseline_offset, alpha", [(0.02, 0.0, 1.0), (0.03, 0.0, 0.8), (0.12, 0.3, 1.0)])
def test_noise_free_decays_come_back_unbiased(den, gamma, baseline_offset, alpha):
    """Noise-free curves: the plain fit of the denoised 1TCF is pulled by the model's habits (slow decays with
    C∞ = 1 up, raised baselines down); the consistent fit recovers Γ, β and C∞."""
    beta = 0.3
    c2 = _stationary(gamma, beta, 1 + baseline_offset * beta, alpha)[None]
    d = denoise(c2, "cned", model=den)
    plain = fit_g2(one_time_from_two_time(d, max_lag=49))
    fit = consistent_fit(c2, den)
    assert abs(plain.gamma[0] / gamma - 1) > 0.3  # the bias this fit exists for (+43 %, +39 %, −57 %)
    assert fit.success[0]
    assert fit.gamma[0] == pytest.approx(gamma, rel=0.02)
    assert fit.beta[0] == pytest.approx(beta, rel=0.03)
    assert fit.baseline[0] == pytest.approx(1 + baseline_offset * beta, abs=0.01 * beta)
    assert fit.alpha[0] == pytest.approx(alpha, rel=0.02)


def test_fixed_parameters_and_bad_inputs(den):
    c2 = _stationary(0.05, 0.2, 1.0, alpha=1.0)[None]
    fit = consistent_fit(c2, den, fix={"alpha": 1.0, "beta": 0.2})
    assert fit.alpha[0] == 1.0 and fit.alpha_err[0] == 0.0 and fit.beta[0] == pytest.approx(0.2)
    assert fit.gamma[0] == pytest.approx(0.05, rel=0.02)
    with pytest.raises(XPCSInputError):
        consistent_fit(c2[:, :, :40], den)
    with pytest.raises(XPCSInputError):
        consistent_fit(c2[:, :30, :30], den)
    with pytest.raises(XPCSInputError):
        consistent_fit(c2, den, fix={"tau": 1.0})
    with pytest.raises(XPCSInputError):
        consistent_fit(c2, den, weight=0.0)
    with pytest.raises(XPCSInputError):
        consistent_fit(c2, "not a model")
    for bad_fix in ({"gamma": 0.0}, {"beta": -0.1}, {"alpha": np.nan}, {"beta": [0.1, 0.2]}):
        with pytest.raises(XPCSInputError):
            consistent_fit(c2, den, fix=bad_fix)
    bad = c2.copy()
    bad[0, 3, :] = np.nan
    with pytest.raises(XPCSInputError):
        consistent_fit(bad, den)
    # the shipped ensemble by default
    assert consistent_fit(c2).gamma[0] == pytest.approx(fit.gamma[0])


@pytest.mark.slow
def test_noisy_crops_median_bias_small_where_the_plain_fit_is_biased(den):
    """Realistic-noise 50-frame crops, Γ 0.01–0.06 frames⁻¹: the plain denoised fit runs 20-40 % high; the
    consistent fit's median signed error is a third of that or less (measured +3 … +17 % over seeds: the
    median of errors this wide moves by ±5 % between samples of this size) and its errors cover the truth."""
    crops, _, prm = simulate_crops(300, 50, seed=777, gamma_range=(0.01, 0.06), beta_range=(0.05, 0.5),
                                   alpha_range=(0.6, 1.8), count_range=(0.01, 1.0), pixel_range=(100, 20000),
                                   min_photons=60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = denoise(crops, "cned", model=den)
    plain = fit_g2(one_time_from_two_time(d, max_lag=49))
    fit = consistent_fit(crops, den)
    g = prm["gamma"]
    bias_plain, bias = np.median(plain.gamma / g - 1), np.median(fit.gamma / g - 1)
    assert bias_plain > 0.2
    assert abs(bias) < min(0.2, bias_plain / 2)
    assert np.mean(fit.success) > 0.98
    z = np.abs(fit.gamma - g) / fit.gamma_err
    assert np.mean(z[fit.success] < 2) > 0.7  # unscaled covariance; fit_two_time calibrates it


def test_fixed_values_outside_the_free_bounds_are_kept(den):
    """A fixed C∞ far below the scaling's baseline (Eq. 7 on a slow decay whose tail has not reached C∞) or a
    fixed α outside 0.3–2.5 is used as given, and the free parameters still move to the truth."""
    n = 100
    tau = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(float)
    c2 = (1 + 0.3 * np.exp(-2 * (0.006 * tau) ** 1.5))[None]  # Eq. 7: C∞* 1.14, so C∞ = 1 is 0.88 β* below
    fit = consistent_fit(c2, den, fix={"baseline": 1.0})
    assert fit.baseline[0] == 1.0 and fit.baseline_err[0] == 0.0
    assert fit.gamma[0] == pytest.approx(0.006, rel=0.02) and fit.alpha[0] == pytest.approx(1.5, rel=0.02)
    c2 = _stationary(0.04, 0.3, 1.0, alpha=2.8)[None]
    fit = consistent_fit(c2, den, fix={"alpha": 2.8})
    assert fit.alpha[0] == pytest.approx(2.8) and fit.gamma[0] == pytest.approx(0.04, rel=0.02)


def test_raw_spread_counts_only_finite_pairs():
    """Excluded frames (NaN rows and columns) leave fewer pairs per lag: σ of the raw 1TCF grows accordingly."""
    from xpcs_denoise.analysis.consistent import _raw_sigma

    rng = np.random.default_rng(0)
    x = 1 + rng.normal(0, 0.1, (1, 50, 50))
    x = 0.5 * (x + np.swapaxes(x, 1, 2))
    full = _raw_sigma(x, 49)
    cut = x.copy()
    cut[:, 10:20, :] = np.nan
    cut[:, :, 10:20] = np.nan
    part = _raw_sigma(cut, 49)
    ratio = (part / full)[0, 0]  # lag 1: 30 of 49 pairs left (the robust spread itself moves a little)
    assert 1.1 < ratio < 1.45


def test_pooled_priors_from_resolved_fits_only():
    """Centres and widths from the fits that see their decay (Γ × longest lag ≥ 3); slow, failed (NaN) ones and
    too few fits give none."""
    from xpcs_denoise.analysis.consistent import POOL_MIN_ALPHA_WIDTH, POOL_MIN_WIDTH, pooled_priors

    rng = np.random.default_rng(0)
    beta = np.full(40, 0.2)
    offset = rng.normal(0.1, 0.05, 40)
    alpha = np.exp(rng.normal(np.log(1.3), 0.1, 40))
    gamma = np.where(np.arange(40) < 30, 0.2, 0.01)  # 30 resolved at 49 lags, 10 not
    offset[30:], alpha[30:] = 3.0, 0.3  # the unresolved ones' values must not count
    span = np.full(40, 49)
    pool = pooled_priors(gamma, beta, 1 + offset * beta, alpha, span)
    assert pool["n_fits"] == 30
    assert pool["offset"][0] == pytest.approx(np.median(offset[:30]))
    assert 0.03 < pool["offset"][1] < 0.08
    assert pool["alpha"][0] == pytest.approx(np.exp(np.median(np.log(alpha[:30]))))
    assert 0.06 < pool["alpha"][1] < 0.16
    gamma[5:30] = np.nan  # failed fits do not count: 5 left
    assert pooled_priors(gamma, beta, 1 + offset * beta, alpha, span)["n_fits"] == 5
    assert pooled_priors(gamma, beta, 1 + offset * beta, alpha, span, min_fits=6) is None
    same = pooled_priors(np.full(8, 0.2), np.full(8, 0.2), np.full(8, 1.0), np.full(8, 1.0), np.full(8, 49))
    assert same == {"offset": (0.0, POOL_MIN_WIDTH), "alpha": (1.0, POOL_MIN_ALPHA_WIDTH), "n_fits": 8,
                    "offset_slope": None, "offset_at": None}
    assert pool["offset_slope"] is None  # 30 fits at one Γ: no trend to see


def test_pooled_offset_follows_a_clear_trend_with_gamma_only():
    """Offsets that grow toward slow dynamics (−0.05 per unit of ln Γ̂, scatter 0.02) give the trend's value at the
    slowest resolved fits, not their median; a slope small against the scatter (−0.005) leaves the median."""
    from xpcs_denoise.analysis.consistent import pooled_priors

    rng = np.random.default_rng(1)
    gamma = np.exp(rng.uniform(np.log(0.07), np.log(0.4), 200))
    span, beta, alpha = np.full(200, 49), np.full(200, 0.3), np.ones(200)
    for slope, trended in ((-0.05, True), (-0.005, False)):
        offset = 0.05 + slope * np.log(gamma / 0.2) + rng.normal(0, 0.02, 200)
        pool = pooled_priors(gamma, beta, 1 + offset * beta, alpha, span)
        edge = 0.05 + slope * np.log(np.quantile(gamma, 0.05) / 0.2)
        if trended:
            assert pool["offset_slope"] == pytest.approx(slope, abs=0.01)
            assert pool["offset"][0] == pytest.approx(edge, abs=0.01)
            assert pool["offset"][1] == pytest.approx(0.02, rel=0.3)  # the scatter about the trend
            assert pool["offset"][0] > np.median(offset) + 0.03
            assert pool["offset_at"] == pytest.approx(np.quantile(gamma, 0.05), rel=1e-3)  # where it was taken
        else:
            assert pool["offset_slope"] is None
            assert pool["offset"][0] == pytest.approx(np.median(offset))
    # many fits at a few rates are not a trend: 24 at one Γ, one far off at another
    few = np.r_[np.full(24, 0.2), 0.3]
    offset = np.r_[rng.normal(0.05, 0.02, 24), 1.0]
    pool = pooled_priors(few, np.full(25, 0.3), 1 + offset * 0.3, np.ones(25), np.full(25, 49))
    assert pool["offset_slope"] is None and pool["offset"][0] == pytest.approx(np.median(offset))


def test_offset_prior_follows_a_trend_a_little_and_widens_below_it_only():
    """With a trend, a fit below the rate where the centre was taken gets the trend's centre at most
    POOL_TREND_REACH further down in ln Γ̂ and a wider prior (width² + (slope·Δ ln Γ̂)²); fits above it, and all
    fits without a trend, keep the pooled centre and width."""
    from xpcs_denoise.analysis.consistent import POOL_TREND_REACH, offset_prior

    trend = {"offset": (0.12, 0.03), "offset_slope": -0.045, "offset_at": 0.06}
    centre, width = offset_prior(trend, [0.2, 0.06, 0.06 * np.exp(-0.5 * POOL_TREND_REACH), 0.006, 0.0006])
    np.testing.assert_allclose(centre, [0.12, 0.12, 0.12 + 0.045 * 0.5 * POOL_TREND_REACH,
                                        *[0.12 + 0.045 * POOL_TREND_REACH] * 2])
    width = np.delete(width, 2)
    below = [np.hypot(0.03, 0.045 * np.log(10)), np.hypot(0.03, 0.045 * np.log(100))]
    np.testing.assert_allclose(width, [0.03, 0.03, *below])
    centre, width = offset_prior({**trend, "offset_slope": None, "offset_at": None}, [0.2, 0.006])
    np.testing.assert_allclose(width, [0.03, 0.03])


def test_needs_prior_catches_unresolved_fits_and_those_that_raised_their_baseline():
    """Refitted with the pooled priors: Γ̂ × span below POOL_RESOLVED, or an offset (C∞ − 1)/β more than k widths
    above the pooled one (its trend at the fit's Γ̂ where there is one); a fit with an offset below it is kept."""
    from xpcs_denoise.analysis.consistent import POOL_OFFSET_K, POOL_RESOLVED, needs_prior

    pool = {"offset": (0.01, 0.03), "offset_slope": None, "offset_at": None}
    span = np.full(5, 49.0)
    gamma = np.array([0.5 * POOL_RESOLVED / 49, 0.1, 0.1, 0.1, 0.1])
    beta = np.full(5, 0.2)
    offset = np.array([0.0, 0.01, 0.01 + 0.9 * POOL_OFFSET_K * 0.03, 0.01 + 1.1 * POOL_OFFSET_K * 0.03, -0.3])
    got = needs_prior(pool, gamma, beta, 1.0 + offset * beta, span)
    np.testing.assert_array_equal(got, [True, False, False, True, False])
    # a stricter k catches the third one too; NaN values never count as raised
    np.testing.assert_array_equal(needs_prior(pool, gamma, beta, 1.0 + offset * beta, span, k=0.5 * POOL_OFFSET_K),
                                  [True, False, True, True, False])
    assert not needs_prior(pool, [0.1], [0.2], [np.nan], [49.0])[0]
    # with a trend the expected offset is the trend's value at Γ̂: 0.12 − 0.045 ln(Γ̂ / 0.06)
    trend = {"offset": (0.12, 0.03), "offset_slope": -0.045, "offset_at": 0.06}
    g = np.array([0.1, 0.6])
    at_trend = 0.12 - 0.045 * np.log(g / 0.06)
    np.testing.assert_array_equal(needs_prior(trend, g, [0.2, 0.2], 1.0 + 0.2 * (at_trend + 0.08), [49.0, 49.0]),
                                  [False, False])
    np.testing.assert_array_equal(needs_prior(trend, g, [0.2, 0.2], 1.0 + 0.2 * (at_trend + 0.1), [49.0, 49.0]),
                                  [True, True])


def test_baseline_prior_pins_the_offset_and_bad_priors_are_refused(den):
    """A slow decay (Γ 0.01, half a decay time in the window) with noise: a narrow prior on (C∞ − 1)/β holds the
    offset there and Γ follows; malformed priors get one-line errors."""
    crops, _, prm = simulate_crops(6, 50, seed=3, gamma_range=(0.01, 0.012), beta_range=(0.2, 0.3),
                                   alpha_range=(1.0, 1.0), count_range=(0.2, 0.3), pixel_range=(2000, 3000))
    fit = consistent_fit(crops, den, baseline_prior=(0.0, 1e-3))
    offset = (fit.baseline - 1) / fit.beta
    assert np.all(np.abs(offset) < 0.01)
    free = consistent_fit(crops, den)
    assert np.median(np.abs(fit.gamma / prm["gamma"] - 1)) < np.median(np.abs(free.gamma / prm["gamma"] - 1))
    for bad in ((0.0, 0.0), (np.nan, 0.1), (0.0,), "wide", (0.0, [0.1, 0.2])):
        with pytest.raises(XPCSInputError):
            consistent_fit(crops, den, baseline_prior=bad)
    with pytest.raises(XPCSInputError):
        consistent_fit(crops, den, alpha_prior=(0.0, 0.1))  # α's centre must be positive
    pinned = consistent_fit(crops, den, baseline_prior=(0.0, 1e-3), alpha_prior=(1.0, 1e-3))
    np.testing.assert_allclose(pinned.alpha, 1.0, atol=0.01)
