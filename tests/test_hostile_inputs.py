"""Issue 16: hostile inputs and faults. Each case gets one clear line and a non-zero exit from the CLI (or
XPCSInputError from the API), leaves its inputs byte-identical and writes no partial output (no hidden temp
file), refuses up front what would exhaust memory, and never hangs."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import xpcs_denoise
from xpcs_denoise import XPCSInputError, denoise, fit_g2, time_resolved_cuts, two_time
from xpcs_denoise.app import cli
from xpcs_denoise.app.pipeline import denoise_file
from xpcs_denoise.core.simulation import true_two_time
from xpcs_denoise.io.formats import APS_C2_GROUP, atomic_path, open_c2, read_c2, read_frames, write_aps_c2, write_c2
from xpcs_denoise.nn.denoiser import Denoiser, pretrained_directory

SRC = os.path.dirname(os.path.dirname(os.path.abspath(xpcs_denoise.__file__)))  # the copy under test


def good_c2(n=60, seed=0):
    rng = np.random.default_rng(seed)
    c2 = true_two_time(n, 0.04, 0.2) + rng.normal(0, 0.01, (n, n))
    return (c2 + c2.T) / 2


def tree(folder):
    """{relative path: bytes} of every file below ``folder`` (hidden ones included)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, folder)] = open(p, "rb").read() if os.path.isfile(p) else "special"
    return out


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return rc, err


def assert_one_line_error(rc, err, *words):
    assert rc != 0, err
    lines = [ln for ln in err.splitlines() if "Warning" not in ln and ln.strip()]
    assert len(lines) == 1, err
    assert "unexpected" not in err and "Traceback" not in err, err
    for w in words:
        assert w.lower() in err.lower(), err


@pytest.fixture
def c2_file(tmp_path):
    p = tmp_path / "in" / "c2.h5"
    p.parent.mkdir()
    write_c2(p, np.stack([good_c2(), good_c2(seed=1)]), q=[0.01, 0.02])
    return p


# --- (a) data loss ----------------------------------------------------------------------------------------------


