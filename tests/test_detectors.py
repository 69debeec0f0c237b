"""Raw detector formats (issue 31): files written here to each format's specification are read back as the
frames they hold, and correlate gives the 2TCF of those frames; links outside the master's folder are refused."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from xpcs_denoise.core.correlation import two_time
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.io.formats import read_frames


def _frames(t=40, h=8, w=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(0.4, (t, h, w)).astype(np.uint16)


def write_rigaku(path, frames):
    """Rigaku sparse .bin: one little-endian uint64 per (frame, pixel) with photons: frame << 40 | pixel << 16 |
    count, pixels row-major (boost_corr's convert_sparse reads the same fields)."""
    t, h, w = frames.shape
    f, p = np.nonzero(frames.reshape(t, h * w))
    c = frames.reshape(t, h * w)[f, p].astype(np.uint64)
    words = (f.astype(np.uint64) << np.uint64(40)) | (p.astype(np.uint64) << np.uint64(16)) | c
    words.astype("<u8").tofile(path)


def test_rigaku_sparse_reads_the_frames(tmp_path):
    fr = _frames()
    fr[-1, -1, -1] = 3  # the last frame has photons, so the file says how many frames there are
    write_rigaku(tmp_path / "scan.bin", fr)
    with read_frames(tmp_path / "scan.bin", frame_shape=(8, 16)) as stack:
        assert stack.shape == fr.shape and stack.source_format == "rigaku"
        np.testing.assert_array_equal(np.asarray(stack), fr)
        labels = np.zeros((8, 16), int)
        labels[:4], labels[4:] = 1, 2
        np.testing.assert_allclose(two_time(stack, labels, block_pixels=16), two_time(fr, labels), rtol=1e-12)


def test_rigaku_refuses_a_wrong_frame_size_and_a_torn_file(tmp_path):
    fr = _frames()
    write_rigaku(tmp_path / "scan.bin", fr)
    with pytest.raises(XPCSInputError, match="beyond"):
        read_frames(tmp_path / "scan.bin", frame_shape=(4, 4))
    (tmp_path / "torn.bin").write_bytes((tmp_path / "scan.bin").read_bytes()[:-3])
    with pytest.raises(XPCSInputError, match="64-bit words"):
        read_frames(tmp_path / "torn.bin", frame_shape=(8, 16))


def write_eiger(folder, frames, per_file=15, stem="scan"):
    """Eiger master/data layout (NSLS-II): data files ``<stem>_data_00000k.h5`` with ``entry/data/data`` (n, H, W),
    and a master ``<stem>_master.h5`` whose ``entry/data/data_00000k`` are external links to them."""
    with h5py.File(folder / f"{stem}_master.h5", "w") as m:
        g = m.create_group("entry/data")
        for k, s in enumerate(range(0, len(frames), per_file)):
            name = f"{stem}_data_{k + 1:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                d.create_dataset("entry/data/data", data=frames[s:s + per_file], chunks=(1, *frames.shape[1:]))
            g[f"data_{k + 1:06d}"] = h5py.ExternalLink(name, "entry/data/data")
    return folder / f"{stem}_master.h5"


def test_eiger_master_reads_its_data_files_in_order(tmp_path):
    fr = _frames(t=40)
    master = write_eiger(tmp_path, fr)
    with read_frames(master) as stack:
        assert stack.shape == fr.shape and stack.source_format == "eiger"
        np.testing.assert_array_equal(np.asarray(stack), fr)
        labels = np.ones((8, 16), int)
        np.testing.assert_allclose(two_time(stack, labels, block_pixels=32), two_time(fr, labels), rtol=1e-12)
    # the CLI too, and the input files stay as they were
    np.save(tmp_path / "rois.npy", np.ones((8, 16), int))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = subprocess.run([sys.executable, "-m", "xpcs_denoise", "correlate", str(master), "--rois",
                        str(tmp_path / "rois.npy"), "-o", str(tmp_path / "c2.h5"), "-q"], capture_output=True,
                       text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert all((tmp_path / n).read_bytes() == b for n, b in before.items())


def test_eiger_links_outside_the_folder_or_missing_are_refused(tmp_path):
    fr = _frames(t=20)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with h5py.File(tmp_path / "b" / "data.h5", "w") as d:
        d["entry/data/data"] = fr
    with h5py.File(tmp_path / "a" / "m_master.h5", "w") as m:
        m["entry/data/data_000001"] = h5py.ExternalLink("../b/data.h5", "entry/data/data")
    with pytest.raises(XPCSInputError, match="outside the master's folder"):
        read_frames(tmp_path / "a" / "m_master.h5")
    master = write_eiger(tmp_path / "b", fr, stem="s")
    (tmp_path / "b" / "s_data_000002.h5").unlink()
    with pytest.raises(XPCSInputError, match="missing"):
        read_frames(master)


def test_correlate_takes_a_rigaku_file_with_its_label_map(tmp_path):
    fr = _frames(t=30, h=6, w=10)
    fr[-1, 0, 0] = 1
    write_rigaku(tmp_path / "scan.bin", fr)
    labels = np.zeros((6, 10), int)
    labels[:, :5], labels[:, 5:] = 1, 2
    np.save(tmp_path / "rois.npy", labels)
    r = subprocess.run([sys.executable, "-m", "xpcs_denoise", "correlate", str(tmp_path / "scan.bin"), "--rois",
                        str(tmp_path / "rois.npy"), "-o", str(tmp_path / "c2.h5"), "-q"], capture_output=True,
                       text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    from xpcs_denoise.io.formats import read_c2

    np.testing.assert_allclose(read_c2(tmp_path / "c2.h5").c2, two_time(fr, labels), rtol=1e-6)


def write_imm(path, frames, *, sparse_frames=(), width=2, dt=0.01):
    """IMM to its header layout (1024 bytes, little-endian: compression at 4, rows 108, cols 112, bytes per value
    116, elapsed float64 128, dlen 152), each header followed by the frame: all values, or for compression 6
    dlen int32 row-major pixel indices then dlen values."""
    t, h, w = frames.shape
    with open(path, "wb") as f:
        for i in range(t):
            head = bytearray(1024)
            flat = frames[i].ravel()
            sparse = i in sparse_frames
            idx = np.flatnonzero(flat)
            dlen = idx.size if sparse else h * w
            for off, v in ((4, 6 if sparse else 0), (108, h), (112, w), (116, width), (152, dlen)):
                head[off:off + 4] = np.int32(v).tobytes()
            head[128:136] = np.float64(i * dt).tobytes()
            f.write(bytes(head))
            vt = {1: "<u1", 2: "<u2", 4: "<u4"}[width]
            if sparse:
                f.write(idx.astype("<i4").tobytes() + flat[idx].astype(vt).tobytes())
            else:
                f.write(flat.astype(vt).tobytes())


@pytest.mark.parametrize("width", [2, 4])
def test_imm_reads_dense_and_sparse_frames(tmp_path, width):
    fr = _frames(t=20, h=6, w=9, seed=3)
    write_imm(tmp_path / "scan.imm", fr, sparse_frames=range(0, 20, 2), width=width)
    with read_frames(tmp_path / "scan.imm") as st:
        assert st.shape == (20, 6, 9) and st.source_format == "imm" and st.dtype.itemsize == width
        np.testing.assert_array_equal(np.asarray(st), fr)
        np.testing.assert_array_equal(st[3:7, 1:4], fr[3:7, 1:4])
        np.testing.assert_allclose(st.data.elapsed, np.arange(20) * 0.01)
    labels = np.ones((6, 9), int)
    with read_frames(tmp_path / "scan.imm") as st:
        np.testing.assert_allclose(two_time(st, labels), two_time(fr, labels))


def test_imm_refuses_a_torn_file_and_a_foreign_header(tmp_path):
    fr = _frames(t=5, h=4, w=4)
    write_imm(tmp_path / "a.imm", fr, sparse_frames=(1,))
    data = (tmp_path / "a.imm").read_bytes()
    (tmp_path / "torn.imm").write_bytes(data[:-3])
    with pytest.raises(XPCSInputError, match="truncated"):
        read_frames(tmp_path / "torn.imm")
    (tmp_path / "junk.imm").write_bytes(b"\xff" * 2048)
    with pytest.raises(XPCSInputError, match="not an IMM header"):
        read_frames(tmp_path / "junk.imm")
