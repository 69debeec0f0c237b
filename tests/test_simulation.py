import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, fit_g2, one_time_from_two_time
from xpcs_denoise.core.simulation import simulate_crops, simulate_q_rings, simulate_speckle, true_two_time


def test_long_bright_series_recovers_gamma_beta_alpha():
    s = simulate_speckle(300, 20000, gamma=[0.02, 0.08], beta=[0.25, 0.6], alpha=[1.0, 1.4],
                         mean_count=[5.0, 3.0], n_rois=2, seed=3)
    c2 = s.two_time()
    r = fit_g2(one_time_from_two_time(c2, max_lag=150))
    assert r.success.all()
    np.testing.assert_allclose(r.gamma, s.gamma, rtol=0.04)
    np.testing.assert_allclose(r.beta, s.beta, rtol=0.03)
    np.testing.assert_allclose(r.alpha, s.alpha, rtol=0.04)
    np.testing.assert_allclose(r.baseline, 1.0, atol=0.01)
    # Lag 0 = 1 + β + 1/mean count.
    np.testing.assert_allclose(np.diagonal(c2, axis1=1, axis2=2).mean(axis=1), 1 + s.beta + 1 / s.mean_count,
                               rtol=0.01)


def test_ageing_series_follows_the_true_two_time():
    g = np.linspace(0.15, 0.03, 300)
    s = simulate_speckle(300, 20000, gamma=g, beta=0.4, mean_count=4.0, seed=4)
    c2 = s.two_time()[0]
    truth = s.true_two_time()[0]
    band = np.abs(np.subtract.outer(np.arange(300), np.arange(300)))
    sel = (band > 0) & (band < 20)
    assert np.abs(c2[sel] - truth[sel]).mean() < 0.02
    assert s.meta["ageing"]


def test_q_rings_have_diffusive_rates_and_falling_counts():
    s = simulate_q_rings(50, 5, seed=1, pixels_at_qmin=200)
    np.testing.assert_allclose(s.gamma / s.q**2, s.gamma[0] / s.q[0] ** 2)
    assert np.all(np.diff(s.mean_count) < 0)
    assert s.frames.shape[1] == s.labels.size and s.labels.max() == 5
    # The documented default range: Γ from 2e-3 to 5e-2 frames⁻¹ over q = 0.002..0.01 Å⁻¹.
    np.testing.assert_allclose(s.gamma[[0, -1]], [2e-3, 5e-2])


def test_seed_reproducible_and_true_two_time_lag0():
    a = simulate_speckle(20, 100, seed=7)
    b = simulate_speckle(20, 100, seed=7)
    assert np.array_equal(a.frames, b.frames)
    tt = true_two_time(10, 0.1, 0.3, 1.0, mean_count=2.0)
    assert tt[3, 3] == pytest.approx(1.8) and tt[3, 4] == pytest.approx(1 + 0.3 * np.exp(-0.2))


def test_bad_simulation_parameters():
    with pytest.raises(XPCSInputError):
        simulate_speckle(100, 10, beta=0.0)
    with pytest.raises(XPCSInputError):
        simulate_speckle(100, 10, gamma=np.linspace(0.1, 0.01, 100), alpha=1.5)


def test_xsvs_contrast_recovers_beta_of_mode_sums():
    from xpcs_denoise.core.scaling import contrast_xsvs

    s = simulate_speckle(20, 20000, gamma=0.05, n_modes=4, mean_count=[0.4, 3.0], n_rois=2, seed=5)
    beta, per_frame = contrast_xsvs(s.frames, s.labels)
    assert per_frame.shape == (2, 20)
    np.testing.assert_allclose(beta, 0.25, rtol=0.03)


def test_simulate_crops_are_unbiased_measurements_of_their_noise_free_2tcfs():
    measured, true, p = simulate_crops(256, seed=3)
    assert measured.shape == true.shape == (256, 50, 50)
    assert np.all((p["gamma"] >= 0.003) & (p["gamma"] <= 0.5)) and np.all((p["alpha"] >= 0.5) & (p["alpha"] <= 2))
    assert np.all(p["mean_count"] * p["pixels"] >= 60 - 1e-9)
    np.testing.assert_allclose(true[:, 0, 1], 1 + p["beta"] * np.exp(-2 * p["gamma"] ** p["alpha"]))
    # Off-diagonal residuals average out over crops and lags (Eq. 1 is unbiased up to O(1/pixels)).
    g_meas, g_true = one_time_from_two_time(measured), one_time_from_two_time(true)
    resid = (g_meas - g_true)[:, :10] / p["beta"][:, None]
    assert abs(np.mean(resid)) < 0.05 and np.std(np.mean(resid, axis=1)) < 1.5
    again = simulate_crops(256, seed=3)[0]
    np.testing.assert_array_equal(measured, again)
