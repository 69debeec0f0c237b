"""Our raw-frame readers against boost_corr's (APS 8-ID-I's correlator) on the same files, where boost_corr is
installed (Python ≥ 3.12, ``bash scripts/check_real_tools.sh`` builds such an environment); skipped elsewhere.
The files are written to each format's specification by the writers of tests/test_detectors.py."""

import numpy as np
import pytest

pytest.importorskip("torch")
rigaku = pytest.importorskip("boost_corr.xpcs_aps_8idi.dataset.rigaku_handler")
imm = pytest.importorskip("boost_corr.xpcs_aps_8idi.dataset.imm_handler")

from xpcs_denoise.io.formats import read_frames  # noqa: E402

from .test_detectors import write_imm, write_rigaku  # noqa: E402


def _frames(t, h, w, seed, hi=5):
    rng = np.random.default_rng(seed)
    fr = rng.poisson(0.6, (t, h, w)).clip(0, hi).astype(np.uint16)
    fr[-1, -1, -1] = 2  # the last frame holds a photon: a sparse file then says how many frames it has
    return fr


def test_rigaku_bin_reads_as_boost_corr_reads_it(tmp_path):
    fr = _frames(30, 8, 16, 1)
    write_rigaku(tmp_path / "scan.bin", fr)
    ds = rigaku.RigakuDataset(str(tmp_path / "scan.bin"), det_size=(8, 16), device="cpu", batch_size=30)
    theirs = ds[0].numpy().reshape(-1, 8, 16)
    with read_frames(tmp_path / "scan.bin", frame_shape=(8, 16)) as st:
        ours = np.asarray(st)
    assert theirs.shape == ours.shape == fr.shape
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, fr)


@pytest.mark.parametrize("sparse", [False, True])
def test_imm_reads_as_boost_corr_reads_it(tmp_path, sparse):
    fr = _frames(12, 6, 9, 2)
    write_imm(tmp_path / "scan.imm", fr, sparse_frames=range(12) if sparse else ())
    ds = imm.ImmDataset(str(tmp_path / "scan.imm"), device="cpu", batch_size=12)
    theirs = ds[0].numpy().reshape(-1, 6, 9)
    with read_frames(tmp_path / "scan.imm") as st:
        ours = np.asarray(st)
    assert theirs.shape == ours.shape == fr.shape
    np.testing.assert_array_equal(ours, theirs)
