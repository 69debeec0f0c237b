"""denoise(c2, method=...) for the ensemble and every peer, the sliding window, the PCA peer, and the
preprocessing it rests on (Eq. 5/7 scaling, frame sub-sampling), against known answers."""

import warnings

import numpy as np
import pytest

from xpcs_denoise import (
    METHODS,
    XPCSInputError,
    XPCSNoContrastWarning,
    denoise,
    one_time_from_two_time,
    simulate_speckle,
    subsample_frames,
)
from xpcs_denoise.core.scaling import from_model_units, scale_parameters, to_model_units
from xpcs_denoise.core.simulation import true_two_time
from xpcs_denoise.core.window import sliding_window
from xpcs_denoise.nn.denoiser import Denoiser
from xpcs_denoise.restoration.baselines import PCAFilter

N = 50


def _lag(n):
    t = np.arange(n)
    return np.abs(t[:, None] - t[None, :])


def _needs(method):
    if method == "bm3d":
        pytest.importorskip("bm3d")


@pytest.fixture(scope="module")
def pca_filter():
    """A PCA peer fitted on noise-free simulated targets in model units (contrast 1, baseline 1)."""
    rng = np.random.default_rng(0)
    gamma = np.exp(rng.uniform(np.log(0.005), np.log(0.3), 300))
    alpha = rng.uniform(0.7, 1.5, 300)
    targets = np.stack([true_two_time(N, g, 1.0, a) for g, a in zip(gamma, alpha, strict=True)])
    return PCAFilter.fit(targets, n_components=8, meta={"source": "test simulation"})


def _opts(method, pca_filter):
    return {"pca": pca_filter} if method == "pca" else {}


@pytest.fixture(scope="module")
def crops():
    """Noisy 50-frame 2TCFs (noise/β ≈ 0.3 per pixel) with their noise-free truth."""
    gamma = [0.02, 0.05, 0.1, 0.15]
    s = simulate_speckle(N, 1000, gamma=gamma, beta=0.2, mean_count=0.5, n_rois=4, seed=5)
    return s.two_time(), s.true_two_time(), np.asarray(gamma)


@pytest.fixture(scope="module")
def long_series():
    """A stationary 150-frame noisy 2TCF (Γ = 0.05 frames⁻¹, β = 0.2) and its truth."""
    s = simulate_speckle(150, 500, gamma=0.05, beta=0.2, mean_count=0.2, seed=2)
    return s.two_time()[0], s.true_two_time()[0]


# ----------------------------------------------------------------------------------------------- the entry point


def test_unknown_method_names_every_valid_method(crops):
    with pytest.raises(XPCSInputError) as info:
        denoise(crops[0][0], "wavelet")
    for name in METHODS:
        assert name in str(info.value)


ANY_SIZE = ("lagnet", "age", "adaptive")  # methods along the lag-band, without a window: any N ≥ 3


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ANY_SIZE])
def test_fewer_than_50_frames_is_a_clear_error(method):
    c2 = true_two_time(49, 0.05, 0.2)
    with pytest.raises(XPCSInputError, match="50"):
        denoise(c2, method)


@pytest.mark.parametrize("method", ANY_SIZE)
def test_band_methods_take_any_size(method):
    c2 = true_two_time(20, 0.05, 0.2)
    np.testing.assert_allclose(denoise(c2, method), c2, atol=1e-12)  # noise-free and stationary: unchanged


@pytest.mark.parametrize("bad", [np.full((N, N), np.nan), np.ones((N, 40)), np.ones((2, 3, N, N))])
def test_malformed_input_is_rejected(bad):
    with pytest.raises(XPCSInputError):
        denoise(bad, "gaussian")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(N, N), (3, N, N), (80, 80)], ids=["single", "batch", "window"])
