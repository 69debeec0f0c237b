"""Issue 32 (hostile inputs, round three) and issue 31's smaller items: each cause with a test that failed before
its fix. Every bad input gives one line and leaves no file behind; a good one gives a correct result."""

import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

from xpcs_denoise.app import pipeline
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.simulation import simulate_speckle, true_two_time
from xpcs_denoise.io.formats import write_c2


def run(*args):
    return subprocess.run([sys.executable, "-m", "xpcs_denoise", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_line_error(r, phrase):
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0, r.stderr
    assert phrase in r.stderr, r.stderr


@pytest.fixture
def c2():
    rng = np.random.default_rng(0)
    x = np.stack([true_two_time(60, g, 0.2) for g in (0.03, 0.1)]) + rng.normal(0, 0.02, (2, 60, 60))
    return 0.5 * (x + np.swapaxes(x, 1, 2))


def test_a_single_npy_keeps_its_shape(tmp_path, c2):
    np.save(tmp_path / "one.npy", c2[0])
    pipeline.denoise_file(tmp_path / "one.npy", tmp_path / "out.npy")
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (60, 60)
    np.testing.assert_allclose(out, pipeline.denoise(c2[0]), atol=1e-12)


@pytest.mark.parametrize("name,phrase", [("outdir/", "is a folder"), ("out.csv", "not .csv")])
def test_output_names_that_would_lie(tmp_path, c2, name, phrase):
    np.save(tmp_path / "c2.npy", c2)
    r = run("denoise", tmp_path / "c2.npy", "-o", f"{tmp_path}/{name}", "-q")
    one_line_error(r, phrase)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.npy"]


def test_object_npy_is_named_as_such(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    one_line_error(run("denoise", tmp_path / "obj.npy", "-o", tmp_path / "o.h5", "-q"), "Python objects")


def test_truncated_hdf5_is_not_blamed_on_a_lock(tmp_path, c2):
    write_c2(tmp_path / "c2.h5", c2)
    (tmp_path / "cut.h5").write_bytes((tmp_path / "c2.h5").read_bytes()[:3000])
    r = run("denoise", tmp_path / "cut.h5", "-o", tmp_path / "o.h5", "-q")
    one_line_error(r, "truncated")
    assert "lock" not in r.stderr.split("(")[-1].split(")")[-1]


def test_frame_time_override_is_said(tmp_path, c2):
    write_c2(tmp_path / "c2.h5", c2, attrs={"frame_time": 0.01})
    with pytest.warns(UserWarning, match="replaces the 0.01 s"):
        pipeline.fit_file(tmp_path / "c2.h5", tmp_path / "f.csv", frame_time=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same value: nothing to say
        pipeline.fit_file(tmp_path / "c2.h5", tmp_path / "g.csv", frame_time=0.01)


def test_cut_max_lag_beyond_the_series_is_one_line(tmp_path, c2):
    np.save(tmp_path / "c2.npy", c2)
    one_line_error(run("fit", tmp_path / "c2.npy", "-o", tmp_path / "f.csv", "--cut-width", 3, "--max-lag", 500,
                       "-q"), "reaches beyond the 60-frame")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.npy"]


def test_unphysical_fits_are_not_called_ok(tmp_path):
    import csv

    good = true_two_time(80, 0.05, 0.2)
    bad = true_two_time(80, 0.05, 1.6)  # β = 1.6: no speckle pattern has it
    np.save(tmp_path / "c2.npy", np.stack([good, bad]))
    r = run("fit", tmp_path / "c2.npy", "-o", tmp_path / "f.csv")
    assert r.returncode == 0 and "1 of 2 fits ok (1 beta > 1)" in r.stdout, r.stdout + r.stderr
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert [r["status"] for r in rows] == ["ok", "beta > 1"]


def test_fit_outputs_both_or_neither(tmp_path, c2):
    # Under a file-size limit the JSON (written second, larger) cannot be written: then no CSV either.
    import resource
    import signal

    np.save(tmp_path / "c2.npy", c2)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1100, 1100))  # the CSV fits (~0.8 kB), the JSON (~1.5) not

    r = subprocess.run([sys.executable, "-m", "xpcs_denoise", "fit", str(tmp_path / "c2.npy"), "-o",
                        str(tmp_path / "f.csv"), "-q"], capture_output=True, text=True, preexec_fn=limit,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2.npy"]
    r = run("fit", tmp_path / "c2.npy", "-o", tmp_path / "f.csv", "-q")  # and a rerun is not refused
    assert r.returncode == 0 and (tmp_path / "f.json").is_file()


def _aps(path, c2, names, bins, q=(0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07)):
    with h5py.File(path, "w") as f:
        for nm, m in zip(names, c2, strict=True):
            f.create_dataset(f"xpcs/twotime/correlation_map/{nm}", data=np.triu(m).astype(np.float32))
        f["xpcs/twotime/processed_bins"] = np.asarray(bins)
        f["xpcs/qmap/dynamic_v_list_dim0"] = np.asarray(q)
    return path


def test_aps_maps_keep_their_bins_when_one_is_missing(tmp_path, c2):
    """c2_00002 gone from a file of bins [2, 5, 7]: the two maps left are bins 5 and 7 with their q (never 1 and 2
    with q NaN), and the APS output lists exactly the bins it holds, column by column."""
    from xpcs_denoise.io.formats import read_c2

    src = _aps(tmp_path / "r.hdf", c2, ["c2_00005", "c2_00007"], [2, 5, 7])
    got = read_c2(src)
    np.testing.assert_array_equal(got.rois, [5, 7])
    np.testing.assert_allclose(got.q, [0.05, 0.07])
    pipeline.denoise_file(src, tmp_path / "d.hdf", method="gaussian")
    with h5py.File(tmp_path / "d.hdf") as f:
        np.testing.assert_array_equal(f["xpcs/twotime/processed_bins"][()], [5, 7])
        assert f["xpcs/twotime/normalized_g2"].shape[1] == 2
    back = read_c2(tmp_path / "d.hdf")
    np.testing.assert_array_equal(back.rois, [5, 7])
    np.testing.assert_allclose(back.q, [0.05, 0.07])
    # maps numbered by position (boost_corr's counter) with one missing: c2_00003 is the third bin, 7
    src = _aps(tmp_path / "p.hdf", c2, ["c2_00001", "c2_00003"], [2, 5, 7])
    np.testing.assert_array_equal(read_c2(src).rois, [2, 7])


@pytest.mark.parametrize("names,bins,phrase", [
    (["c2_00001", "c2_00002"], [3, 3], "twice"),
    (["c2_00004", "c2_00009"], [2, 5], "matches no bin"),
    (["c2_00001", "c2_00002"], [1.5, 2], "whole numbers"),
    (["c2_00001", "c2_00002"], [1, 9], "beyond the q list"),
])
def test_aps_bin_lists_that_cannot_be_matched_are_refused(tmp_path, c2, names, bins, phrase):
    src = _aps(tmp_path / "r.hdf", c2, names, bins)
    before = src.read_bytes()
    one_line_error(run("fit", src, "-o", tmp_path / "f.csv", "-q"), phrase)
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.hdf"]


def test_batch_names_depend_on_their_input_alone_and_summaries_are_kept(tmp_path, c2):
    from xpcs_denoise.app.pipeline import batch_denoise, batch_outputs

    np.save(tmp_path / "a.npy", c2)
    write_c2(tmp_path / "a.h5", c2)
    write_c2(tmp_path / "a_npy.h5", c2)
    ins = [tmp_path / "a.npy", tmp_path / "a.h5", tmp_path / "a_npy.h5"]
    outs = batch_outputs(ins, tmp_path / "out")
    assert len(set(outs)) == 3
    assert outs[0] == batch_outputs(ins[:1], tmp_path / "out")[0]  # the same name whatever else is in the batch
    with pytest.raises(XPCSInputError, match="no input"):
        batch_outputs([], tmp_path / "out")
    rows = batch_denoise(ins[:2], tmp_path / "out", method="gaussian")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    summary = (tmp_path / "out" / "batch_summary.csv").read_bytes()
    with pytest.raises(XPCSInputError, match="earlier batch"):  # no silent rewrite of the summary
        batch_denoise(ins, tmp_path / "out", method="gaussian")
    assert (tmp_path / "out" / "batch_summary.csv").read_bytes() == summary
    rows = batch_denoise(ins, tmp_path / "out", method="gaussian", skip_existing=True)
    assert [r["status"] for r in rows] == ["skipped", "skipped", "ok"]  # the right files skipped, every row kept
    assert not list((tmp_path / "out").glob(".*"))  # no hidden temporary file left


def test_roi_labels_name_rois_in_messages(tmp_path, c2):
    flat = np.ones((60, 60))
    write_c2(tmp_path / "c2.h5", np.stack([c2[0], flat, c2[1]]), rois=[2, 4, 9])
    r = run("denoise", tmp_path / "c2.h5", "-o", tmp_path / "d.h5", "--method", "gaussian")
    assert r.returncode == 0 and "ROI [4] without contrast" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("call", [
    lambda c: pipeline.denoise(c, "gaussian", sigma=np.nan),
    lambda c: pipeline.denoise(c, "gaussian", sigma=0),
    lambda c: pipeline.denoise(c, "gaussian", sigma=np.inf),
    lambda c: pipeline.denoise(c, "tv", weight=-1),
    lambda c: pipeline.denoise(c, "tv", weight=0),
    lambda c: pipeline.denoise(c, "median", size=2.5),
    lambda c: pipeline.denoise(c, "cned", baseline=np.nan),
    lambda c: pipeline.denoise(c, "cned", baseline=-1),
    lambda c: pipeline.denoise(c, "cned", beta=np.inf),
], ids=["sigma nan", "sigma 0", "sigma inf", "weight < 0", "weight 0", "size 2.5", "baseline nan", "baseline < 0",
        "beta inf"])
def test_filter_and_scaling_numbers_are_checked(c2, call):
    with pytest.raises(XPCSInputError):
        call(c2[0])


@pytest.mark.parametrize("fix", [{"alpha": -1.0}, {"alpha": 0.0}, {"alpha": np.nan}, {"alpha": np.inf},
                                 {"beta": 0.0}, {"baseline": np.inf}])
def test_fixed_parameters_are_checked(c2, fix):
    from xpcs_denoise.core.correlation import one_time_from_two_time
    from xpcs_denoise.core.fitting import fit_g2

    with pytest.raises(XPCSInputError, match="fixed"):
        fit_g2(one_time_from_two_time(c2), fix=fix)


@pytest.mark.parametrize("power", [np.nan, np.inf, 0.0, -2.0, "two"])
def test_diffusion_power_is_checked(power):
    from xpcs_denoise.core.fitting import fit_diffusion

    with pytest.raises(XPCSInputError, match="power"):
        fit_diffusion([0.01, 0.02, 0.03], [1.0, 4.0, 9.0], power=power)


@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_two_time_of_extreme_counts_is_eq1(factor):
    """Eq. 1 does not depend on the counts' scale: counts near float64's limits give the same 2TCF."""
    from xpcs_denoise.core.correlation import two_time

    rng = np.random.default_rng(0)
    frames = rng.poisson(2.0, (30, 6, 6)).astype(np.float64)
    labels = np.ones((6, 6), int)
    ref = two_time(frames, labels)
    # independent computation of Eq. 1
    x = frames.reshape(30, -1)
    direct = (x @ x.T / x.shape[1]) / np.outer(x.mean(1), x.mean(1))
    np.testing.assert_allclose(ref[0], direct, rtol=1e-12)
    np.testing.assert_allclose(two_time(frames * factor, labels)[0], direct, rtol=1e-12)


def test_masked_arrays_and_fractional_lags_are_refused(c2):
    from xpcs_denoise.core.correlation import one_time_from_two_time, time_resolved_cuts, two_time

    m = np.ma.masked_array(c2[0], mask=np.zeros((60, 60), bool))
    m.mask[5] = True
    with pytest.raises(XPCSInputError, match="masked"):
        one_time_from_two_time(m)
    with pytest.raises(XPCSInputError, match="masked"):
        pipeline.denoise(m)
    frames = np.ma.masked_array(np.ones((5, 2, 2)), mask=np.zeros((5, 2, 2), bool))
    frames.mask[0, 0, 0] = True
    with pytest.raises(XPCSInputError, match="masked"):
        two_time(frames, np.ones((2, 2), int))
    with pytest.raises(XPCSInputError, match="whole number"):
        one_time_from_two_time(c2, max_lag=10.5)
    with pytest.raises(XPCSInputError, match="whole number"):
        time_resolved_cuts(c2[0], max_lag=10.5)
    # an unmasked masked array is an array
    np.testing.assert_array_equal(one_time_from_two_time(np.ma.masked_array(c2[0])), one_time_from_two_time(c2[0]))


def test_model_with_a_classical_method_is_refused(tmp_path, c2):
    np.save(tmp_path / "c2.npy", c2)
    one_line_error(run("denoise", tmp_path / "c2.npy", "-o", tmp_path / "o.h5", "--method", "gaussian", "--model",
                       tmp_path / "missing"), "--model")
    assert not (tmp_path / "o.h5").exists()


def test_a_roi_without_contrast_passes_through(tmp_path, c2):
    """One flat ROI: the file is denoised, that ROI is returned unchanged (lagnet: no noise, nothing to remove;
    cned: recorded as not denoised), and on the CLI no library parameter is named."""
    from xpcs_denoise.io.formats import read_c2

    x = np.stack([c2[0], np.ones((60, 60)), c2[1]])
    np.save(tmp_path / "c2.npy", x)
    pipeline.denoise_file(tmp_path / "c2.npy", tmp_path / "d.h5")
    d = read_c2(tmp_path / "d.h5")
    np.testing.assert_array_equal(d.c2[1], 1.0)
    assert not np.allclose(d.c2[0], x[0])
    np.save(tmp_path / "one.npy", np.ones((60, 60)) + 0.001 * np.eye(60))
    r = run("denoise", tmp_path / "one.npy", "-o", tmp_path / "o.h5", "--method", "cned", "-q")
    one_line_error(r, "contrast")
    assert "beta=" not in r.stderr and "--method lagnet" in r.stderr


def test_no_number_that_a_check_would_refuse(c2):
    """A curve at float64's limits, and a 2TCF without contrast, are not successful fits."""
    from xpcs_denoise.analysis.uncertainty import fit_two_time
    from xpcs_denoise.core.correlation import one_time_from_two_time
    from xpcs_denoise.core.fitting import fit_g2

    g = one_time_from_two_time(c2)
    assert fit_g2(g).success.all()
    for s in (1e-300, 1e300):
        f = fit_g2(g * s)
        assert not f.success.any() and "float64" in f.message[0]
    anti = 2.0 - true_two_time(60, 0.05, 0.2)  # lag-1 values below the baseline: no contrast to speak of
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = fit_two_time(anti, method="cned")
    assert str(t.path) == "failed: no contrast" and not t.fit.success and "no contrast" in str(t.fit.message)
    assert np.isnan(t.fit.gamma)


@pytest.mark.slow
def test_a_baseline_above_one_gives_the_right_gamma(tmp_path):
    """One ring of 50 frames whose pixels see 0.3 and 0.9 photons per frame (Γ = 0.05, β = 0.2): Eq. 1 gives a
    baseline ≈ 1.25. correlate → denoise → fit, and fit_two_time of it and of 2 × it, find Γ within their σ."""
    from xpcs_denoise.analysis.uncertainty import fit_two_time
    from xpcs_denoise.core.simulation import simulate_speckle

    sim = simulate_speckle(50, 2000, gamma=0.05, beta=0.2, mean_count=[0.3, 0.9], n_rois=2, seed=3)
    np.save(tmp_path / "frames.npy", sim.frames.reshape(50, 1, -1))
    np.save(tmp_path / "rois.npy", np.ones((1, 4000), int))
    assert run("correlate", tmp_path / "frames.npy", "--rois", tmp_path / "rois.npy", "-o", tmp_path / "c2.h5",
               "-q").returncode == 0
    assert run("denoise", tmp_path / "c2.h5", "-o", tmp_path / "d.h5", "-q").returncode == 0
    assert run("fit", tmp_path / "d.h5", "-o", tmp_path / "f.csv", "-q").returncode == 0
    import csv

    row = next(csv.DictReader(open(tmp_path / "f.csv")))
    gamma, err = float(row["gamma"]), float(row["gamma_err"])
    assert abs(gamma - 0.05) < 2.5 * err and err < 0.05 and row["status"] == "ok"
    from xpcs_denoise.io.formats import read_c2

    c2 = read_c2(tmp_path / "c2.h5").c2[0]
    assert np.mean(np.diagonal(c2, 40)) > 1.2  # the baseline this test is about
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in (c2, 2 * c2):
            t = fit_two_time(x)
            assert abs(t.fit.gamma - 0.05) < 2.5 * t.fit.gamma_err


def test_a_frame_stack_of_pixels_takes_a_label_vector(tmp_path):
    """(T, P) frames are read; their label map is (P,), on the CLI as in Python."""
    from xpcs_denoise.core.simulation import simulate_speckle
    from xpcs_denoise.io.formats import read_c2

    sim = simulate_speckle(60, 500, gamma=[0.05, 0.1], beta=0.2, mean_count=0.5, n_rois=2, seed=2)
    frames = sim.frames.reshape(60, -1)
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "rois.npy", sim.labels.ravel())
    r = run("correlate", tmp_path / "frames.npy", "--rois", tmp_path / "rois.npy", "-o", tmp_path / "c2.h5", "-q")
    assert r.returncode == 0, r.stderr
    from xpcs_denoise.core.correlation import two_time

    np.testing.assert_allclose(read_c2(tmp_path / "c2.h5").c2, two_time(frames, sim.labels.ravel()), rtol=1e-6)


def test_report_draws_every_roi_and_names_them(tmp_path):
    """Nine ROIs labelled 2…10: every one is drawn (two pages of figures), the page says which ROIs each figure
    holds, and headings are whole titles (not cut at 'Eq.')."""
    rng = np.random.default_rng(3)
    x = np.stack([true_two_time(60, g, 0.2) for g in np.geomspace(0.02, 0.2, 9)]) + rng.normal(0, 0.01, (9, 60, 60))
    x = 0.5 * (x + np.swapaxes(x, 1, 2))
    write_c2(tmp_path / "c2.h5", x, rois=np.arange(2, 11), q=np.linspace(0.002, 0.01, 9))
    pipeline.report_file(tmp_path / "c2.h5", tmp_path / "rep", compare=("gaussian",))
    import json

    s = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert s["rois_shown"] == list(range(2, 11))
    assert {"c2_maps_1.png", "c2_maps_2.png", "g2_fits_1.png", "g2_fits_2.png"} <= set(s["figures"])
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "ROIs 2, 3, 4, 5, 6, 7" in page and "ROIs 8, 9, 10" in page
    assert "<h2>1TCFs and their fits (1 of 2)</h2>" in page and "<h2>Eq" not in page
    assert "lags 1–49 frames" in page or "lags 1–59 frames" in page


@pytest.mark.slow
def test_fit_and_report_follow_the_model_the_file_records(tmp_path, c2):
    """A file denoised by another ensemble than the shipped one: fit and report use the folder the file records
    (no '--model' needed), and fit takes --model."""
    import torch

    from xpcs_denoise.nn.config import pretrained_directory
    from xpcs_denoise.nn.model import load_ensemble, save_ensemble

    model, card = load_ensemble(pretrained_directory())
    with torch.no_grad():
        model.d2_b.add_(0.01)  # another model: other weights, another SHA-256
    save_ensemble(model, tmp_path / "mine", {k: v for k, v in card.items() if k not in ("weights_sha256",)})
    np.save(tmp_path / "c2.npy", c2)
    assert run("denoise", tmp_path / "c2.npy", "-o", tmp_path / "d.h5", "--model", tmp_path / "mine",
               "-q").returncode == 0
    r = run("report", tmp_path / "d.h5", "-o", tmp_path / "rep", "-q")
    assert r.returncode == 0, r.stderr
    r = run("fit", tmp_path / "d.h5", "-o", tmp_path / "f.csv", "-q")
    assert r.returncode == 0, r.stderr
    r = run("fit", tmp_path / "d.h5", "-o", tmp_path / "g.csv", "--model", tmp_path / "mine", "-q")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("kw,phrase", [({"lr_decay": 0.0}, "lr_decay"), ({"lr_decay": float("nan")}, "lr_decay"),
                                       ({"max_hours": -1.0}, "max_hours"), ({"max_epochs": 0}, "max_epochs")])
def test_training_settings_are_checked(tmp_path, kw, phrase):
    from xpcs_denoise.nn.training import TrainConfig, train_ensemble

    with pytest.raises(XPCSInputError, match=phrase):
        train_ensemble(tmp_path / "none.h5", tmp_path / "m", TrainConfig(**kw), progress=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("epochs", [0, 2.5, -1])
def test_finetune_epochs_are_checked(tmp_path, epochs):
    from xpcs_denoise.nn.finetune import finetune

    with pytest.raises(XPCSInputError, match="epochs"):
        finetune(np.ones((10, 4, 4)), np.ones((4, 4), int), tmp_path / "m", epochs=epochs)


@pytest.mark.parametrize("field,value", [("anomaly_threshold", {"threshold": float("nan"), "latent_scale": 1.0,
                                                                 "residual_scale": 1.0}),
                                         ("anomaly_threshold", {"threshold": 2.0}),
                                         ("latent_reference", {"mean": [[0.0]], "cov_inv": [[[1.0]]],
                                                               "median_residual": 1.0}),
                                         ("latent_reference", "nonsense")])
def test_model_cards_anomaly_fields_are_checked(tmp_path, field, value):
    import json
    import shutil

    from xpcs_denoise.nn.config import pretrained_directory
    from xpcs_denoise.nn.model import load_ensemble

    d = tmp_path / "m"
    d.mkdir()
    for name in ("model.safetensors", "model_card.json"):
        shutil.copyfile(pretrained_directory() / name, d / name)
    load_ensemble(d)  # as shipped: valid
    card = json.loads((d / "model_card.json").read_text())
    card[field] = value
    (d / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(XPCSInputError, match=field):
        load_ensemble(d)


def test_tiff_folder_of_mixed_dtypes_is_widened_not_wrapped(tmp_path):
    """A first frame saved as uint8 and later ones above 255 (uint16, uint32) or signed: the stack takes a type
    that holds every value, so the 2TCF is that of the counts as written."""
    tifffile = pytest.importorskip("tifffile")
    from xpcs_denoise.core.correlation import two_time
    from xpcs_denoise.io.formats import read_frames

    rng = np.random.default_rng(0)
    frames = rng.poisson(2.0, (6, 4, 4)).astype(np.int64)
    frames[3:] += 300
    frames[5, 0, 0] = 70000
    for i, f in enumerate(frames):
        dtype = np.uint8 if i < 3 else (np.uint32 if i == 5 else np.uint16)
        tifffile.imwrite(tmp_path / f"f_{i}.tif", f.astype(dtype))
    with read_frames(tmp_path) as stack:
        np.testing.assert_array_equal(np.asarray(stack), frames)
        np.testing.assert_allclose(two_time(stack, np.ones((4, 4), int)), two_time(frames, np.ones((4, 4), int)))


def _disk_full_setup(tmp_path):
    c2 = simulate_speckle(400, 500, gamma=[0.05, 0.1, 0.02], beta=0.2, mean_count=0.5, n_rois=3,
                          seed=1).two_time()
    write_c2(tmp_path / "c2.h5", c2)
    return tmp_path / "c2.h5"


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Issue 32 #4: the writer's OSError ENOSPC (as HDF5 raises it) → exit 2, one line, no file left."""
    import errno

    from xpcs_denoise.app.cli import main
    from xpcs_denoise.io import formats

    src = _disk_full_setup(tmp_path)
    before = src.read_bytes()
    out = tmp_path / "out"
    out.mkdir()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, error message = 'No space "
                                    "left on device')")

    monkeypatch.setattr(formats.C2Writer, "write", full)
    assert main(["denoise", str(src), "-o", str(out / "den.h5"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left on device" in err
    assert list(out.iterdir()) == [] and src.read_bytes() == before


def test_a_really_full_disk_ends_in_one_line_not_a_crash(tmp_path):
    """The same on a 600 KiB tmpfs (root only: skipped elsewhere): HDF5 fails inside its own writes and frees;
    before, 79 lines of tracebacks and SIGSEGV / SIGBUS at exit."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        src = _disk_full_setup(tmp_path)
        for _ in range(3):  # the crash was intermittent
            r = subprocess.run(["xpcs-denoise", "denoise", str(src), "-o", str(mnt / "den.h5"), "-q"],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert r.returncode == 2, (r.returncode, r.stderr[-500:])
            assert r.stderr.strip().count("\n") == 0 and "no space left" in r.stderr
            assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