def test_report_overwrite_never_deletes_a_user_folder(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    inp = folder / "c2.h5"
    write_c2(inp, good_c2()[None])
    (folder / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    # -o containing the input, and -o . : refused, nothing touched
    rc, err = run_cli(capsys, "report", inp, "-o", folder, "--overwrite", "--method", "gaussian")
    assert_one_line_error(rc, err, "contains the input")
    monkeypatch.chdir(folder)
    rc, err = run_cli(capsys, "report", "c2.h5", "-o", ".", "--overwrite", "--method", "gaussian")
    assert_one_line_error(rc, err)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine too")
    before = tree(tmp_path)
    rc, err = run_cli(capsys, "report", inp, "-o", other, "--overwrite", "--method", "gaussian")
    assert_one_line_error(rc, err, "not a report folder")
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_report_overwrite_replaces_only_its_own_files(tmp_path, capsys):
    inp = tmp_path / "c2.h5"
    write_c2(inp, good_c2()[None])
    out = tmp_path / "rep"
    assert run_cli(capsys, "report", inp, "-o", out, "--method", "gaussian", "-q")[0] == 0
    (out / "my_notes.txt").write_text("added by the user")
    assert run_cli(capsys, "report", inp, "-o", out, "--method", "gaussian", "--overwrite", "-q")[0] == 0
    assert (out / "my_notes.txt").read_text() == "added by the user"
    assert (out / "index.html").is_file()
    assert json.loads((out / "summary.json").read_text(), parse_constant=pytest.fail)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_batch_outputs_keep_the_relative_layout(tmp_path):
    from xpcs_denoise.app.pipeline import batch_outputs

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "scan.npy", good_c2())
    np.save(tmp_path / "a" / "scan2.npy", good_c2())
    (tmp_path / "a" / "scan.h5").write_bytes(b"")
    ins = [tmp_path / "a" / "scan.npy", tmp_path / "b" / "scan.npy", tmp_path / "a" / "scan.h5"]
    outs = batch_outputs(ins, tmp_path / "out")
    assert len(set(outs)) == 3
    assert outs[0] == tmp_path / "out" / "a" / "scan_npy_denoised.h5"
    assert outs[1] == tmp_path / "out" / "b" / "scan_npy_denoised.h5"
    with pytest.raises(XPCSInputError, match="more than once"):
        batch_outputs([ins[0], ins[0]], tmp_path / "out")


@pytest.mark.slow
def test_batch_same_names_both_kept_and_skip_existing(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "scan.npy", good_c2(seed=ord(d)))
    ins = [tmp_path / "a" / "scan.npy", tmp_path / "b" / "scan.npy"]
    out = tmp_path / "out"
    rc = cli.main(["batch", *map(str, ins), "-o", str(out), "--method", "gaussian", "-q", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["status"] for r in rows] == ["ok", "ok"]
    a, b = (read_c2(r["output"]).raw for r in rows)
    assert not np.array_equal(a, b)  # two results, none lost
    rc = cli.main(["batch", *map(str, ins), "-o", str(out), "--method", "gaussian", "-q", "--json",
                   "--skip-existing"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["status"] for r in rows] == ["skipped", "skipped"]


@pytest.mark.parametrize("cmd", [["denoise", "--overwrite", "--no-raw", "--method", "gaussian"],
                                 ["fit", "--overwrite"]])
def test_output_equal_to_input_is_refused(c2_file, capsys, cmd):
    before = c2_file.read_bytes()
    rc, err = run_cli(capsys, cmd[0], c2_file, "-o", c2_file, *cmd[1:])
    assert_one_line_error(rc, err, "is the input")
    assert c2_file.read_bytes() == before


def test_demo_refuses_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "index.html").write_text("mine")
    rc, err = run_cli(capsys, "demo", "--out", out, "-q")
    assert_one_line_error(rc, err, "exists", "--overwrite")
    assert (out / "index.html").read_text() == "mine"


def test_redenoising_keeps_the_original_raw(tmp_path):
    raw = np.stack([good_c2(), good_c2(seed=1)])
    np.save(tmp_path / "raw.npy", raw)
    denoise_file(tmp_path / "raw.npy", tmp_path / "d1.h5", method="gaussian")
    denoise_file(tmp_path / "d1.h5", tmp_path / "d2.h5", method="gaussian")
    d2 = read_c2(tmp_path / "d2.h5")
    # never the denoised input: the original, to the float32 precision of format v2
    np.testing.assert_array_equal(d2.raw, read_c2(tmp_path / "d1.h5").raw)
    np.testing.assert_allclose(d2.raw, raw, rtol=1e-7, atol=0)
    assert not np.allclose(d2.c2, raw)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_overwrite_never_replaces_a_fifo(c2_file, tmp_path, capsys):
    fifo = tmp_path / "out.h5"
    os.mkfifo(fifo)
    rc, err = run_cli(capsys, "denoise", c2_file, "-o", fifo, "--overwrite", "--method", "gaussian")
    assert_one_line_error(rc, err, "not a regular file")
    assert fifo.is_fifo()


def test_concurrent_writers_only_one_succeeds(tmp_path, monkeypatch):
    """Another run publishes the same output in the last instant before ours (after every check): ours must
    fail and leave theirs, not replace it."""
    import xpcs_denoise.io.files as io

    target = tmp_path / "out.h5"
    real_fsync = os.fsync

    def other_run_finishes(fd):
        if not target.exists():
            target.write_text("the other run")
        return real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", other_run_finishes)
    with pytest.raises(XPCSInputError, match="another process"):
        with atomic_path(target) as tmp:
            tmp.write_text("ours")
    assert target.read_text() == "the other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # no hidden temp file left


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    np.save(tmp_path / "in.npy", good_c2())
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import xpcs_denoise.app.pipeline as p
        from xpcs_denoise.app import cli
        from xpcs_denoise.io.formats import C2Writer

        write = C2Writer.write

        def write_then_killed(self, *a, **k):  # killed while the temporary output is half written
            write(self, *a, **k)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        C2Writer.write = write_then_killed
        sys.exit(cli.main(["denoise", {str(tmp_path / 'in.npy')!r}, "-o", {str(tmp_path / 'out.h5')!r},
                           "--method", "gaussian", "-q"]))  # -q: no progress bar on stderr
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 143, r.stderr
    assert_one_line_error(r.returncode, r.stderr.strip(), "terminated")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


# --- (b) memory and hangs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", [["fit", "--cut-width", "100000"], ["fit", "--cut-width", "0"],
                                 ["report", "--cut-width", "100000", "--method", "gaussian"]])
