"""Round trip against the real XPCS tools: boost_corr → xpcs-denoise → xpcs-viewer, printing what it checks.

1. Simulates speckle frames of known Γ(q) and a qmap (3 q × 2 φ dynamic bins; static bins equal to the dynamic
   ones) in the APS layouts boost_corr reads: RAW.h5 (``entry/data/data``), QMAP.h5 (``qmap/...``) and the
   ``*_metadata.hdf`` NeXus file beside the raw file.
2. Runs ``boost_corr -r RAW.h5 -q QMAP.h5 -o OUT -t Twotime -i -1 --crop-ratio-threshold 1.01`` (CPU).
3. Runs ``xpcs-denoise correlate`` (on the same frames and qmap), ``denoise`` (APS output by default, and our
   format), ``fit`` and ``report`` on boost_corr's result.
4. Opens boost_corr's file and the denoised APS file with xpcs-viewer's ``XpcsFile`` (headless) and checks
   that it shows the denoised 2TCFs, the same bins and q values.

Run it in a Python ≥ 3.12 environment with boost-corr, xpcs-viewer and xpcs-denoise installed (see
``scripts/check_real_tools.sh``); it exits non-zero on the first failed check. ``tests/test_real_tools.py``
runs :func:`run_checks` when those packages are importable.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

GAMMA = np.array([0.01, 0.03, 0.08])  # frames⁻¹ of the 3 q rings
Q = np.array([0.003, 0.006, 0.009])  # Å⁻¹
PHI = np.array([-45.0, 45.0])  # degrees


def _say(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(f"FAILED: {msg}")
    _say(f"ok   {msg}")


def simulate(folder: Path, n_frames: int = 300, size: int = 48, seed: int = 0, split_static: bool = False) -> dict:
    """RAW.h5, QMAP.h5 and the metadata file in ``folder``; returns their paths and the truth.

    ``split_static``: each dynamic bin holds two static bins (inner and outer half ring) whose pixels have mean
    counts 1.5 and 4.5 photons per frame (a steep SAXS slope), to show boost_corr's static-bin normalisation."""
    from xpcs_denoise.core.simulation import simulate_speckle

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    bcx = bcy = size / 2 - 0.5
    r = np.hypot(yy - bcy, xx - bcx)
    phi = np.rad2deg(np.arctan2(-(yy - bcy), xx - bcx))
    ring = np.digitize(r, [6, 11, 16, 21]) - 1  # 0..2 inside the three rings, −1 or 3 outside
    sector = (phi > 0).astype(int)  # 0: φ < 0 (−45° bin), 1: φ > 0 (45° bin)
    dq = np.where((ring >= 0) & (ring < 3), 1 + ring * 2 + sector, 0).astype(np.uint32)
    mask = np.ones((size, size), np.int32)
    mask[:2] = 0  # a masked strip: boost_corr and xpcs-denoise must both leave it out
    dq_masked = dq * (mask > 0)
    outer = ((r - 6) % 5) >= 2.5  # outer half of each 5-pixel ring
    sq = np.where(dq > 0, 2 * dq - 1 + outer, 0).astype(np.uint32) if split_static else dq
    frames = np.zeros((n_frames, size, size), np.uint16)
    for label in range(1, 7):
        ring_k = (label - 1) // 2
        for half, count in (((False, True), 3.0),) if not split_static else (((False,), 1.5), ((True,), 4.5)):
            pix = np.flatnonzero((dq == label) & np.isin(outer, half))
            sim = simulate_speckle(n_frames, pix.size, gamma=GAMMA[ring_k], beta=0.25, mean_count=count,
                                   seed=int(rng.integers(2**31)))
            frames.reshape(n_frames, -1)[:, pix] = sim.frames.reshape(n_frames, -1)
    raw = folder / "sim_a0001_f000300_r00001.h5"
    with h5py.File(raw, "w") as f:
        f.create_dataset("entry/data/data", data=frames, chunks=(1, size, size))
    meta = folder / "sim_a0001_f000300_r00001_metadata.hdf"
    with h5py.File(meta, "w") as f:
        f["entry/schema_version"] = "1.0"
        f["entry/start_time"] = "2026-11-25T12:00:00"
        f.create_group("entry/instrument/bluesky/metadata")
        det = "entry/instrument/detector_1/"
        f[det + "frame_time"], f[det + "count_time"] = 0.01, 0.009
        f[det + "x_pixel_size"], f[det + "y_pixel_size"] = 75e-6, 75e-6
        f["entry/instrument/incident_beam/incident_energy"] = 10.0
    qmap = folder / "qmap.h5"
    with h5py.File(qmap, "w") as f:
        g = f.create_group("qmap")
        g["mask"], g["dynamic_roi_map"], g["static_roi_map"] = mask, dq, sq  # static bins = dynamic unless split
        g["dynamic_v_list_dim0"], g["dynamic_v_list_dim1"] = Q, PHI
        g["dynamic_index_mapping"] = np.arange(6)
        g["dynamic_num_pts"] = np.array([3, 2])
        if split_static:  # static bin 2d − 1 + outer: q index (d − 1) // 2 → sub-rings 2i, 2i + 1; φ (d − 1) % 2
            d = np.arange(1, 7)
            sub_q = np.repeat(Q, 2) + np.tile([-0.0005, 0.0005], 3)
            order = np.ravel([[2 * ((x - 1) // 2) * 2 + ((x - 1) % 2) + 2 * o for o in (0, 1)] for x in d])
            g["static_v_list_dim0"], g["static_v_list_dim1"] = sub_q, PHI
            g["static_index_mapping"] = order
            g["static_num_pts"] = np.array([6, 2])
        else:
            g["static_v_list_dim0"], g["static_v_list_dim1"] = Q, PHI
            g["static_index_mapping"] = np.arange(6)
            g["static_num_pts"] = np.array([3, 2])
        g["beam_center_x"], g["beam_center_y"] = bcx, bcy
        g["detector_distance"], g["pixel_size"] = 5.0, 75e-6
        g["map_names"], g["map_units"] = [b"q", b"phi"], [b"1/A", b"deg"]
    return {"raw": raw, "qmap": qmap, "meta": meta, "frames": frames, "dq": dq_masked, "mask": mask,
            "mean_count": np.where(outer, 4.5, 1.5) if split_static else np.full(dq.shape, 3.0)}


def run(cmd, **kw):
    _say("$ " + " ".join(str(c) for c in cmd))
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"FAILED ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-3000:]}")
    return r


def run_checks(work: Path, n_frames: int = 300) -> None:
    from xpcs_denoise.io.formats import read_c2

    work.mkdir(parents=True, exist_ok=True)
    sim = simulate(work, n_frames)
    _say(f"simulated {n_frames} frames of {sim['frames'].shape[1]}×{sim['frames'].shape[2]} pixels, "
         f"3 q × 2 φ bins, Γ = {GAMMA.tolist()} frames⁻¹")
    boost = shutil.which("boost_corr") or str(Path(sys.executable).with_name("boost_corr"))
    out = work / "boost_out"
    run([boost, "-r", sim["raw"], "-q", sim["qmap"], "-o", out, "-t", "Twotime", "-i", "-1",
         "--crop-ratio-threshold", "1.01"])
    results = sorted(p for p in out.glob("*.hdf") if not p.name.endswith("_G2.hdf"))
    check(len(results) == 1, f"boost_corr wrote one result file: {[p.name for p in results]}")
    result = results[0]

    # read_c2 reads boost_corr's file: bins, q, φ; and agrees with our two_time (static bins = dynamic bins)
    bc = read_c2(result)
    bins = bc.rois
    check(bc.source_format == "aps-8idi" and bins.tolist() == [1, 2, 3, 4, 5, 6],
          f"read_c2: APS layout, processed_bins {bins.tolist()}")
    check(np.allclose(bc.q, Q[(bins - 1) // 2]) and np.allclose(bc.phi, PHI[(bins - 1) % 2]),
          f"read_c2: q {bc.q.tolist()} Å⁻¹, φ {bc.phi.tolist()}°")
    cli = [sys.executable, "-m", "xpcs_denoise.app.cli"]
    np.save(work / "frames.npy", sim["frames"])
    run([*cli, "correlate", work / "frames.npy", "--rois", sim["qmap"], "-o", work / "ours_c2.h5", "-q"])
    ours = read_c2(work / "ours_c2.h5")
    check(ours.rois.tolist() == bins.tolist() and np.allclose(ours.q, bc.q) and np.allclose(ours.phi, bc.phi),
          "correlate --rois qmap.h5 keeps the qmap's labels, q and φ")
    off = ~np.eye(n_frames, dtype=bool)
    diff = np.max(np.abs(ours.c2 - bc.c2)[:, off])
    check(diff < 1e-4, f"correlate agrees with boost_corr off the diagonal: max |Δ| = {diff:.2e}")

    # denoise: APS output by default (opens in xpcs-viewer), and our format
    den = work / "denoised.hdf"
    r = run([*cli, "denoise", result, "-o", den, "--json", "-q"])
    s = json.loads(r.stdout)
    check(s["format"] == "aps" and s["n_rois"] == 6, f"denoise wrote an APS result file ({s['seconds']} s)")
    with h5py.File(result, "r") as fi, h5py.File(den, "r") as fo:
        names = []
        fi.visit(names.append)
        lost = [n for n in names if n not in fo and not n.startswith("xpcs/twotime/normalized_g2")]
        check(not lost, f"every one of the {len(names)} objects of boost_corr's file is in the output")
        check(sorted(fo["xpcs/twotime/correlation_map"]) == sorted(fi["xpcs/twotime/correlation_map"]),
              "correlation_map/c2_* names kept; raw maps in xpcs/twotime/correlation_map_raw")
        dt = {fo[f"xpcs/twotime/correlation_map/{n}"].dtype for n in fo["xpcs/twotime/correlation_map"]}
        check(dt == {fi["xpcs/twotime/correlation_map/c2_00001"].dtype}, f"denoised maps in the input's dtype {dt}")
        check(fo["xpcs/twotime/normalized_g2"].shape == fi["xpcs/twotime/normalized_g2"].shape and
              fo["xpcs/twotime/normalized_g2_segments"].shape == fi["xpcs/twotime/normalized_g2_segments"].shape,
              f"normalized_g2 {fo['xpcs/twotime/normalized_g2'].shape} and segments "
              f"{fo['xpcs/twotime/normalized_g2_segments'].shape} laid out as boost_corr's")
        g2_raw_bc = fi["xpcs/twotime/normalized_g2"][()]
        c2b = bc.c2[0]
        mine = np.array([np.mean(np.diagonal(c2b, k)) for k in range(n_frames)])
        d = np.max(np.abs(mine - g2_raw_bc[:, 0]))
        check(d < 1e-5, f"our diagonal means reproduce boost_corr's normalized_g2 (max |Δ| = {d:.1e})")
    d = read_c2(den)
    check(np.allclose(d.raw, bc.c2, atol=1e-6) and not np.allclose(d.c2, bc.c2),
          "read_c2 of the output: denoised maps, raw kept")
    run([*cli, "denoise", result, "-o", work / "denoised_ours.h5", "--format", "ours", "-q"])
    run([*cli, "denoise", result, "-o", work / "denoised.npy", "--method", "gaussian", "-q"])
    check(np.load(work / "denoised.npy").shape == (6, n_frames, n_frames), "denoise -o x.npy writes a real .npy")

    # fit and report on the outputs
    run([*cli, "fit", den, "-o", work / "fit.csv", "--fix-alpha", "-q"])
    rows = list(csv.DictReader(open(work / "fit.csv")))
    ft = json.loads((work / "fit.json").read_text()).get("frame_time_s")  # Γ in 1/s when the file has a frame time
    per_frame = ft if rows[0].get("gamma_unit", "1/frame") == "1/s" and ft else 1.0
    check(per_frame == 0.01 or per_frame == 1.0, f"fit: Γ in {rows[0].get('gamma_unit', '1/frame')} "
          f"(frame time {ft} s from boost_corr's file)")
    gam = {(float(r["q"]), float(r["phi"])): float(r["gamma"]) * per_frame for r in rows}
    check([int(r["roi"]) for r in rows] == bins.tolist() and "phi" in rows[0],
          "fit table: roi = processed bins, q and φ columns; Γ(q, φ) per frame = "
          + ", ".join(f"{v:.3g}" for v in gam.values()) + f" (truth {GAMMA.tolist()} per q)")
    ok = all(abs(np.log10(g / GAMMA[list(Q).index(q)])) < 0.3 for (q, _), g in gam.items())
    check(ok, "every fitted Γ within a factor 2 of the simulated one")
    run([*cli, "report", den, "-o", work / "report", "-q"])
    check((work / "report" / "index.html").exists(), f"report written to {work / 'report'}")

    # xpcs-viewer opens boost_corr's file and ours, and shows the denoised 2TCFs
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from pyxpcsviewer.core.xpcs_file import XpcsFile

    for label, path in (("boost_corr's result", result), ("the denoised APS file", den)):
        xf = XpcsFile(str(path))
        check("Twotime" in xf.atype and xf.c2_processed_bins.tolist() == bins.tolist(),
              f"XpcsFile opens {label}: {xf.atype}, bins {xf.c2_processed_bins.tolist()}")
    labels = [xf.get_qbin_label(int(b)) for b in xf.c2_processed_bins]
    check(len(labels) == 6, f"xpcs-viewer's labels of the denoised bins: {labels[:2]} ...")
    for sel in range(6):
        c2v = xf.get_twotime_c2(selection=sel, correct_diag=False)["c2_mat"]
        dv = np.max(np.abs(c2v - d.c2[sel])[off])
        if sel == 0 or dv >= 1e-5:
            check(dv < 1e-5, f"XpcsFile.get_twotime_c2(selection={sel}) is the denoised 2TCF (max |Δ| = {dv:.1e})")
    check(np.allclose(xf.c2_g2[1:20, 0], [np.mean(np.diagonal(d.c2[0], k)) for k in range(1, 20)], rtol=1e-5),
          "XpcsFile.c2_g2 is the 1TCF of the denoised 2TCFs")
    compare_smoothing(work / "split", n_frames)
    _say("ALL CHECKS PASSED")


def compare_smoothing(work: Path, n_frames: int) -> None:
    """boost_corr's default per-frame static-bin normalisation against Eq. 1, with two static sub-rings of
    different intensity (1.5 and 4.5 photons) in every dynamic bin."""
    from xpcs_denoise import two_time
    from xpcs_denoise.io.formats import read_c2

    work.mkdir(parents=True, exist_ok=True)
    sim = simulate(work, n_frames, split_static=True)
    boost = shutil.which("boost_corr") or str(Path(sys.executable).with_name("boost_corr"))
    run([boost, "-r", sim["raw"], "-q", sim["qmap"], "-o", work / "out", "-t", "Twotime", "-i", "-1",
         "--crop-ratio-threshold", "1.01"])
    bc = read_c2(next(p for p in (work / "out").glob("*.hdf") if not p.name.endswith("_G2.hdf")))
    ours = two_time(sim["frames"], sim["dq"].astype(np.int64))
    tail = slice(n_frames // 2, None)  # baseline: lags of more than N/2 frames, long decayed
    b_bc = [np.mean([np.mean(np.diagonal(m, k)) for k in range(n_frames)[tail]]) for m in bc.c2]
    b_eq1 = [np.mean([np.mean(np.diagonal(m, k)) for k in range(n_frames)[tail]]) for m in ours]
    # Eq. 1 at long lags: <m²>/<m>² over the bin's pixels (m = each pixel's mean count); boost_corr: 1.
    expect = [np.mean(m**2) / np.mean(m) ** 2 for m in (sim["mean_count"][sim["dq"] == b] for b in range(1, 7))]
    # (a slow ROI may not have decayed fully by N/2: compare the ratio of the two baselines)
    check(np.allclose(b_bc, 1, atol=0.05) and np.allclose(np.divide(b_eq1, b_bc), expect, rtol=0.03),
          "static sub-rings of 1.5 and 4.5 photons: baseline C∞ of boost_corr "
          + ", ".join(f"{v:.3f}" for v in b_bc) + "; of Eq. 1 (xpcs-denoise correlate) "
          + ", ".join(f"{v:.3f}" for v in b_eq1) + " (expected <m²>/<m>² "
          + ", ".join(f"{v:.3f}" for v in expect) + ")")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    p.add_argument("--frames", type=int, default=300)
    a = p.parse_args()
    if a.work:
        run_checks(Path(a.work), a.frames)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run_checks(Path(tmp), a.frames)


if __name__ == "__main__":
    main()
