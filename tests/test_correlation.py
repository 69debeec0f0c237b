import h5py
import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, one_time_from_two_time, time_resolved_cuts, two_time
from xpcs_denoise.core.correlation import lag_average_matrix, two_time_memory_bytes


def naive_two_time(frames, labels):
    t = frames.shape[0]
    flat = frames.reshape(t, -1).astype(float)
    lab = labels.ravel()
    out = []
    for k in range(1, lab.max() + 1):
        x = flat[:, lab == k]
        c = np.empty((t, t))
        for i in range(t):
            for j in range(t):
                c[i, j] = np.mean(x[i] * x[j]) / (np.mean(x[i]) * np.mean(x[j]))
        out.append(c)
    return np.array(out)


@pytest.fixture
def random_frames():
    rng = np.random.default_rng(0)
    frames = rng.poisson(3.0, size=(12, 6, 7)).astype(np.uint16)
    labels = rng.integers(0, 4, size=(6, 7))
    labels[0, :3] = [1, 2, 3]  # every ROI present
    return frames, labels


def test_two_time_matches_naive_on_random_frames(random_frames):
    frames, labels = random_frames
    want = naive_two_time(frames, labels)
    for block in (1, 5, 17, 10_000):  # blocks cutting through rows and ROIs
        got = two_time(frames, labels, block_pixels=block)
        assert got.shape == (3, 12, 12) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)


def test_two_time_accepts_memmap_and_h5py(tmp_path, random_frames):
    frames, labels = random_frames
    want = two_time(frames, labels)
    mm = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=frames.dtype, shape=frames.shape)
    mm[:] = frames
    np.testing.assert_allclose(two_time(np.load(tmp_path / "f.npy", mmap_mode="r"), labels, block_pixels=8),
                               want, rtol=1e-12)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["frames"] = frames
    with h5py.File(tmp_path / "f.h5", "r") as f:
        np.testing.assert_allclose(two_time(f["frames"], labels, block_pixels=9), want, rtol=1e-12)


def test_static_speckle_gives_constant_two_time():
    # Frames constant in time: C2 = <I²>/<I>² everywhere (analytic).
    rng = np.random.default_rng(1)
    img = rng.exponential(2.0, size=(1, 50)) + 0.1
    frames = np.repeat(img, 8, axis=0)
    c2 = two_time(frames, np.ones(50, int))
    np.testing.assert_allclose(c2[0], np.mean(img**2) / np.mean(img) ** 2, rtol=1e-12)


def test_two_time_is_symmetric_and_scale_free(random_frames):
    frames, labels = random_frames
    c2 = two_time(frames, labels)
    np.testing.assert_allclose(c2, np.swapaxes(c2, 1, 2), rtol=1e-13)
    np.testing.assert_allclose(two_time(frames * 7.5, labels), c2, rtol=1e-12)


def test_two_time_bad_inputs():
    frames = np.ones((5, 3, 3))
    with pytest.raises(XPCSInputError, match="shape"):
        two_time(frames, np.ones((2, 2), int))
    with pytest.raises(XPCSInputError, match="no pixels"):
        two_time(frames, np.array([[1, 1, 3]] * 3))
    with pytest.raises(XPCSInputError, match="at least 2 frames"):
        two_time(frames[:1], np.ones((3, 3), int))
    bad = frames.copy()
    bad[2, 1, 1] = np.nan
    with pytest.raises(XPCSInputError, match="NaN"):
        two_time(bad, np.ones((3, 3), int))
    with pytest.raises(XPCSInputError, match="zero mean"):
        two_time(np.zeros((5, 3, 3)), np.ones((3, 3), int))


def test_memory_bound_for_the_documented_case():
    """The README's number: T = 5,000 frames, 20 ROIs, any number of pixels: 3.85 GiB, of which the (K, T, T)
    float64 result is 8 · 20 · 5000² bytes = 3.73 GiB; the automatic pixel block adds at most 128 MiB."""
    got = two_time_memory_bytes(5000, 20)
    assert got == pytest.approx(3.85 * 2**30, abs=0.005 * 2**30)
    result = np.dtype(np.float64).itemsize * 20 * 5000**2
    assert result < got <= result + 128 * 2**20 + 16 * 20 * 5000
    # the pixel block grows with the frames, capped: 24 T n bytes for a given block size
    assert two_time_memory_bytes(300, 3, block_pixels=500) - two_time_memory_bytes(300, 3, block_pixels=100) == \
        24 * 300 * 400


