"""Bad-frame detection (find_bad_frames) and frame exclusion in the 1TCF, cuts, fits, files and CLI."""

import json

import h5py
import numpy as np
import pytest

import xpcs_denoise as xd
from xpcs_denoise import XPCSInputError, find_bad_frames, one_time_from_two_time, time_resolved_cuts, two_time
from xpcs_denoise.core.badframes import (
    apply_exclusion,
    exclusion_mask,
    fill_excluded,
    inject_bad_frames,
    parse_frame_list,
)
from xpcs_denoise.core.simulation import true_two_time

# (frames, pixels, Γ in frames⁻¹, mean count): a few hundred to a few thousand photons per frame, where every
# kind is found from the 2TCF (benchmarks/bench_bad_frames.py measures the whole range).
CASES = [(400, 3000, 0.02, 0.5, 11), (400, 2000, 0.2, 1.0, 12), (400, 8000, 0.005, 0.2, 13)]


@pytest.fixture(scope="module")
def injected():
    out = []
    for n, p, g, c, seed in CASES:
        sim = xd.simulate_speckle(n, p, gamma=g, beta=0.2, mean_count=c, seed=seed)
        frames, bad, kinds = inject_bad_frames(sim, fraction=0.02, seed=seed)
        zero = bad[np.array(kinds) == "zero"]
        c2 = two_time(frames, sim.labels, exclude=zero)  # a frame with no photon has no 2TCF row
        out.append((sim, frames, bad, kinds, c2))
    return out


@pytest.mark.slow
def test_injected_bad_frames_are_found_without_false_alarms(injected):
    found = {"c2": 0, "frames": 0}
    false = {"c2": 0, "frames": 0}
    n_bad = n_good = 0
    seen = set()
    for sim, frames, bad, kinds, c2 in injected:
        seen.update(kinds)
        m_c2 = find_bad_frames(c2)
        m_fr = find_bad_frames(c2, frames=frames, labels=sim.labels)
        assert m_c2.shape == m_fr.shape == (1, sim.frames.shape[0])
        good = np.ones(m_c2.shape[1], bool)
        good[bad] = False
        for key, m in (("c2", m_c2[0]), ("frames", m_fr[0])):
            found[key] += int(m[bad].sum())
            false[key] += int(m[good].sum())
        n_bad += bad.size
        n_good += int(good.sum())
    assert seen == {"spike", "zero", "cosmic", "decorrelated"}
    assert n_bad == 24
    for key in found:
        assert found[key] / n_bad >= 0.95, (key, found, n_bad)
        assert false[key] <= 1, (key, false, n_good)  # ≤ 1 per 1,000 frames over 1,176 frames


@pytest.mark.slow
def test_clean_series_give_no_flag(injected):
    for sim, *_ in injected:
        assert not find_bad_frames(sim.two_time(), frames=sim.frames, labels=sim.labels).any()


def test_each_row_test_sees_its_event():
    sim = xd.simulate_speckle(300, 4000, gamma=0.03, beta=0.25, mean_count=0.5, seed=5)
    frames = sim.frames.copy()
    frames[100] = np.roll(frames[100], 7)          # shifted speckle: the row loses the decay
    frames[200, 0, 50:53] += 300                   # cosmic ray: lag 0 and the row's spread
    mask, scores = find_bad_frames(two_time(frames, sim.labels), return_scores=True)
    assert np.flatnonzero(mask[0]).tolist() == [100, 200]
    assert scores["c2_match"][0, 100] < -6 and abs(scores["c2_match"][0, 150]) < 4
    assert scores["c2_lag0"][0, 200] > 6


def test_a_gain_jump_is_invisible_in_the_2tcf_but_found_from_the_frames():
    sim = xd.simulate_speckle(300, 3000, gamma=0.05, beta=0.2, mean_count=0.5, seed=2)
    frames = sim.frames.copy()
    frames[120] *= 4                               # every count of one frame × 4: Eq. 1 divides it out
    c2 = two_time(frames, sim.labels)
    clean = sim.two_time()
    off = ~np.eye(300, dtype=bool)
    np.testing.assert_allclose(c2[0][off], clean[0][off], rtol=1e-12)
    assert not find_bad_frames(c2, lag0=False)[0, 120]
    m = find_bad_frames(c2, frames=frames, labels=sim.labels)
    assert np.flatnonzero(m[0]).tolist() == [120]


def test_several_rois_and_frames_only():
    sim = xd.simulate_speckle(200, 2000, gamma=[0.01, 0.1], beta=0.2, mean_count=[0.3, 1.0], n_rois=2, seed=4)
    frames = sim.frames.copy()
    frames[50, 1] = 0                              # beam dump seen in ROI 2 only
    m = find_bad_frames(frames=frames, labels=sim.labels)
    assert m.shape == (2, 200) and np.flatnonzero(m[1]).tolist() == [50] and not m[0].any()