def test_cut_width_out_of_bounds(c2_file, tmp_path, capsys, cmd):
    before = tree(tmp_path)
    rc, err = run_cli(capsys, cmd[0], c2_file, "-o", tmp_path / "out", *cmd[1:])
    assert_one_line_error(rc, err, "cut-width")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kw", [{"step": 0}, {"width": 0}, {"width": 10**6}])
def test_time_resolved_cuts_bounds(kw):
    with pytest.raises(XPCSInputError):
        time_resolved_cuts(good_c2(), **kw)


@pytest.mark.parametrize("label,dtype", [(2**27, np.int64), (0xFFFFFFFF, np.uint32), (2**40, np.int64)])
def test_huge_label_values_refused_without_allocating(tmp_path, capsys, label, dtype):
    frames = np.random.default_rng(0).poisson(3, (20, 8, 8)).astype(np.uint16)
    labels = np.ones((8, 8), dtype=dtype)
    labels[0, 0] = label
    np.save(tmp_path / "f.npy", frames)
    np.save(tmp_path / "l.npy", labels)
    rc, err = run_cli(capsys, "correlate", tmp_path / "f.npy", "--rois", tmp_path / "l.npy", "-o", tmp_path / "c.h5")
    assert_one_line_error(rc, err, "set masked or unused pixels to 0")
    assert len(err) < 500
    with pytest.raises(XPCSInputError, match="above the"):
        two_time(frames, labels)


def test_declared_huge_hdf5_dataset_refused_with_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XPCS_DENOISE_MAX_MEMORY_GB", "2")
    p = tmp_path / "huge.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("c2", shape=(1, 40000, 40000), dtype="f4", fillvalue=1.0)  # a few KB on disk
    assert p.stat().st_size < 100_000
    rc, err = run_cli(capsys, "denoise", p, "-o", tmp_path / "o.h5", "--dataset", "c2")
    assert_one_line_error(rc, err, "GiB", "XPCS_DENOISE_MAX_MEMORY_GB")
    assert not (tmp_path / "o.h5").exists()


def _model_copy(tmp_path):
    d = tmp_path / "model"
    shutil.copytree(pretrained_directory(), d)
    return d


@pytest.mark.parametrize("edit,match", [
    (lambda c: c["architecture"].update(size=1200), "size"),
    (lambda c: c["architecture"].update(n_members=5000), "n_members"),
    (lambda c: c["architecture"].update(latent="8"), "latent"),
    (lambda c: c.update(weights_file="../../outside.safetensors"), "outside the model folder"),
    ("nested", "unreadable"),
    ("binary", "unreadable"),
    ("big", "unreadable"),
])
def test_model_card_validated_before_allocating(tmp_path, edit, match):
    d = _model_copy(tmp_path)
    card_path = d / "model_card.json"
    if edit == "nested":
        card_path.write_text("[" * 100_000 + "]" * 100_000)
    elif edit == "binary":
        card_path.write_bytes(b"\xff\xfe\x00" + os.urandom(300))
    elif edit == "big":
        card_path.write_text(json.dumps({"architecture": {}, "pad": "x" * (2 << 20)}))
    else:
        card = json.loads(card_path.read_text())
        edit(card)
        card_path.write_text(json.dumps(card))
    with pytest.raises(XPCSInputError, match=match):
        Denoiser.from_directory(d)


def test_batch_workers_must_be_positive(c2_file, tmp_path, capsys):
    for w in ("0", "-1"):
        rc, err = run_cli(capsys, "batch", c2_file, "-o", tmp_path / "out", "--workers", w)
        assert_one_line_error(rc, err, "--workers")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_input_refused_before_opening(tmp_path, capsys):
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)  # opening it for reading would block forever
    rc, err = run_cli(capsys, "denoise", fifo, "-o", tmp_path / "o.h5")
    assert_one_line_error(rc, err, "not a regular file")


@pytest.mark.slow
def test_killed_worker_fails_only_its_file(tmp_path, monkeypatch):
    from distributed import KilledWorker, LocalCluster

    import xpcs_denoise.app.pipeline as pipeline

    real = pipeline._denoise_one

    def dies_on_bad(path, out, kwargs, skip_existing=False):
        if "bad" in str(path):
            raise KilledWorker("task", "worker died (out of memory)")
        return real(path, out, kwargs, skip_existing)

    monkeypatch.setattr(pipeline, "_denoise_one", dies_on_bad)
    for name in ("bad.npy", "good.npy"):
        np.save(tmp_path / name, good_c2())
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        rows = pipeline.batch_denoise([tmp_path / "bad.npy", tmp_path / "good.npy"], tmp_path / "out",
                                      scheduler=cluster.scheduler_address, method="gaussian")
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "KilledWorker" in rows[0]["error"]
    assert (tmp_path / "out" / "batch_summary.csv").is_file()


