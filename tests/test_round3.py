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
from xpcs_denoise.core.simulation import true_two_time
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
