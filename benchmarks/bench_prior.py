"""The far-lag prior's settings (weight, first lag, bound) measured on fresh simulated crops and real held-out crops.

Run: python3 benchmarks/bench_prior.py [--data ../shared/data/cned_train.h5] [--seeds 2027,31337,5150,8]
                                       [--settings 0,0.4,1 0.5,0.4,1 ...]

The shipped network and age stage denoise 1,500 simulated 50-frame crops per seed (judged ranges) and the real
held-out crops once. The prior shifts each far lag by one value at every age (``LagDenoiser.prior_step``), so the
output's 1TCF under any setting is the 1TCF before the prior plus that shift: the script captures, per crop, the
1TCF before the prior, the 2021 ensemble's 1TCF and the 1TCF's noise level, checks that the shipped setting
rebuilds the shipped output, and fits each setting's 1TCF as a viewer does (four parameters, lags 1–49).

Table per setting: simulated median |error| ÷ raw's per Γ bin 0.005–0.01 … 0.3–0.4 and the median signed error;
real median / mean / gross relative error in 0.01–0.15 and the median signed error per bin 0.01–0.03 … 0.1–0.15.
docs/model.md ("Fresh seeds, and the prior's settings measured again") quotes it.
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

from bench_models import BINS  # noqa: E402  (the benchmark's Γ bins, one definition; run from this folder's script)

REAL_BINS = ((0.01, 0.03), (0.03, 0.06), (0.06, 0.1), (0.1, 0.15))
MAX_LAG = 49
SETTINGS = ("0,0.4,1", "0.25,0.4,1", "0.5,0.4,1", "0.5,0.6,1", "0.75,0.4,1", "1,0.4,1")


def capture(model, x):
    """Denoise ``x`` with ``model`` and return (shipped output's 1TCF, 1TCF before the prior, the ensemble's 1TCF,
    the 1TCF's noise level), each (B, MAX_LAG)."""
    from xpcs_denoise.core.correlation import one_time_from_two_time
    from xpcs_denoise.nn.lagnet import LagDenoiser, band_mask, band_mean, one_time_noise

    rows = []

    class Capture(LagDenoiser):  # records what the prior step sees, then takes it as shipped
        def prior_step(self, den, n_frames, aux, g_prior):
            g_out = band_mean(den, band_mask(n_frames, den.shape[0]))
            lag = np.arange(1, g_out.size + 1)
            unit = one_time_noise(np.asarray(aux["sbar"]), n_frames, lag) * float(aux["s"][0])
            rows.append((g_out[:MAX_LAG], np.asarray(g_prior)[:MAX_LAG], unit[:MAX_LAG]))
            return super().prior_step(den, n_frames, aux, g_prior)

    spy = Capture(model.model, model.card)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        den = spy.denoise(x)
    if len(rows) != len(x):
        raise SystemExit("the prior was not applied to every crop (is it off in the card?)")
    net, prior, unit = (np.array([r[i] for r in rows]) for i in range(3))
    return one_time_from_two_time(den)[:, :MAX_LAG], net, prior, unit


def shifted(net, prior, unit, weight, first, bound, gate=None, n_frames=50):
    """The 1TCF under a setting (as ``LagDenoiser.prior_step``). ``gate`` r₀ (docs/model.md, "A view of the whole
    band, and a gated prior"): each lag's weight times clip(1 − r_k / r₀, 0, 1), r_k the share of the ensemble's
    contrast left at lag k (its 1TCF less its mean over the last five lags, over the same at lag 1)."""
    lag = np.arange(1, net.shape[1] + 1)
    use = (lag >= first * n_frames) & np.isfinite(prior)
    if gate is not None:
        tail = np.nanmean(prior[:, -5:], 1, keepdims=True)
        r = (prior - tail) / np.clip(np.abs(prior[:, :1] - tail), 1e-9, None)
        weight = weight * np.clip(1 - np.nan_to_num(r) / gate, 0, 1)
    step = weight * (np.where(use, prior, net) - net)
    return net + np.clip(step, -bound * unit, bound * unit)


def plain_gamma(g2):
    from xpcs_denoise.core.fitting import fit_g2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit_g2(g2)
    return np.where(f.success, f.gamma, np.nan)


def main():
    from xpcs_denoise.analysis.evaluation import held_out_real_crops
    from xpcs_denoise.core.correlation import one_time_from_two_time
    from xpcs_denoise.core.simulation import JUDGED_RANGES, simulate_crops
    from xpcs_denoise.nn.config import pretrained_directory
    from xpcs_denoise.nn.lagnet import LagDenoiser

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cned_train.h5")
    ap.add_argument("--seeds", default="2027,31337,5150,8")
    ap.add_argument("--n", type=int, default=1500, help="simulated crops per seed")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS),
                    help="weight,first lag (share of N),bound (σ)[,gate r₀]")
    a = ap.parse_args()
    model = LagDenoiser.from_directory(pretrained_directory() / "lagnet")
    c = model.config
    shipped = (c.prior_weight, c.prior_from, c.prior_bound)
    sim = {"truth": [], "raw": [], "net": [], "prior": [], "unit": []}
    for seed in (int(s) for s in a.seeds.split(",")):
        x, _, prm = simulate_crops(a.n, 50, seed=seed, **JUDGED_RANGES)
        out, net, prior, unit = capture(model, x)
        dev = np.nanmax(np.abs(out - shifted(net, prior, unit, *shipped)))
        print(f"seed {seed}: the shipped setting rebuilds the shipped output to {dev:.1e}", flush=True)
        for k, v in zip(("truth", "raw", "net", "prior", "unit"),
                        (prm["gamma"], one_time_from_two_time(x)[:, :MAX_LAG], net, prior, unit), strict=True):
            sim[k].append(v)
    sim = {k: np.concatenate(v) for k, v in sim.items()}
    r = held_out_real_crops(a.data)
    ok = np.isfinite(r["gamma"])
    _, rnet, rprior, runit = capture(model, r["x"][ok])
    truth_r = r["gamma"][ok]
    t = sim["truth"]
    raw_e = plain_gamma(sim["raw"]) / t - 1
    edges = list(zip(BINS[:-1], BINS[1:], strict=True))
    raw_bias = " / ".join(f"{100 * np.nanmedian(raw_e[(t >= lo) & (t < hi)]):+.0f}" for lo, hi in edges)
    print(f"\n{t.size} simulated crops (seeds {a.seeds}), {truth_r.size} real held-out crops; shipped setting "
          f"{shipped}\nraw's simulated bias per bin: {raw_bias} %")
    print("| weight, first lag, bound (, gate) | simulated ratio | simulated bias | real | real bias |")
    print("| --- | --- | --- | --- | --- |")
    for s in a.settings:
        w, first, bound, *gate = (float(v) for v in s.split(","))
        gate = gate[0] if gate else None
        e = plain_gamma(shifted(sim["net"], sim["prior"], sim["unit"], w, first, bound, gate)) / t - 1
        ratio, bias = [], []
        for lo, hi in edges:
            m = (t >= lo) & (t < hi)
            ratio.append(np.nanmedian(np.abs(e[m])) / np.nanmedian(np.abs(raw_e[m])))
            bias.append(100 * np.nanmedian(e[m]))
        er = plain_gamma(shifted(rnet, rprior, runit, w, first, bound, gate)) / truth_r - 1
        band = (truth_r > 0.01) & (truth_r < 0.15)
        eb = np.where(np.isfinite(er), np.abs(er), np.inf)[band]
        rbias = [100 * np.nanmedian(er[(truth_r > lo) & (truth_r < hi)]) for lo, hi in REAL_BINS]
        real = f"{np.median(eb):.3f} / {np.mean(eb[np.isfinite(eb)]):.3f} / {100 * np.mean(eb > 1):.1f} %"
        label = f"{w:g}, {first:g} N, {bound:g} σ" + ("" if gate is None else f", gate {gate:g}")
        print(f"| {label} | " + " / ".join(f"{v:.2f}" for v in ratio) + " | "
              + " / ".join(f"{v:+.0f}" for v in bias) + f" % | {real} | " + " / ".join(f"{v:+.0f}" for v in rbias)
              + " % |", flush=True)


if __name__ == "__main__":
    main()
