"""Bad-frame detection on simulated series, printed as tables (run: python3 benchmarks/bench_bad_frames.py).

Each series is drawn at random: Γ log-uniform in [0.005, 0.3] frames⁻¹, mean count log-uniform in
[0.05, 1] photons per pixel per frame, ROI size log-uniform in [500, 20,000] pixels, N in {200, 500, 1000}
frames, contrast β uniform in [0.1, 0.3]; a third of the series age: Γ(t) falls 3–10× over the series to
the drawn Γ. 1 % of its frames are made bad (xpcs_denoise.core.badframes.inject_bad_frames:
intensity spike ×3–10, zero frame, cosmic ray of 50–500 counts in 1–4 pixels, speckle shifted by 1–50 pixels,
in turn), and xpcs_denoise.find_bad_frames runs on the 2TCF alone and on the 2TCF with the frames. False alarms
are counted on the frames not made bad, and on the same series without any bad frame.

Options: --series M (default 60), --seed S, --threshold T, --quick (12 series).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import xpcs_denoise as xd
from xpcs_denoise.core.badframes import BAD_FRAME_KINDS, DEFAULT_THRESHOLD, find_bad_frames, inject_bad_frames


def draw(rng):
    return {"gamma": float(np.exp(rng.uniform(np.log(0.005), np.log(0.3)))),
            "count": float(np.exp(rng.uniform(np.log(0.05), np.log(1.0)))),
            "pixels": int(np.exp(rng.uniform(np.log(500), np.log(20000)))),
            "n": int(rng.choice([200, 500, 1000])),
            "beta": float(rng.uniform(0.1, 0.3)),
            "ageing": float(np.exp(rng.uniform(np.log(3), np.log(10)))) if rng.uniform() < 1 / 3 else 1.0}


def one_series(p, seed, threshold):
    gamma = p["gamma"]
    if p["ageing"] > 1:  # Γ(t) falls (ageing) by the drawn factor over the series, ending at the drawn Γ
        gamma = np.geomspace(p["gamma"] * p["ageing"], p["gamma"], p["n"])
    sim = xd.simulate_speckle(p["n"], p["pixels"], gamma=gamma, beta=p["beta"], mean_count=p["count"], seed=seed)
    frames, bad, kinds = inject_bad_frames(sim, fraction=0.01, seed=seed)
    zero = bad[np.array(kinds) == "zero"]
    # a zero frame has no 2TCF row (0/0): NaN, as any correlator gives it
    c2 = xd.two_time(frames, sim.labels, exclude=zero if zero.size else None)
    t0 = time.perf_counter()
    m_c2 = find_bad_frames(c2, threshold=threshold)[0]
    t_c2 = time.perf_counter() - t0
    m_fr = find_bad_frames(c2, frames=frames, labels=sim.labels, threshold=threshold)[0]
    clean_c2 = sim.two_time()
    k_c2 = find_bad_frames(clean_c2, threshold=threshold)[0]
    k_fr = find_bad_frames(clean_c2, frames=sim.frames, labels=sim.labels, threshold=threshold)[0]
    good = np.ones(p["n"], bool)
    good[bad] = False
    gamma_t = np.broadcast_to(np.asarray(gamma, dtype=float), (p["n"],))
    return {"gamma_t": gamma_t, "bad": bad, "kinds": kinds, "m_c2": m_c2, "m_fr": m_fr, "good": good,
            "k_c2": k_c2, "k_fr": k_fr,
            "seconds": t_c2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=60)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n_series = 12 if a.quick else a.series
    rng = np.random.default_rng(a.seed)
    det = {k: {"c2": 0, "fr": 0, "n": 0} for k in BAD_FRAME_KINDS}
    # β √S (S photons per frame in the ROI): the signal-to-noise of a frame's correlation with its neighbours
    snr_bins = [(0, 3), (3, 6), (6, 10), (10, np.inf)]
    dec_bins = {b: {"c2": 0, "n": 0} for b in snr_bins}
    # regime of the dynamics at the bad frame: Γ(t) in frames⁻¹; a neighbour one frame away keeps e^{-2Γ} of β
    regimes = {"slow, Γ < 0.02": (0, 0.02), "medium, 0.02–0.1": (0.02, 0.1), "fast, Γ > 0.1": (0.1, np.inf)}
    by_regime = {(k, r): {"c2": 0, "fr": 0, "n": 0} for k in BAD_FRAME_KINDS for r in regimes}
    fa_regime = {r: {"fa": 0, "n": 0} for r in regimes}
    ageing = {"bad": 0, "found": 0, "fa": 0, "frames": 0}
    fa = {"inj_c2": 0, "inj_fr": 0, "inj_n": 0, "clean_c2": 0, "clean_fr": 0, "clean_n": 0}
    t_all = time.perf_counter()
    secs = []
    for _i in range(n_series):
        p = draw(rng)
        r = one_series(p, seed=int(rng.integers(2**31)), threshold=a.threshold)
        secs.append(r["seconds"])
        snr = p["beta"] * np.sqrt(p["pixels"] * p["count"])
        g_t = r["gamma_t"]
        reg_of = [next(name for name, (lo, hi) in regimes.items() if lo <= g < hi) for g in g_t]
        for t, kind in zip(r["bad"], r["kinds"], strict=False):
            det[kind]["n"] += 1
            det[kind]["c2"] += bool(r["m_c2"][t])
            det[kind]["fr"] += bool(r["m_fr"][t])
            cell = by_regime[(kind, reg_of[t])]
            cell["n"] += 1
            cell["c2"] += bool(r["m_c2"][t])
            cell["fr"] += bool(r["m_fr"][t])
            if kind == "decorrelated":
                b = next(b for b in snr_bins if b[0] <= snr < b[1])
                dec_bins[b]["n"] += 1
                dec_bins[b]["c2"] += bool(r["m_c2"][t])
        for t in range(p["n"]):  # false alarms (2TCF + frames) of the clean copy, per regime of its frame
            fa_regime[reg_of[t]]["n"] += 1
            fa_regime[reg_of[t]]["fa"] += bool(r["k_fr"][t])
        if p["ageing"] > 1:
            ageing["bad"] += r["bad"].size
            ageing["found"] += int(r["m_fr"][r["bad"]].sum())
            ageing["fa"] += int(r["k_fr"].sum()) + int(r["m_fr"][r["good"]].sum())
            ageing["frames"] += p["n"] + int(r["good"].sum())
        fa["inj_c2"] += int(r["m_c2"][r["good"]].sum())
        fa["inj_fr"] += int(r["m_fr"][r["good"]].sum())
        fa["inj_n"] += int(r["good"].sum())
        fa["clean_c2"] += int(r["k_c2"].sum())
        fa["clean_fr"] += int(r["k_fr"].sum())
        fa["clean_n"] += p["n"]
    print(f"bad-frame detection, {n_series} simulated series (seed {a.seed}), threshold {a.threshold}, "
          f"{time.perf_counter() - t_all:.0f} s")
    print()
    print("| kind | injected | detected, 2TCF only | detected, 2TCF + frames |")
    print("| --- | ---: | ---: | ---: |")
    tot = {"c2": 0, "fr": 0, "n": 0}
    for k, d in det.items():
        for key in tot:
            tot[key] += d[key]
        if d["n"]:
            print(f"| {k} | {d['n']} | {100 * d['c2'] / d['n']:.1f} % | {100 * d['fr'] / d['n']:.1f} % |")
    print(f"| all | {tot['n']} | {100 * tot['c2'] / tot['n']:.1f} % | {100 * tot['fr'] / tot['n']:.1f} % |")
    print()
    print("| false alarms per 1,000 frames | 2TCF only | 2TCF + frames | frames tested |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| series with bad frames (other frames) | {1000 * fa['inj_c2'] / fa['inj_n']:.2f} | "
          f"{1000 * fa['inj_fr'] / fa['inj_n']:.2f} | {fa['inj_n']} |")
    print(f"| clean series | {1000 * fa['clean_c2'] / fa['clean_n']:.2f} | "
          f"{1000 * fa['clean_fr'] / fa['clean_n']:.2f} | {fa['clean_n']} |")
    print()
    print("| shifted speckle, β √(photons per frame) | injected | detected, 2TCF only |")
    print("| --- | ---: | ---: |")
    for (lo, hi), d in dec_bins.items():
        if d["n"]:
            print(f"| {lo:g}–{hi:g} | {d['n']} | {100 * d['c2'] / d['n']:.1f} % |")
    print()
    print("| kind × regime of Γ at the frame (frames⁻¹) | injected | detected, 2TCF only | detected, 2TCF + frames |")
    print("| --- | ---: | ---: | ---: |")
    for (kind, reg), d in by_regime.items():
        if d["n"]:
            print(f"| {kind}, {reg} | {d['n']} | {100 * d['c2'] / d['n']:.1f} % | {100 * d['fr'] / d['n']:.1f} % |")
    print()
    print("| clean series, regime of Γ | frames | false alarms per 1,000 (2TCF + frames) |")
    print("| --- | ---: | ---: |")
    for reg, d in fa_regime.items():
        if d["n"]:
            print(f"| {reg} | {d['n']} | {1000 * d['fa'] / d['n']:.2f} |")
    if ageing["bad"]:
        print()
        print(f"ageing series only: {100 * ageing['found'] / ageing['bad']:.1f} % of {ageing['bad']} bad frames "
              f"found (2TCF + frames), {1000 * ageing['fa'] / ageing['frames']:.2f} false alarms per 1,000 frames")
    print()
    print(f"find_bad_frames on the 2TCF alone: median {np.median(secs):.2f} s per series (N ≤ 1,000)")


if __name__ == "__main__":
    main()