def test_shape_symmetry_and_finiteness(method, shape, crops, long_series, pca_filter):
    _needs(method)
    if shape == (80, 80):
        c2 = long_series[0][:80, :80]
    else:
        c2 = crops[0][:3] if len(shape) == 3 else crops[0][0]
    out = denoise(c2, method, **_opts(method, pca_filter))
    assert out.shape == shape
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.swapaxes(out, -1, -2), rtol=0, atol=1e-12)
    if method != "none":
        assert not np.allclose(out, c2)  # something was done


def test_none_returns_the_input_unchanged(crops):
    c2 = crops[0]
    out, std = denoise(c2, "none", return_std=True)
    np.testing.assert_array_equal(out, c2)  # lag 0 (the count variance spike) included
    assert out is not c2
    np.testing.assert_array_equal(std, 0.0)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_lag0_spike_is_replaced_and_does_not_leak(method, pca_filter):
    """Noise-free 2TCFs whose lag 0 is 1 + β + 1/I with 1/I = 5 (25 × β): with lag 0 replaced by lag-1 draws the
    output's short-lag 1TCF stays on the truth (a Gaussian filter of the raw matrix is off by 0.67 at lag 1),
    and the output's diagonal is at the lag-1 level, not the spike."""
    _needs(method)
    gamma, beta = np.array([0.02, 0.05, 0.1]), 0.2
    spiky = np.stack([true_two_time(N, g, beta, mean_count=0.2) for g in gamma])
    clean = np.stack([true_two_time(N, g, beta) for g in gamma])
    out = denoise(spiky, method, **_opts(method, pca_filter))
    err = np.abs(one_time_from_two_time(out)[:, :5] - one_time_from_two_time(clean)[:, :5])
    assert err.max() < 0.05, err.max()
    diag = np.diagonal(out, axis1=1, axis2=2)
    if method in ANY_SIZE:  # the band starts at lag 1: lag 0 is kept as measured, and nothing leaks from it
        np.testing.assert_array_equal(diag, np.diagonal(spiky, axis1=1, axis2=2))
        return
    assert np.all(diag > 1.1) and np.all(diag < 1 + beta + 0.05)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_every_method_lowers_the_error_against_the_truth(method, crops, pca_filter):
    _needs(method)
    c2, truth, _ = crops
    off = _lag(N) > 0
    out = denoise(c2, method, **_opts(method, pca_filter))
    mse_raw = np.mean((c2 - truth)[:, off] ** 2)
    mse = np.mean((out - truth)[:, off] ** 2)
    # BM3D at its tuned σ_psd = 0.2 under-smooths this noise level (≈ 0.3 in model units): 0.66 of raw.
    assert mse < (0.8 if method == "bm3d" else 0.5) * mse_raw, (mse, mse_raw)


def test_ensemble_beats_the_image_filters(crops):
    """The paper's ranking (METHOD §5): the CNN-ED is closer to the truth than the classical image filters."""
    c2, truth, _ = crops
    off = _lag(N) > 0
    mse = {m: np.mean((denoise(c2, m) - truth)[:, off] ** 2) for m in ("cned", "gaussian", "median", "tv")}
    assert mse["cned"] < 0.5 * min(mse["gaussian"], mse["median"], mse["tv"]), mse


def test_return_std_is_the_ensemble_spread(crops, long_series):
    c2 = crops[0]
    out, std = denoise(c2, "cned", return_std=True)
    np.testing.assert_array_equal(out, denoise(c2, "cned"))
    assert std.shape == c2.shape and np.all(std >= 0) and np.all(np.isfinite(std))
    assert std[:, _lag(N) > 0].mean() > 0
    # Same spread from the Denoiser itself, with the Eq. 5 contrast.
    res = Denoiser.pretrained().denoise_full(c2)
    np.testing.assert_allclose(res.std, std)
    np.testing.assert_allclose(res.beta, scale_parameters(c2, N)[0])
    # Sliding window: no spread where no window reaches (lags ≥ 50).
    big = long_series[0]
    _, std_big = denoise(big, "cned", return_std=True)
    assert std_big.shape == big.shape and np.all(std_big >= 0)
    np.testing.assert_array_equal(std_big[_lag(150) >= N], 0.0)
    # Deterministic peers: zeros.
    _, std_g = denoise(c2, "gaussian", return_std=True)
    np.testing.assert_array_equal(std_g, 0.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [N, 120])
