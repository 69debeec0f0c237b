import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xpcs_denoise.preprocessing import write_prepared

from .test_model import _synthetic_prepared

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "xpcs_denoise.cli", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and "xpcs-denoise" in r.stdout
    for cmd in ("demo", "train", "evaluate"):
        h = run(cmd, "--help")
        assert h.returncode == 0 and "usage" in h.stdout


def test_demo_writes_a_report(tmp_path):
    r = run("demo", "--out", str(tmp_path / "rep"), "-q", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(summary["rois"]) == 4
    for f in ("index.html", "c2_maps.png", "g2_fits.png", "gamma_age.png", "gamma_q.csv", "summary.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "http" not in html  # opens offline
    # The shipped ensemble beats the raw first-50-frame fits on the demo's ROIs on average.
    err = lambda key: np.mean([abs(r[key] - r["gamma_true"]) / r["gamma_true"] for r in summary["rois"]])  # noqa
    assert err("gamma_denoised") < err("gamma_raw")


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
    assert set(table) == {"raw", "gaussian", "median", "cned"}
    assert data.read_bytes() == before  # input untouched


def test_bad_input_gives_one_line_and_exit_code(tmp_path):
    r = run("evaluate", "pretrained", str(tmp_path / "missing.h5"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file")
    r = run("evaluate", "pretrained", str(tmp_path / "junk.h5"))
    assert r.returncode == 2 and "HDF5" in r.stderr