def test_measured_peak_memory_follows_the_formula():
    import tracemalloc

    rng = np.random.default_rng(3)
    frames = rng.poisson(1.0, size=(300, 40, 50)).astype(np.uint8)
    labels = rng.integers(1, 4, size=(40, 50))
    two_time(frames[:5], labels, block_pixels=500)  # first use of the code paths: imports are not the peak
    tracemalloc.start()
    two_time(frames, labels, block_pixels=500)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bound = two_time_memory_bytes(300, 3, block_pixels=500)
    # an upper bound, and not a loose one: measured 0.53 × the bound (the block is read in smaller pieces)
    assert 0.4 * bound < peak < 1.1 * bound


def test_one_time_is_the_diagonal_mean():
    rng = np.random.default_rng(2)
    c2 = rng.normal(size=(3, 9, 9))
    g = one_time_from_two_time(c2)
    assert g.shape == (3, 8)
    for b in range(3):
        for k in range(1, 9):
            want = 0.5 * (np.diagonal(c2[b], k).mean() + np.diagonal(c2[b], -k).mean())
            assert g[b, k - 1] == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(one_time_from_two_time(c2[0]), g[0])
    np.testing.assert_allclose(lag_average_matrix(9) @ c2[1].ravel(), g[1], rtol=1e-12)


def test_one_time_of_analytic_two_time():
    t = np.arange(60)
    tau = np.abs(t[:, None] - t[None])
    c2 = 1 + 0.3 * np.exp(-2 * 0.05 * tau)
    np.testing.assert_allclose(one_time_from_two_time(c2), 1 + 0.3 * np.exp(-0.1 * np.arange(1, 60)), rtol=1e-13)


def test_one_time_ignores_nan_pixels():
    c2 = np.ones((6, 6)) * 2.0
    c2[1, 3] = c2[3, 1] = np.nan
    g = one_time_from_two_time(c2)
    assert np.all(g == 2.0)


def test_time_resolved_cuts_of_an_ageing_analytic_two_time():
    # Γ(t) linear in age: each width-1 cut's 1TCF holds exactly w pixels per lag.
    n = 40
    t = np.arange(n)
    c2 = 1 + 0.5 * np.exp(-0.01 * (t[:, None] + t[None, :]) * np.abs(t[:, None] - t[None]))
    ages, lags, g = time_resolved_cuts(c2, width=1)
    assert g.shape == (n, n - 1) and lags[0] == 1
    a = 20
    for k in (1, 2, 3, 4):
        t1 = (2 * a - k) // 2 if k % 2 == 0 else (2 * a - 1 - k) // 2
        assert g[a, k - 1] == pytest.approx(c2[t1, t1 + k], rel=1e-12)
    assert np.isnan(g[0, 5]) and np.isfinite(g[20, 5])
    # A stationary 2TCF gives the same 1TCF at every age and width.
    stat = 1 + 0.5 * np.exp(-0.2 * np.abs(t[:, None] - t[None]))
    for w in (1, 3, 10):
        _, _, gs = time_resolved_cuts(stat, width=w, max_lag=10)
        np.testing.assert_allclose(gs[15:25], np.broadcast_to(one_time_from_two_time(stat)[:10], (10, 10)),
                                   rtol=1e-12)


def test_two_time_agrees_with_scikit_beam(random_frames):
    skbeam_corr = pytest.importorskip("skbeam.core.correlation")
    frames, labels = random_frames
    t = frames.shape[0]
    ref = skbeam_corr.two_time_corr(labels, frames.astype(float), t, t, 1).g2
    np.testing.assert_allclose(two_time(frames, labels), ref, rtol=1e-10)


def test_torch_device_path_matches_numpy(random_frames):
    frames, labels = random_frames
    np.testing.assert_allclose(two_time(frames, labels, device="cpu"), two_time(frames, labels), rtol=1e-12)