def test_contrast_equivariance(method, n, crops, long_series, pca_filter):
    """Eq. 5/7 and 6: 1 + k (C2 − 1) has k times the contrast and the same model-unit input, so its denoised
    version is 1 + k (out − 1) and its spread k times the spread."""
    _needs(method)
    c2 = crops[0][:1 if method == "bm3d" else 2] if n == N else long_series[0][:n, :n]
    k = 2.5
    out, std = denoise(c2, method, return_std=True, **_opts(method, pca_filter))
    out_k, std_k = denoise(1 + k * (c2 - 1), method, return_std=True, **_opts(method, pca_filter))
    # BM3D computes in float32; the rest agree to rounding.
    np.testing.assert_allclose(out_k, 1 + k * (out - 1), rtol=0, atol=1e-5 if method == "bm3d" else 1e-9)
    np.testing.assert_allclose(std_k, k * std, rtol=1e-9, atol=1e-12)


def test_same_seed_same_output_other_seed_other_draws(crops):
    c2 = crops[0][:2]
    a = denoise(c2, "cned", seed=3)
    np.testing.assert_array_equal(a, denoise(c2, "cned", seed=3))
    b = denoise(c2, "cned", seed=4)
    assert not np.array_equal(a, b)  # the lag-0 draws are the only randomness
    np.testing.assert_allclose(a, b, atol=0.02)  # and they matter little
    g = denoise(c2, "gaussian", seed=3)
    np.testing.assert_array_equal(g, denoise(c2, "gaussian", seed=3))


def test_explicit_beta_and_baseline_are_used(crops):
    c2 = crops[0][:2]
    b, base = scale_parameters(c2, N)
    default = denoise(c2, "cned")
    np.testing.assert_allclose(denoise(c2, "cned", beta=b, baseline=base), default, rtol=0, atol=1e-12)
    assert np.abs(denoise(c2, "cned", beta=3 * b) - default).max() > 0.01  # the ensemble is not scale-free
    res = Denoiser.pretrained().denoise_full(c2, beta=0.3, baseline=1.01)
    np.testing.assert_array_equal(res.beta, [0.3, 0.3])
    np.testing.assert_array_equal(res.baseline, [1.01, 1.01])
    with pytest.raises(XPCSInputError, match="contrast"):
        denoise(np.ones((N, N)), "gaussian")


def test_peer_options_are_checked(crops, pca_filter):
    c2 = crops[0][0]
    wide = denoise(c2, "gaussian", sigma=4.0)
    narrow = denoise(c2, "gaussian", sigma=0.5)
    # A wider filter leaves less pixel-to-pixel variation.
    assert np.std(np.diff(wide, axis=1)) < np.std(np.diff(narrow, axis=1))
    with pytest.raises(XPCSInputError, match="gaussian"):
        denoise(c2, "gaussian", width=3)
    with pytest.raises(XPCSInputError, match="pca"):
        denoise(c2, "pca", pca=pca_filter, n_components=3)


# ------------------------------------------------------------------------------------------ the sliding window


def _covered(n_big, n=N, step=5):
    starts = np.concatenate([np.arange(0, n_big - n + 1, step), np.arange(n_big - n, -1, -step)])
    cov = np.zeros((n_big, n_big), bool)
    for s in starts:
        cov[s:s + n, s:s + n] = True
    return cov


