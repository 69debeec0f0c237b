"""Hostile inputs, round four: the fit calibration as data, fit_two_time / fit_denoised, detector files (IMM,
Rigaku, Eiger), CLI paths and options, label maps and model folders. Every bad input gives one line
(XPCSInputError, or a non-zero exit without traceback) and leaves its files as they were; a good one gives the
result an independent computation gives."""

import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest

from xpcs_denoise.analysis.calibration import FitCalibration, load_calibration
from xpcs_denoise.analysis.uncertainty import fit_denoised, fit_two_time
from xpcs_denoise.core.correlation import two_time
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.fitting import fit_g2
from xpcs_denoise.core.simulation import true_two_time
from xpcs_denoise.io.formats import read_c2, read_frames
from xpcs_denoise.nn.config import pretrained_directory

from .conftest import run_cli
from .test_detectors import write_eiger


def c2(n=60, gamma=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = true_two_time(n, gamma, 0.2) + rng.normal(0, 0.01, (n, n))
    return 0.5 * (x + x.T)


def tree(folder):
    """{relative path: bytes} of every file below ``folder``, hidden ones included."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, folder)] = open(p, "rb").read()
    return out


def one_line(r, *phrases):
    err = "\n".join(ln for ln in r.stderr.strip().splitlines() if "Warning" not in ln)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert err.count("\n") == 0 and "Traceback" not in err and "unexpected error" not in err, r.stderr
    for p in phrases:
        assert p in err, err


# --- FitCalibration: a calibration is data read from a card; every malformed one is one line ---------------------

GOOD = {"version": 1, "edges": [0.0, 1.0, 4.0], "cells": {"raw/*": [[1.2, 0.05]],
                                                          "raw/short/free": [[1.0, 0.0], [1.5, 0.1], [2.0, 0.2]]}}


@pytest.mark.parametrize("edit,phrase", [
    ({"version": 2}, "version 2"),
    ({"version": "1"}, "version"),
    ({"edges": [0.5, 1.0]}, "edges"),
    ({"edges": [0.0, 2.0, 1.0]}, "edges"),
    ({"edges": [0.0, float("nan")]}, "edges"),
    ({"edges": ["0", "a"]}, "edges"),
    ({"cells": {}}, "no cells"),
    ({"cells": [[1.0, 0.0]]}, "cells"),
    ({"cells": {"raw/*": [[float("nan"), 0.1]]}}, "raw/*"),
    ({"cells": {"raw/*": [[-1.0, 0.1]]}}, "raw/*"),
    ({"cells": {"raw/*": [[0.0, 0.0]]}}, "raw/*"),
    ({"cells": {"raw/short/free": [[1.0, 0.0]]}}, "3 pairs"),
    ({"cells": {"raw/short/free": [[1.0, 0.0], [1.0], [1.0, 0.0]]}}, "raw/short/free"),
    ({"cells": {"raw/*": [["a", "b"]]}}, "raw/*"),
    ({"cells": {3: [[1.0, 0.0]]}}, "cell"),
    ({"long_frames": 2}, "long_frames"),
    ({"long_frames": 100.5}, "long_frames"),
    ({"extra": 1}, "not a valid calibration"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_malformed_calibrations_are_one_line(edit, phrase):
    with pytest.raises(XPCSInputError, match=phrase.replace("*", r"\*")) as exc:
        FitCalibration.from_dict({**GOOD, **edit}, "the card's calibration")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("bad", [[1, 2], "calibration", None])
def test_a_calibration_that_is_not_an_object(bad):
    with pytest.raises(XPCSInputError, match="not a valid calibration"):
        FitCalibration.from_dict(bad)


def test_calibrated_sigma_is_hypot_per_bin_and_falls_back_to_the_pooled_pair():
    cal = FitCalibration.from_dict(GOOD)
    g, u, span = np.array([0.01, 0.05, 0.2]), np.array([0.002, 0.004, 0.03]), 40.0
    res = g * span  # 0.4, 2, 8 decay times: bins 0, 1, 2
    pairs = np.array(GOOD["cells"]["raw/short/free"])[[0, 1, 2]]
    np.testing.assert_allclose(cal.sigma("raw/short/free", g, u, span),
                               np.sqrt((pairs[:, 0] * u) ** 2 + (pairs[:, 1] * g) ** 2), rtol=1e-12)
    assert np.all(np.diff(res) > 0)
    np.testing.assert_allclose(cal.sigma("raw/long/free", g, u, span), np.hypot(1.2 * u, 0.05 * g), rtol=1e-12)
    with pytest.raises(XPCSInputError, match="no cell for 'lagnet/short/free'"):
        cal.sigma("lagnet/short/free", g, u, span)


def _lag_copy(tmp_path, edit=None):
    d = tmp_path / "lag"
    shutil.copytree(pretrained_directory() / "lagnet", d)
    if edit is not None:
        card = json.loads((d / "lagnet_card.json").read_text())
        edit(card)
        (d / "lagnet_card.json").write_text(json.dumps(card))
    return d


def test_a_model_cards_broken_calibration_is_one_line(tmp_path):
    from xpcs_denoise.nn.lagnet import LagDenoiser

    d = _lag_copy(tmp_path, lambda c: c["calibration"]["cells"].update({"lagnet/*": [[float("nan"), 0.1]]}))
    model = LagDenoiser.from_directory(d)  # the weights are fine: the card's calibration is checked when used
    with pytest.raises(XPCSInputError, match="lagnet/"):
        fit_two_time(c2(), model=model)
    np.save(tmp_path / "c.npy", c2()[None])
    assert run_cli("denoise", tmp_path / "c.npy", "-o", tmp_path / "d.h5", "--model", d, "-q").returncode == 0
    before = tree(tmp_path)
    one_line(run_cli("fit", tmp_path / "d.h5", "-o", tmp_path / "f.csv", "-q"), "calibration")
    assert tree(tmp_path) == before


def test_a_card_without_calibration_fits_with_the_fits_own_error(tmp_path):
    from types import SimpleNamespace

    assert load_calibration("cned", SimpleNamespace(card={"name": "x"})) is None
    x = c2()
    with pytest.warns(UserWarning, match="no calibration"):
        r = fit_denoised(x, x, method="cned", model=SimpleNamespace(card={}, size=50))
    assert str(r.cell) == "uncalibrated" and r.fit.gamma_err == pytest.approx(r.gamma_err_fit)


# --- fit_two_time / fit_denoised -------------------------------------------------------------------------------


def _fit(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_two_time(x, method="none", **kw)


@pytest.mark.parametrize("call,phrase", [
    (lambda: fit_denoised(c2(), c2()[:50, :50], method="none"), "differ in shape"),
    (lambda: fit_denoised(c2(), c2(), method="gaussian"), "method"),
    (lambda: _fit(c2() + 1j * c2()), "real numbers"),
    (lambda: fit_denoised(c2() + 0j, c2(), method="none"), "real numbers"),
    (lambda: _fit(np.full((60, 60), "1.0")), "real numbers"),
    (lambda: _fit(np.ones((0, 60, 60))), "no 2TCF"),
    (lambda: _fit(np.ones((2, 2, 60, 60))), "square"),
    (lambda: _fit(c2(), max_lag=0), "max_lag"),
    (lambda: _fit(c2(), max_lag=500), "max_lag"),
    (lambda: _fit(c2(), max_lag=2.5), "max_lag"),
    (lambda: _fit(np.stack([c2(), c2()]), fix={"alpha": [1.0, 1.0, 1.0]}), "3 entries for 2"),
    (lambda: _fit(c2(), fix={"tau": 1.0}), "tau"),
    (lambda: _fit(c2(), frame_time=-0.01), "frame_time"),
    (lambda: _fit(c2(), frame_time=0.0), "frame_time"),
    (lambda: fit_two_time(np.where(np.arange(60) == 7, np.nan, c2())), "NaN"),
], ids=["shapes", "method", "complex", "complex raw", "text", "no 2TCF", "4-D", "max_lag 0", "max_lag > N",
        "max_lag 2.5", "fix length", "fix key", "frame_time < 0", "frame_time 0", "lagnet NaN frame"])
def test_fit_two_time_bad_arguments(call, phrase):
    with pytest.raises(XPCSInputError, match=phrase) as exc:
        call()
    assert "\n" not in str(exc.value)


def _g2_numpy(x, lags):
    """Eq. 2 by hand: the mean of both triangles' diagonal k, NaN left out."""
    return np.array([np.nanmean(np.r_[np.diagonal(x, k), np.diagonal(x, -k)]) for k in lags])


def test_an_excluded_frame_is_left_out_of_the_raw_fit():
    x = c2()
    x[7, :] = x[:, 7] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_denoised(x, x, method="none", weighted=False)
    ref = fit_g2(_g2_numpy(x, range(1, 60)))
    assert r.fit.success and r.fit.gamma == pytest.approx(float(ref.gamma), rel=1e-6)
    assert abs(r.fit.gamma - 0.05) < 0.005


def test_integer_and_rescaled_two_times_give_the_same_gamma():
    x = c2()
    ref = _fit(x).fit.gamma
    assert _fit(x * 1e6).fit.gamma == pytest.approx(ref, rel=1e-6)
    assert _fit(x * 1e-6).fit.gamma == pytest.approx(ref, rel=1e-6)
    xi = np.round(x * 10000).astype(np.int32)
    assert _fit(xi).fit.gamma == pytest.approx(_fit(xi.astype(np.float64)).fit.gamma, rel=1e-12)
    ft = _fit(x, frame_time=0.02)
    assert ft.fit.gamma == pytest.approx(ref / 0.02, rel=1e-9) and ft.lag_range == (0.02, 59 * 0.02)


@pytest.mark.parametrize("x", [np.full((60, 60), np.nan), c2() * 1e300, np.ones((60, 60))],
                         ids=["all NaN", "1e300", "constant"])
def test_no_decay_to_fit_is_a_failed_fit_with_its_reason(x):
    r = _fit(x)
    assert not r.fit.success and np.isnan(r.fit.gamma) and np.isnan(r.fit.gamma_err)
    assert str(r.fit.message)


def test_max_lag_is_the_lags_fitted():
    r = _fit(c2(), max_lag=59)
    assert r.lag_range == (1.0, 59.0) and r.fit.lags[-1] == 59
    assert _fit(c2(), max_lag=20).lag_range == (1.0, 20.0)


# --- detector files -------------------------------------------------------------------------------------------


def _imm_header(rows, cols, width=2, comp=0, dlen=None):
    """One IMM header (the layout of tests/test_detectors.write_imm); dlen defaults to rows × cols (capped)."""
    head = bytearray(1024)
    dlen = min(rows * cols, 2**31 - 1) if dlen is None else dlen
    for off, v in ((4, comp), (108, rows), (112, cols), (116, width), (152, dlen)):
        head[off:off + 4] = np.int32(v).tobytes()
    return bytes(head)


def _imm_sparse(idx, val, rows=4, cols=4, width=2):
    vt = {1: "<u1", 2: "<u2", 4: "<u4"}[width]
    return (_imm_header(rows, cols, width, 6, len(idx)) + np.asarray(idx, "<i4").tobytes()
            + np.asarray(val, vt).tobytes())


@pytest.mark.parametrize("data,phrase", [
    (b"", "empty"),
    (_imm_header(2**20, 2**20), "truncated"),
    (_imm_header(4, 4, comp=6, dlen=2**30), "truncated"),
    (_imm_header(4, 4) + bytes(32) + _imm_header(4, 5) + bytes(40), "unlike the first"),
    (_imm_header(4, 4) + bytes(32) + _imm_header(4, 4, width=4) + bytes(64), "unlike the first"),
    (_imm_header(4, 4, dlen=-1, comp=6), "not an IMM header"),
    (_imm_sparse([1, -3], [1, 1]) * 2, "pixel index -3"),
    (_imm_sparse([1, 16], [1, 1]) * 2, "pixel index 16"),
], ids=["zero bytes", "huge dense frame", "huge sparse frame", "mixed sizes", "mixed widths", "negative dlen",
        "negative index", "index beyond"])
def test_imm_files_that_lie(tmp_path, data, phrase):
    p = tmp_path / "scan.imm"
    p.write_bytes(data)
    with pytest.raises(XPCSInputError, match=phrase):
        with read_frames(p) as st:
            np.asarray(st)
    assert p.read_bytes() == data


@pytest.mark.parametrize("width,vals", [(2, [3, 4, 1000]), (1, [200, 50, 7]), (1, [200, 100, 7])])
def test_imm_duplicate_pixels_in_a_sparse_frame_sum(tmp_path, width, vals):
    """A pixel listed twice in a sparse frame: its counts add up; a sum its values cannot hold is refused (a
    1-byte file summing to 300 wrapped to 44)."""
    p = tmp_path / "scan.imm"
    p.write_bytes(_imm_sparse([5, 5, 9], vals, width=width) + _imm_sparse([0], [1], width=width))
    want = np.zeros((2, 16), np.int64)
    np.add.at(want[0], [5, 5, 9], vals)
    want[1, 0] = 1
    with read_frames(p) as st:
        if want.max() > 255 and width == 1:
            with pytest.raises(XPCSInputError, match="pixel 5 sums to 300"):
                np.asarray(st)
        else:
            np.testing.assert_array_equal(np.asarray(st).astype(np.int64), want.reshape(2, 4, 4))


def test_rigaku_zero_bytes_and_duplicate_events(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(XPCSInputError, match="64-bit words"):
        read_frames(tmp_path / "empty.bin", frame_shape=(4, 4))
    # one pixel counted twice in frame 1 (a detector readout split in two): the counts add up
    words = [(0 << 40) | (3 << 16) | 2, (1 << 40) | (5 << 16) | 7, (1 << 40) | (5 << 16) | 4, (2 << 40) | (0 << 16) | 1]
    np.array(words, "<u8").tofile(tmp_path / "dup.bin")
    want = np.zeros((3, 16), np.uint16)
    want[0, 3], want[1, 5], want[2, 0] = 2, 11, 1
    with read_frames(tmp_path / "dup.bin", frame_shape=(4, 4)) as st:
        np.testing.assert_array_equal(np.asarray(st), want.reshape(3, 4, 4))


def test_rigaku_frame_number_claiming_millions_of_frames_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setenv("XPCS_DENOISE_MAX_MEMORY_GB", "1")
    np.array([(0 << 40) | (3 << 16) | 2, ((2**24 - 1) << 40) | (5 << 16) | 7], "<u8").tofile(tmp_path / "s.bin")
    np.save(tmp_path / "rois.npy", np.ones((4, 4), int))
    before = tree(tmp_path)
    one_line(run_cli("correlate", tmp_path / "s.bin", "--rois", tmp_path / "rois.npy", "-o", tmp_path / "c.h5",
                     "-q"), "GiB")
    assert tree(tmp_path) == before


def test_eiger_data_files_of_other_frame_sizes_or_a_group(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in (("a.h5", (10, 4, 4)), ("b.h5", (10, 4, 5))):
        with h5py.File(tmp_path / name, "w") as f:
            f["entry/data/data"] = rng.poisson(1, shape).astype(np.uint16)
    with h5py.File(tmp_path / "m_master.h5", "w") as m:
        m["entry/data/data_000001"] = h5py.ExternalLink("a.h5", "entry/data/data")
        m["entry/data/data_000002"] = h5py.ExternalLink("b.h5", "entry/data/data")
    with pytest.raises(XPCSInputError, match="different sizes"):
        read_frames(tmp_path / "m_master.h5")
    with h5py.File(tmp_path / "g_master.h5", "w") as m:
        m["entry/data/data_000001"] = h5py.ExternalLink("a.h5", "entry/data")  # a group, not frames
    with pytest.raises(XPCSInputError, match="not a \\(n, H, W\\) frame dataset"):
        read_frames(tmp_path / "g_master.h5")


def test_eiger_stack_correlates_as_its_frames(tmp_path):
    fr = np.random.default_rng(1).poisson(2.0, (30, 4, 6)).astype(np.uint32)
    master = write_eiger(tmp_path, fr, per_file=7)  # 7 + 7 + 7 + 7 + 2 frames
    labels = np.zeros((4, 6), int)
    labels[:2], labels[2:] = 1, 2
    x = fr.reshape(30, -1).astype(np.float64)
    with read_frames(master) as st:
        got = two_time(st, labels)
    for k in (1, 2):
        p = x[:, labels.ravel() == k]
        np.testing.assert_allclose(got[k - 1], (p @ p.T / p.shape[1]) / np.outer(p.mean(1), p.mean(1)), rtol=1e-10)


# --- CLI: paths, outputs, options -----------------------------------------------------------------------------


def test_paths_with_spaces_and_unicode(tmp_path):
    d = tmp_path / "my data ü Å"
    d.mkdir()
    fr = np.random.default_rng(0).poisson(1.0, (60, 8, 8))
    np.save(d / "frames (1).npy", fr)
    np.save(d / "röis.npy", np.ones((8, 8), int))
    assert run_cli("correlate", d / "frames (1).npy", "--rois", d / "röis.npy", "-o", d / "c2 ü.h5",
                   "-q").returncode == 0
    np.testing.assert_allclose(read_c2(d / "c2 ü.h5").c2, two_time(fr, np.ones((8, 8), int)), rtol=1e-6)
    r = run_cli("fit", d / "c2 ü.h5", "-o", d / "fit ü.csv", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads((d / "fit ü.json").read_text())["input"] == str(d / "c2 ü.h5")


@pytest.mark.parametrize("make_out", [
    lambda t: t / "sub" / ".." / "c.npy",
    lambda t: (os.link(t / "c.npy", t / "hard.npy"), t / "hard.npy")[1],
    lambda t: (os.symlink(t / "c.npy", t / "sym.npy"), t / "sym.npy")[1],
], ids=["dotdot", "hard link", "symlink"])
def test_output_that_is_the_input_under_another_name(tmp_path, make_out):
    np.save(tmp_path / "c.npy", np.stack([c2(), c2(seed=1)]))
    (tmp_path / "sub").mkdir()
    out = make_out(tmp_path)
    before = tree(tmp_path)
    one_line(run_cli("denoise", tmp_path / "c.npy", "-o", out, "--overwrite", "--method", "gaussian", "-q"),
             "is the input")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("cmd", [["denoise", "--method", "gaussian"], ["fit"]])
def test_output_in_a_missing_folder_is_not_created(tmp_path, cmd):
    np.save(tmp_path / "c.npy", c2())
    out = tmp_path / "no" / "such" / ("d.h5" if cmd[0] == "denoise" else "f.csv")
    one_line(run_cli(cmd[0], tmp_path / "c.npy", "-o", out, *cmd[1:], "-q"), "no/such does not exist",
             "create it first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy"]


def test_fit_keeps_an_existing_json_beside_a_new_csv(tmp_path):
    np.save(tmp_path / "c.npy", c2())
    (tmp_path / "f.json").write_text("mine")
    before = tree(tmp_path)
    one_line(run_cli("fit", tmp_path / "c.npy", "-o", tmp_path / "f.csv", "-q"), "f.json exists", "--overwrite")
    assert tree(tmp_path) == before


def test_report_into_an_existing_file(tmp_path):
    np.save(tmp_path / "c.npy", c2())
    (tmp_path / "rep").write_text("mine")
    before = tree(tmp_path)
    r = run_cli("report", tmp_path / "c.npy", "-o", tmp_path / "rep", "--overwrite", "--method", "gaussian", "-q")
    one_line(r, "rep")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("args,phrase", [
    (["denoise", "{c}", "-o", "{t}/o.h5", "--bogus"], "unrecognized arguments: --bogus"),
    (["denoise", "{c}", "-o", "{t}/o.h5", "--method", "wiener"], "invalid choice: 'wiener'"),
    (["denoise", "{c}", "-o", "{t}/o.h5", "--step", "two"], "invalid int value: 'two'"),
    (["denoise", "{c}"], "-o/--output"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--frame-time", "-0.1"], "frame_time"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--frame-time", "nan"], "frame_time"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--max-lag", "0"], "--max-lag"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--max-lag", "500"], "--max-lag"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--exclude-frames", "abc"], "abc"),
    (["fit", "{c}", "-o", "{t}/f.csv", "--exclude-frames", "70-80"], "70"),
    (["batch", "{c}", "-o", "{t}/out", "--workers", "1000"], "--workers"),
    (["report", "{c}", "-o", "{t}/rep", "--compare", "gaussian,wiener"], "wiener"),
    (["denoise", "{t}", "-o", "{t}/o.h5"], "is a folder"),
], ids=["unknown option", "unknown method", "step text", "no output", "frame time < 0", "frame time nan",
        "max lag 0", "max lag > N", "exclude text", "exclude beyond N", "workers 1000", "compare unknown",
        "input a folder"])
def test_cli_arguments_are_one_line(tmp_path, args, phrase):
    np.save(tmp_path / "c.npy", c2())
    before = tree(tmp_path)
    r = run_cli(*[a.format(c=tmp_path / "c.npy", t=tmp_path) for a in args], "-q")
    one_line(r, phrase)
    assert tree(tmp_path) == before


# --- label maps -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels,phrase", [
    (np.full((6, 6), 1.5), "whole numbers"),
    (np.where(np.eye(6, dtype=bool), np.nan, 1.0), "whole numbers"),
    (np.ones((2, 6, 6), int), "shape"),
    (np.ones((6, 7), int), "shape"),
    (np.full((6, 6), "1"), "must be integers"),
], ids=["fractional", "NaN", "3-D", "other frame size", "text"])
def test_label_maps_that_cannot_be_used(tmp_path, labels, phrase):
    np.save(tmp_path / "f.npy", np.random.default_rng(0).poisson(2, (20, 6, 6)))
    np.save(tmp_path / "l.npy", labels)
    before = tree(tmp_path)
    one_line(run_cli("correlate", tmp_path / "f.npy", "--rois", tmp_path / "l.npy", "-o", tmp_path / "c.h5", "-q"),
             phrase)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("labels", [np.where(np.arange(36).reshape(6, 6) < 18, 1.0, 2.0),
                                    np.arange(36).reshape(6, 6) < 18],
                         ids=["whole-number floats", "booleans"])
def test_label_maps_of_other_types_are_their_numbers(tmp_path, labels):
    fr = np.random.default_rng(0).poisson(2, (20, 6, 6))
    np.save(tmp_path / "f.npy", fr)
    np.save(tmp_path / "l.npy", labels)
    assert run_cli("correlate", tmp_path / "f.npy", "--rois", tmp_path / "l.npy", "-o", tmp_path / "c.h5",
                   "-q").returncode == 0
    got = read_c2(tmp_path / "c.h5").c2
    x = fr.reshape(20, -1).astype(np.float64)
    lab = np.asarray(labels, dtype=np.int64).ravel()
    for k in range(1, lab.max() + 1):
        p = x[:, lab == k]
        np.testing.assert_allclose(got[k - 1], (p @ p.T / p.shape[1]) / np.outer(p.mean(1), p.mean(1)), rtol=1e-6)


# --- model folders --------------------------------------------------------------------------------------------


def _cli_model(tmp_path, d, *extra):
    np.save(tmp_path / "c.npy", c2())
    before = tree(tmp_path)
    r = run_cli("denoise", tmp_path / "c.npy", "-o", tmp_path / "o.h5", "--model", d, *extra, "-q")
    assert tree(tmp_path) == before
    return r


@pytest.mark.parametrize("method,phrase", [("lagnet", "no lag-band model"), ("cned", "model_card.json")])
def test_an_empty_model_folder(tmp_path, method, phrase):
    (tmp_path / "empty").mkdir()
    one_line(_cli_model(tmp_path, tmp_path / "empty", "--method", method), phrase)


def _weights(d):
    return d / "lagnet.safetensors"


@pytest.mark.parametrize("how,phrase", [
    ("no weights", "is missing"),
    ("altered weights", "SHA-256"),
    ("unknown field", "unknown architecture fields"),
    ("dilations text", "dilations"),
    ("smooth width NaN", "lagnet configuration"),
    ("channels huge", "GiB"),
    ("channels other", "cannot be loaded"),
    ("weights outside", "outside the model folder"),
    ("card a list", "not a valid model card"),
])
def test_lagnet_folders_that_lie(tmp_path, how, phrase):
    edits = {
        "unknown field": lambda c: c["architecture"].update(heads=4),
        "dilations text": lambda c: c["architecture"].update(dilations=["ab"]),
        "smooth width NaN": lambda c: c["architecture"].update(smooth_widths=[2.0, 6.0, float("nan")]),
        "channels huge": lambda c: c["architecture"].update(channels=200_000),
        "channels other": lambda c: c["architecture"].update(channels=16),
        "weights outside": lambda c: c.update(weights_file="../outside.safetensors"),
    }
    d = _lag_copy(tmp_path, edits.get(how))
    if how == "no weights":
        _weights(d).unlink()
    elif how == "altered weights":
        data = bytearray(_weights(d).read_bytes())
        data[-3] ^= 0xFF
        _weights(d).write_bytes(bytes(data))
    elif how == "weights outside":
        shutil.copyfile(_weights(d), tmp_path / "outside.safetensors")
    elif how == "card a list":
        (d / "lagnet_card.json").write_text("[1, 2]")
    from xpcs_denoise.nn.lagnet import LagDenoiser

    with pytest.raises(XPCSInputError, match=phrase):
        LagDenoiser.from_directory(d)
    one_line(_cli_model(tmp_path, d, "--method", "lagnet"), phrase)


def test_a_model_of_the_other_family(tmp_path):
    d = _lag_copy(tmp_path)
    one_line(_cli_model(tmp_path, d, "--method", "cned"), "lagnet model, not cned")
