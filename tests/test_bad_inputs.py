"""Every bad input gets one clear line and a non-zero exit (CLI) or XPCSInputError (API); inputs stay
byte-identical and no partial output is left behind."""

import os
import shutil
import warnings

import h5py
import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, denoise, fit_g2, one_time_from_two_time, two_time
from xpcs_denoise.core.simulation import true_two_time
from xpcs_denoise.io.formats import read_c2, write_c2
from xpcs_denoise.nn.denoiser import Denoiser, pretrained_directory

from .conftest import run_cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def good_c2(n=60):
    rng = np.random.default_rng(0)
    c2 = true_two_time(n, 0.04, 0.2) + rng.normal(0, 0.01, (n, n))
    return (c2 + c2.T) / 2


def _npy(path, arr):
    np.save(path, arr)
    return path


def _h5_garbage(path):
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(200))
    return path


def _h5_truncated(path):
    write_c2(path, good_c2()[None])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _h5_unknown_layout(path):
    with h5py.File(path, "w") as f:
        f["something/else"] = np.zeros(3)
    return path


def _flat(path, level):
    rng = np.random.default_rng(1)
    x = level + rng.normal(0, 1e-4, (50, 50))  # N = 50: Eq. 5 baseline 1, above every lag-1 value
    return _npy(path, (x + x.T) / 2)


def _nan(path):
    x = good_c2()
    x[10, 20] = x[20, 10] = np.nan
    return _npy(path, x)


def _inf(path):
    x = good_c2()
    x[5, 5] = np.inf
    return _npy(path, x)


# (id, make input file, extra CLI args, phrase expected in the one-line message)
DENOISE_CASES = [
    ("missing file", lambda p: p, [], "does not exist"),
    ("1-D array", lambda p: _npy(p, np.ones(60)), [], "shape"),
    ("4-D array", lambda p: _npy(p, np.ones((2, 2, 60, 60))), [], "shape"),
    ("non-square", lambda p: _npy(p, np.ones((60, 70))), [], "square"),
    ("too small", lambda p: _npy(p, good_c2(30)), [], "at least 50"),
    ("NaN", _nan, [], "NaN"),
    ("Inf", _inf, [], "Inf"),
    ("all zero", lambda p: _npy(p, np.zeros((60, 60))), [], "contrast"),
    ("constant", lambda p: _npy(p, np.ones((60, 60))), [], "contrast"),
    ("negative", lambda p: _npy(p, -good_c2()), [], "contrast"),
    ("lag-1 below baseline", lambda p: _flat(p, 0.99), [], "contrast"),
    ("text dtype", lambda p: _npy(p, np.full((60, 60), "a")), [], "numeric"),
    ("not HDF5", lambda p: (p.write_bytes(b"hello"), p)[1], [], "HDF5"),
    ("corrupt HDF5", _h5_garbage, [], "HDF5"),
    ("truncated HDF5", _h5_truncated, [], "HDF5"),
    ("unknown layout", _h5_unknown_layout, [], "--dataset"),
    ("missing dataset", lambda p: (write_c2(p, good_c2()[None]), p)[1], ["--dataset", "nope"], "nope"),
]


def run(*args):
    return run_cli(*args)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _assert_clean_failure(r, phrase, tmp_path, before, out):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, no traceback
    assert phrase.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs byte-identical
    assert not out.exists()
    assert set(after) == set(before)  # no partial output, no temporary file left


def _suffix(case_id):
    return ".npy" if case_id not in {"not HDF5", "corrupt HDF5", "truncated HDF5", "unknown layout",
                                     "missing dataset", "missing file"} else ".h5"


@pytest.mark.slow
@pytest.mark.parametrize("case_id,make,args,phrase", DENOISE_CASES, ids=[c[0] for c in DENOISE_CASES])
def test_cli_denoise_bad_input(tmp_path, case_id, make, args, phrase):
    src = make(tmp_path / f"input{_suffix(case_id)}")
    before = _snapshot(tmp_path)
    out = tmp_path / "out.h5"
    r = run("denoise", str(src), "-o", str(out), "--method", "gaussian", "-q", *args)
    _assert_clean_failure(r, phrase, tmp_path, before, out)


@pytest.mark.parametrize("case_id,make,args,phrase", DENOISE_CASES, ids=[c[0] for c in DENOISE_CASES])
def test_api_bad_input_raises_the_documented_error(tmp_path, case_id, make, args, phrase):
    src = make(tmp_path / f"input{_suffix(case_id)}")
    dataset = args[1] if args else None
    phrase = {"--dataset": "dataset='path/in/file'"}.get(phrase, phrase)  # the library names the parameter
    with pytest.raises(XPCSInputError, match=phrase.replace("-", "\\-")):
        denoise(read_c2(src, dataset).c2, "gaussian")
    assert issubclass(XPCSInputError, ValueError)


