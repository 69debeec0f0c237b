"""APS 8-ID-I round trip (boost_corr file in, boost_corr/xpcs-viewer layout out), .npy output, q/φ/labels
carried through every output, bounded-memory streaming."""

import csv
import json

import h5py
import numpy as np
import pytest

from xpcs_denoise import XPCSInputError
from xpcs_denoise.app.pipeline import correlate_file, denoise_file, fit_file
from xpcs_denoise.core.simulation import true_two_time
from xpcs_denoise.io.formats import open_c2, read_c2

N = 60
BINS = np.array([2, 5, 6])  # processed dynamic bins, 1-based, not 1..K: they must be kept, never renumbered
Q = np.array([0.002, 0.004, 0.006])  # dynamic_v_list_dim0
PHI = np.array([-30.0, 60.0])  # dynamic_v_list_dim1: 2 φ sectors per q


def noisy_stack(seed=0):
    rng = np.random.default_rng(seed)
    c2 = np.stack([true_two_time(N, g, 0.2) for g in (0.02, 0.04, 0.08)]) + rng.normal(0, 0.02, (3, N, N))
    return (c2 + np.swapaxes(c2, 1, 2)) / 2


def boost_corr_file(path, c2):
    """A result file laid out as boost_corr 0.1.7 writes it for `-t Twotime` (float32 upper triangles, g2 (N, K),
    segments (N // 5, 5, K)), with a qmap, multitau and metadata groups that must survive the round trip."""
    with h5py.File(path, "w") as f:
        for i, m in zip(BINS, c2, strict=True):
            f.create_dataset(f"xpcs/twotime/correlation_map/c2_{i:05d}", data=np.triu(m).astype(np.float32),
                             compression="lzf")
        f["xpcs/twotime/processed_bins"] = BINS
        f["xpcs/twotime/normalized_g2"] = np.zeros((N, 3), np.float32)
        f["xpcs/twotime/normalized_g2_segments"] = np.zeros((N // 5, 5, 3), np.float32)
        f["xpcs/twotime/config/stride_frame"] = 1
        f["xpcs/qmap/dynamic_v_list_dim0"] = Q
        f["xpcs/qmap/dynamic_v_list_dim1"] = PHI
        f["xpcs/qmap/dynamic_index_mapping"] = np.arange(6)  # label l → index l − 1 → (q index, φ index)
        f["xpcs/qmap/mask"] = np.ones((8, 8), np.int32)
        f["xpcs/multitau/normalized_g2"] = np.full((10, 6), 1.1)
        f["entry/instrument/detector_1/frame_time"] = 0.01
        f["entry/instrument/bluesky/metadata"] = "{}"
        f["entry"].attrs["NX_class"] = "NXentry"
    return path


def diag_means(m):
    return np.array([np.mean(np.diagonal(m, k)) for k in range(m.shape[0])])


def test_aps_input_gives_an_aps_file_with_every_group_kept_and_denoised_maps(tmp_path):
    c2 = noisy_stack()
    src = boost_corr_file(tmp_path / "r.hdf", c2)
    before = src.read_bytes()
    s = denoise_file(src, tmp_path / "d.hdf", method="gaussian")
    assert s["format"] == "aps" and src.read_bytes() == before
    with h5py.File(src, "r") as fi, h5py.File(tmp_path / "d.hdf", "r") as fo:
        kept = []
        fi.visit(lambda name: kept.append(name))
        for name in kept:  # every input object is in the output, unchanged except the twotime maps and g2
            if name.startswith(("xpcs/twotime/correlation_map", "xpcs/twotime/normalized_g2")):
                continue
            assert name in fo, name
            if isinstance(fi[name], h5py.Dataset):
                np.testing.assert_array_equal(fo[name][()], fi[name][()])
        assert fo["entry"].attrs["NX_class"] == "NXentry"
        names = sorted(fo["xpcs/twotime/correlation_map"])
        assert names == ["c2_00002", "c2_00005", "c2_00006"]  # the input's bins, never renumbered
        np.testing.assert_array_equal(fo["xpcs/twotime/processed_bins"][()], BINS)
        for name in names:
            raw, den = fo[f"xpcs/twotime/correlation_map_raw/{name}"][()], fo[f"xpcs/twotime/correlation_map/{name}"]
            np.testing.assert_array_equal(raw, fi[f"xpcs/twotime/correlation_map/{name}"][()])
            assert den.dtype == np.float32 and den.shape == (N, N)
            d = den[()]
            assert not np.any(np.tril(d, -1)) and np.all(np.diag(d) != 0)  # an upper triangle, diagonal kept
            assert not np.allclose(d, raw)
        # normalized_g2 (N, K): diagonal means of each denoised map at lags 0..N - 1, column k = processed bin k
        g2 = fo["xpcs/twotime/normalized_g2"][()]
        seg = fo["xpcs/twotime/normalized_g2_segments"][()]
        assert g2.shape == (N, 3) and seg.shape == (N // 5, 5, 3)
        for k, name in enumerate(names):
            half = fo[f"xpcs/twotime/correlation_map/{name}"][()].astype(np.float64)
            full = half + np.triu(half, 1).T
            np.testing.assert_allclose(g2[:, k], diag_means(full), rtol=1e-6)
            np.testing.assert_allclose(seg[:, 2, k], diag_means(full[24:36, 24:36]), rtol=1e-6)
        assert "normalized_g2_raw" in fo["xpcs/twotime"]
        a = dict(fo["xpcs/twotime"].attrs)
        assert a["denoised_by"] == "xpcs-denoise" and a["method"] == "gaussian"
        assert a["raw_group"] == "xpcs/twotime/correlation_map_raw"
    # Read back: denoised maps, raw kept, q and φ of each bin, the bins themselves.
    d = read_c2(tmp_path / "d.hdf")
    assert d.source_format == "aps-8idi" and d.rois.tolist() == BINS.tolist()
    np.testing.assert_allclose(d.q, Q[(BINS - 1) // 2])
    np.testing.assert_allclose(d.phi, PHI[(BINS - 1) % 2])
    np.testing.assert_allclose(d.raw, c2, rtol=1e-6, atol=1e-6)
    truth = np.stack([true_two_time(N, g, 0.2) for g in (0.02, 0.04, 0.08)])
    off = ~np.eye(N, dtype=bool)
    assert np.mean((d.c2 - truth)[:, off] ** 2) < np.mean((d.raw - truth)[:, off] ** 2)


def test_format_ours_from_aps_keeps_bins_q_phi_and_fit_table_shows_them(tmp_path):
    boost_corr_file(tmp_path / "r.hdf", noisy_stack())
    denoise_file(tmp_path / "r.hdf", tmp_path / "d.h5", method="gaussian", output_format="ours")
    d = read_c2(tmp_path / "d.h5")
    assert d.source_format == "xpcs-denoise" and d.rois.tolist() == BINS.tolist()
    np.testing.assert_allclose(d.q, Q[(BINS - 1) // 2])
    np.testing.assert_allclose(d.phi, PHI[(BINS - 1) % 2])
    fit_file(tmp_path / "d.h5", tmp_path / "fit.csv")
    rows = list(csv.DictReader(open(tmp_path / "fit.csv")))
    assert [int(r["roi"]) for r in rows] == BINS.tolist()
    np.testing.assert_allclose([float(r["q"]) for r in rows], Q[(BINS - 1) // 2])
    np.testing.assert_allclose([float(r["phi"]) for r in rows], PHI[(BINS - 1) % 2])


def test_npy_output_is_a_real_npy_and_format_mismatches_are_refused(tmp_path):
    c2 = noisy_stack()
    boost_corr_file(tmp_path / "r.hdf", c2)
    denoise_file(tmp_path / "r.hdf", tmp_path / "d.npy", method="gaussian")
    arr = np.load(tmp_path / "d.npy")
    assert arr.shape == (3, N, N) and arr.dtype == np.float64
    ref = read_c2(tmp_path / "r.hdf").c2
    from xpcs_denoise import denoise

    np.testing.assert_allclose(arr[1], denoise(ref[1], "gaussian"), rtol=1e-12)
    for out, fmt, words in (("x.npy", "aps", "name the output .h5"), ("x.h5", "npy", "ending in .npy")):
        with pytest.raises(XPCSInputError, match=words):
            denoise_file(tmp_path / "r.hdf", tmp_path / out, method="gaussian", output_format=fmt)
    np.save(tmp_path / "c2.npy", c2)
    with pytest.raises(XPCSInputError, match="output_format='aps' copies an APS"):
        denoise_file(tmp_path / "c2.npy", tmp_path / "x.hdf", method="gaussian", output_format="aps")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.npy", "d.npy", "r.hdf"]


def test_format_registry_reads_back_what_each_writer_wrote_and_picks_the_default_writer(tmp_path):
    from xpcs_denoise.io.formats import C2_FORMATS, OUTPUT_FORMATS, output_handler

    assert OUTPUT_FORMATS == ("ours", "aps", "npy")
    # default: the suffix's format, else the input's own format where it can be written, else ours
    assert output_handler(tmp_path / "x.npy", "aps-8idi").name == "npy"
    assert output_handler(tmp_path / "x.hdf", "aps-8idi").name == "aps"
    for source in ("npy", "xpcs-denoise", "aps-8idi-legacy", "hdf5-dataset"):
        assert output_handler(tmp_path / "x.h5", source).name == "ours"
    boost_corr_file(tmp_path / "r.hdf", noisy_stack())
    ref = denoise_file(tmp_path / "r.hdf", tmp_path / "ref.npy", method="gaussian")
    assert ref["format"] == "npy"
    expected = np.load(tmp_path / "ref.npy")
    by_name = {h.name: h for h in C2_FORMATS}
    for fmt, out in (("ours", "d.h5"), ("aps", "d.hdf"), ("npy", "d.npy")):
        assert denoise_file(tmp_path / "r.hdf", tmp_path / out, method="gaussian", output_format=fmt)["format"] == fmt
        with open_c2(tmp_path / out) as src:  # recognised by the reader of the same handler
            assert src.source_format == by_name[fmt].source_format and src.n_rois == 3
            got = np.stack([src.c2(k) for k in range(3)])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # ours and APS store float32


def test_correlate_with_an_aps_qmap_keeps_its_q_phi_labels_and_mask(tmp_path):
    from xpcs_denoise import two_time

    rng = np.random.default_rng(3)
    frames = rng.poisson(5.0, (40, 6, 8)).astype(np.uint16)
    dq = np.zeros((6, 8), np.uint32)
    dq[:, :3], dq[:, 3:6], dq[:, 6:] = 3, 5, 6  # labels with gaps, as a qmap selection leaves them
    mask = np.ones((6, 8), np.int32)
    mask[0] = 0
    with h5py.File(tmp_path / "qmap.h5", "w") as f:
        f["qmap/dynamic_roi_map"], f["qmap/mask"] = dq, mask
        f["qmap/dynamic_v_list_dim0"], f["qmap/dynamic_v_list_dim1"] = Q, PHI
        f["qmap/dynamic_index_mapping"] = np.arange(6)
    np.save(tmp_path / "frames.npy", frames)
    correlate_file(tmp_path / "frames.npy", tmp_path / "qmap.h5", tmp_path / "c2.h5")
    got = read_c2(tmp_path / "c2.h5")
    assert got.rois.tolist() == [3, 5, 6]
    np.testing.assert_allclose(got.q, Q[(np.array([3, 5, 6]) - 1) // 2])
    np.testing.assert_allclose(got.phi, PHI[(np.array([3, 5, 6]) - 1) % 2])
    dense = np.select([dq == 3, dq == 5, dq == 6], [1, 2, 3]) * mask  # the masked row is left out
    np.testing.assert_allclose(got.c2, two_time(frames, dense), rtol=6e-8)


def test_denoise_streams_one_roi_at_a_time(tmp_path, monkeypatch):
    """Never more than one ROI's matrix is read before it is written (peak memory independent of K)."""
    import xpcs_denoise.io.formats as xio
    import xpcs_denoise.io.native as xnative

    np.save(tmp_path / "c2.npy", noisy_stack())
    events = []
    real_get, real_pack = xio.C2Source.c2, xnative.pack_upper
    monkeypatch.setattr(xio.C2Source, "c2", lambda self, k: events.append("read") or real_get(self, k))
    monkeypatch.setattr(xnative, "pack_upper",
                        lambda m, dtype=np.float32: events.append("write") or real_pack(m, dtype))
    denoise_file(tmp_path / "c2.npy", tmp_path / "d.h5", method="gaussian")
    assert events == ["read", "write", "write"] * 3  # c2 and c2_raw of ROI k written before ROI k + 1 is read
    with open_c2(tmp_path / "d.h5") as src:
        assert json.loads(src.attrs["not_denoised_rois"]) == [] and src.rois.tolist() == [1, 2, 3]


@pytest.mark.parametrize("method", ["cned", "pca"])
def test_banded_denoising_equals_whole_matrix_up_to_the_lag0_draws(method):
    from xpcs_denoise import denoise
    from xpcs_denoise.app.pipeline import denoise_banded

    n = 330
    rng = np.random.default_rng(0)
    truth = true_two_time(n, 0.03, 0.2)
    c = truth + rng.normal(0, 0.03, (n, n))
    c = (c + c.T) / 2
    whole, whole_sd = denoise(c, method, return_std=True)
    other_seed = denoise(c, method, seed=7)
    banded, banded_sd = denoise_banded(c, method, block=100)
    i, j = np.indices((n, n))
    band, off = np.abs(i - j) < 50, i != j
    np.testing.assert_allclose(banded[~band], whole[~band], rtol=1e-12)  # outside the band: the input, as whole
    # Inside the band: the same windows and scaling; only the random lag-0 draws differ, so the blocks differ
    # from the whole matrix by about what another seed gives, a hundredth of the change the method makes.
    rms = lambda a: np.sqrt(np.mean(a[band & off] ** 2))  # noqa: E731
    assert rms(banded - whole) < 3 * rms(other_seed - whole) + 1e-12
    assert rms(banded - whole) < 0.02 * rms(whole - c)
    assert abs(rms(banded - truth) - rms(whole - truth)) < 0.02 * rms(whole - truth)
    assert np.abs(banded_sd - whole_sd).max() < 0.05 * max(whole_sd.max(), 1e-12) + 1e-12


def test_report_of_an_aps_file_labels_bins_q_phi_and_scales_colours_on_the_denoised_band(tmp_path):
    from xpcs_denoise.app.pipeline import report_file
    from xpcs_denoise.app.report import _clim

    boost_corr_file(tmp_path / "r.hdf", noisy_stack())
    denoise_file(tmp_path / "r.hdf", tmp_path / "d.hdf", method="gaussian")
    report_file(tmp_path / "d.hdf", tmp_path / "rep")
    rows = list(csv.DictReader(open(tmp_path / "rep" / "fits.csv")))
    assert [int(r["roi"]) for r in rows] == BINS.tolist() * 2  # raw, then gaussian
    np.testing.assert_allclose([float(r["phi"]) for r in rows[:3]], PHI[(BINS - 1) % 2])
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "φ" in page and "processed bins" in page
    d = read_c2(tmp_path / "d.hdf")
    lo, hi = _clim({"raw": d.raw, "gaussian": d.c2}, 0, 50)
    band = np.concatenate([np.diagonal(d.c2[0], k) for k in range(1, 50)])
    assert (lo, hi) == tuple(np.percentile(band, [1, 99]))
    raw_band = np.concatenate([np.diagonal(d.raw[0], k) for k in range(1, 50)])
    assert hi - lo < 0.8 * np.ptp(raw_band)  # not stretched by the raw noise extremes


def test_report_goes_on_past_an_roi_without_contrast_and_zooms_on_long_series(tmp_path, monkeypatch):
    import xpcs_denoise.app.report as rep
    from xpcs_denoise.app.pipeline import report_file
    from xpcs_denoise.core.errors import XPCSNoContrastWarning

    rng = np.random.default_rng(4)
    n = 450  # > 8 windows of 50 frames: the report adds a zoom on the band
    flat = true_two_time(n, 0.05, -0.01) + rng.normal(0, 1e-4, (n, n))  # lag 1 below the baseline (Eq. 7)
    c2 = np.stack([true_two_time(n, 0.05, 0.2) + rng.normal(0, 0.01, (n, n)), flat])
    np.save(tmp_path / "c2.npy", (c2 + np.swapaxes(c2, 1, 2)) / 2)
    monkeypatch.setattr(rep, "_MAX_IMAGE", 200)  # draw block-averaged images, as for N > 800
    with pytest.warns(XPCSNoContrastWarning):
        report_file(tmp_path / "c2.npy", tmp_path / "rep", method="pca")
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"c2_maps.png", "c2_zoom.png", "gamma_age.png", "fits.csv"} <= files
    rows = list(csv.DictReader(open(tmp_path / "rep" / "fits.csv")))
    assert [(r["method"], r["roi"]) for r in rows] == [("raw", "1"), ("raw", "2"), ("pca", "1"), ("pca", "2")]
    assert rows[0]["success"] == "True" and rows[2]["success"] == "True"


def test_display_block_average():
    from xpcs_denoise.app.report import _display

    m = np.arange(36.0).reshape(6, 6)
    img, f = _display(m)
    assert f == 1 and img is m
    import xpcs_denoise.app.report as rep

    old, rep._MAX_IMAGE = rep._MAX_IMAGE, 2
    try:
        img, f = _display(m)
    finally:
        rep._MAX_IMAGE = old
    assert f == 3 and img.shape == (2, 2) and img[0, 0] == np.mean(m[:3, :3]) and img[1, 1] == np.mean(m[3:, 3:])