def test_sliding_window_identity_and_constant_predictors():
    rng = np.random.default_rng(1)
    big = 97
    x = rng.normal(size=(2, big, big))
    x = x + np.swapaxes(x, 1, 2)
    cov = _covered(big)
    # Identity: every covered pixel is the average of copies of itself; lag 0 becomes lag-1 draws.
    mean, spread = sliding_window(x, lambda w: (w, np.zeros_like(w)), N, 5, seed=0)
    off = _lag(big) > 0
    np.testing.assert_allclose(mean[:, off], x[:, off], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(spread, 0.0)
    lag1 = np.concatenate([np.diagonal(x, 1, 1, 2), np.diagonal(x, -1, 1, 2)], axis=1)
    diag = np.diagonal(mean, axis1=1, axis2=2)
    assert np.all(diag >= lag1.min(axis=1)[:, None] - 1e-12) and np.all(diag <= lag1.max(axis=1)[:, None] + 1e-12)
    # Constant predictor: exactly the covered band takes its value, the rest keeps the input.
    mean, spread = sliding_window(x, lambda w: (np.full_like(w, 7.0), np.full_like(w, 0.5)), N, 5, seed=0)
    np.testing.assert_allclose(mean[:, cov], 7.0)
    np.testing.assert_array_equal(mean[:, ~cov], x[:, ~cov])
    np.testing.assert_allclose(spread[:, cov], 0.5)
    np.testing.assert_array_equal(spread[:, ~cov], 0.0)
    assert cov[_lag(big) <= N - 5].all() and not cov[_lag(big) >= N].any()
    with pytest.raises(XPCSInputError, match="step"):
        sliding_window(x, lambda w: (w, w), N, 0)


@pytest.mark.parametrize("method", ["cned", "pca"])
def test_sliding_window_keeps_the_input_outside_the_band(method, long_series, pca_filter):
    c2 = long_series[0]
    out = denoise(c2, method, **_opts(method, pca_filter))
    cov = _covered(c2.shape[0])
    np.testing.assert_allclose(out[~cov], c2[~cov], rtol=1e-12, atol=1e-12)  # up to the Eq. 7/6 round trip
    changed = ~np.isclose(out, c2, rtol=1e-9, atol=1e-12)
    assert changed[cov].mean() > 0.99


@pytest.mark.parametrize("method", ["cned", "pca", "gaussian"])
def test_window_denoising_brings_the_1tcf_closer_to_the_truth(method, long_series, pca_filter):
    c2, truth = long_series
    out = denoise(c2, method, **_opts(method, pca_filter))
    g_true = one_time_from_two_time(truth, max_lag=49)
    err_raw = np.mean((one_time_from_two_time(c2, max_lag=49) - g_true) ** 2)
    err = np.mean((one_time_from_two_time(out, max_lag=49) - g_true) ** 2)
    assert err < 0.5 * err_raw, (err, err_raw)
    band = (_lag(150) > 0) & (_lag(150) < 45)
    assert np.mean((out - truth)[band] ** 2) < 0.5 * np.mean((c2 - truth)[band] ** 2)


def test_denoise_full_is_eq5_then_ensemble_then_eq6(crops):
    """N = 50: Eq. 5 scaling, lag 0 replaced by the seed's draws, ensemble mean, Eq. 6 back."""
    c2 = crops[0][:2]
    den = Denoiser.pretrained()
    res = den.denoise_full(c2, seed=1)
    b, base = res.beta, res.baseline
    from xpcs_denoise.core.scaling import replace_diagonal

    x = to_model_units(c2, b, base)
    direct = den.predict_model_units(replace_diagonal(x, 1))[0]
    np.testing.assert_allclose(res.c2, from_model_units(direct, b, base), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------------------------- PCA peer


def test_pca_reconstructs_a_low_rank_family_exactly():
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(3, N, N))
    basis = basis + np.swapaxes(basis, 1, 2)
    coef = rng.normal(size=(40, 3))
    data = 1.0 + np.einsum("tk,kij->tij", coef, basis)
    f = PCAFilter.fit(data, n_components=3)
    np.testing.assert_allclose(f.components @ f.components.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(f.predict(data), data, atol=1e-9)
    # Noise orthogonal to the family is removed; the reconstruction is idempotent.
    new = 1.0 + np.einsum("k,kij->ij", rng.normal(size=3), basis)
    noise = rng.normal(size=(N, N))
    noisy = new + 0.5 * (noise + noise.T)
    rec = f.predict(noisy)
    assert np.mean((rec - new) ** 2) < 0.01 * np.mean((noisy - new) ** 2)
    np.testing.assert_allclose(f.predict(rec), rec, atol=1e-9)


def test_pca_save_load_round_trip(tmp_path, pca_filter, crops):
    path = tmp_path / "pca.safetensors"
    pca_filter.save(path)
    back = PCAFilter.load(path)
    assert back.size == pca_filter.size == N and back.meta == {"source": "test simulation"}
    np.testing.assert_array_equal(back.components, pca_filter.components)
    x = to_model_units(crops[0], scale_parameters(crops[0], N)[0])
    np.testing.assert_array_equal(back.predict(x), pca_filter.predict(x))
    np.testing.assert_array_equal(denoise(crops[0], "pca", pca=back), denoise(crops[0], "pca", pca=pca_filter))


def test_pca_wrong_size_is_an_error(pca_filter):
    with pytest.raises(XPCSInputError, match="50"):
        pca_filter.predict(np.ones((40, 40)))


def test_pretrained_pca_filter_denoises(crops):  # shipped with the package: never skipped
    f = PCAFilter.pretrained()
    assert f.size == N and f.components.shape[1] == N * (N + 1) // 2
    np.testing.assert_allclose(f.components @ f.components.T, np.eye(len(f.components)), atol=1e-6)
    c2, truth, _ = crops
    off = _lag(N) > 0
    out = denoise(c2, "pca")
    assert np.mean((out - truth)[:, off] ** 2) < np.mean((c2 - truth)[:, off] ** 2)


# --------------------------------------------------------------------------------------- Eq. 5/7 scaling


def _analytic(n, gamma, beta, c_inf):
    return c_inf + beta * np.exp(-2 * gamma * _lag(n))


def test_scale_parameters_of_an_analytic_50_frame_2tcf():
    """N = 50 (Eq. 5): C∞ = 1 and β̂ = mean lag-1 value − 1 = C∞ − 1 + β e^{−2Γ}, unless the decay shows
    another baseline (then C∞ is that baseline); a decay too slow to show it keeps C∞ = 1."""
    b, base = scale_parameters(_analytic(N, 0.05, 0.3, 1.0), N)
    np.testing.assert_allclose(base, [1.0])
    np.testing.assert_allclose(b, [0.3 * np.exp(-0.1)], rtol=1e-12)
    b, base = scale_parameters(_analytic(N, 0.05, 0.3, 1.02), N)  # a small offset is the paper's Eq. 5 case
    np.testing.assert_allclose(base, [1.0])
    np.testing.assert_allclose(b, [0.02 + 0.3 * np.exp(-0.1)], rtol=1e-12)
    b, base = scale_parameters(_analytic(N, 0.05, 0.3, 1.3), N)  # C∞ − 1 = β: that baseline is used
    np.testing.assert_allclose(base, [1.3], rtol=1e-6)
    np.testing.assert_allclose(b, [0.3 * np.exp(-0.1)], rtol=1e-5)
    rng = np.random.default_rng(0)
    noise = 0.02 * rng.standard_normal((N, N))
    slow = _analytic(N, 0.002, 0.3, 1.0) + 0.5 * (noise + noise.T)
    np.testing.assert_array_equal(scale_parameters(slow, N)[1], [1.0])
    # Batches, and explicit values broadcast per 2TCF.
    batch = np.stack([_analytic(N, 0.05, 0.3, 1.0), _analytic(N, 0.1, 0.1, 1.0)])
    b, base = scale_parameters(batch, N)
    np.testing.assert_allclose(b, [0.3 * np.exp(-0.1), 0.1 * np.exp(-0.2)], rtol=1e-12)
    b, base = scale_parameters(batch, N, beta=0.25, baseline=[1.0, 1.1])
    np.testing.assert_array_equal(b, [0.25, 0.25])
    np.testing.assert_array_equal(base, [1.0, 1.1])


def test_scale_parameters_of_an_analytic_long_2tcf():
    """N > 50 (Eq. 7): C∞* = median 1TCF over the longest quarter of lags, β* = lag-1 value − C∞*."""
    c2 = _analytic(200, 0.1, 0.3, 1.05)  # decayed by e^{-30} at lag 150
    b, base = scale_parameters(c2, N)
    np.testing.assert_allclose(base, [1.05], rtol=1e-12)
    np.testing.assert_allclose(b, [0.3 * np.exp(-0.2)], rtol=1e-10)
    # A slow decay still in progress: the baseline is the median of the tail (its middle lag), exactly.
    c2 = _analytic(120, 0.01, 0.3, 1.0)
    lags = np.arange(120 - 29, 120)
    expect = 1.0 + 0.3 * np.median(np.exp(-0.02 * lags))
    b, base = scale_parameters(c2, N)
    np.testing.assert_allclose(base, [expect], rtol=1e-12)
    np.testing.assert_allclose(b, [1.0 + 0.3 * np.exp(-0.02) - expect], rtol=1e-10)


@pytest.mark.parametrize("n", [N, 120])
def test_zero_or_negative_contrast_is_an_error(n):
    with pytest.raises(XPCSInputError, match="contrast"):
        scale_parameters(np.ones((n, n)), N)
    with pytest.raises(XPCSInputError, match="contrast"):
        scale_parameters(_analytic(n, 0.05, 0.3, 1.0), N, beta=0.0)
    with pytest.raises(XPCSInputError, match="contrast"):
        scale_parameters(_analytic(n, 0.05, -0.3, 1.0), N, baseline=1.0)


def test_contrast_is_robust_to_outlier_pixels():
    """A few wild lag-1 pixels (as in real crops) barely move β̂; a plain mean would be pulled far off."""
    c2 = _analytic(N, 0.05, 0.2, 1.0)
    bad = c2.copy()
    for i, v in ((3, 40.0), (17, -30.0), (30, 25.0)):
        bad[i, i + 1] = bad[i + 1, i] = v
    b, _ = scale_parameters(bad, N)
    assert abs(b[0] - 0.2 * np.exp(-0.1)) < 0.01
    plain = np.mean(np.diagonal(bad, 1)) - 1
    assert abs(plain - 0.2 * np.exp(-0.1)) > 0.5


def test_contrast_is_floored_at_the_noise_of_the_lag_one_mean():
    """A lag-1 mean at the baseline (pure noise): β̂ is raised to 2 standard errors instead of ≈ 0, so that the
    scaled 2TCF stays bounded; a constant 2TCF has no contrast at all."""
    from xpcs_denoise.core.scaling import contrast_from_two_time

    c2 = _analytic(N, 0.05, 0.2, 1.0)
    i = np.arange(N - 1)
    noise = np.random.default_rng(0).normal(0, 0.05, N - 1)
    c2[i, i + 1] = c2[i + 1, i] = 1 + noise - np.median(noise) - 0.01  # lag-1 mean just below the baseline
    b, floored = contrast_from_two_time(c2, return_floored=True)
    mad = np.median(np.abs(noise - np.median(noise)))
    assert floored and b == pytest.approx(2 * 1.4826 * mad / np.sqrt(N - 1))
    assert np.isnan(contrast_from_two_time(np.full((N, N), 1.3), 1.3))


def test_model_units_round_trip():
    rng = np.random.default_rng(4)
    c2 = 1 + rng.random((3, N, N))
    b, base = np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.99, 1.01])
    x = to_model_units(c2, b, base)
    np.testing.assert_allclose(x[1], (c2[1] - 0.99) / 0.2 + 1)
    np.testing.assert_allclose(from_model_units(x, b, base), c2, rtol=1e-13)
    # An exact 2TCF with C∞ = 1 has lag-1 value 2 in model units (Eq. 5).
    c2 = _analytic(N, 0.05, 0.3, 1.0)
    b, base = scale_parameters(c2, N)
    np.testing.assert_allclose(np.diagonal(to_model_units(c2, b, base)[0], 1), 2.0)


