"""Anomaly scores: where a 2TCF holds structure the ensemble has not learned."""

import warnings

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle
from xpcs_denoise.nn.denoiser import anomaly_scores


def test_residual_rises_where_the_2tcf_holds_unlearned_structure():
    sim = simulate_speckle(200, 3000, gamma=0.05, beta=0.2, mean_count=0.3, seed=1)
    c2 = sim.two_time()[0]
    t = np.arange(200)
    bad = c2.copy()
    block = (t[:, None] >= 100) & (t[:, None] < 150) & (t[None, :] >= 100) & (t[None, :] < 150)
    bad[block] += (0.15 * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6))[block]  # an oscillation, frames 100-150
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean, odd = anomaly_scores(c2, step=10), anomaly_scores(bad, step=10)
    assert clean["residual"].shape == clean["latent_distance"].shape == (16,) and clean["size"] == 50
    # like the training crops: residuals near the training median, latent distances near √8
    assert np.all(np.abs(clean["residual"] - 0.6) < 0.3) and np.all(clean["latent_distance"] < 5)
    inside = (odd["starts"] >= 80) & (odd["starts"] <= 120)
    far = (odd["starts"] + 50 <= 100) | (odd["starts"] >= 150)
    assert odd["residual"][inside].max() > 1.3 * clean["residual"].max()
    np.testing.assert_allclose(odd["residual"][far], clean["residual"][far], rtol=0.15)


def test_a_model_without_reference_is_refused():
    from xpcs_denoise import Denoiser

    den = Denoiser.pretrained()
    bare = Denoiser(den.model, {k: v for k, v in den.card.items() if k != "latent_reference"})
    with pytest.raises(XPCSInputError, match="latent_reference"):
        anomaly_scores(np.ones((50, 50)) + np.eye(50), model=bare)


# --- scores stored with denoise outputs and shown in the report (issue 18 item 3) ---

import json  # noqa: E402

import h5py  # noqa: E402

from xpcs_denoise.app import pipeline  # noqa: E402
from xpcs_denoise.io.formats import APS_ANOMALY_GROUP, open_c2, write_aps_c2, write_c2  # noqa: E402
from xpcs_denoise.nn.anomaly import anomaly_map, flagged_share  # noqa: E402
from xpcs_denoise.nn.denoiser import _pretrained  # noqa: E402

T0, T1 = 100, 150  # frames of the injected oscillation


def _series(inject: bool, gamma=0.05, seed=1, n=200):
    c2 = simulate_speckle(n, 2000, gamma=gamma, beta=0.2, mean_count=0.3, seed=seed).two_time()[0]
    if inject:  # an oscillation of 7.5x the contrast in frames 100-150: nothing like the training data
        t = np.arange(n)
        blk = (t[:, None] >= T0) & (t[:, None] < T1) & (t[None, :] >= T0) & (t[None, :] < T1)
        c2[blk] += (1.5 * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6))[blk]
    return c2


@pytest.fixture(scope="module")
def pair():
    """Two ROIs: a series like the training data, the same with the injected oscillation."""
    return np.stack([_series(False), _series(True)])


def test_the_threshold_is_calibrated_on_held_out_real_crops_not_the_users_data():
    cal = _pretrained().card["anomaly_threshold"]
    assert cal["split"].startswith("validation") and cal["quantile"] == 0.99 and cal["n_crops"] > 1000
    assert abs(cal["held_out_flagged_share"] - 0.01) < 0.002  # the 99th percentile, by construction
    assert "scripts/anomaly_threshold.py" in cal["command"]


def test_denoise_scores_the_windows_it_denoises_in_the_same_pass(pair):
    den = _pretrained()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = den.denoise_full(pair, step=5)
        res = den.denoise_full(pair, step=5, anomaly=True)
    np.testing.assert_array_equal(res.c2, plain.c2)  # scoring does not change the denoised values
    a = res.anomaly
    # forward starts 0, 5, ..., 150 and backward 150, 145, ...: the same 31 positions, each once
    np.testing.assert_array_equal(a["starts"], np.arange(0, 151, 5))
    assert a["score"].shape == a["flagged"].shape == (2, 31) and a["threshold"] > 1
    # the clean series: no window outside what the model learned
    assert not a["flagged"][0].any() and a["score"][0].max() < 0.8 * a["threshold"]
    # the injected one: flagged windows, and every flagged window overlaps frames 100-150
    hit = a["starts"][a["flagged"][1]]
    assert hit.size >= 2 and np.all((hit + 50 > T0) & (hit < T1))
    far = (a["starts"] + 50 <= T0 - 10) | (a["starts"] >= T1 + 10)
    np.testing.assert_allclose(a["score"][1][far], a["score"][0][far], rtol=0.3)


