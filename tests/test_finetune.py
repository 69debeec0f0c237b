"""Noise2Noise fine-tuning on the user's frames."""

import json
import warnings

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle, two_time
from xpcs_denoise.nn.finetune import finetune, half_split_two_times, noise2noise_pairs


def test_halves_of_identical_pixels_equal_the_whole():
    """Pixels that all see the same counts: every half has the 2TCF of the whole ROI."""
    rng = np.random.default_rng(0)
    per_frame = rng.poisson(5.0, (60, 1)).astype(float) + 1
    frames = np.repeat(per_frame, 40, axis=1)  # (T, P)
    labels = np.repeat([1, 2], 20)
    a, b = half_split_two_times(frames, labels, n_splits=3, seed=1)
    whole = two_time(frames, labels)
    assert a.shape == b.shape == (3, 2, 60, 60)
    np.testing.assert_allclose(a, np.broadcast_to(whole, a.shape), rtol=1e-12)
    np.testing.assert_allclose(b, np.broadcast_to(whole, b.shape), rtol=1e-12)


def test_halves_are_disjoint_and_noise_is_independent():
    sim = simulate_speckle(60, 4000, gamma=0.05, beta=0.2, mean_count=0.5, seed=2)
    a, b = half_split_two_times(sim.frames, sim.labels, n_splits=1, seed=3)
    whole = sim.two_time()
    iu = np.triu_indices(60, 1)
    ra, rb = (a[0, 0] - whole[0])[iu], (b[0, 0] - whole[0])[iu]
    # the two halves' deviations from the whole are anti-correlated (they average to about the whole)...
    assert np.corrcoef(ra, rb)[0, 1] < -0.5
    # ...and their own noise is independent: the halves differ by about √2 × one half's noise
    da = (a[0, 0] - sim.true_two_time()[0])[iu]
    db = (b[0, 0] - sim.true_two_time()[0])[iu]
    assert abs(np.corrcoef(da, db)[0, 1]) < 0.2