def test_find_bad_frames_bad_input():
    with pytest.raises(XPCSInputError, match="square"):
        find_bad_frames(np.ones((20, 30)))
    with pytest.raises(XPCSInputError, match="labels"):
        find_bad_frames(np.ones((20, 20)), frames=np.ones((20, 5)))
    with pytest.raises(XPCSInputError, match="threshold"):
        find_bad_frames(np.ones((20, 20)), threshold=0)
    with pytest.raises(XPCSInputError, match="ROI"):
        find_bad_frames(np.ones((2, 20, 20)), frames=np.ones((20, 5)), labels=np.ones(5, int))


def test_frame_lists_and_masks():
    assert parse_frame_list("12, 40-43") == [12, 40, 41, 42, 43]
    for bad in ("x", "4-2", "-3", ",", "1.5"):
        with pytest.raises(XPCSInputError):
            parse_frame_list(bad)
    m = exclusion_mask("3,5", 10, 2)
    assert m.shape == (2, 10) and np.flatnonzero(m[1]).tolist() == [3, 5]
    assert exclusion_mask([], 10) is None and exclusion_mask(None, 10) is None
    with pytest.raises(XPCSInputError, match="outside"):
        exclusion_mask([10], 10)
    with pytest.raises(XPCSInputError, match="shape"):
        exclusion_mask(np.zeros(9, bool), 10)
    with pytest.raises(XPCSInputError, match="fewer than 2"):
        exclusion_mask(list(range(9)), 10)


def test_excluded_frames_are_ignored_in_the_1tcf_and_cuts():
    x = true_two_time(80, 0.04, 0.2)
    corrupt = x.copy()
    corrupt[[10, 33], :] = corrupt[:, [10, 33]] = 5.0   # two bad rows/columns
    g = one_time_from_two_time(corrupt, exclude=[10, 33])
    np.testing.assert_allclose(g, one_time_from_two_time(x), rtol=1e-12)
    assert not np.allclose(one_time_from_two_time(corrupt), one_time_from_two_time(x))
    mask = np.zeros((3, 80), bool)
    mask[:, 10] = mask[:, 33] = True
    gb = one_time_from_two_time(np.stack([corrupt] * 3), exclude=mask)
    np.testing.assert_allclose(gb, np.stack([one_time_from_two_time(x)] * 3), rtol=1e-12)
    ages, lags, cuts = time_resolved_cuts(corrupt, 3, max_lag=20, exclude="10,33")
    _, _, ref = time_resolved_cuts(x, 3, max_lag=20)
    ok = np.isfinite(cuts)
    np.testing.assert_allclose(cuts[ok], ref[ok], rtol=1e-12)
    assert ok.sum() >= np.isfinite(ref).sum() - 6  # only cut values made of excluded pixels alone are lost
    fit = xd.fit_g2(g[:40], fix={"alpha": 1.0})
    assert fit.success and abs(fit.gamma[()] / 0.04 - 1) < 1e-6


def test_two_time_exclude_allows_a_frame_without_photons():
    sim = xd.simulate_speckle(60, 500, gamma=0.05, mean_count=0.5, seed=1)
    frames = sim.frames.copy()
    frames[20] = 0
    with pytest.raises(XPCSInputError, match="exclude"):
        two_time(frames, sim.labels)
    c2 = two_time(frames, sim.labels, exclude=[20])
    assert np.isnan(c2[0, 20]).all() and np.isnan(c2[0, :, 20]).all()
    ref = sim.two_time()
    keep = np.delete(np.arange(60), 20)
    np.testing.assert_allclose(c2[0][np.ix_(keep, keep)], ref[0][np.ix_(keep, keep)], rtol=1e-12)


def test_fill_interpolates_along_diagonals():
    x = true_two_time(70, 0.03, 0.2, mean_count=0.5)   # stationary: every diagonal is constant
    holes = apply_exclusion(x, [0, 31, 32, 69])
    filled = fill_excluded(holes, [0, 31, 32, 69])
    far = np.abs(np.subtract.outer(np.arange(70), np.arange(70))) >= 68  # corner diagonals: all excluded
    np.testing.assert_allclose(filled[~far], x[~far], rtol=1e-12)
    np.testing.assert_allclose(filled[far], x[0, 67], rtol=1e-12)  # the nearest diagonal with values
    ageing = true_two_time(70, np.linspace(0.01, 0.05, 70), 0.2)
    f2 = fill_excluded(ageing, [35])
    assert np.all(np.isfinite(f2)) and np.max(np.abs(f2 - ageing)) < 5e-3
    np.testing.assert_allclose(f2, f2.T)


