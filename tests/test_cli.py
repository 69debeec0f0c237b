import json
import subprocess
import sys

import numpy as np
import pytest

from xpcs_denoise.io.prepared import write_prepared

from .conftest import ENV
from .conftest import run_cli as run
from .test_model import _synthetic_prepared


def test_version_and_help(capsys):
    r = run("--version", subprocess_=True)  # the installed entry point, started as a user starts it
    assert r.returncode == 0 and "xpcs-denoise" in r.stdout
    from xpcs_denoise.app.cli import main

    for cmd in ("demo", "train", "evaluate", "latent-study", "correlate", "denoise", "fit", "report", "batch"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0 and "usage" in capsys.readouterr().out


def test_demo_writes_a_report(tmp_path):
    r = run("demo", "--out", str(tmp_path / "rep"), "-q", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(summary["rois"]) == 4
    for f in ("index.html", "c2_maps.png", "g2_fits.png", "gamma_age.png", "gamma_q.csv", "summary.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "http" not in html  # opens offline
    # Every ROI's denoised Γ within 2σ of the truth: the error bars are honest on the demo's own data (seed 0:
    # z = +1.8, +0.5, +1.5, −1.0; four 50-frame fits are too few to rank denoised against raw).
    for roi in summary["rois"]:
        assert roi["fit_denoised_ok"] and abs(roi["z_denoised"]) < 2, roi


@pytest.mark.slow
def test_train_then_evaluate_through_the_cli(tmp_path):
    data = tmp_path / "prep.h5"
    write_prepared(data, _synthetic_prepared(n_targets=10, crops=4))
    before = data.read_bytes()
    r = run("train", str(data), "-o", str(tmp_path / "m"), "--members", "2", "--keep", "1", "--max-epochs", "2",
            "--lr", "1e-3", "--val-fraction", "0.3", "-q", "--json")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["training"]["n_members"] == 2 and len(card["kept_members"]) == 1
    assert card["training_data"]["sha256"] and card["split"]["val_target_names"]
    e = run("evaluate", str(tmp_path / "m"), str(data), "--json")
    assert e.returncode == 0, e.stderr
    table = json.loads(e.stdout)
    assert {"raw", "gaussian", "median", "tv", "pca", "cned"} <= set(table)  # + bm3d where installed
    assert data.read_bytes() == before  # input untouched


def test_bad_input_gives_one_line_and_exit_code(tmp_path):
    r = run("evaluate", "pretrained", str(tmp_path / "missing.h5"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file")
    r = run("evaluate", "pretrained", str(tmp_path / "junk.h5"))
    assert r.returncode == 2 and "HDF5" in r.stderr


def _frames_and_rois(tmp_path, n_frames=80, seed=0):
    from xpcs_denoise.core.simulation import simulate_q_rings

    sim = simulate_q_rings(n_frames, 3, pixels_at_qmin=300, count_at_qmin=1.0, seed=seed)
    # A detector of one row: frames (T, 1, P), labels (1, P).
    np.save(tmp_path / "frames.npy", sim.frames.astype(np.uint16)[:, None, :])
    np.save(tmp_path / "rois.npy", sim.labels.astype(np.int32)[None, :])
    return sim


@pytest.mark.slow
def test_correlate_denoise_fit_report_chain(tmp_path):
    from xpcs_denoise import two_time
    from xpcs_denoise.io.formats import read_c2

    sim = _frames_and_rois(tmp_path)
    frames_before = (tmp_path / "frames.npy").read_bytes()
    q = ",".join(f"{v:.4f}" for v in sim.q)
    r = run("correlate", str(tmp_path / "frames.npy"), "--rois", str(tmp_path / "rois.npy"), "-o",
            str(tmp_path / "c2.h5"), "--q", q, "-q")
    assert r.returncode == 0, r.stderr
    c2 = read_c2(tmp_path / "c2.h5")
    np.testing.assert_allclose(c2.c2, two_time(sim.frames, sim.labels), rtol=6e-8)  # stored as float32
    np.testing.assert_allclose(c2.q, np.round(sim.q, 4))
    assert (tmp_path / "frames.npy").read_bytes() == frames_before

    r = run("denoise", str(tmp_path / "c2.h5"), "-o", str(tmp_path / "d.h5"), "--uncertainty", "-q", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_rois"] == 3
    d = read_c2(tmp_path / "d.h5")
    np.testing.assert_allclose(d.raw, c2.c2, rtol=6e-8)
    assert d.c2.shape == c2.c2.shape and not np.allclose(d.c2, c2.c2)
    assert np.all(d.std >= 0) and d.std.max() > 0
    assert d.attrs["method"] == "lagnet" and len(d.attrs["model_weights_sha256"]) == 64
    assert d.attrs["model_name"] == "lagnet-2026" and d.attrs["model_dir"].endswith("lagnet")
    np.testing.assert_allclose(d.q, c2.q)

    # An existing output is refused, and left as it was.
    before = (tmp_path / "d.h5").read_bytes()
    r = run("denoise", str(tmp_path / "c2.h5"), "-o", str(tmp_path / "d.h5"), "-q")
    assert r.returncode == 2 and "--overwrite" in r.stderr and r.stderr.strip().count("\n") == 0
    assert (tmp_path / "d.h5").read_bytes() == before

    r = run("fit", str(tmp_path / "d.h5"), "-o", str(tmp_path / "p.csv"), "--fix-alpha", "-q")
    assert r.returncode == 0, r.stderr
    import csv

    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [int(r["roi"]) for r in rows] == [1, 2, 3]
    gamma = np.array([float(r["gamma"]) for r in rows])
    err = np.array([float(r["gamma_err"]) for r in rows])
    # 80 frames of a very noisy series (the last ROI has 0.04 photons per pixel per frame; accuracy is tested in
    # test_workflows and benchmarks/bench_bias.py): each Γ agrees with the truth within its honest error, which
    # includes the noise and the model (bootstrap), and each row says what was fitted.
    assert np.all(err > 0) and np.all(np.abs(gamma - sim.gamma) < 3 * err)
    assert all(r["path"] == "lagnet: denoised and raw fits pooled by precision" for r in rows)
    assert all(0 <= float(r["raw_weight"]) <= 1 for r in rows)
    assert float(rows[0]["alpha"]) == 1.0 and json.loads((tmp_path / "p.json").read_text())["fix_alpha"]

    r = run("fit", str(tmp_path / "d.h5"), "-o", str(tmp_path / "cuts.csv"), "--cut-width", "3", "--fix-beta",
            "-q", "--json")
    assert r.returncode == 0, r.stderr
    cuts = list(csv.DictReader(open(tmp_path / "cuts.csv")))
    assert len(cuts) == json.loads(r.stdout)["fits"] and len({r["age"] for r in cuts}) > 10

    r = run("report", str(tmp_path / "d.h5"), "-o", str(tmp_path / "rep"), "--compare", "gaussian", "-q")
    assert r.returncode == 0, r.stderr
    for f in ("index.html", "c2_maps.png", "g2_fits.png", "gamma_q.png", "gamma_age.png", "fits.csv"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "http" not in page and "gaussian" in page and "lagnet" in page


def test_denoise_reads_both_aps_layouts(tmp_path):
    from xpcs_denoise.core.simulation import true_two_time
    from xpcs_denoise.io.formats import read_c2, write_aps_c2, write_aps_legacy

    rng = np.random.default_rng(0)
    c2 = np.stack([true_two_time(60, g, 0.2) for g in (0.02, 0.05)])
    c2 = c2 + rng.normal(0, 0.01, c2.shape)
    c2 = (c2 + c2.transpose(0, 2, 1)) / 2
    q = np.array([0.003, 0.006])
    for name, writer in (("new.h5", write_aps_c2), ("old.h5", write_aps_legacy)):
        writer(tmp_path / name, c2, q)
        out = tmp_path / f"{name}.out.h5"
        r = run("denoise", str(tmp_path / name), "-o", str(out), "--method", "gaussian", "-q", "--json")
        assert r.returncode == 0, r.stderr
        d = read_c2(out)
        np.testing.assert_allclose(d.raw, c2, atol=1e-6)
        np.testing.assert_allclose(d.q, q)
        assert d.attrs["method"] == "gaussian" and d.attrs["source_format"].startswith("aps-8idi")
        # The Gaussian peer smooths: closer to the noiseless 2TCF than the input.
        truth = np.stack([true_two_time(60, g, 0.2) for g in (0.02, 0.05)])
        off = ~np.eye(60, dtype=bool)
        assert np.mean((d.c2 - truth)[:, off] ** 2) < np.mean((c2 - truth)[:, off] ** 2)


def test_denoise_keeps_an_roi_without_contrast_and_says_so(tmp_path):
    from xpcs_denoise.core.simulation import true_two_time
    from xpcs_denoise.io.formats import read_c2

    rng = np.random.default_rng(1)
    flat = true_two_time(60, 0.05, -0.01) + rng.normal(0, 1e-4, (60, 60))  # lag 1 below the baseline (Eq. 7)
    c2 = np.stack([true_two_time(60, 0.05, 0.2) + rng.normal(0, 0.01, (60, 60)), flat])
    c2 = (c2 + c2.transpose(0, 2, 1)) / 2
    np.save(tmp_path / "c2.npy", c2)
    r = run("denoise", str(tmp_path / "c2.npy"), "-o", str(tmp_path / "out.h5"), "--method", "gaussian")
    assert r.returncode == 0, r.stderr
    assert "1 ROI(s) denoised" in r.stdout and "ROI [2] without contrast kept unchanged" in r.stdout
    assert "no contrast" in r.stderr
    d = read_c2(tmp_path / "out.h5")
    np.testing.assert_array_equal(d.c2[1], d.raw[1])  # unchanged (both float32 copies of the input)
    np.testing.assert_allclose(d.c2[1], c2[1], rtol=6e-8)
    assert not np.allclose(d.c2[0], c2[0]) and json.loads(d.attrs["not_denoised_rois"]) == [2]


def test_a_shipped_model_is_chosen_by_name(tmp_path):
    """``--model paper-2021`` (the paper's network, issue 29) and ``--model lagnet_ageing`` name shipped models; a
    folder of that name in the working directory stays a folder."""
    from xpcs_denoise.io.formats import read_c2

    rng = np.random.default_rng(3)
    t = np.abs(np.subtract.outer(np.arange(60), np.arange(60)))
    c2 = 1 + 0.2 * np.exp(-0.1 * t) + rng.normal(0, 0.02, (60, 60))
    np.save(tmp_path / "c2.npy", (c2 + c2.T) / 2)
    outs = {}
    for name, args in (("by_model", ["--model", "paper-2021"]), ("by_method", ["--method", "paper-2021"]),
                       ("ageing", ["--model", "lagnet_ageing"]), ("default", [])):
        r = run("denoise", tmp_path / "c2.npy", "-o", tmp_path / f"{name}.h5", "--no-anomaly", *args)
        assert r.returncode == 0, r.stderr
        outs[name] = read_c2(tmp_path / f"{name}.h5").c2[0]
    np.testing.assert_array_equal(outs["by_model"], outs["by_method"])
    assert not np.allclose(outs["ageing"], outs["default"]) and not np.allclose(outs["by_model"], outs["default"])
    (tmp_path / "lagnet").mkdir()  # an empty folder called lagnet: a folder, so its missing card is the error
    r = run("denoise", tmp_path / "c2.npy", "-o", tmp_path / "x.h5", "--model", "lagnet", cwd=tmp_path)
    assert r.returncode != 0 and "lagnet_card.json" in r.stderr


@pytest.mark.slow
def test_batch_reports_and_skips_a_bad_file(tmp_path):
    from xpcs_denoise.core.simulation import true_two_time

    rng = np.random.default_rng(1)
    for i in range(2):
        c2 = true_two_time(60, 0.03, 0.2) + rng.normal(0, 0.01, (60, 60))
        np.save(tmp_path / f"good{i}.npy", (c2 + c2.T) / 2)
    (tmp_path / "bad.h5").write_bytes(b"garbage")
    inputs = [str(tmp_path / n) for n in ("good0.npy", "bad.h5", "good1.npy")]
    r = run("batch", *inputs, "-o", str(tmp_path / "out"), "--method", "median", "-q", "--json")
    assert r.returncode == 1, r.stderr  # one file failed
    rows = json.loads(r.stdout)
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert "HDF5" in rows[1]["error"]
    assert (tmp_path / "out" / "good0_npy_denoised.h5").exists()
    assert (tmp_path / "out" / "good1_npy_denoised.h5").exists()
    assert not list((tmp_path / "out").glob("bad*"))
    assert (tmp_path / "out" / "batch_summary.csv").read_text().count("\n") == 4


@pytest.mark.slow
def test_quickstart_example_runs(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=ENV,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report" / "index.html").exists() and (tmp_path / "c2_denoised.h5").exists()
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("ROI ")]
    assert len(lines) == 3 and all("lagnet: denoised and raw fits pooled by precision" in ln for ln in lines)
    z = [float(ln.split("z = ")[1].split(";")[0]) for ln in lines]
    assert all(abs(v) < 3 for v in z)  # the recommended fit lands on the truth within its error


def test_import_and_help_load_no_torch():
    """`import xpcs_denoise` and the CLI's parser are lazy: torch (and the model) load only when a command needs
    them, so --version/--help start in a fraction of a second."""
    code = ("import sys, xpcs_denoise as xd\n"
            "from xpcs_denoise.app.cli import build_parser\n"
            "build_parser()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert callable(xd.fit_two_time) and callable(xd.Denoiser) and 'torch' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