def test_pairs_are_scaled_by_the_input_contrast():
    n = 80
    t = np.arange(n)
    c2 = 1 + 0.3 * np.exp(-0.1 * np.abs(t[:, None] - t[None, :]))
    x, y = noise2noise_pairs(c2[None], (2 * c2 - 1)[None], 50, step=10, every=(1,))
    # the first half of the pairs are A → B: the input at lag 1 is 2 (Eq. 5), the target has twice its excess
    half = len(x) // 2
    np.testing.assert_allclose(np.diagonal(x[:half], 1, -2, -1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.diagonal(y[:half], 1, -2, -1), 3.0, rtol=1e-6)


def test_too_few_frames_or_pixels_are_refused(tmp_path):
    sim = simulate_speckle(80, 200, gamma=0.05, seed=1)
    with pytest.raises(XPCSInputError, match="too few"):
        finetune(sim.frames, sim.labels, tmp_path / "m", epochs=1)
    with pytest.raises(XPCSInputError, match="fewer than 4 pixels"):
        half_split_two_times(sim.frames[:, :, :3], sim.labels[:, :3])


@pytest.mark.slow
def test_finetune_writes_a_model_that_denoise_uses(tmp_path):
    from xpcs_denoise import Denoiser, anomaly_scores, denoise
    from xpcs_denoise.app.cli import main

    sim = simulate_speckle(220, 1500, gamma=[0.04, 0.1], beta=0.2, mean_count=0.2, n_rois=2, seed=4)
    np.save(tmp_path / "frames.npy", sim.frames)
    np.save(tmp_path / "labels.npy", sim.labels)
    rc = main(["finetune", str(tmp_path / "frames.npy"), "--rois", str(tmp_path / "labels.npy"),
               "-o", str(tmp_path / "tuned"), "--epochs", "2", "-q"])
    assert rc == 0
    card = json.loads((tmp_path / "tuned" / "model_card.json").read_text())
    ft = card["finetune"]
    assert ft["base_model_sha256"] == Denoiser.pretrained().card["weights_sha256"]
    assert ft["frames"] == 220 and ft["rois"] == 2 and len(ft["data_sha256"]) == 64
    # never worse on the held-out frames: a member keeps its start unless validation improves
    assert all(a <= b + 1e-7 for a, b in zip(ft["val_cost_after"], ft["val_cost_before"], strict=True))
    tuned = Denoiser.from_directory(tmp_path / "tuned")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = denoise(sim.two_time(), model=tuned)
    assert out.shape == (2, 220, 220) and np.all(np.isfinite(out))
    # Its own calibration of Γ's σ, measured again for the tuned weights; the base's kept for reference.
    cal = card["calibration"]
    assert cal["source"]["model"] == card["weights_sha256"] != card["base_calibration"]["source"]["model"]
    from xpcs_denoise.analysis.uncertainty import fit_two_time

    r = fit_two_time(sim.two_time()[:, :60, :60], model=tuned)
    assert set(r.cell) == {"paper-2021/short/free"} and np.all(r.fit.gamma_err > 0)
    # Its own anomaly calibration: the training stretch is the reference, the held-out frames set the threshold.
    assert card["anomaly_threshold"]["n_crops"] > ft["val_pairs"]  # every held-out window position
    assert "fine-tuning" in card["latent_reference"]["source"]
    # the structure scores use no network: the base card's scales carry over
    from xpcs_denoise.nn.denoiser import _pretrained

    assert card["anomaly_threshold"]["structure"] == _pretrained().card["anomaly_threshold"]["structure"]
    # and what noise alone scores with the tuned weights, per noise level (issue 31: few-photon data not flagged)
    by = card["anomaly_threshold"]["by_noise"]
    assert len(by["factor"]) == len(by["log10_noise"]) >= 4 and min(by["factor"]) >= 1.0
    assert np.all(np.diff(by["factor"]) >= 0) and by["n_windows"] > 500
    scores = anomaly_scores(sim.two_time()[0], model=tuned, step=10)
    assert np.mean(scores["flagged"]) <= 0.2  # the series it was tuned on is familiar
    t = np.arange(220)
    odd = sim.two_time()[0] + 1.5 * 0.2 * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6)  # never seen
    assert np.mean(anomaly_scores(odd, model=tuned, step=10)["flagged"]) >= 0.8
    assert main(["finetune", str(tmp_path / "frames.npy"), "--rois", str(tmp_path / "labels.npy"),
                 "-o", str(tmp_path / "tuned"), "--epochs", "1", "-q"]) == 2  # exists, no --overwrite


def test_a_half_without_photons_in_a_frame_gives_nan_rows_and_no_pair_across_them():
    """A sparse ROI whose half sees no photon in one frame: that half's row is NaN, crops across it dropped."""
    rng = np.random.default_rng(4)
    frames = rng.poisson(2.0, (120, 40)).astype(float)   # 80 photons per frame in the ROI
    frames[30] = 0.0
    frames[30, :2] = 5.0                                  # frame 30: photons in 2 pixels only
    labels = np.ones(40, int)
    a, b = half_split_two_times(frames, labels, n_splits=4, seed=0)
    dark = [np.isnan(h[s, 0, 30, 60]) for h in (a, b) for s in range(4)]
    assert any(dark)                                      # some half of some split missed both pixels
    for h in (a, b):
        for s in range(4):
            rows = np.flatnonzero(np.isnan(h[s, 0]).all(axis=1))
            assert set(rows.tolist()) <= {30}             # only frame 30 can be dark
    x, y = noise2noise_pairs(a, b, 50, step=10, every=(1,))
    assert np.isfinite(x).all() and np.isfinite(y).all()
    # crops start every 10 frames: those starting at 0, 10, 20, 30 cover frame 30; where a half is dark they drop
    # out in both directions of that split (8 crops)
    n_all = 4 * 2 * len(range(0, 120 - 50 + 1, 10))
    assert n_all // 2 < len(x) <= n_all - 8 * sum(dark)