def _model_dir(tmp_path, how):
    d = tmp_path / "model"
    shutil.copytree(pretrained_directory(), d)
    w = d / "model.safetensors"
    if how == "altered":
        data = bytearray(w.read_bytes())
        data[-5] ^= 0xFF
        w.write_bytes(bytes(data))
    else:
        w.unlink()
    return d


@pytest.mark.slow
@pytest.mark.parametrize("how,phrase", [("altered", "SHA-256"), ("missing", "model.safetensors")])
def test_cli_refuses_a_bad_model_directory(tmp_path, how, phrase):
    d = _model_dir(tmp_path, how)
    src = _npy(tmp_path / "c2.npy", good_c2())
    before = _snapshot(tmp_path)
    out = tmp_path / "out.h5"
    r = run("denoise", str(src), "-o", str(out), "--model", str(d), "-q")
    _assert_clean_failure(r, phrase, tmp_path, before, out)
    with pytest.raises(XPCSInputError, match=phrase):
        Denoiser.from_directory(d)


def test_cli_never_overwrites_without_asking(tmp_path):
    src = _npy(tmp_path / "c2.npy", good_c2())
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    before = _snapshot(tmp_path)
    r = run("denoise", str(src), "-o", str(out), "--method", "median", "-q")
    assert r.returncode == 2 and "--overwrite" in r.stderr
    assert _snapshot(tmp_path) == before
    r = run("denoise", str(src), "-o", str(out), "--method", "median", "-q", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert read_c2(out).c2.shape == (1, 60, 60)


FRAME_CASES = [
    ("labels wrong shape", np.ones((8, 1, 30), np.uint16), np.ones((1, 20), np.int32), "shape"),
    ("labels all zero", np.ones((8, 1, 30), np.uint16), np.zeros((1, 30), np.int32), "no labelled pixel"),
    ("label gap", np.ones((8, 1, 30), np.uint16), np.r_[[1] * 15, [3] * 15][None].astype(np.int32), "gaps"),
    ("negative labels", np.ones((8, 1, 30), np.uint16), -np.ones((1, 30), np.int32), ">= 0"),
    ("one frame", np.ones((1, 1, 30), np.uint16), np.ones((1, 30), np.int32), "at least 2 frames"),
    ("complex frames", np.ones((8, 1, 30), np.complex64), np.ones((1, 30), np.int32), "numbers"),
    ("dark ROI", np.zeros((8, 1, 30), np.uint16), np.ones((1, 30), np.int32), "zero mean intensity"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case_id,frames,labels,phrase", FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_cli_correlate_bad_input(tmp_path, case_id, frames, labels, phrase):
    f = _npy(tmp_path / "frames.npy", frames)
    lab = _npy(tmp_path / "rois.npy", labels)
    before = _snapshot(tmp_path)
    out = tmp_path / "c2.h5"
    r = run("correlate", str(f), "--rois", str(lab), "-o", str(out), "-q")
    _assert_clean_failure(r, phrase, tmp_path, before, out)
    with pytest.raises(XPCSInputError, match=phrase):
        two_time(frames, labels)


def test_photon_counts_do_not_overflow():
    # uint16 counts at the top of their range: products would wrap in uint16/uint32 arithmetic.
    rng = np.random.default_rng(0)
    frames = rng.integers(60000, 65536, size=(20, 1, 50)).astype(np.uint16)
    labels = np.ones((1, 50), np.int32)
    c2 = two_time(frames, labels)
    f = frames.astype(np.float64)[:, 0, :]
    ref = (f @ f.T / 50) / np.outer(f.mean(1), f.mean(1))
    np.testing.assert_allclose(c2[0], ref, rtol=1e-12)


def test_asymmetric_two_time_is_symmetrised_with_a_warning():
    x = good_c2(50)
    x[3, 7] += 0.3
    with pytest.warns(UserWarning, match="not symmetric"):
        out = denoise(x, "gaussian")
    np.testing.assert_allclose(out, out.T, atol=1e-12)
    with pytest.warns(UserWarning, match="not symmetric"):
        sym = denoise(x, "none")
    np.testing.assert_allclose(sym, 0.5 * (x + x.T))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        denoise(good_c2(50), "gaussian")  # a symmetric input gives no warning


def test_masked_pixels_are_ignored_in_averages_and_fits():
    x = true_two_time(60, 0.04, 0.2)
    masked = x.copy()
    masked[10, 30] = masked[30, 10] = np.nan
    g = one_time_from_two_time(masked)
    np.testing.assert_allclose(g, one_time_from_two_time(x), rtol=1e-12)  # lag 20 averages the other pixels
    g2 = g.copy()
    g2[5] = np.inf
    fit = fit_g2(g2, fix={"alpha": 1.0})
    assert fit.success and abs(fit.gamma / 0.04 - 1) < 1e-3