# --- (c) files that reach outside themselves ----------------------------------------------------------------


def _external_storage(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(good_c2().astype("<f8").tobytes())
    p = tmp_path / "ext.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("c2", shape=(60, 60), dtype="<f8", external=[(str(secret), 0, 60 * 60 * 8)])
    return p


def _external_link(tmp_path):
    write_c2(tmp_path / "other.h5", good_c2()[None])
    p = tmp_path / "link.h5"
    with h5py.File(p, "w") as f:
        f["c2"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/c2")
    return p


def _soft_loop(tmp_path):
    p = tmp_path / "loop.h5"
    with h5py.File(p, "w") as f:
        f["c2"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/c2")
    return p


def _virtual(tmp_path):
    p = tmp_path / "vds.h5"
    layout = h5py.VirtualLayout(shape=(60, 60), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "missing.h5"), "c2", shape=(60, 60))
    with h5py.File(p, "w") as f:
        f.create_virtual_dataset("c2", layout, fillvalue=1.0)
    return p


@pytest.mark.parametrize("make,match", [(_external_storage, "other files"), (_external_link, "external link"),
                                        (_soft_loop, "loop"), (_virtual, "virtual")])
def test_hdf5_references_outside_the_file_refused(tmp_path, capsys, make, match):
    p = make(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(XPCSInputError, match=match):
        read_c2(p, dataset="c2")
    rc, err = run_cli(capsys, "denoise", p, "-o", tmp_path / "o.h5", "--dataset", "c2", "--method", "gaussian")
    assert_one_line_error(rc, err, match)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("make", [_external_storage, _external_link])
def test_outside_references_followed_when_allowed(tmp_path, make):
    np.testing.assert_allclose(read_c2(make(tmp_path), dataset="c2", allow_external=True).c2[0], good_c2())


@pytest.mark.parametrize("make,match", [(_external_storage, "other files"), (_external_link, "external link"),
                                        (_soft_loop, "loop"), (_virtual, "virtual")])
def test_streaming_reader_refuses_references_outside_the_file(tmp_path, make, match):
    with pytest.raises(XPCSInputError, match=match):
        open_c2(make(tmp_path), dataset="c2")


def test_aps_roi_linked_outside_refused_by_the_streaming_reader_unless_allowed(tmp_path, capsys):
    m = good_c2()
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["m"] = np.triu(m)
    p = tmp_path / "aps.h5"
    write_aps_c2(p, np.stack([m, m]))
    with h5py.File(p, "a") as f:
        name = sorted(f[APS_C2_GROUP])[1]
        del f[f"{APS_C2_GROUP}/{name}"]
        f[f"{APS_C2_GROUP}/{name}"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/m")
    before = tree(tmp_path)
    with pytest.raises(XPCSInputError, match="external link"):
        open_c2(p)
    rc, err = run_cli(capsys, "denoise", p, "-o", tmp_path / "o.h5", "--method", "gaussian", "-q")
    assert_one_line_error(rc, err, "external link")
    assert tree(tmp_path) == before
    with open_c2(p, allow_external=True) as src:  # followed when allowed, also when reading ROI by ROI later
        np.testing.assert_allclose(src.c2(1), m)


def test_packed_c2_of_our_format_read_with_dataset(tmp_path):
    write_c2(tmp_path / "ours.h5", np.stack([good_c2(), good_c2(seed=1)]))
    np.testing.assert_array_equal(read_c2(tmp_path / "ours.h5", dataset="c2").c2, read_c2(tmp_path / "ours.h5").c2)


# --- (d) wrong results with exit 0 ----------------------------------------------------------------------------


def test_nan_weights_refused_at_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from xpcs_denoise.io.files import file_sha256

    d = _model_copy(tmp_path)
    t = load_file(str(d / "model.safetensors"))
    t["enc_w"][0, 0, 0] = float("nan")
    save_file(t, str(d / "model.safetensors"))
    card = json.loads((d / "model_card.json").read_text())
    card["weights_sha256"] = file_sha256(d / "model.safetensors")  # a matching hash: only the values are wrong
    (d / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(XPCSInputError, match="NaN"):
        Denoiser.from_directory(d)


def test_train_with_one_target_refused(tmp_path):
    from xpcs_denoise.core.scaling import PreparedDataset
    from xpcs_denoise.nn.training import TrainConfig, train_ensemble

    x = np.ones((4, 50, 50), np.float32)
    data = PreparedDataset(x, x[:1], np.zeros(4, int), [f"s_1_{i}" for i in range(4)], ["s_1"])
    with pytest.raises(XPCSInputError, match="at least 2"):
        train_ensemble(data, tmp_path / "m", TrainConfig(n_members=1, keep=1, max_epochs=1), progress=False)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("n", [50, 60])
def test_constant_two_time_has_no_contrast(tmp_path, capsys, n):
    flat = np.full((n, n), 1.3)
    with pytest.raises(XPCSInputError, match="no contrast"):
        denoise(flat, "gaussian")
    np.save(tmp_path / "flat.npy", flat)
    rc, err = run_cli(capsys, "fit", tmp_path / "flat.npy", "-o", tmp_path / "f.csv")
    assert_one_line_error(rc, err, "flat")
    assert not (tmp_path / "f.csv").exists()


def test_contrast_within_the_tolerance_is_no_contrast():
    """A lag-1 excess of 1e-9 over a flat baseline is rounding, not contrast (the exact `<= 0` test took it)."""
    rng = np.random.default_rng(3)
    x = 1.3 + rng.normal(0, 1e-10, (60, 60))
    x = (x + x.T) / 2
    i = np.arange(59)
    x[i, i + 1] = x[i + 1, i] = 1.3 + 1e-9
    with pytest.raises(XPCSInputError, match="no contrast"):
        denoise(x, "gaussian")
    with pytest.raises(XPCSInputError, match="no contrast"):
        denoise(x[:50, :50], "gaussian")  # N = 50, Eq. 5 baseline 1: β̂ = 0.3 but flat


def test_noisy_but_real_contrast_is_still_denoised():
    """A noisy ROI (β/SE of the lag-1 mean below 1) is the data the method is for: denoised, not refused."""
    from xpcs_denoise.core.simulation import simulate_q_rings

    sim = simulate_q_rings(80, 3, pixels_at_qmin=300, count_at_qmin=1.0, seed=0)
    c2 = two_time(sim.frames, sim.labels)
    out = denoise(c2, "gaussian")
    assert not np.allclose(out[2], c2[2])


def test_aps_triangle_with_a_value_below_the_diagonal(tmp_path):
    c2 = good_c2()
    write_aps_c2(tmp_path / "aps.h5", c2[None], q=[0.01])
    with h5py.File(tmp_path / "aps.h5", "r+") as f:
        d = f["xpcs/twotime/correlation_map/c2_00001"]
        m = d[()]
        m[30, 2] = 1e-12  # one stray tiny value below the diagonal
        d[...] = m
    np.testing.assert_allclose(read_c2(tmp_path / "aps.h5").c2[0], c2, rtol=1e-12)


def test_tiff_folder_with_mixed_dtypes_does_not_wrap(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    folder = tmp_path / "tif"
    folder.mkdir()
    tifffile.imwrite(folder / "f_0.tif", np.full((4, 4), 7, np.uint8))
    tifffile.imwrite(folder / "f_1.tif", np.full((4, 4), 1107, np.uint16))
    tifffile.imwrite(folder / "f_2.tif", np.full((4, 4), 70000, np.uint32))
    fr = read_frames(folder)
    assert fr[:, 0, 0].tolist() == [7, 1107, 70000]


def test_step_larger_than_the_window_refused(tmp_path, capsys):
    np.save(tmp_path / "c.npy", good_c2(120))
    rc, err = run_cli(capsys, "denoise", tmp_path / "c.npy", "-o", tmp_path / "o.h5", "--step", "1000")
    assert_one_line_error(rc, err, "step")
    assert not (tmp_path / "o.h5").exists()
    with pytest.raises(XPCSInputError, match="step"):
        denoise(good_c2(120), "pca", step=50)


def test_step_up_to_window_minus_one_denoises_every_lag1_pixel():
    x = good_c2(120)
    out = denoise(x, "pca", step=49)
    i = np.arange(119)
    assert np.all(out[i, i + 1] != x[i, i + 1])


@pytest.mark.parametrize("what", ["denoise", "two_time", "read_c2"])
def test_timedelta_and_datetime_arrays_refused(tmp_path, what):
    td = np.zeros((50, 50), "m8[s]") + np.timedelta64(1, "s")
    with pytest.raises(XPCSInputError, match="m8|timedelta|numbers|numeric"):
        if what == "denoise":
            denoise(td, "gaussian")
        elif what == "two_time":
            two_time(np.ones((10, 4, 4), "m8[s]"), np.ones((4, 4), int))
        else:
            np.save(tmp_path / "td.npy", td)
            read_c2(tmp_path / "td.npy")


def test_q_nan_or_negative_refused(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.random.default_rng(0).poisson(3, (20, 4, 4)))
    np.save(tmp_path / "l.npy", np.repeat([[1, 1, 2, 2]], 4, axis=0))
    rc, err = run_cli(capsys, "correlate", tmp_path / "f.npy", "--rois", tmp_path / "l.npy", "-o",
                      tmp_path / "c.h5", "--q", "nan,-1")
    assert_one_line_error(rc, err, "--q")
    assert not (tmp_path / "c.h5").exists()


def test_float16_frames_give_finite_two_times():
    rng = np.random.default_rng(0)
    f = (rng.poisson(3, (60, 16, 16)) * 100).astype(np.float16)
    labels = np.ones((16, 16), int)
    c16 = two_time(f, labels, dtype=np.float16)
    assert np.all(np.isfinite(c16))
    np.testing.assert_allclose(c16, two_time(f.astype(np.float64), labels), rtol=1e-5)


def test_fit_json_output_is_json_without_nan(c2_file, tmp_path, capsys):
    np.save(tmp_path / "two.npy", read_c2(c2_file).c2)  # no q, whole-series fits: q and age are NaN
    rc, err = run_cli(capsys, "fit", tmp_path / "two.npy", "-o", tmp_path / "p.json")
    assert rc == 0, err
    meta = json.loads((tmp_path / "p.json").read_text(), parse_constant=pytest.fail)  # bare NaN would fail
    assert len(meta["rows"]) == 2 and meta["rows"][1]["q"] is None and meta["rows"][1]["age"] is None
    assert (tmp_path / "p.csv").read_text().startswith("roi,")


def test_fit_cuts_fixed_beta_with_one_roi_without_contrast(c2_file, tmp_path, capsys):
    c2 = read_c2(c2_file).c2
    c2[0] = 2.0 - c2[0]  # lag-1 values below the baseline: no β* to fix for ROI 1
    np.save(tmp_path / "two.npy", c2)
    rc, err = run_cli(capsys, "fit", tmp_path / "two.npy", "-o", tmp_path / "cuts.csv", "--cut-width", "1",
                      "--fix-beta", "--max-lag", "20")
    assert rc == 0, err
    import csv

    rows = list(csv.DictReader(open(tmp_path / "cuts.csv")))
    assert rows[0]["roi"] == "1" and rows[0]["success"] == "False" and rows[0]["message"]
    assert sum(r["roi"] == "2" and r["success"] == "True" for r in rows) > 30


# --- (e) clear messages instead of "unexpected error" ---------------------------------------------------------


def _prepared(path, n_targets=4):
    from xpcs_denoise.core.scaling import PreparedDataset
    from xpcs_denoise.io.prepared import write_prepared

    rng = np.random.default_rng(0)
    t = (1 + rng.random((n_targets, 50, 50))).astype(np.float32)
    t = (t + np.swapaxes(t, 1, 2)) / 2
    idx = np.repeat(np.arange(n_targets), 2)
    write_prepared(path, PreparedDataset(t[idx], t, idx, [f"s{i // 2}_1_{i}" for i in range(len(idx))],
                                         [f"s{i}_1" for i in range(n_targets)]))
    return path


def _pickled_q(tmp_path):
    np.save(tmp_path / "q.npy", np.array([{"q": 1}], dtype=object), allow_pickle=True)
    return ["--q", tmp_path / "q.npy"]


def _aps_bins_as_text(tmp_path):
    write_aps_c2(tmp_path / "in.h5", good_c2()[None], q=[0.01])
    with h5py.File(tmp_path / "in.h5", "r+") as f:
        del f["xpcs/twotime/processed_bins"]
        f["xpcs/twotime/processed_bins"] = np.array([b"one"])
    return tmp_path / "in.h5"


def _ours_edited(tmp_path, how):
    p = tmp_path / "in.h5"
    write_c2(p, good_c2()[None], q=[0.01])
    with h5py.File(p, "r+") as f:
        if how == "version":
            f.attrs["format_version"] = "v1"
        else:
            data = f[how][()]
            del f[how]
            f.create_group(how)[how] = data
    return p


def _card(tmp_path, text):
    d = _model_copy(tmp_path)
    (d / "model_card.json").write_bytes(text)
    return d


CLI_CASES = {
    "seed -1": lambda t: ["denoise", _c2npy(t), "-o", t / "o.h5", "--seed", "-1", "--method", "gaussian"],
    "seed 2**70": lambda t: ["train", _prepared(t / "d.h5"), "-o", t / "m", "--seed", str(2**70)],
    "batch size 0": lambda t: ["train", _prepared(t / "d.h5"), "-o", t / "m", "--batch-size", "0"],
    "pickled q": lambda t: ["correlate", _frames(t), "--rois", t / "l.npy", "-o", t / "c.h5", *_pickled_q(t)],
    "latents a": lambda t: ["latent-study", _prepared(t / "d.h5"), "-o", t / "ls", "--latents", "a"],
    "bad scheduler": lambda t: ["batch", _c2npy(t), "-o", t / "out", "--scheduler", "not a scheduler"],
    "bins as text": lambda t: ["denoise", _aps_bins_as_text(t), "-o", t / "o.h5", "--method", "gaussian"],
    "format_version v1": lambda t: ["denoise", _ours_edited(t, "version"), "-o", t / "o.h5"],
    "q as group": lambda t: ["denoise", _ours_edited(t, "q"), "-o", t / "o.h5"],
    "c2 as group": lambda t: ["denoise", _ours_edited(t, "c2"), "-o", t / "o.h5"],
    "nested card": lambda t: ["denoise", _c2npy(t), "-o", t / "o.h5", "--model", _card(t, b"[" * 10**5)],
    "binary card": lambda t: ["denoise", _c2npy(t), "-o", t / "o.h5", "--model", _card(t, os.urandom(500))],
    "40000 ROIs": lambda t: ["correlate", _frames(t, (4, 200, 200)), "--rois", t / "l.npy", "-o", t / "c.h5"],
    "40000 ROIs in a file": lambda t: ["fit", _c2npy(t, np.ones((40000, 3, 3))), "-o", t / "f.csv"],
}


def _c2npy(t, arr=None):
    np.save(t / "c.npy", good_c2() if arr is None else arr)
    return t / "c.npy"


def _frames(t, shape=(20, 4, 4)):
    np.save(t / "f.npy", np.random.default_rng(0).poisson(3, shape) + 1)
    np.save(t / "l.npy", np.arange(shape[1] * shape[2]).reshape(shape[1:]) + 1 if shape[1] > 4 else
            np.ones(shape[1:], int))
    return t / "f.npy"


#: What each case's one line must say: the thing that is wrong, not just "error:".
CLI_SAYS = {
    "seed -1": ("seed", "0..9223372036854775807", "got -1"),
    "seed 2**70": ("--seed", "got 1180591620717411303424"),
    "batch size 0": ("--batch-size", ">= 1", "got 0"),
    "pickled q": ("--q file", "not a .npy of numbers", "numpy.save"),
    "latents a": ("--latents", "whole numbers", "got 'a'"),
    "bad scheduler": ("--scheduler", "tcp://host:8786", "not a scheduler"),
    "bins as text": ("processed_bins", "must hold numbers", "--dataset"),
    "format_version v1": ("format_version 'v1'", "not a whole number"),
    "q as group": ("/q is a group", "dataset"),
    "c2 as group": ("/c2 is a group", "(K, N, N) dataset"),
    "nested card": ("model_card.json", "unreadable", "recursion"),
    "binary card": ("model_card.json", "unreadable", "decode"),
    "40000 ROIs": ("label 40000", "10000 q-ROIs"),
    "40000 ROIs in a file": ("40000 q-ROIs", "10000 supported"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_clear_messages(tmp_path, capsys, case):
    argv = CLI_CASES[case](tmp_path)
    before = tree(tmp_path)
    rc, err = run_cli(capsys, *argv, "-q")
    assert rc == 2  # bad input, not a crash (1) or success
    assert_one_line_error(rc, err, f"xpcs-denoise {argv[0]}: error:", *CLI_SAYS[case])
    assert tree(tmp_path) == before  # inputs byte-identical, no output, no temp file


def test_train_resumed_with_other_members_is_a_clear_error(tmp_path):
    from xpcs_denoise.nn.training import TrainConfig, train_ensemble

    data = _prepared(tmp_path / "d.h5")
    cfg = TrainConfig(n_members=2, keep=1, max_epochs=1, patience=1)
    train_ensemble(data, tmp_path / "m", cfg, progress=False)
    with pytest.raises(XPCSInputError, match="resume=False"):
        train_ensemble(data, tmp_path / "m", TrainConfig(n_members=3, keep=1, max_epochs=2), progress=False)


def test_ctrl_c_during_start_up_is_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        rc, err = run_cli(capsys, "denoise", "x.npy", "-o", "y.h5")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during start-up escaped main(): a traceback for the user")
    assert rc == 130 and err == "xpcs-denoise: interrupted"


API_CASES = {
    "ragged list": lambda: denoise([[1.0, 2.0], [1.0]], "gaussian"),
    "beta wrong length": lambda: denoise(np.stack([good_c2(50)] * 3), "gaussian", beta=[0.2, 0.2]),
    "median size 0": lambda: denoise(good_c2(50), "median", size=0),
    "seed -1": lambda: denoise(good_c2(50), "gaussian", seed=-1),
    "fit_g2 sigma shape": lambda: fit_g2(np.ones((2, 10)), sigma=np.ones(7)),
    "fit_g2 zero lags": lambda: fit_g2(np.ones((3, 0))),
    "fit_g2 ragged": lambda: fit_g2([[1.0, 2.0], [1.0]]),
    "cuts step 0": lambda: time_resolved_cuts(good_c2(), step=0),
    "Denoiser batch_size 0": lambda: Denoiser.pretrained(batch_size=0),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_api_raises_xpcs_input_error(case):
    with pytest.raises(XPCSInputError):
        API_CASES[case]()


def test_model_pretrained_as_a_string_is_accepted():
    x = good_c2(50)
    np.testing.assert_array_equal(denoise(x, "cned", model="pretrained"), denoise(x, model=Denoiser.pretrained()))
    np.testing.assert_array_equal(denoise(x, model="pretrained"), denoise(x, "lagnet"))


def test_declared_huge_npy_refused_with_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XPCS_DENOISE_MAX_MEMORY_GB", "2")
    p = tmp_path / "huge.npy"
    np.lib.format.open_memmap(p, mode="w+", dtype="f8", shape=(1, 40000, 40000))  # sparse: nothing written
    rc, err = run_cli(capsys, "denoise", p, "-o", tmp_path / "o.h5")
    assert_one_line_error(rc, err, "GiB")
    assert not (tmp_path / "o.h5").exists()


def test_ctrl_c_while_the_console_script_imports(tmp_path):
    """SIGINT while `xpcs-denoise` imports torch: one line and exit 130, no traceback, no output."""
    script = tmp_path / "xpcs-denoise"
    script.write_text(textwrap.dedent("""
        import builtins, os, signal, sys
        real_import = builtins.__import__

        def imp(name, *a, **k):
            if name == "torch":
                os.kill(os.getpid(), signal.SIGINT)
            return real_import(name, *a, **k)

        builtins.__import__ = imp
        from xpcs_denoise.app.cli import main
        sys.exit(main())
    """))
    # --version no longer loads torch (lazy imports); a command that needs the model does
    np.save(tmp_path / "none.npy", good_c2())
    r = subprocess.run([sys.executable, str(script), "denoise", str(tmp_path / "none.npy"), "-o",
                        str(tmp_path / "out.h5")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    err = r.stderr.strip()
    assert r.returncode == 130 and "interrupted" in err and "\n" not in err and "Traceback" not in err, r.stderr
    assert not (tmp_path / "out.h5").exists()


def test_fit_marks_a_flat_roi_failed_and_fits_the_others(tmp_path, capsys):
    np.save(tmp_path / "c.npy", np.stack([good_c2(), np.full((60, 60), 1.3)]))
    rc, err = run_cli(capsys, "fit", tmp_path / "c.npy", "-o", tmp_path / "p.csv")
    assert rc == 0, err
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert rows[0]["success"] and abs(rows[0]["gamma"] - 0.04) < 0.01  # true Γ 0.04 frames⁻¹
    assert not rows[1]["success"] and rows[1]["gamma"] is None and "flat" in rows[1]["message"]
