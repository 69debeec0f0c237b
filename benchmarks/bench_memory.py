"""Peak memory (RSS) and file size of `xpcs-denoise correlate` and `denoise` against the number of frames.

Simulates a q-ring series (5 ROIs, ~2,900 pixels, Poisson counts) of T frames, then runs each CLI step in its
own process and reads its peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that child alone), and
prints one table. The documented bound of `correlate` is ``two_time_memory_bytes(T, K)`` plus the Python,
numpy and h5py baseline. Run:  python benchmarks/bench_memory.py [--frames 1000,2000,4000] [--method cned]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one child process running ``cmd``; raises if it fails."""
    code = ("import resource, subprocess, sys, json\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stderr.write(r.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(r.returncode)\n")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return int(r.stdout.split()[-1]) / 1024, time.time() - t0  # ru_maxrss is in KiB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", default="1000,2000,4000")
    p.add_argument("--rois", type=int, default=5)
    p.add_argument("--method", default="cned")
    a = p.parse_args()
    from xpcs_denoise.core.correlation import two_time_memory_bytes
    from xpcs_denoise.core.simulation import simulate_q_rings

    cli = [sys.executable, "-m", "xpcs_denoise.app.cli"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for t in (int(v) for v in a.frames.split(",")):
            sim = simulate_q_rings(t, a.rois, pixels_at_qmin=300, count_at_qmin=0.5, seed=1)
            p_used = sim.labels.size  # the rings' pixels on a 64-pixel-wide detector, the rest unlabelled
            h = -(-p_used // 64)
            frames = np.zeros((t, h * 64), np.uint16)
            frames[:, :p_used] = sim.frames.reshape(t, -1)
            labels = np.zeros(h * 64, np.int64)
            labels[:p_used] = sim.labels
            np.save(tmp / "frames.npy", frames.reshape(t, h, 64))
            np.save(tmp / "rois.npy", labels.reshape(h, 64))
            del frames
            del sim
            c2, den, npy = tmp / f"c2_{t}.h5", tmp / f"den_{t}.h5", tmp / f"den_{t}.npy"
            rss_c, sec_c = peak_rss_of([*cli, "correlate", str(tmp / "frames.npy"), "--rois",
                                        str(tmp / "rois.npy"), "-o", str(c2), "-q"])
            rss_d, sec_d = peak_rss_of([*cli, "denoise", str(c2), "-o", str(den), "--method", a.method, "-q"])
            rss_n, _ = peak_rss_of([*cli, "denoise", str(c2), "-o", str(npy), "--method", a.method, "-q"])
            formula = two_time_memory_bytes(t, a.rois) / 2**20
            rows.append((t, rss_c, formula, sec_c, c2.stat().st_size / 2**20, rss_d, sec_d,
                         den.stat().st_size / 2**20, rss_n, 8 * a.rois * t * t / 2**20))
            for f in (c2, den, npy):
                f.unlink()
    # The baseline every command pays (Python, numpy, h5py, torch), in a fresh process.
    base, _ = peak_rss_of([sys.executable, "-c", "import xpcs_denoise.app.cli, xpcs_denoise.app.pipeline"])
    print(f"{a.rois} ROIs, method {a.method}; RSS = peak resident memory of the process (MB = 2^20 bytes); "
          f"importing xpcs_denoise alone: {base:.0f} MB")
    print("| frames | correlate RSS | two_time_memory_bytes | correlate s | c2 file | denoise RSS | denoise s "
          "| denoised file (c2 + c2_raw) | denoise → .npy RSS | full float64 (K,T,T) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} MB | {r[2]:.0f} MB | {r[3]:.1f} | {r[4]:.0f} MB | {r[5]:.0f} MB | {r[6]:.1f} "
              f"| {r[7]:.0f} MB | {r[8]:.0f} MB | {r[9]:.0f} MB |")


if __name__ == "__main__":
    main()