@pytest.fixture
def frames_with_bad(tmp_path):
    sim = xd.simulate_speckle(150, 3000, gamma=0.05, beta=0.25, mean_count=0.5, seed=8)
    frames = sim.frames.copy()
    frames[40] = 0
    frames[90, 0, 100:102] += 400
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "rois.npy", sim.labels)
    return tmp_path


def test_files_carry_the_exclusion_from_correlate_to_fit(frames_with_bad):
    from xpcs_denoise.app.pipeline import correlate_file, denoise_file, fit_file

    d = frames_with_bad
    s = correlate_file(d / "frames.npy", d / "rois.npy", d / "c2.h5", exclude="auto")
    assert s["excluded_frames"] == [[40, 90]]
    data = xd.read_c2(d / "c2.h5")
    assert np.isnan(data.c2[0, 40]).all() and np.isnan(data.c2[0, 90]).all()
    assert data.attrs["excluded_frames"] == [[40, 90]]
    s2 = denoise_file(d / "c2.h5", d / "den.h5", method="gaussian")
    assert s2["excluded_frames"] == [[40, 90]]
    den = xd.read_c2(d / "den.h5")
    assert np.all(np.isfinite(den.c2)) and den.attrs["excluded_frames"] == [[40, 90]]
    with h5py.File(d / "den.h5") as f:
        g2 = f["g2"][()]
    np.testing.assert_allclose(g2, one_time_from_two_time(den.c2, exclude=[40, 90]))
    s3 = fit_file(d / "den.h5", d / "fit.csv", fix_alpha=True, exclude="5")
    assert s3["excluded_frames"] == [[5, 40, 90]]
    meta = json.loads((d / "fit.json").read_text())
    assert meta["excluded_frames"] == [[5, 40, 90]] and meta["rows"][0]["success"]
    assert abs(meta["rows"][0]["gamma"] / 0.05 - 1) < 0.2


@pytest.mark.slow
def test_cli_exclude_frames(frames_with_bad):
    from .test_cli import run

    d = frames_with_bad
    r = run("correlate", str(d / "frames.npy"), "--rois", str(d / "rois.npy"), "-o", str(d / "c2.h5"),
            "--exclude-frames", "auto", "-q")
    assert r.returncode == 0, r.stderr
    assert "2 frame(s) excluded: ROI 1 [40, 90]" in r.stdout
    r = run("fit", str(d / "c2.h5"), "-o", str(d / "fit.csv"), "--exclude-frames", "12,20-21", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["excluded_frames"] == [[12, 20, 21, 40, 90]]
    before = sorted(p.name for p in d.iterdir())
    r = run("denoise", str(d / "c2.h5"), "-o", str(d / "den.h5"), "--exclude-frames", "12,x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "12,40-45" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before
    r = run("correlate", str(d / "frames.npy"), "--rois", str(d / "rois.npy"), "-o", str(d / "c2b.h5"), "-q")
    assert r.returncode == 2 and "--exclude-frames auto" in r.stderr


def test_a_shifted_speckle_is_seen_only_while_its_neighbours_are_still_correlated():
    """The documented limit: a displaced speckle pattern is found by its lost correlation with its neighbours;
    where the dynamics already decorrelate the neighbours (e^{-2Γ} ≈ 0), it looks like any good frame."""
    found = {}
    for gamma in (0.01, 3.0):
        sim = xd.simulate_speckle(300, 4000, gamma=gamma, beta=0.25, mean_count=0.5, seed=21)
        frames = sim.frames.copy()
        frames[150] = np.roll(frames[150], 11)
        found[gamma] = np.flatnonzero(find_bad_frames(two_time(frames, sim.labels))[0]).tolist()
    assert found[0.01] == [150]
    assert found[3.0] == []          # undetectable, and nothing else flagged either


def test_fit_of_a_denoised_file_excluding_one_frame(tmp_path):
    """Excluding one frame when fitting a denoised file drops that frame only (its NaN column does not make
    every other row count as excluded) and leaves a well-determined Γ where it was."""
    import csv
    import warnings

    from xpcs_denoise.core.simulation import simulate_crops

    c2, _, _ = simulate_crops(2, 150, seed=11, gamma_range=(0.04, 0.06), count_range=(0.5, 0.8),
                              pixel_range=(5000, 8000))
    xd.write_c2(tmp_path / "in.h5", c2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xd.denoise_file(tmp_path / "in.h5", tmp_path / "den.h5", anomaly=False)
        xd.fit_file(tmp_path / "den.h5", tmp_path / "all.csv")
        xd.fit_file(tmp_path / "den.h5", tmp_path / "ex.csv", exclude="30")
    rows = [list(csv.DictReader(open(tmp_path / f))) for f in ("all.csv", "ex.csv")]
    for a, b in zip(*rows, strict=True):
        assert b["success"] == "True"
        assert abs(float(b["gamma"]) / float(a["gamma"]) - 1) < 0.1