# ------------------------------------------------------------------------------------- frame sub-sampling


@pytest.mark.parametrize(("every", "offset"), [(1, 0), (2, 0), (2, 1), (3, 2), (7, 5)])
def test_subsample_frames_is_every_kth_frame(every, offset):
    rng = np.random.default_rng(every + offset)
    c2 = rng.random((2, 31, 31))
    sub = subsample_frames(c2, every, offset)
    np.testing.assert_array_equal(sub, c2[:, offset::every, offset::every])
    np.testing.assert_array_equal(subsample_frames(c2[0], every, offset), c2[0][offset::every, offset::every])
    frames = np.arange(offset, 31, every)
    assert sub.shape == (2, frames.size, frames.size)
    np.testing.assert_array_equal(sub[1, 1, 2], c2[1, frames[1], frames[2]])


def test_subsampled_rates_scale_by_k():
    """Every k-th frame of a stationary 2TCF with rate Γ is the 2TCF of rate kΓ (in the new frames)."""
    c2 = true_two_time(150, 0.01, 0.2, alpha=1.3)
    sub = subsample_frames(c2, 3, 1)
    np.testing.assert_allclose(sub, true_two_time(50, 0.03, 0.2, alpha=1.3), rtol=1e-12)


@pytest.mark.parametrize(("every", "offset"), [(0, 0), (-1, 0), (1, 10), (1, -1), (10, 1), (20, 0)])
def test_subsample_frames_errors(every, offset):
    with pytest.raises(XPCSInputError):
        subsample_frames(np.ones((10, 10)), every, offset)


