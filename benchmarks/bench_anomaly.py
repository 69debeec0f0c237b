"""Anomaly scores stored by denoise: their cost and what they flag, printed as tables
(run: python3 benchmarks/bench_anomaly.py [--quick]).

1. Time of pipeline.denoise_file on a 1000-frame 2TCF (3 ROIs, our format) with and without the anomaly
   scores (median of --repeats runs each, interleaved); the scores come from the denoising pass itself.
2. Share of windows flagged (score above the card's threshold) on
   - the held-out real crops the threshold was calibrated on (from the model card: 1 % by construction),
   - simulated series inside the training range (Γ 0.005–0.3 frames⁻¹, β 0.1–0.3, several seeds, N = 400),
   - the same series with an unlearned structure injected in frames 200–250 (an oscillation of period 6
     frames, or a step of the level, of amplitude A times the contrast β): flagged windows that overlap the
     injection ("hit") and that do not ("false").
3. Share of windows flagged per photon level (issue 31): artefact-free 150-frame series (Γ 0.01, 0.05, 0.2
   frames⁻¹, β 0.2, 2,000 pixels, Poisson counts, seeds apart from the calibration's) from 0.01 to 1 photon per
   pixel per frame, and the same with artefacts of 2× the contrast added to the 2TCF: an oscillation in lag
   (periods 6 and 15 frames: vibration), one along age (period 20 frames), a step (the 2TCF after frame 75
   raised; only windows with the step at least 5 frames inside count).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from xpcs_denoise import pipeline, simulate_speckle
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.io.formats import write_c2
from xpcs_denoise.nn.denoiser import _pretrained, anomaly_scores


def timing(repeats: int):
    c2 = np.stack([simulate_speckle(1000, 1000, gamma=g, beta=0.2, mean_count=0.3, seed=s).two_time()[0]
                   for s, g in enumerate((0.01, 0.05, 0.2))])
    with tempfile.TemporaryDirectory() as d:
        write_c2(Path(d) / "in.h5", c2)
        t = {True: [], False: []}
        for r in range(repeats + 1):
            for on in (False, True):
                t0 = time.perf_counter()
                pipeline.denoise_file(Path(d) / "in.h5", Path(d) / "out.h5", anomaly=on, overwrite=True)
                if r:  # the first round warms up (model load, caches)
                    t[on].append(time.perf_counter() - t0)
    off, on = np.median(t[False]), np.median(t[True])
    print("| denoise_file, 3 ROIs × 1000 frames | seconds |\n| --- | --- |")
    print(f"| without anomaly scores | {off:.2f} |\n| with anomaly scores | {on:.2f} |")
    print(f"| extra | {100 * (on / off - 1):+.1f} % |\n")


def inject(c2, kind, amp, beta, t0=200, t1=250):
    n = c2.shape[-1]
    t = np.arange(n)
    blk = (t[:, None] >= t0) & (t[:, None] < t1) & (t[None, :] >= t0) & (t[None, :] < t1)
    add = amp * beta * (np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6) if kind == "oscillation" else 1.0)
    out = c2.copy()
    out[blk] += np.broadcast_to(add, c2.shape)[blk]
    return out


def shares(seeds: int):
    den = _pretrained()
    cal = den.card["anomaly_threshold"]
    print(f"threshold {cal['threshold']:.3f} = {cal['quantile']:.0%} quantile of {cal['n_crops']} held-out real "
          f"crops ({cal['n_targets']} validation 2TCFs)\n")
    print("| data | windows | flagged share | hit (overlap injection) | false (elsewhere) | max score |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| held-out real crops (card) | {cal['n_crops']} | {cal['held_out_flagged_share']:.3f} | | | |")
    rng = np.random.default_rng(0)
    series = []
    for s in range(seeds):
        g = float(np.exp(rng.uniform(np.log(0.005), np.log(0.3))))
        beta = float(rng.uniform(0.1, 0.3))
        series.append((beta, simulate_speckle(400, 2000, gamma=g, beta=beta, mean_count=0.3, seed=s).two_time()[0]))
    cases = [("inside range", None, 0)] + [(kind, kind, a) for kind in ("oscillation", "step") for a in (2, 5, 10)]
    for label, kind, amp in cases:
        flags, hit, false, top = [], [], [], []
        for beta, c2 in series:
            x = c2 if kind is None else inject(c2, kind, amp, beta)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = den.denoise_full(x, anomaly=True).anomaly
            over = (a["starts"] + a["size"] > 200) & (a["starts"] < 250)
            flags.append(a["flagged"])
            hit.append(a["flagged"][over].mean())
            false.append(a["flagged"][~over].mean())
            top.append(np.nanmax(a["score"]))
        name = label if kind is None else f"{label}, A = {amp} β"
        print(f"| {name} ({seeds} series) | {sum(f.size for f in flags)} | {np.mean(np.concatenate(flags)):.3f} | "
              + ("" if kind is None else f"{np.mean(hit):.2f}") + f" | {np.mean(false):.3f} | {np.max(top):.2f} |")


ARTEFACTS = ("clean", "lag osc. 6", "lag osc. 15", "age osc. 20", "step")


def add_artefact(c2, name, beta):
    t = np.arange(c2.shape[-1])
    x = c2.copy()
    if name.startswith("lag osc."):
        x += 2 * beta * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / float(name.split()[-1]))
    elif name.startswith("age osc."):
        x += 2 * beta * np.cos(2 * np.pi * (t[:, None] + t[None, :]) / 2 / float(name.split()[-1]))
    elif name == "step":
        x[75:, 75:] += 2 * beta
    return x


def photon_levels(n_series: int, pixels: int = 2000, seed: int = 2026):
    print(f"\n| photons/px/frame ({pixels} px, {3 * n_series} series) | " + " | ".join(ARTEFACTS) + " |")
    print("| --- " * (len(ARTEFACTS) + 1) + "|")
    for mc in (0.01, 0.03, 0.1, 0.3, 1.0):
        flags = {k: [] for k in ARTEFACTS}
        for j, g in enumerate((0.01, 0.05, 0.2)):
            try:
                c2s = simulate_speckle(150, pixels, gamma=g, beta=0.2, mean_count=mc, n_rois=n_series,
                                       seed=seed + 100 * j + int(1000 * mc)).two_time()
            except XPCSInputError:  # a frame without photons: Eq. 1 undefined
                continue
            for c2 in c2s:
                for name in ARTEFACTS:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            a = anomaly_scores(add_artefact(c2, name, 0.2), step=5)
                        except XPCSInputError:  # no measurable contrast: not scored
                            continue
                    keep = np.ones(a["starts"].size, bool)
                    if name == "step":
                        keep = (a["starts"] + 5 <= 75) & (75 < a["starts"] + 45)
                    flags[name].append(a["flagged"][keep])
        row = [f"{100 * np.concatenate(v).mean():.1f} %" if v else "—" for v in flags.values()]
        print(f"| {mc} | " + " | ".join(row) + " |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--quick", action="store_true", help="1 repeat, 4 series")
    a = p.parse_args()
    if a.quick:
        a.repeats, a.seeds = 1, 4
    timing(a.repeats)
    shares(a.seeds)
    photon_levels(2 if a.quick else 4)


if __name__ == "__main__":
    main()
