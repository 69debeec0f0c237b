"""Does Noise2Noise fine-tuning on the user's own frames improve Γ(t_a)? Shipped vs fine-tuned ensemble.

    python benchmarks/bench_finetune.py [--model DIR] [--seeds 3] [--first-seed 2] [--epochs 10] [--frames 400]

Simulated ageing series (α = 1, Γ(t) changing linearly over the series) of 5 ROIs of different pixel counts,
with rates inside the shipped model's range and outside it (slow and fast). For each series: fine-tune on its
own frames (self-supervised: the truth is never used), then compare the median relative error and the median
signed error of Γ(t_a) from 1-frame cuts (β fixed by Eq. 7, lags 1–49) of the 2TCF denoised by the starting
and by the fine-tuned ensemble, against the true Γ(t_a); raw cuts for reference. Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np

from xpcs_denoise import Denoiser, denoise, simulate_speckle
from xpcs_denoise.analysis.workflows import ageing_analysis
from xpcs_denoise.nn.finetune import finetune

PROFILES = {"inside 0.03→0.12": (0.03, 0.12), "slow 0.004→0.012": (0.004, 0.012), "fast 0.15→0.35": (0.15, 0.35)}
PIXELS = (300, 700, 1500, 3000, 6000)


def _errors(c2, gamma_t, width=1, max_lag=49):
    rel = []
    for k in range(c2.shape[0]):
        r = ageing_analysis(c2[k], width=width, max_lag=max_lag)
        ok = r.fit.success
        true = gamma_t[k][r.ages.astype(int)]
        rel.append(((r.fit.gamma - true) / true)[ok])
    rel = np.concatenate(rel)
    return float(np.median(np.abs(rel))), float(np.median(rel)), rel.size, rel


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=2, help="seeds first-seed … (0 and 1 were used to tune)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--frames", type=int, default=400)
    p.add_argument("--mean-count", type=float, default=0.1)
    a = p.parse_args(argv)
    base = Denoiser.from_directory(a.model) if a.model else Denoiser.pretrained()
    print(f"{'profile':18s}{'seed':>5s}{'raw |e|':>10s}{'base |e|':>10s}{'tuned |e|':>10s}{'base bias':>10s}"
          f"{'tuned bias':>11s}{'tune s':>8s}")
    summary, pooled = {}, {}
    for name, (g0, g1) in PROFILES.items():
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            t = np.arange(a.frames)
            gamma_t = np.stack([np.linspace(g0, g1, a.frames)] * len(PIXELS))
            frames, labels = [], []
            # one ROI per pixel count: simulate each, then lay them side by side
            for k, npx in enumerate(PIXELS):
                sim = simulate_speckle(a.frames, npx, gamma=gamma_t[k], beta=0.2, mean_count=a.mean_count,
                                       seed=1000 * seed + k)
                frames.append(sim.frames[:, 0, :])
                labels.append(np.full(npx, k + 1))
            frames = np.concatenate(frames, axis=1)
            labels = np.concatenate(labels)
            from xpcs_denoise import two_time

            c2 = two_time(frames, labels)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                e_raw = _errors(c2, gamma_t)
                e_base = _errors(denoise(c2, model=base), gamma_t)
                t0 = time.time()
                with tempfile.TemporaryDirectory() as tmp:
                    tuned, _ = finetune(frames, labels, tmp, model=base, epochs=a.epochs, lr=a.lr, seed=seed,
                                        progress=False)
                dt = time.time() - t0
                e_tuned = _errors(denoise(c2, model=tuned), gamma_t)
            print(f"{name:18s}{seed:5d}{e_raw[0]:10.3f}{e_base[0]:10.3f}{e_tuned[0]:10.3f}{e_base[1]:+10.3f}"
                  f"{e_tuned[1]:+11.3f}{dt:8.0f}", flush=True)
            summary.setdefault(name, []).append((e_raw[0], e_base[0], e_tuned[0],
                                                 e_raw[1], e_base[1], e_tuned[1]))
            pooled.setdefault("raw", []).append(e_raw[3])
            pooled.setdefault("base", []).append(e_base[3])
            pooled.setdefault("tuned", []).append(e_tuned[3])
        del t
    print("\nmedian over seeds | |rel. error| raw | shipped | fine-tuned | tuned/shipped | signed raw | shipped "
          "| fine-tuned |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in summary.items():
        r = np.median(np.array(rows), axis=0)
        print(f"| {name} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[2] / r[1]:.2f} | {r[3]:+.3f} | {r[4]:+.3f} "
              f"| {r[5]:+.3f} |")
    med = {k: float(np.median(np.abs(np.concatenate(v)))) for k, v in pooled.items()}
    print(f"| pooled (every cut of every series) | {med['raw']:.3f} | {med['base']:.3f} | {med['tuned']:.3f} "
          f"| {med['tuned'] / med['base']:.2f} | | | |")


if __name__ == "__main__":
    main()
