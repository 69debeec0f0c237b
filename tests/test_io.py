import json
import os
import subprocess
import sys
from datetime import datetime
from importlib.metadata import version

import h5py
import numpy as np
import pytest

import xpcs_denoise.io.native as xnative
from xpcs_denoise import XPCSInputError, one_time_from_two_time, two_time
from xpcs_denoise.io.formats import (
    C2File,
    atomic_path,
    open_c2,
    read_c2,
    read_frames,
    read_labels,
    write_aps_c2,
    write_aps_legacy,
    write_c2,
)


def sym_stack(k=3, n=9, seed=0):
    """K symmetric matrices with distinct, non-zero entries (so that a lost triangle or diagonal shows)."""
    rng = np.random.default_rng(seed)
    a = 1.0 + rng.random((k, n, n))
    return a + np.swapaxes(a, -1, -2)


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --- .npy -----------------------------------------------------------------------------------------------------


def test_npy_2d_and_3d_round_trip(tmp_path):
    c2 = sym_stack()
    np.save(tmp_path / "one.npy", c2[0].astype(np.float32))
    np.save(tmp_path / "many.npy", c2)
    one = read_c2(tmp_path / "one.npy")
    assert isinstance(one, C2File) and one.source_format == "npy" and one.q is None and one.g2 is None
    assert one.c2.shape == (1, 9, 9) and one.c2.dtype == np.float64
    np.testing.assert_array_equal(one.c2[0], c2[0].astype(np.float32))
    many = read_c2(tmp_path / "many.npy")
    assert many.c2.shape == (3, 9, 9)
    np.testing.assert_array_equal(many.c2, c2)


def test_half_matrix_in_npy_is_mirrored_exactly(tmp_path):
    full = sym_stack(k=1)[0]
    np.save(tmp_path / "upper.npy", np.triu(full))
    np.save(tmp_path / "lower.npy", np.tril(full))
    for name in ("upper.npy", "lower.npy"):
        np.testing.assert_array_equal(read_c2(tmp_path / name).c2[0], full)


def test_nan_passes_through(tmp_path):
    c2 = sym_stack(k=1)[0]
    c2[2, 5] = c2[5, 2] = np.nan
    np.save(tmp_path / "nan.npy", c2)
    got = read_c2(tmp_path / "nan.npy").c2[0]
    assert np.isnan(got[2, 5]) and np.isnan(got[5, 2]) and np.isfinite(got).sum() == 81 - 2


@pytest.mark.parametrize(("shape", "words"), [((9,), "(N, N)"), ((2, 2, 4, 4), "(N, N)"), ((4, 5), "square"),
                                               ((3, 6, 7), "square")])
