"""Throughput of the hot paths, printed as a table (run: python3 benchmarks/bench_core.py [--quick]).

- 2TCF from frames: xpcs_denoise.two_time vs one plain numpy matrix product over all pixels (the GEMM limit,
  no blocking, no ROIs) and vs scikit-beam's two_time_corr (if installed);
- Eq. 3 fits of 49-point 1TCFs: batched fit_g2 vs a loop of scipy.optimize.curve_fit with the same bounds
  and automatic initial values;
- CNN-ED inference on 50×50 patches: one member and the 10-member ensemble vs the paper's way (plain
  Conv2d/ConvTranspose2d network, one patch per call);
- the sliding window on a 1,000-frame 2TCF (window 50, step 5, both passes, the shipped 10 members);
- batch denoising of many files through Dask, 1 vs 2 local workers;
- training seconds per epoch (12,236-crop epoch scale) for a batched 20-member ensemble.

Select with --only (e.g. --only sliding_window,batch).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def timeit(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_two_time(rows, quick):
    from xpcs_denoise import two_time

    t, h, w = (200, 64, 64) if quick else (1000, 128, 128)
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.5, size=(t, h, w)).astype(np.uint16)
    labels = (np.hypot(*np.meshgrid(np.arange(w) - w / 2, np.arange(h) - h / 2)) // 8).astype(int) + 1
    labels[labels > 5] = 0
    npix = int((labels > 0).sum())
    work = t * npix
    dt = timeit(lambda: two_time(frames, labels))
    rows.append(("2TCF two_time (5 ROIs)", f"T={t}, {npix} px", f"{work / dt:.3g} frame·px/s", f"{dt:.3f} s"))
    flat = frames.reshape(t, -1)[:, labels.ravel() > 0].astype(np.float64)
    dt2 = timeit(lambda: flat @ flat.T)
    rows.append(("2TCF GEMM limit (numpy X Xᵀ)", f"T={t}, {npix} px", f"{work / dt2:.3g} frame·px/s",
                 f"{dt2:.3f} s"))
    try:
        from skbeam.core.correlation import two_time_corr
    except ImportError:
        rows.append(("2TCF scikit-beam", "not installed", "-", "-"))
        return
    ts = min(t, 300)
    sub = frames[:ts].astype(np.float64)
    dt3 = timeit(lambda: two_time_corr(labels, sub, ts, ts, 1), repeat=1)
    dt4 = timeit(lambda: two_time(sub, labels))
    rows.append(("2TCF scikit-beam two_time_corr", f"T={ts}, {npix} px", f"{ts * npix / dt3:.3g} frame·px/s",
                 f"{dt3:.3f} s (ours {dt4:.3f} s, {dt3 / dt4:.0f}× faster)"))


def bench_fits(rows, quick):
    from scipy.optimize import curve_fit

    from xpcs_denoise import fit_g2, g2_model

    n = 2000 if quick else 10000
    rng = np.random.default_rng(1)
    lags = np.arange(1, 50, dtype=float)
    g = rng.uniform(0.01, 0.3, n)
    b = rng.uniform(0.1, 1, n)
    y = g2_model(lags, g[:, None], b[:, None], 1.0, rng.uniform(0.7, 1.5, n)[:, None])
    y += rng.normal(0, 0.02, y.shape) * b[:, None]
    dt = timeit(lambda: fit_g2(y), repeat=2)
    rows.append(("Eq. 3 fits, batched fit_g2", f"{n} × 49 lags", f"{n / dt:.3g} fits/s", f"{dt:.3f} s"))
    f = lambda t, g, b, c, a: c + b * np.exp(-2 * (g * t) ** a)  # noqa: E731
    m = 300
    t0 = time.perf_counter()
    for i in range(m):
        c0 = y[i, -10:].mean()
        b0 = max(y[i, 0] - c0, 1e-3)
        below = np.flatnonzero((y[i] - c0) / b0 < np.exp(-1))
        g0 = 0.5 / lags[below[0]] if below.size else 0.5 / lags[-1]
        try:
            curve_fit(f, lags, y[i], p0=[g0, b0, c0, 1.0],
                      bounds=([1e-3 / 49, 0, -np.inf, 0.2], [10, np.inf, np.inf, 3]))
        except RuntimeError:
            pass
    dtl = (time.perf_counter() - t0) / m
    rows.append(("Eq. 3 fits, loop of curve_fit", f"{m} × 49 lags", f"{1 / dtl:.3g} fits/s",
                 f"batched is {dtl * n / dt:.0f}× faster"))


def bench_inference(rows, quick):
    from xpcs_denoise.nn.denoiser import Denoiser
    from xpcs_denoise.nn.model import CNNEDEnsemble, to_reference_modules

    n = 500 if quick else 3000
    rng = np.random.default_rng(2)
    x = rng.normal(1.5, 0.3, size=(n, 50, 50)).astype(np.float32)
    x = (x + x.transpose(0, 2, 1)) / 2
    ens = CNNEDEnsemble(10, seed=0).eval()
    refs = to_reference_modules(ens)
    for members in (1, 10):
        den = Denoiser(ens.select(range(members)))
        den.predict_model_units(x[:64])
        dt = timeit(lambda den=den: den.predict_model_units(x), repeat=2)
        xt = torch.as_tensor(x[:, None])
        k = min(n, 200)
        with torch.inference_mode():
            t0 = time.perf_counter()
            for i in range(k):
                torch.stack([r(xt[i:i + 1]) for r in refs[:members]]).mean(0)
            dtr = (time.perf_counter() - t0) / k
        rows.append((f"CNN-ED inference, {members} member(s)", f"{n} patches 50×50",
                     f"{n / dt:.4g} patches/s", f"per-patch Conv2d: {1 / dtr:.4g} patches/s, {dtr * n / dt:.1f}×"))


def bench_sliding_window(rows, quick):
    from xpcs_denoise.core.simulation import true_two_time
    from xpcs_denoise.nn.denoiser import Denoiser

    n_frames = 400 if quick else 1000
    rng = np.random.default_rng(3)
    clean = true_two_time(n_frames, 0.02, 0.2)
    c2 = clean + rng.normal(0, 0.02, clean.shape)
    c2 = (c2 + c2.T) / 2
    den = Denoiser.pretrained()
    den.denoise(c2[:100, :100])
    dt = timeit(lambda: den.denoise(c2, step=5), repeat=2)
    windows = 2 * ((n_frames - 50) // 5 + 1)
    rows.append((f"sliding window, {den.n_members} members", f"{n_frames}×{n_frames}, window 50, step 5, 2 passes",
                 f"{dt:.2f} s per 2TCF", f"{windows} windows, {windows / dt:.0f} windows/s"))


def bench_batch(rows, quick):
    """Files per second of ``batch_denoise`` with 1 and 2 local Dask workers (one thread each)."""
    import tempfile
    from pathlib import Path

    from xpcs_denoise.app.pipeline import batch_denoise
    from xpcs_denoise.core.simulation import true_two_time
    from xpcs_denoise.io.formats import write_c2

    n_files, n_frames = (4, 200) if quick else (12, 400)
    rng = np.random.default_rng(4)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n_files):
            c2 = np.stack([true_two_time(n_frames, g, 0.2) for g in (0.01, 0.03, 0.08)])
            c2 = c2 + rng.normal(0, 0.02, c2.shape)
            paths.append(write_c2(Path(tmp) / f"in{i}.h5", (c2 + c2.transpose(0, 2, 1)) / 2))
        base = None
        for workers in (1, 2):
            t0 = time.perf_counter()
            out = batch_denoise(paths, Path(tmp) / f"out{workers}", workers=workers, overwrite=True)
            dt = time.perf_counter() - t0
            assert all(r["status"] == "ok" for r in out)
            base = base or dt
            rows.append((f"batch denoise, {workers} Dask worker(s)",
                         f"{n_files} files × 3 ROIs × {n_frames} frames", f"{n_files / dt:.3g} files/s",
                         f"{base / dt:.2f}× the 1-worker rate (incl. cluster start-up)"))


def bench_training(rows, quick):
    from xpcs_denoise.nn.model import CNNEDEnsemble

    members, batch = 20, 8
    ens = CNNEDEnsemble(members, seed=0)
    opt = torch.optim.Adam(ens.parameters(), lr=1e-4)
    x = torch.randn(members, batch, ens.n_tri)
    y = torch.randn(members, batch, ens.n_tri)
    steps = 10 if quick else 40

    def run():
        for _ in range(steps):
            c = ens.cost_tri(ens.forward_tri(x), y)
            opt.zero_grad()
            c.sum().backward()
            opt.step()

    run()
    dt = timeit(run, repeat=2) / steps
    per_epoch = dt * 12236 / batch
    rows.append(("training, 20 members batched", "batch 8, 12,236 crops/epoch", f"{per_epoch:.0f} s/epoch",
                 f"{per_epoch / members:.1f} s per member-epoch"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    benches = {"two_time": bench_two_time, "fits": bench_fits, "inference": bench_inference,
               "sliding_window": bench_sliding_window, "batch": bench_batch,
               "training": bench_training}
    p.add_argument("--only", default=",".join(benches), help=f"comma-separated subset of {', '.join(benches)}")
    a = p.parse_args()
    rows = []
    for name in a.only.split(","):
        benches[name](rows, a.quick)
    widths = [max(len(r[i]) for r in rows + [("what", "size", "throughput", "notes")]) for i in range(4)]
    head = ("what", "size", "throughput", "notes")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for r in [head, tuple("-" * w for w in widths)] + rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