def test_subsample_frames_needs_square_input():
    with pytest.raises(XPCSInputError, match="square"):
        subsample_frames(np.ones((10, 9)), 2)


@pytest.mark.parametrize("method", ["cned", "gaussian", "pca"])
def test_batch_with_a_no_contrast_2tcf_denoises_the_others_and_returns_it_unchanged(crops, method, pca_filter):
    noisy = crops[0][:2].copy()
    flat = np.ones((1, N, N)) + 0.01 * np.eye(N)  # lag-1 mean == baseline: no contrast
    batch = np.concatenate([noisy[:1], flat, noisy[1:]])
    with pytest.warns(XPCSNoContrastWarning, match=r"1 of 3 2TCFs have no contrast.*index \[1\]"):
        out, spread = denoise(batch, method, return_std=True, **_opts(method, pca_filter))
    np.testing.assert_array_equal(out[1], flat[0])
    np.testing.assert_array_equal(spread[1], 0.0)
    alone = denoise(noisy, method, **_opts(method, pca_filter))
    np.testing.assert_allclose(out[[0, 2]], alone, atol=0.02 * 0.2)  # lag-0 draws differ, nothing else
    with pytest.raises(XPCSInputError, match="contrast"):
        denoise(flat[0], method, **_opts(method, pca_filter))
    with pytest.raises(XPCSInputError, match="contrast"):
        denoise(np.concatenate([flat, flat]), method, **_opts(method, pca_filter))


def test_the_paper_path_does_not_depend_on_the_baseline():
    """Issue 32: a ring with an intensity gradient has C∞ ≈ 1.25 (Eq. 1); scaled with C∞ = 1 the paper's network
    took the decay for an incomplete one and Γ came out 10–500× too small. The same noisy 2TCF raised by 0.25, or
    doubled, now gives the same Γ as at baseline 1."""
    from xpcs_denoise.analysis.uncertainty import fit_two_time

    rng = np.random.default_rng(1)
    noise = 0.02 * rng.standard_normal((3, N, N))
    c2 = np.stack([_analytic(N, g, 0.2, 1.0) for g in (0.03, 0.08, 0.2)]) + 0.5 * (noise + noise.swapaxes(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_two_time(c2, method="cned").fit.gamma
        for x in (c2 + 0.25, 2 * c2):
            np.testing.assert_allclose(fit_two_time(x, method="cned").fit.gamma, ref, rtol=0.1)
    assert np.all(np.abs(ref / [0.03, 0.08, 0.2] - 1) < 0.6)