def test_wrong_dims_and_non_square(tmp_path, shape, words):
    np.save(tmp_path / "bad.npy", np.ones(shape))
    with pytest.raises(XPCSInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_c2(tmp_path / "bad.npy")


# --- our format -----------------------------------------------------------------------------------------------


def test_our_format_round_trip_with_all_fields(tmp_path):
    c2 = sym_stack()
    raw, std = c2 + 0.5, 0.01 * c2
    g2 = np.arange(3 * 8, dtype=float).reshape(3, 8)
    q = np.array([0.0012, 0.0034, 0.0056])
    attrs = {"method": "cned", "model_card_sha256": "ab" * 32, "window": 50, "step": 25, "seed": 7,
             "members": [1, 2, 3], "fit": {"tau": 1.5, "ok": True}, "betas": np.array([0.1, 0.2])}
    out = write_c2(tmp_path / "out.h5", c2, raw=raw, g2=g2, std=std, q=q, attrs=attrs, dtype=np.float64)
    assert out == tmp_path / "out.h5" and files_in(tmp_path) == ["out.h5"]
    got = read_c2(out)
    assert got.source_format == "xpcs-denoise"
    for want, have in ((c2, got.c2), (raw, got.raw), (std, got.std), (g2, got.g2), (q, got.q)):
        np.testing.assert_array_equal(have, want)
    a = got.attrs
    assert (a["method"], a["window"], a["step"], a["seed"]) == ("cned", 50, 25, 7)
    assert a["model_card_sha256"] == "ab" * 32
    assert a["members"] == [1, 2, 3] and a["fit"] == {"tau": 1.5, "ok": True} and a["betas"] == [0.1, 0.2]
    assert a["format"] == "xpcs-denoise-c2" and a["format_version"] == 2
    assert a["software"] == "xpcs-denoise" and a["software_version"] == version("xpcs-denoise")
    assert datetime.fromisoformat(a["created_utc"]).utcoffset().total_seconds() == 0
    with h5py.File(out, "r") as f:  # the layout the README documents
        assert f["c2"].shape == (3, 9 * 10 // 2) and f["c2"].dtype == np.float64
        assert f["c2"].attrs["layout"] == "upper_triangle_packed" and f["c2"].attrs["n_frames"] == 9
        np.testing.assert_array_equal(f["lag"][()], np.arange(1, 9))
        assert f["q"].attrs["units"] == "1/Angstrom"
        assert json.loads(f.attrs["json_attrs"]) == ["members", "fit", "betas"]


def test_our_format_computes_g2_and_stores_2d_as_3d(tmp_path):
    c2 = sym_stack(k=1)[0]
    write_c2(tmp_path / "a.h5", c2)
    got = read_c2(tmp_path / "a.h5")
    assert got.c2.shape == (1, 9, 9) and got.raw is None and got.std is None and got.q is None
    np.testing.assert_allclose(got.g2, one_time_from_two_time(c2)[None], rtol=1e-15)
    assert got.g2[0, 0] == pytest.approx(np.mean(np.diagonal(c2, 1)))


def test_default_storage_is_float32_triangles_within_float32_precision(tmp_path):
    c2 = sym_stack(n=40)
    write_c2(tmp_path / "a.h5", c2, raw=c2 + 1)
    got = read_c2(tmp_path / "a.h5")
    np.testing.assert_allclose(got.c2, c2, rtol=6e-8, atol=0)  # float32: half an ulp, 2**-24 relative
    np.testing.assert_allclose(got.raw, c2 + 1, rtol=6e-8, atol=0)
    np.testing.assert_array_equal(got.c2, np.swapaxes(got.c2, -1, -2))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["c2"].dtype == np.float32 and f["c2"].shape == (3, 40 * 41 // 2)
        assert f["c2"].compression == "gzip" and f["c2"].shuffle


def test_pack_unpack_upper_is_triu_order_and_exact():
    from xpcs_denoise.io.formats import pack_upper, unpack_upper

    m = sym_stack(k=1, n=7)[0]
    packed = pack_upper(m, np.float64)
    np.testing.assert_array_equal(packed, m[np.triu_indices(7)])
    np.testing.assert_array_equal(unpack_upper(packed, 7), m)
    with pytest.raises(XPCSInputError, match="upper triangle"):
        unpack_upper(packed[:-1], 7)


def test_version_1_files_still_read(tmp_path):
    c2, raw = sym_stack(), sym_stack(seed=5)
    with h5py.File(tmp_path / "v1.h5", "w") as f:  # as xpcs-denoise wrote them before format version 2
        f.attrs.update({"format": "xpcs-denoise-c2", "format_version": 1, "method": "cned", "json_attrs": "[]"})
        f["c2"], f["c2_raw"], f["q"] = c2, raw, np.array([0.1, 0.2, 0.3])
        f["g2"] = one_time_from_two_time(c2)
    got = read_c2(tmp_path / "v1.h5")
    np.testing.assert_array_equal(got.c2, c2)
    np.testing.assert_array_equal(got.raw, raw)
    assert got.std is None and got.attrs["method"] == "cned" and got.q.tolist() == [0.1, 0.2, 0.3]
    with open_c2(tmp_path / "v1.h5") as src:
        assert (src.n_rois, src.n_frames, src.has_raw) == (3, 9, True)
        np.testing.assert_array_equal(src.raw(2), raw[2])


def test_open_c2_streams_every_layout_like_read_c2(tmp_path):
    c2, q = sym_stack(k=4, n=12), np.array([0.001, 0.002, 0.003, 0.004])
    np.save(tmp_path / "a.npy", c2)
    write_c2(tmp_path / "b.h5", c2, q=q, phi=[0, 90, 0, 90], rois=[3, 4, 7, 8])
    write_aps_c2(tmp_path / "c.hdf", c2, q=q)
    for name in ("a.npy", "b.h5", "c.hdf"):
        whole = read_c2(tmp_path / name)
        with open_c2(tmp_path / name) as src:
            assert (src.n_rois, src.n_frames) == (4, 12)
            for k in range(4):
                np.testing.assert_array_equal(src.c2(k), whole.c2[k])
            with pytest.raises(XPCSInputError, match="out of range"):
                src.c2(4)
    b = read_c2(tmp_path / "b.h5")
    assert b.phi.tolist() == [0, 90, 0, 90] and b.rois.tolist() == [3, 4, 7, 8]


@pytest.mark.parametrize("kwargs", [{"raw": np.ones((3, 9, 8))}, {"q": [0.1, 0.2]}, {"g2": np.ones((3, 9))},
                                    {"attrs": {"format": "mine"}}, {"attrs": {"x": object()}}])
def test_write_c2_rejects_bad_inputs_before_writing(tmp_path, kwargs):
    with pytest.raises(XPCSInputError):
        write_c2(tmp_path / "x.h5", sym_stack(), **kwargs)
    assert files_in(tmp_path) == []


def test_newer_format_version_is_refused(tmp_path):
    write_c2(tmp_path / "a.h5", sym_stack())
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(XPCSInputError, match="upgrade"):
        read_c2(tmp_path / "a.h5")


# --- atomic writes --------------------------------------------------------------------------------------------


def test_no_overwrite_without_flag_and_existing_file_untouched(tmp_path):
    path = tmp_path / "out.h5"
    write_c2(path, sym_stack(seed=1))
    before = path.read_bytes()
    with pytest.raises(XPCSInputError, match="exists; pass overwrite=True"):
        write_c2(path, sym_stack(seed=2))
    assert path.read_bytes() == before and files_in(tmp_path) == ["out.h5"]
    write_c2(path, sym_stack(seed=2), overwrite=True)
    np.testing.assert_allclose(read_c2(path).c2, sym_stack(seed=2), rtol=6e-8)
    assert files_in(tmp_path) == ["out.h5"]


def test_failure_mid_write_leaves_no_output(tmp_path, monkeypatch):
    calls = []
    real = xnative.pack_upper

    def failing(m, dtype=np.float32):
        calls.append(1)
        if len(calls) == 2:  # the file is open and the first ROI's c2 already written
            raise OSError("disk full (simulated)")
        return real(m, dtype)

    monkeypatch.setattr(xnative, "pack_upper", failing)
    with pytest.raises(OSError, match="simulated"):
        write_c2(tmp_path / "out.h5", sym_stack(), raw=sym_stack())
    assert len(calls) == 2 and files_in(tmp_path) == []

    monkeypatch.setattr(xnative, "pack_upper", real)  # an existing file survives a failed overwrite byte for byte
    write_c2(tmp_path / "out.h5", sym_stack(seed=3))
    before = (tmp_path / "out.h5").read_bytes()
    calls.clear()
    monkeypatch.setattr(xnative, "pack_upper", failing)
    with pytest.raises(OSError):
        write_c2(tmp_path / "out.h5", sym_stack(), raw=sym_stack(), overwrite=True)
    assert (tmp_path / "out.h5").read_bytes() == before and files_in(tmp_path) == ["out.h5"]


def test_atomic_path_for_other_writers(tmp_path):
    target = tmp_path / "fit.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != target and not target.exists()
        tmp.write_text("q,tau\n0.1,2.0\n")
    assert target.read_text() == "q,tau\n0.1,2.0\n" and files_in(tmp_path) == ["fit.csv"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"half a png")
        raise RuntimeError("renderer crashed")
    assert files_in(tmp_path) == ["fit.csv"]
    with pytest.raises(XPCSInputError, match="exists"), atomic_path(tmp_path / "race.txt") as tmp:
        tmp.write_text("ours")
        (tmp_path / "race.txt").write_text("another program's")  # appeared while we were writing
    assert (tmp_path / "race.txt").read_text() == "another program's"
    assert files_in(tmp_path) == ["fit.csv", "race.txt"]
    with pytest.raises(XPCSInputError, match="does not exist; create it"):
        with atomic_path(tmp_path / "missing" / "a.json"):
            pass


# --- APS 8-ID-I -----------------------------------------------------------------------------------------------


def test_aps_round_trip_with_q_and_half_storage(tmp_path):
    c2, q = sym_stack(k=4), np.array([0.001, 0.002, 0.004, 0.008])
    write_aps_c2(tmp_path / "aps.hdf", c2, q=q)
    with h5py.File(tmp_path / "aps.hdf", "r") as f:
        grp = f["xpcs/twotime/correlation_map"]
        assert sorted(grp) == ["c2_00001", "c2_00002", "c2_00003", "c2_00004"]
        half = grp["c2_00002"][()]
        np.testing.assert_array_equal(half, np.triu(c2[1]))  # upper triangle with the diagonal, as boost_corr
        np.testing.assert_array_equal(f["xpcs/twotime/processed_bins"][()], [1, 2, 3, 4])
    got = read_c2(tmp_path / "aps.hdf")
    assert got.source_format == "aps-8idi" and got.attrs["processed_bins"] == [1, 2, 3, 4]
    np.testing.assert_array_equal(got.c2, c2)
    np.testing.assert_array_equal(got.q, q)


def test_aps_file_as_boost_corr_writes_it(tmp_path):
    """float32 halves, lzf-compressed, 4 ROIs of a 3 q × 2 φ map; q from the bin labels through the index map."""
    full = sym_stack(k=4).astype(np.float32)
    with h5py.File(tmp_path / "r.hdf", "w") as f:
        for i, m in enumerate(full):
            f.create_dataset(f"xpcs/twotime/correlation_map/c2_{i + 1:05d}", data=np.triu(m), compression="lzf")
        f["xpcs/twotime/processed_bins"] = np.array([2, 4, 1, 3])
        f["xpcs/qmap/dynamic_v_list_dim0"] = np.array([0.01, 0.02, 0.03])
        f["xpcs/qmap/dynamic_v_list_dim1"] = np.array([0.0, 90.0])
        f["xpcs/qmap/dynamic_index_mapping"] = np.array([0, 2, 3, 5])  # bins with pixels → (q, φ) grid index
        f["entry/other"] = 1
    got = read_c2(tmp_path / "r.hdf")
    np.testing.assert_array_equal(got.c2, full.astype(np.float64))
    # label 2 → grid 2 → q index 2 // 2 = 1; label 4 → grid 5 → 2; label 1 → 0 → 0; label 3 → 3 → 1
    np.testing.assert_array_equal(got.q[:4], [0.02, 0.03, 0.01, 0.02])
    assert got.attrs["processed_bins"][:4] == [2, 4, 1, 3]


def test_aps_without_q_information_gives_none(tmp_path):
    with h5py.File(tmp_path / "r.hdf", "w") as f:
        f["xpcs/twotime/correlation_map/c2_00001"] = np.triu(sym_stack(k=1)[0])
    got = read_c2(tmp_path / "r.hdf")
    assert got.q is None and got.c2.shape == (1, 9, 9)


def test_aps_legacy_round_trip_group_and_arrays(tmp_path):
    c2, q = sym_stack(k=2), np.array([0.005, 0.007])
    write_aps_legacy(tmp_path / "old.hdf", c2, q=q)
    with h5py.File(tmp_path / "old.hdf", "r") as f:
        assert sorted(f["exchange/C2T_all"]) == ["g2_00001", "g2_00002"]
        assert f["xpcs/dqlist"].shape == (1, 2)
    got = read_c2(tmp_path / "old.hdf")
    assert got.source_format == "aps-8idi-legacy"
    np.testing.assert_array_equal(got.c2, c2)
    np.testing.assert_array_equal(got.q, q)
    for data, k in ((np.triu(c2[0]), 1), (np.stack([np.triu(m) for m in c2]), 2)):  # one 2-D or 3-D dataset
        with h5py.File(tmp_path / f"arr{k}.hdf", "w") as f:
            f["exchange/C2T_all"] = data
            f["xpcs/dqlist"] = np.array([[0.1, 0.2, 0.3]])
            f["xpcs/qphi_bin_to_process"] = np.array([[3], [1]])[:k]
        got = read_c2(tmp_path / f"arr{k}.hdf")
        np.testing.assert_array_equal(got.c2, c2[:k])
        np.testing.assert_array_equal(got.q, [0.3, 0.1][:k])


# --- any HDF5 dataset, errors ---------------------------------------------------------------------------------


def test_generic_dataset_2d_3d_and_group(tmp_path):
    c2 = sym_stack(k=11)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["analysis/one"] = c2[0]
        f["analysis/many"] = c2
        f["analysis/many"].attrs["note"] = "beamtime 3"
        for i, m in enumerate(c2):  # roi2 before roi10: natural order
            f[f"per_roi/roi{i + 1}"] = np.tril(m)
    one = read_c2(tmp_path / "g.h5", dataset="analysis/one")
    assert one.source_format == "hdf5-dataset" and one.c2.shape == (1, 9, 9)
    many = read_c2(tmp_path / "g.h5", dataset="/analysis/many")
    np.testing.assert_array_equal(many.c2, c2)
    assert many.attrs["note"] == "beamtime 3" and many.attrs["dataset"] == "/analysis/many"
    np.testing.assert_array_equal(read_c2(tmp_path / "g.h5", dataset="per_roi").c2, c2)


def test_unknown_layout_and_missing_dataset(tmp_path):
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["frames_sum"] = np.ones(3)
        f["meta/x"] = 1
    with pytest.raises(XPCSInputError, match=r"unknown 2TCF layout.*'frames_sum', 'meta'.*dataset='path/in/file'"):
        read_c2(tmp_path / "u.h5")
    with pytest.raises(XPCSInputError, match=r"no 'c2/data'.*'frames_sum'"):
        read_c2(tmp_path / "u.h5", dataset="c2/data")
    with pytest.raises(XPCSInputError, match=r"\(N, N\) or \(K, N, N\)"):
        read_c2(tmp_path / "u.h5", dataset="frames_sum")


def test_missing_file_folder_garbage_and_truncated(tmp_path):
    with pytest.raises(XPCSInputError, match="does not exist"):
        read_c2(tmp_path / "nope.h5")
    with pytest.raises(XPCSInputError, match="is a folder"):
        read_c2(tmp_path)
    (tmp_path / "garbage.h5").write_bytes(os.urandom(4096))
    with pytest.raises(XPCSInputError, match="neither HDF5 nor .npy"):
        read_c2(tmp_path / "garbage.h5")
    write_c2(tmp_path / "real.h5", sym_stack(k=2, n=40))
    data = (tmp_path / "real.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(XPCSInputError, match="cannot open .*cut.h5 as HDF5.*truncated"):
        read_c2(tmp_path / "cut.h5")
    np.save(tmp_path / "c.npy", sym_stack())
    data = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(XPCSInputError, match="as .npy"):
        read_c2(tmp_path / "cut.npy")


# --- compressed beamline files --------------------------------------------------------------------------------


def test_blosc_and_bitshuffle_lz4_read_back(tmp_path):
    hdf5plugin = pytest.importorskip("hdf5plugin")
    c2 = sym_stack()
    frames = np.random.default_rng(0).poisson(2.0, (6, 4, 5)).astype(np.uint16)
    with h5py.File(tmp_path / "z.h5", "w") as f:
        f.create_dataset("c2", data=c2, **hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.SHUFFLE))
        f.create_dataset("entry/data/data", data=frames, chunks=(1, 4, 5), **hdf5plugin.Bitshuffle(cname="lz4"))
    np.testing.assert_array_equal(read_c2(tmp_path / "z.h5", dataset="c2").c2, c2)
    with read_frames(tmp_path / "z.h5") as stack:
        np.testing.assert_array_equal(np.asarray(stack), frames)


def test_missing_filter_says_pip_install_hdf5plugin(tmp_path):
    hdf5plugin = pytest.importorskip("hdf5plugin")
    with h5py.File(tmp_path / "z.h5", "w") as f:
        f.create_dataset("c2", data=sym_stack(), **hdf5plugin.Blosc(cname="lz4"))
        f.create_dataset("entry/data/data", data=np.ones((4, 3, 3)), chunks=(1, 3, 3), **hdf5plugin.Blosc())
    code = (
        "import sys; sys.modules['hdf5plugin'] = None\n"  # as if it were not installed
        "from xpcs_denoise.io.formats import read_c2, read_frames\n"
        "for call in (lambda: read_c2(sys.argv[1], dataset='c2'), lambda: read_frames(sys.argv[1])):\n"
        "    try:\n        call()\n    except ValueError as exc:\n        print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HDF5_PLUGIN_PATH": str(tmp_path / "none")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "z.h5")], capture_output=True, text=True,
                         env=env, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stderr
    for line in lines:
        assert line.startswith("XPCSInputError") and "blosc" in line and line.endswith("pip install hdf5plugin")


# --- frames ---------------------------------------------------------------------------------------------------


@pytest.fixture
def frames_and_labels():
    rng = np.random.default_rng(1)
    frames = rng.poisson(4.0, (10, 6, 5)).astype(np.uint16)
    labels = np.zeros((6, 5), dtype=np.int64)
    labels[:3], labels[3:] = 1, 2
    return frames, labels


def test_read_frames_npy_is_memory_mapped(tmp_path, frames_and_labels):
    frames, labels = frames_and_labels
    np.save(tmp_path / "f.npy", frames)
    stack = read_frames(tmp_path / "f.npy")
    assert isinstance(stack.data, np.memmap) and stack.shape == (10, 6, 5) and stack.dtype == np.uint16
    np.testing.assert_array_equal(two_time(stack, labels), two_time(frames, labels))


def test_read_frames_hdf5_auto_and_named(tmp_path, frames_and_labels):
    frames, labels = frames_and_labels
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f["entry/data/data"] = frames
        f["scan/images"] = frames[::-1]
    with read_frames(tmp_path / "raw.h5") as stack:
        assert stack.dataset == "/entry/data/data" and isinstance(stack.data, h5py.Dataset)
        np.testing.assert_array_equal(two_time(stack, labels, block_pixels=7), two_time(frames, labels))
    assert not stack.data.id.valid  # file closed by the with block
    with read_frames(tmp_path / "raw.h5", dataset="scan/images") as stack:
        np.testing.assert_array_equal(stack[0], frames[-1])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["detector/frames"] = frames
    with pytest.raises(XPCSInputError, match=r"no frame stack at entry/data/data.*'detector'.*dataset='path/in/file'"):
        read_frames(tmp_path / "other.h5")
    with pytest.raises(XPCSInputError, match="at least 2 frames"):
        np.save(tmp_path / "one.npy", frames[:1])
        read_frames(tmp_path / "one.npy")


def _write_tiffs(folder, frames):
    from PIL import Image

    folder.mkdir()
    for i, frame in enumerate(frames):  # f_2 before f_10: natural order, not character order
        Image.fromarray(frame).save(folder / f"f_{i + 1}.tif")
    (folder / "notes.txt").write_text("not a frame")


def test_read_frames_tiff_folder_natural_order(tmp_path, frames_and_labels, monkeypatch):
    pytest.importorskip("PIL")
    frames, _ = frames_and_labels
    _write_tiffs(tmp_path / "tiffs", frames)
    readers = ["tifffile"] if _importable("tifffile") else []
    for blocked in readers + [None]:
        if blocked:
            monkeypatch.setitem(sys.modules, blocked, None)  # next reader in line: Pillow
        stack = read_frames(tmp_path / "tiffs")
        assert stack.source_format == "tiff" and stack.shape == (10, 6, 5)
        np.testing.assert_array_equal(np.asarray(stack), frames)


def test_read_frames_without_any_tiff_reader(tmp_path, monkeypatch):
    (tmp_path / "tiffs").mkdir()
    (tmp_path / "tiffs" / "a.tif").write_bytes(b"II*\x00")
    for name in ("tifffile", "PIL", "imageio", "imageio.v3"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(XPCSInputError, match="pip install tifffile"):
        read_frames(tmp_path / "tiffs")
    with pytest.raises(XPCSInputError, match="no .tif/.tiff files"):
        read_frames(tmp_path)


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


# --- labels ---------------------------------------------------------------------------------------------------


def test_read_labels_npy_and_aps_maps(tmp_path):
    labels = np.array([[0, 1, 1], [2, 2, 0]])
    np.save(tmp_path / "l.npy", labels.astype(np.float32))
    got = read_labels(tmp_path / "l.npy")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, labels)
    with h5py.File(tmp_path / "res.hdf", "w") as f:
        f["xpcs/qmap/dynamic_roi_map"] = labels.astype(np.uint32)
    np.testing.assert_array_equal(read_labels(tmp_path / "res.hdf"), labels)
    with h5py.File(tmp_path / "qmap.h5", "w") as f:  # legacy qmap file, stored (1, H, W)
        f["data/dynamicMap"] = labels[None].astype(np.uint32)
        f["data/mine"] = 3 * labels
    np.testing.assert_array_equal(read_labels(tmp_path / "qmap.h5"), labels)
    np.testing.assert_array_equal(read_labels(tmp_path / "qmap.h5", dataset="data/mine"), 3 * labels)


@pytest.mark.parametrize(("array", "words"), [
    (np.ones((2, 3, 3), dtype=int), "must be \\(H, W\\)"),
    (np.array([[0, 1], [-1, 2]]), ">= 0"),
    (np.array([[0, 1.5], [1, 2]]), "whole numbers"),
    (np.array([[0, np.nan], [1, 2]]), "whole numbers"),
    (np.zeros((3, 3), dtype=int), "no labelled pixel"),
    (np.array([["a", "b"]]), "integers"),
])
def test_read_labels_errors(tmp_path, array, words):
    np.save(tmp_path / "l.npy", array)
    with pytest.raises(XPCSInputError, match=words):
        read_labels(tmp_path / "l.npy")


def test_read_labels_unknown_hdf5(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["mask"] = np.ones((3, 3))
    with pytest.raises(XPCSInputError, match=r"no ROI label map.*'mask'.*dataset='path/in/file'"):
        read_labels(tmp_path / "x.h5")