def test_halves_carry_no_normalisation_bias_at_lags_above_zero():
    """Eq. 1 of a half divides by that half's mean intensities; off lag 0 this adds no bias (known answer)."""
    sim = simulate_speckle(400, 600, gamma=0.05, beta=0.2, mean_count=0.1, seed=8)   # 30 photons per half
    a, b = half_split_two_times(sim.frames, sim.labels, n_splits=4, seed=1)
    whole = sim.two_time()[0]
    halves = 0.5 * (a + b).mean(axis=0)[0]
    for lag in (1, 5, 20):
        d = np.mean(np.diagonal(halves, lag)) - np.mean(np.diagonal(whole, lag))
        assert abs(d) < 0.01, (lag, d)                    # β e^{-2Γk} is 0.18 … 0.027 here
    # lag 0 is where the ratio of Eq. 1 is biased (and lag 0 is replaced before the model sees it)
    assert np.mean(np.diagonal(halves)) > np.mean(np.diagonal(whole))


@pytest.mark.slow
def test_finetune_overwrite_keeps_the_users_files_and_never_the_shipped_folder(tmp_path, monkeypatch):
    """--overwrite replaces the model's own files only; the shipped folder is refused; a label map of another
    detector is refused in one line; the published folder is readable by others as the umask allows."""
    import os
    import stat

    from xpcs_denoise.analysis.calibration import load_calibration
    from xpcs_denoise.app.cli import main
    from xpcs_denoise.nn.config import pretrained_directory
    from xpcs_denoise.nn.denoiser import _pretrained

    # This test is about the folder, not the numbers: the tuned model's two recalibrations on simulated crops
    # (Γ's σ, the anomaly scores of noise; three minutes of the suite) take the base model's, which
    # test_finetune_writes_a_model_that_denoise_uses measures for real.
    monkeypatch.setattr("xpcs_denoise.app.pipeline.recalibrate", lambda method, model, seed=0: load_calibration(method))
    monkeypatch.setattr("xpcs_denoise.nn.finetune.noise_calibration",
                        lambda *a, **k: dict(_pretrained().card["anomaly_threshold"]["by_noise"]))

    sim = simulate_speckle(200, 800, gamma=[0.05], beta=0.2, mean_count=0.3, n_rois=1, seed=5)
    np.save(tmp_path / "frames.npy", sim.frames)
    np.save(tmp_path / "labels.npy", sim.labels)
    args = ["finetune", str(tmp_path / "frames.npy"), "--rois", str(tmp_path / "labels.npy"), "--epochs", "1", "-q"]
    assert main([*args, "-o", str(tmp_path / "tuned")]) == 0
    mode = stat.S_IMODE(os.stat(tmp_path / "tuned").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask
    (tmp_path / "tuned" / "notes.txt").write_text("my notes")
    (tmp_path / "tuned" / "runs").mkdir()
    assert main([*args, "-o", str(tmp_path / "tuned"), "--overwrite"]) == 0
    assert (tmp_path / "tuned" / "notes.txt").read_text() == "my notes" and (tmp_path / "tuned" / "runs").is_dir()
    assert (tmp_path / "tuned" / "model_card.json").is_file()
    before = sorted(p.name for p in pretrained_directory().iterdir())
    assert main([*args, "-o", str(pretrained_directory()), "--overwrite"]) == 2
    assert sorted(p.name for p in pretrained_directory().iterdir()) == before
    np.save(tmp_path / "small.npy", sim.labels[:, :10])
    assert main(["finetune", str(tmp_path / "frames.npy"), "--rois", str(tmp_path / "small.npy"), "-o",
                 str(tmp_path / "other"), "-q"]) == 2
    assert not (tmp_path / "other").exists()