def test_inside_range_series_are_not_flagged():
    den = _pretrained()
    c2 = np.stack([_series(False, gamma=g, seed=s) for g, s in ((0.01, 2), (0.05, 3), (0.2, 4))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = den.denoise_full(c2, step=5, anomaly=True).anomaly
    assert flagged_share(a["flagged"], a["score"]).max() == 0.0


def test_banded_denoising_scores_the_same_windows(pair):
    from xpcs_denoise.app.pipeline import denoise_banded

    den = _pretrained()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = denoise_banded(pair[1], model=den, anomaly=True)[2]  # 200 <= 3 x 512: one piece
        banded = denoise_banded(pair[1], model=den, anomaly=True, block=60)[2]  # four diagonal blocks
    np.testing.assert_array_equal(banded["starts"], whole["starts"])
    # other lag-0 draws per block: the scores agree to a few per cent, the flags exactly here
    np.testing.assert_allclose(banded["score"], whole["score"], rtol=0.1)
    np.testing.assert_array_equal(banded["flagged"], whole["flagged"])


def test_anomaly_map_known_answer():
    m = anomaly_map([0, 2], 3, [1.0, 5.0], 6)
    assert m[0, 0] == 1.0 and m[2, 2] == 5.0 and m[4, 4] == 5.0 and m[1, 2] == 1.0 and m[3, 2] == 5.0
    assert np.isnan(m[0, 5]) and np.isnan(m[5, 0]) and np.isnan(m[0, 3])  # outside every window
    np.testing.assert_array_equal(np.isnan(anomaly_map([0], 3, [np.nan], 4)), np.ones((4, 4), bool))


def test_scores_round_trip_through_our_format_and_the_aps_file(pair, tmp_path):
    write_c2(tmp_path / "in.h5", pair, q=[0.01, 0.02])
    write_aps_c2(tmp_path / "aps.h5", pair, q=[0.01, 0.02])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # denoise_file works one ROI at a time on the file's float32 values: the reference does the same
        one = [_pretrained().denoise_full(c, step=5, anomaly=True).anomaly for c in pair.astype(np.float32)]
        ref = {k: np.stack([o[k] for o in one]) for k in ("score", "flagged")}
        ref.update(starts=one[0]["starts"], threshold=one[0]["threshold"])
        s1 = pipeline.denoise_file(tmp_path / "in.h5", tmp_path / "out.h5")
        s2 = pipeline.denoise_file(tmp_path / "aps.h5", tmp_path / "out_aps.h5")
    assert s1["anomalous_share"][0] == 0 and s1["anomalous_share"][1] > 0.05
    assert s2["anomalous_share"] == s1["anomalous_share"]
    for name in ("out.h5", "out_aps.h5"):
        with open_c2(tmp_path / name) as src:
            a = src.anomaly()
            assert src.n_rois == 2 and src.has_raw  # the file still reads as a 2TCF file
            np.testing.assert_allclose(src.raw(1), pair[1], rtol=1e-6)
        np.testing.assert_array_equal(a["window_start"], ref["starts"])
        np.testing.assert_allclose(a["score"], ref["score"], rtol=1e-5)
        np.testing.assert_array_equal(a["flagged"], ref["flagged"])
        assert a["attrs"]["window"] == 50 and a["attrs"]["step"] == 5
        assert a["attrs"]["threshold"] == ref["threshold"] and "held-out" in a["attrs"]["threshold_source"]
    with h5py.File(tmp_path / "out_aps.h5") as f:  # our own group; boost_corr's maps where readers expect them
        assert sorted(f["xpcs/twotime/correlation_map"]) == ["c2_00001", "c2_00002"]
        assert f[APS_ANOMALY_GROUP]["score"].shape == (2, 31)
    with warnings.catch_warnings():  # denoising the APS output again replaces its scores, no error
        warnings.simplefilter("ignore")
        pipeline.denoise_file(tmp_path / "out_aps.h5", tmp_path / "again.h5", anomaly=False)
        pipeline.denoise_file(tmp_path / "out.h5", tmp_path / "x.npy")
    with open_c2(tmp_path / "again.h5") as src:
        assert not src.has_anomaly  # the old scores belonged to the maps replaced
    with open_c2(tmp_path / "x.npy") as src:
        assert src.anomaly() is None


@pytest.mark.slow
def test_report_and_fit_show_the_flagged_share(pair, tmp_path):
    write_c2(tmp_path / "in.h5", pair, q=[0.01, 0.02])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.denoise_file(tmp_path / "in.h5", tmp_path / "out.h5")
        pipeline.report_file(tmp_path / "out.h5", tmp_path / "rep")
        pipeline.fit_file(tmp_path / "out.h5", tmp_path / "fits.csv")
    with open_c2(tmp_path / "out.h5") as src:
        a = src.anomaly()
    share = flagged_share(a["flagged"], a["score"])
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert "anomaly.png" in summary["figures"] and (tmp_path / "rep" / "anomaly.png").stat().st_size > 10_000
    got = {r["roi"]: r for r in summary["anomaly"]["rois"]}
    assert got[1]["anomalous_share"] == 0 and got[2]["anomalous_share"] == pytest.approx(share[1])
    assert got[2]["anomaly_score_max"] == pytest.approx(np.nanmax(a["score"][1]))
    assert summary["anomaly"]["rois_with_flagged_windows"] == [2]
    assert "anomalous_share" in (tmp_path / "rep" / "fits.csv").read_text().splitlines()[0]
    html_text = (tmp_path / "rep" / "index.html").read_text()
    assert "anomaly.png" in html_text and "ROI(s) 2 have windows outside" in html_text
    import csv

    rows = list(csv.DictReader((tmp_path / "fits.csv").open()))
    assert [float(r["anomalous_share"]) for r in rows] == pytest.approx(list(share))


@pytest.mark.slow
def test_cli_denoise_names_flagged_rois_and_no_anomaly_skips_the_scores(pair, tmp_path):
    from .test_cli import run

    np.save(tmp_path / "c2.npy", pair)
    r = run("denoise", str(tmp_path / "c2.npy"), "-o", str(tmp_path / "out.h5"), "-q")
    assert r.returncode == 0, r.stderr
    assert "ROI [2] have windows outside what the model learned" in r.stdout
    r = run("denoise", str(tmp_path / "c2.npy"), "-o", str(tmp_path / "bare.h5"), "-q", "--no-anomaly")
    assert r.returncode == 0, r.stderr
    assert "outside" not in r.stdout
    with open_c2(tmp_path / "out.h5") as a, open_c2(tmp_path / "bare.h5") as b:
        assert a.anomaly()["flagged"][1].any() and b.anomaly() is None


def test_gamma_q_figure_rings_rois_with_flagged_windows(tmp_path, monkeypatch):
    """The Γ(q) panel rings exactly the ROIs whose windows were flagged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure

    import xpcs_denoise as xd
    from xpcs_denoise.app import report

    q = np.array([0.004, 0.005, 0.006])
    fits = {"cned": xd.fit_g2(np.exp(-2 * np.outer([0.02, 0.04, 0.06], np.arange(1, 40))) * 0.2 + 1)}
    saved = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, path, **kw):
        saved["fig"] = fig
        return real_savefig(fig, path, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    report._fig_gamma_q(tmp_path / "g.png", q, None, fits, None, np.array([False, True, False]))
    ringed = [ln for ln in saved["fig"].axes[0].lines if ln.get_markeredgecolor() == "red"]
    assert len(ringed) == 1
    np.testing.assert_allclose(ringed[0].get_xdata(), [0.005])
    np.testing.assert_allclose(ringed[0].get_ydata(), [fits["cned"].gamma[1]])


def test_window_noise_is_the_spread_along_diagonals():
    from xpcs_denoise.nn.anomaly import window_noise

    t = np.arange(50)
    clean = 1 + np.exp(-0.1 * np.abs(t[:, None] - t[None, :]))
    assert window_noise(clean[None])[0] == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    assert window_noise((clean + rng.normal(0, 0.3, clean.shape))[None])[0] == pytest.approx(0.3, rel=0.05)


def test_noise_factor_follows_the_card_and_never_lowers_a_score():
    from xpcs_denoise.nn.anomaly import combined_score, noise_factor

    cal = {"latent_scale": 2.0, "residual_scale": 1.0, "threshold": 4.0,
           "by_noise": {"log10_noise": [-1.0, 0.0, 0.5], "factor": [1.0, 1.0, 9.0]}}
    np.testing.assert_allclose(noise_factor([0.01, 0.5, 1.0, 10 ** 0.25, 100.0], cal), [1, 1, 1, 5, np.inf])
    # beyond the noisiest calibration window the ensemble's score says nothing: infinite factor, score 0
    cal["by_noise"]["max_log10_noise"] = 2.5
    np.testing.assert_allclose(noise_factor([100.0, 1e3], cal), [9, np.inf])
    np.testing.assert_allclose(combined_score([4.0, 4.0], [1.0, 1.0], cal, noise=[0.1, 10 ** 0.25]), [2.0, 0.4])
    assert noise_factor([1.0], {"threshold": 4.0})[0] == 1.0  # a card without by_noise: scores as before


def test_clean_data_with_few_photons_are_not_flagged_and_an_oscillation_still_stands_out():
    """Issue 31: 51 of 51 windows of artefact-free low-count ROIs were flagged (the score grew with the noise:
    at 0.03 photons per pixel per frame, 60 per frame in the ROI, every window). The card's by_noise divides out what
    noise alone scores; an oscillation the model never saw still stands out where photons are plenty."""
    t = np.arange(150)
    low = simulate_speckle(150, 2000, gamma=[0.02, 0.05, 0.1], beta=0.2, mean_count=0.03, n_rois=3,
                           seed=2).two_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = np.concatenate([anomaly_scores(c, step=10)["flagged"] for c in low])
    assert flagged.mean() <= 0.05
    high = simulate_speckle(150, 2000, gamma=0.05, beta=0.2, mean_count=1.0, seed=3).two_time()[0]
    odd = high + 3.0 * 0.2 * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o, h = anomaly_scores(odd, step=10), anomaly_scores(high, step=10)
    # where photons are plenty the noise factor is 1, and the oscillation (in lag: no Eq. 3 decay rises again) is
    # flagged in every window by its structure score, the clean series in none
    cal = _pretrained().card["anomaly_threshold"]
    base = np.fmax(o["latent_distance"] / cal["latent_scale"], o["residual"] / cal["residual_scale"])
    st = np.max(o["structure"] / cal["structure"]["scale"], axis=-1) * cal["threshold"]
    np.testing.assert_allclose(o["score"], np.fmax(base, st), rtol=1e-9)
    assert o["flagged"].all() and not h["flagged"].any()


def test_structure_scores_are_one_for_noise_and_flag_steps_and_oscillations_of_twice_the_contrast():
    """Issue 31: no flag on artefact-free simulated data across 0.01–1 photons per pixel per frame, while injected
    oscillations and steps of 2× the contrast are flagged (the ensemble's latent distance and residual flagged
    none of them: 0 % of windows at 0.03–1 photons). Series and seeds apart from the calibration's."""
    from xpcs_denoise.nn.anomaly import STRUCTURE, window_structure

    t = np.arange(150)
    lag, age = t[:, None] - t[None, :], (t[:, None] + t[None, :]) / 2
    clean_flags = []
    for mc in (0.03, 0.3, 1.0):
        c2s = simulate_speckle(150, 2000, gamma=[0.01, 0.05, 0.2], beta=0.2, mean_count=mc, n_rois=3,
                               seed=4242).two_time()
        wins = np.stack([c[s:s + 50, s:s + 50] for c in c2s for s in range(0, 101, 10)])
        st = window_structure(wins)
        assert st.shape == (wins.shape[0], len(STRUCTURE))
        assert np.all((np.median(st, axis=0) > 0.2) & (np.median(st, axis=0) < 2.0))  # about 1: noise alone
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean_flags += [anomaly_scores(c, step=10)["flagged"] for c in c2s]
            if mc < 0.3:
                continue
            c2 = c2s[1]
            for odd in (c2 + 0.4 * np.cos(2 * np.pi * lag / 6), c2 + 0.4 * np.cos(2 * np.pi * age / 20)):
                assert anomaly_scores(odd, step=10)["flagged"].mean() > 0.9
            stepped = c2.copy()
            stepped[75:, 75:] += 0.4
            s = anomaly_scores(stepped, step=10)
            inside = (s["starts"] + 10 <= 75) & (75 < s["starts"] + 40)
            assert s["flagged"][inside].all()
    assert np.concatenate(clean_flags).mean() <= 0.01
