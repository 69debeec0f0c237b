"""Issue 29's benchmark: the lag-band model beside raw, the paper's network and the classical peers, side by side,
judged by what users fit (plain four-parameter Eq. 3 fits of the 1TCF of each output, as xpcs-viewer does).

Parts (``--parts``, default all):
- ``faithful``: noise-free Eq. 3 2TCFs (β 0.2; N 50 and 200; α 0.7 / 1 / 1.4; C∞ − 1 = 0, 0.1 β, 0.3 β;
  Γ 0.005–0.3): largest |ΔΓ/Γ| between fits of the output and of the input (lags 1–49).
- ``sim``: simulated 50-frame crops over the judged ranges (``core.simulation.JUDGED_RANGES``, seed disjoint from
  training): median signed and median absolute relative error of Γ per Γ bin.
- ``real``: real CHX crops of the series held out from both models' training (the paper model's card split):
  median / mean relative error, gross errors (> 100 % or no usable fit), bias per bin, MSE(1TCF), 0.01 < Γ < 0.15.
- ``ageing``: 400-frame series at low SNR (20,000 pixels at 0.2 photons per pixel per frame, and 5,000 at 0.1:
  ``ageing_low``), Γ falling 4× smoothly and in a step, and stationary ones: cuts of width 3 fitted with β fixed
  at its truth; median relative error of Γ(t_a); on stationary series the trend of Γ(t_a) over the series beside
  the cuts' error bars. ``stage`` is the adaptive age stage alone (``core.adaptive`` on the raw 2TCF). And
  ``ageing_white``: the same Γ(t) as Eq. 3 2TCFs plus white noise (a second noise model).
- ``long``: 500-frame stationary series: plain fits (lags 1–250) of raw, denoised and the stage alone, per Γ bin.
- ``speed``: a 1,000-frame 2TCF by the paper's per-patch way, our batched ensemble and the lag-band model over
  the same lags (1–49), in one run; and the peak memory of a 10,000-frame 2TCF in a fresh process.
- ``coverage``: |z| coverage of the tool's own fit (``fit_two_time``, lagnet path) on simulated and real crops.

The age-axis smoother is given its best width per part (grid 2–64 frames), chosen on the part's own data.

    python benchmarks/bench_models.py --json lagnet_bench.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np

from xpcs_denoise.core.correlation import one_time_from_two_time
from xpcs_denoise.core.fitting import fit_g2
from xpcs_denoise.core.simulation import JUDGED_RANGES, simulate_crops, simulate_speckle, true_two_time
from xpcs_denoise.restoration.denoise import available_methods, denoise

BINS = (0.005, 0.01, 0.03, 0.06, 0.1, 0.15, 0.3, 0.4)
AGE_WIDTHS = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64)
PEERS = ("gaussian", "median", "tv", "bm3d")


def plain_gamma(c2, max_lag=49):
    """Γ of plain four-parameter fits of the 1TCFs (lags 1…max_lag), as a viewer reports it (fits that end at a
    bound included); NaN where the fit failed."""
    c2 = np.asarray(c2)
    c2 = c2[None] if c2.ndim == 2 else c2
    g2 = one_time_from_two_time(c2)[:, :max_lag]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_g2(g2)
    return np.where(fit.success, fit.gamma, np.nan)


def methods_for(n_frames):
    names = ["raw", "lagnet"] + (["cned"] if n_frames >= 50 else [])
    return names + [m for m in PEERS if m in available_methods()]


#: The lag-band model judged (--model; default the shipped one).
LAGNET = None


def run(c2, method, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "raw":
            return np.asarray(c2, dtype=np.float64)
        if method.startswith("age"):
            return denoise(c2, "age", width=float(method[4:]))
        if method == "stage":
            from xpcs_denoise.core.adaptive import adaptive_age_smooth

            return adaptive_age_smooth(c2)
        if method == "lagnet" and LAGNET is not None:
            kw = {"model": LAGNET, **kw}
        return denoise(c2, method, **kw)


def best_age(c2, score):
    """The age-axis smoother's best width on this data: (name, output)."""
    best = None
    for w in AGE_WIDTHS:
        out = run(c2, f"age:{w}")
        s = score(out)
        if best is None or s < best[0]:
            best = (s, f"age:{w}", out)
    return best[1], best[2]


def rel_err(est, truth):
    return (est - truth) / truth


def bin_rows(gamma_true, errs_by_method):
    rows = []
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=False):
        sel = (gamma_true >= lo) & (gamma_true < hi)
        row = {"bin": f"{lo:g}–{hi:g}", "n": int(sel.sum())}
        for m, e in errs_by_method.items():
            v = e[sel]
            fin = np.isfinite(v)
            row[m] = {"median_signed": float(np.median(v[fin])) if fin.any() else None,
                      "median_abs": float(np.median(np.abs(v[fin]))) if fin.any() else None,
                      "no_fit": float(1 - fin.mean()) if sel.any() else None}
        rows.append(row)
    return rows


def print_bins(title, rows):
    methods = [k for k in rows[0] if k not in ("bin", "n")]
    print(f"\n{title}\n" + "bin".ljust(12) + "n".rjust(6) + "".join(m.rjust(22) for m in methods))
    print(" " * 18 + "".join("bias / |err|".rjust(22) for _ in methods))
    for r in rows:
        cells = []
        for m in methods:
            c = r[m]
            cells.append("—".rjust(22) if c["median_signed"] is None else
                         f"{100 * c['median_signed']:+.0f} % / {c['median_abs']:.3f}".rjust(22))
        print(r["bin"].ljust(12) + str(r["n"]).rjust(6) + "".join(cells))


def part_faithful():
    gammas = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
    out = {}
    for n in (50, 200):
        tau = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        mats, keys = [], []
        for alpha in (0.7, 1.0, 1.4):
            for off in (0.0, 0.1, 0.3):
                for g in gammas:
                    mats.append(1 + off * 0.2 + 0.2 * np.exp(-2 * (g * tau) ** alpha))
                    keys.append((alpha, off, g))
        c2 = np.stack(mats)
        g_in = plain_gamma(c2)
        for m in methods_for(n) + ["age:8"]:
            g_out = plain_gamma(run(c2, m))
            d = np.abs(g_out / g_in - 1)
            worst = int(np.nanargmax(np.where(np.isfinite(d), d, np.inf)))
            worst_d = float(np.max(np.where(np.isfinite(d), d, np.inf)))
            where = dict(zip(("alpha", "offset_beta", "gamma"), keys[worst], strict=True))
            out.setdefault(m, {})[f"N={n}"] = {"max_abs_dgamma": worst_d, "worst": where}
    # other lengths, lag-band model only
    for n in (24, 37, 1000):
        tau = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        c2 = np.stack([1.03 + 0.2 * np.exp(-2 * (g * tau)) for g in (0.02, 0.1, 0.3)])
        out["lagnet"][f"N={n} (max |Δc2|)"] = float(np.max(np.abs(run(c2, "lagnet") - c2)))
    print("\nFaithfulness: largest |ΔΓ/Γ|, plain fits of output vs input (noise-free Eq. 3 2TCFs)")
    for m, v in out.items():
        print(f"  {m:10s} " + "  ".join(f"{k}: {x['max_abs_dgamma']:.2e}" if isinstance(x, dict) else f"{k}: {x:.1e}"
                                         for k, x in v.items()))
    return out


def part_sim(n, seed):
    measured, _, prm = simulate_crops(n, 50, seed=seed, **JUDGED_RANGES)
    g = prm["gamma"]
    errs = {}
    outs = {m: run(measured, m) for m in methods_for(50)}
    for m, o in outs.items():
        errs[m] = rel_err(plain_gamma(o), g)
    band = (g > 0.005) & (g < 0.15)
    name, o = best_age(measured, lambda o: np.nanmedian(np.abs(rel_err(plain_gamma(o[band]), g[band]))))
    errs[name] = rel_err(plain_gamma(o), g)
    rows = bin_rows(g, errs)
    print_bins(f"Simulated 50-frame crops ({n}, seed {seed}): plain fits, Γ relative error: median signed / median "
               "absolute", rows)
    return {"n": n, "seed": seed, "bins": rows}


def _real_val():
    from xpcs_denoise.analysis.evaluation import held_out_real_crops

    r = held_out_real_crops(DATA)
    return r["x"], r["gamma"], r["g2_target"], r["target_index"]


def real_metrics(out, gamma, g2t):
    est = plain_gamma(out)
    e = np.abs(rel_err(est, gamma))
    band = np.isfinite(gamma) & (gamma > 0.01) & (gamma < 0.15)
    eb = np.where(np.isfinite(e), e, np.inf)[band]
    g2 = one_time_from_two_time(out)[:, :49]
    return {"median_rel": float(np.median(eb)), "mean_rel": float(np.mean(e[band][np.isfinite(e[band])])),
            "gross": float(np.mean(eb > 1.0)), "no_fit": float(np.mean(~np.isfinite(e[band]))),
            "mse_1tcf": float(np.mean((g2[band] - g2t[band]) ** 2)), "n": int(band.sum())}


def part_real():
    x, gamma, g2t, ti = _real_val()
    rows, errs = {}, {}
    outs = {m: run(x, m, beta=1.0, baseline=1.0) if m in ("cned",) + PEERS else run(x, m)
            for m in methods_for(50)}
    name, o = best_age(x, lambda o: real_metrics(o, gamma, g2t)["median_rel"])
    outs[name] = o
    for m, o in outs.items():
        rows[m] = real_metrics(o, gamma, g2t)
        errs[m] = rel_err(plain_gamma(o), gamma)
    print(f"\nReal held-out crops ({len(x)} crops of {np.unique(ti).size} targets), 0.01 < Γ < 0.15:")
    print("method".ljust(10) + "".join(c.rjust(12) for c in ("median rel", "mean rel", "gross", "no fit",
                                                              "MSE(1TCF)")))
    for m, r in rows.items():
        print(m.ljust(10) + "".join(f"{r[c]:12.4f}" for c in ("median_rel", "mean_rel", "gross", "no_fit",
                                                                 "mse_1tcf")))
    fin = np.isfinite(gamma)
    bins = bin_rows(np.where(fin, gamma, -1), errs)
    print_bins("Real held-out crops per Γ bin (truth: fits of the targets)", bins)
    return {"overall": rows, "bins": bins, "n_crops": int(len(x))}


def ageing_series(seed, kind, n=400, pixels=20000, count=0.2):
    rng = np.random.default_rng(seed)
    g0 = float(np.exp(rng.uniform(np.log(0.03), np.log(0.12))))
    t = np.arange(n)
    if kind == "smooth":
        gamma = g0 * 4.0 ** (-t / (n - 1))
    elif kind == "step":
        gamma = np.where(t < n // 2, g0, g0 / 4)
    else:
        gamma = np.full(n, g0)
    beta = 0.2
    sim = simulate_speckle(n, pixels, gamma=gamma, beta=beta, mean_count=count, seed=seed)
    return sim.two_time()[0], gamma, beta


def cut_errors(c2, gamma_t, beta, width=3):
    from xpcs_denoise.analysis.workflows import ageing_analysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ageing_analysis(c2, width=width, max_lag=49, beta=beta)
    a = np.asarray(res.ages).astype(int)
    est = np.where(res.fit.success, res.fit.gamma, np.nan)
    return rel_err(est, gamma_t[a]), a, est, res.fit.gamma_err


def part_ageing(n_series, pixels=20000, count=0.2):
    kinds = ["smooth"] * (2 * n_series // 3) + ["step"] * (n_series - 2 * n_series // 3)
    series = [ageing_series(100 + i, k, pixels=pixels, count=count) for i, k in enumerate(kinds)]
    stat = [ageing_series(500 + i, "stationary", pixels=pixels, count=count) for i in range(3)]
    methods = [m for m in methods_for(400)] + ["stage"] + [f"age:{w}" for w in AGE_WIDTHS]
    res = {}
    for m in methods:
        per = []
        for c2, g, b in series:
            e, *_ = cut_errors(run(c2, m), g, b)
            per.append(float(np.nanmedian(np.abs(e))))
        trends = []
        for c2, g, b in stat:
            _, a, est, err = cut_errors(run(c2, m), g, b)
            ok = np.isfinite(est) & np.isfinite(err) & (err > 0)
            # Drift of Γ(t_a) over the whole series (least-squares line), relative to Γ, beside the cuts' own
            # median relative error bar: "no trend beyond its error bars" is |drift| < that error bar.
            slope, icpt = np.polyfit(a[ok], est[ok], 1)
            mean = est[ok].mean()
            trends.append({"drift": float(slope * (a[ok].max() - a[ok].min()) / mean),
                           "error_bar": float(np.median(err[ok] / est[ok]))})
        if m == "lagnet":
            # The tool's own cut errors (analysis.uncertainty.cut_fits: the raw cuts' errors, conservative): the
            # drift beside them, and the share of cuts of the ageing series within 1 / 2 of them.
            from xpcs_denoise.analysis.uncertainty import cut_fits

            for t, (c2, _g, b) in zip(trends, stat, strict=True):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cf = cut_fits(c2, method="lagnet", model=LAGNET, width=3, max_lag=49, beta=b)
                ok = cf.fit.success & np.isfinite(cf.fit.gamma_err)
                t["tool_error_bar"] = float(np.median(cf.fit.gamma_err[ok] / cf.fit.gamma[ok]))
            zs = []
            for c2, g, b in series:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cf = cut_fits(c2, method="lagnet", model=LAGNET, width=3, max_lag=49, beta=b)
                a_ = np.asarray(cf.ages).astype(int)
                ok = cf.fit.success & np.isfinite(cf.fit.gamma_err) & (cf.fit.gamma_err > 0)
                zs.append((cf.fit.gamma[ok] - g[a_[ok]]) / cf.fit.gamma_err[ok])
            z = np.abs(np.concatenate(zs))
            tool_cover = {"z1": float(np.mean(z < 1)), "z2": float(np.mean(z < 2)), "n": int(z.size)}
        res[m] = {"median_rel": float(np.median(per)), "per_series": per, "stationary_trend": trends,
                  "median_smooth": float(np.median([v for v, k in zip(per, kinds, strict=True) if k == "smooth"])),
                  "median_step": float(np.median([v for v, k in zip(per, kinds, strict=True) if k == "step"]))}
    ages = {k: v for k, v in res.items() if k.startswith("age:")}
    best = min(ages, key=lambda k: ages[k]["median_rel"])
    print(f"\nAgeing series ({len(kinds)}: {kinds.count('smooth')} smooth 4× falls, {kinds.count('step')} steps; "
          f"400 frames, {pixels:,} pixels, {count:g} photons/pixel/frame): cuts width 3, β fixed")
    for m, r in res.items():
        if m.startswith("age:") and m != best:
            continue
        print(f"  {m:10s} median rel. error {r['median_rel']:.3f} (smooth {r['median_smooth']:.3f}, step "
              f"{r['median_step']:.3f})  per series "
              + " ".join(f"{v:.2f}" for v in r["per_series"])
              + "   stationary drift / error bar " + " ".join(f"{v['drift']:+.2f}/{v['error_bar']:.2f}"
                                                            for v in r["stationary_trend"]))
    tr = res["lagnet"]["stationary_trend"]
    print("  the tool's cut errors (cut_fits, lagnet): stationary drift / error bar "
          + " ".join(f"{v['drift']:+.2f}/{v['tool_error_bar']:.2f}" for v in tr)
          + f"; ageing cuts within 1 / 2 of them: {100 * tool_cover['z1']:.0f} / {100 * tool_cover['z2']:.0f} %")
    return {"methods": {k: v for k, v in res.items() if not k.startswith("age:") or k == best}, "best_age": best,
            "tool_cut_errors": tool_cover, "pixels": pixels, "photons": count,
            "age_widths": {k: v["median_rel"] for k, v in ages.items()}}


#: Photon levels of the ageing sets (pixels, photons per pixel per frame): around the benchmark's two.
AGEING_LEVELS = ((20000, 0.05), (10000, 0.1), (5000, 0.2), (2000, 0.5), (20000, 0.2))


def part_ageing_sets(n_series, seed0, levels=AGEING_LEVELS):
    """The ageing bar on other photon levels and other draws of series (seeds seed0, seed0 + 1, …; two thirds
    smooth 4× falls, a third steps): the model, the stage alone and the age-axis smoother at its best width on
    each set, median over the series of each series' median relative error of the cuts."""
    kinds = ["smooth"] * (2 * n_series // 3) + ["step"] * (n_series - 2 * n_series // 3)
    out = {}
    print(f"\nAgeing sets ({len(kinds)} series from seed {seed0}): model / stage / best smoother, ratio")
    for pixels, count in levels:
        series = [ageing_series(seed0 + i, k, pixels=pixels, count=count) for i, k in enumerate(kinds)]
        med = {}
        for m in ["lagnet", "stage"] + [f"age:{w}" for w in AGE_WIDTHS]:
            med[m] = float(np.median([np.nanmedian(np.abs(cut_errors(run(c2, m), g, b)[0])) for c2, g, b in series]))
        best = min((k for k in med if k.startswith("age:")), key=med.get)
        out[f"{pixels}:{count:g}"] = {"lagnet": med["lagnet"], "stage": med["stage"], "best_age": best,
                                      "age": med[best], "ratio": med["lagnet"] / med[best]}
        print(f"  {pixels:6,d} pixels, {count:g} photons: {med['lagnet']:.3f} / {med['stage']:.3f} / {med[best]:.3f} "
              f"({best}), {med['lagnet'] / med[best]:.2f}×", flush=True)
    return out


def white_ageing_series(seed, kind, n=400, noise=0.02):
    """A second noise model for the ageing bar: Eq. 3 ageing 2TCF (the same Γ(t) as :func:`ageing_series`) plus
    white Gaussian noise of ``noise`` per cell (symmetric), no speckle statistics."""
    rng = np.random.default_rng(seed)
    g0 = float(np.exp(rng.uniform(np.log(0.03), np.log(0.12))))
    t = np.arange(n)
    gamma = g0 * 4.0 ** (-t / (n - 1)) if kind == "smooth" else np.where(t < n // 2, g0, g0 / 4)
    phase = np.concatenate([[0.0], np.cumsum(gamma[:-1])])
    c2 = 1 + 0.2 * np.exp(-2 * np.abs(np.subtract.outer(phase, phase)))
    e = np.triu(rng.normal(0, noise, (n, n)), 1)
    return c2 + e + e.T, gamma, 0.2


def part_ageing_white(n_series, noises=(0.01, 0.03, 0.06)):
    """Cuts' median relative error on :func:`white_ageing_series` (6 smooth, 3 steps per noise level): the model,
    the stage alone and the age-axis smoother at its best width."""
    kinds = ["smooth"] * (2 * n_series // 3) + ["step"] * (n_series - 2 * n_series // 3)
    out = {}
    print("\nAgeing series with white noise (Eq. 3 + Gaussian noise per cell; 400 frames; cuts width 3, β fixed)")
    for noise in noises:
        series = [white_ageing_series(100 + i, k, noise=noise) for i, k in enumerate(kinds)]
        res = {}
        for m in ["raw", "lagnet", "stage"] + [f"age:{w}" for w in AGE_WIDTHS]:
            per = [float(np.nanmedian(np.abs(cut_errors(run(c2, m), g, b)[0]))) for c2, g, b in series]
            res[m] = float(np.median(per))
        best = min((k for k in res if k.startswith("age:")), key=res.get)
        out[f"{noise:g}"] = {"raw": res["raw"], "lagnet": res["lagnet"], "stage": res["stage"], "best_age": best,
                             "best_age_error": res[best]}
        print(f"  noise {noise:g}: raw {res['raw']:.3f}  lagnet {res['lagnet']:.3f}  stage {res['stage']:.3f}  "
              f"{best} {res[best]:.3f}")
    return out


def part_long(n, seed):
    rng = np.random.default_rng(seed)
    g = np.exp(rng.uniform(np.log(0.002), np.log(0.3), n))
    c2 = []
    for i in range(n):
        pix = int(np.exp(rng.uniform(np.log(200), np.log(5000))))
        cnt = float(max(np.exp(rng.uniform(np.log(0.01), np.log(1))), 60 / pix))
        c2.append(simulate_speckle(500, pix, gamma=g[i], beta=float(rng.uniform(0.05, 0.5)),
                                   alpha=float(rng.uniform(0.6, 1.8)), mean_count=cnt,
                                   seed=int(rng.integers(2**31))).two_time()[0])
    c2 = np.stack(c2)
    errs = {m: rel_err(plain_gamma(run(c2, m), 250), g) for m in ("raw", "lagnet", "stage")}
    rows = bin_rows(g, errs)
    print_bins(f"Long series ({n} × 500 frames): plain fits, lags 1–250", rows)
    return {"n": n, "seed": seed, "bins": rows}


MEM_CODE = """
import resource, sys, numpy as np
from xpcs_denoise.restoration.denoise import denoise
n = int(sys.argv[1]); dt = sys.argv[2]
t = np.arange(n, dtype=np.float32)
c2 = np.empty((n, n), dt)
for s in range(0, n, 1000):
    c2[s:s + 1000] = 1 + 0.2 * np.exp(-0.02 * np.abs(t[s:s + 1000, None] - t[None, :]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = denoise(c2, "lagnet")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, base / 2**20)
"""


def part_speed():
    rng = np.random.default_rng(0)
    c2 = true_two_time(1000, 0.02, 0.2) + 0.05 * rng.standard_normal((1000, 1000))
    c2 = 0.5 * (c2 + c2.T)
    run(c2[:100, :100], "cned")
    run(c2[:100, :100], "lagnet")
    t = time.perf_counter()
    run(c2, "cned")
    t_paper = time.perf_counter() - t
    # The paper's way: each window through each member's plain Conv2d network, one patch per call, over the same
    # sliding-window positions (both passes), as the batched ensemble's windows
    import torch

    from xpcs_denoise.core.window import window_starts
    from xpcs_denoise.nn.denoiser import _pretrained
    from xpcs_denoise.nn.model import to_reference_modules

    refs = to_reference_modules(_pretrained().model)
    starts = window_starts(1000, 50, 5)[0]
    t = time.perf_counter()
    with torch.no_grad():
        for s in starts:
            patch = torch.as_tensor(c2[s:s + 50, s:s + 50], dtype=torch.float32)[None, None]
            _ = torch.stack([r(patch) for r in refs]).mean(0)
    t_loop = time.perf_counter() - t
    t = time.perf_counter()
    run(c2, "lagnet", max_lag=49)
    t_lag = time.perf_counter() - t
    t = time.perf_counter()
    run(c2, "lagnet")
    t_lag256 = time.perf_counter() - t
    mem = {}
    for dt in ("float32", "float64"):
        r = subprocess.run([sys.executable, "-c", MEM_CODE, "10000", dt], capture_output=True, text=True)
        peak, base = (float(v) for v in r.stdout.split()) if r.returncode == 0 else (float("nan"),) * 2
        mem[dt] = {"peak_GiB": peak, "before_denoise_GiB": base}
    print(f"\n1,000 frames: the paper's per-patch way over the same {len(starts)} windows {t_loop:.2f} s, our "
          f"batched ensemble {t_paper:.2f} s; lag-band model, lags 1–49: {t_lag:.2f} s ({t_loop / t_lag:.0f}× the "
          f"per-patch way, {t_paper / t_lag:.1f}× the batched ensemble); lags 1–256: {t_lag256:.2f} s")
    print("10,000 frames, peak memory of the whole process (GiB): " +
          ", ".join(f"{k}: {v['peak_GiB']:.2f} (input alone {v['before_denoise_GiB']:.2f})" for k, v in mem.items()))
    return {"seconds_1000": {"paper_per_patch": t_loop, "paper_batched": t_paper, "lagnet_lags49": t_lag,
                             "lagnet_lags256": t_lag256, "windows": int(len(starts))},
            "speedup_vs_per_patch": t_loop / t_lag, "speedup_vs_batched": t_paper / t_lag, "memory_10000": mem}


def _pct(v):
    return "—" if v is None else f"{100 * v:+.0f} %"


def markdown(res) -> str:
    """The benchmark's tables as Markdown (docs/model.md is made from them)."""
    out = []
    if "faithful" in res:
        out += ["### Faithful: noise-free in, the same out", "",
                "Largest |ΔΓ/Γ| between plain fits of the output and of the input, over noise-free Eq. 3 2TCFs "
                "(β 0.2; α 0.7, 1, 1.4; C∞ − 1 = 0, 0.1 β, 0.3 β; Γ 0.005–0.3 frames⁻¹). Other lengths: largest "
                "change of any cell.", "", "| method | N = 50 | N = 200 | other lengths |", "| --- | --- | --- | --- |"]
        for m, v in res["faithful"].items():
            other = ", ".join(f"{k.split(' ')[0]}: {x:.0e}" for k, x in v.items() if not isinstance(x, dict))
            out.append(f"| {m} | {v['N=50']['max_abs_dgamma']:.2g} | {v['N=200']['max_abs_dgamma']:.2g} | "
                       f"{other} |")
        out.append("")
    for key, title in (("sim_crops", "Simulated 50-frame crops (judged ranges, realistic noise)"),
                       ("real", "Real held-out CHX crops (truth: Eq. 3 fits of the targets)"),
                       ("long", "Long series (500 frames, plain fits of lags 1–250)")):
        if key not in res:
            continue
        rows = res[key]["bins"]
        methods = [k for k in rows[0] if k not in ("bin", "n")]
        out += [f"### {title}", "", "Median signed relative error of Γ / median absolute relative error, per bin "
                "of the true Γ (frames⁻¹).", "",
                "| Γ bin | n | " + " | ".join(methods) + " |", "| --- | ---: |" + " --- |" * len(methods)]
        for r in rows:
            cells = [("—" if r[m]["median_signed"] is None else
                      f"{_pct(r[m]['median_signed'])} / {r[m]['median_abs']:.3f}") for m in methods]
            out.append(f"| {r['bin']} | {r['n']} | " + " | ".join(cells) + " |")
        out.append("")
        if key == "real":
            out += ["Overall, 0.01 < Γ < 0.15 (gross: relative error > 100 % or no fit):", "",
                    "| method | median rel. error | mean rel. error | gross | MSE(1TCF) |",
                    "| --- | ---: | ---: | ---: | ---: |"]
            for m, r in res["real"]["overall"].items():
                out.append(f"| {m} | {r['median_rel']:.3f} | {r['mean_rel']:.3f} | {100 * r['gross']:.1f} % | "
                           f"{r['mse_1tcf']:.4f} |")
            out.append("")
    for key in ("ageing", "ageing_low"):
        if key not in res:
            continue
        ag = res[key]
        out += [f"### Ageing series: cuts of the output ({ag.get('pixels', 20000):,} pixels, "
                f"{ag.get('photons', 0.2):g} photons per pixel per frame)", "",
                "400 frames; Γ falling 4× smoothly (6 series) or in a step (3); cuts of width 3 with β fixed at its "
                "truth, lags 1–49. Median relative error of Γ(t_a) (over the nine series, the smooth ones, the "
                "steps); on three stationary series, the drift of Γ(t_a) over the series (least-squares line, "
                "relative to Γ) beside the cuts' median relative error bar. `stage`: the adaptive age stage alone "
                "(`core.adaptive` on the raw 2TCF); the age-axis smoother at its best width.", "",
                "| method | median rel. error | smooth | step | per series | stationary drift / error bar |",
                "| --- | ---: | ---: | ---: | --- | --- |"]
        for m, r in ag["methods"].items():
            per = " ".join(f"{v:.2f}" for v in r["per_series"])
            tr = ", ".join(f"{t['drift']:+.2f} / {t['error_bar']:.2f}" for t in r["stationary_trend"])
            sm = f"{r['median_smooth']:.3f} | {r['median_step']:.3f}" if "median_smooth" in r else "— | —"
            out.append(f"| {m} | {r['median_rel']:.3f} | {sm} | {per} | {tr} |")
        out.append("")
        lt = ag["methods"].get("lagnet", {}).get("stationary_trend", [])
        if lt and "tool_error_bar" in lt[0] and "tool_cut_errors" in ag:
            tc = ag["tool_cut_errors"]
            out += ["The tool's cut errors (`cut_fits`, `fit --cut-width` on a denoised file, the report's Γ(t_a) "
                    "panel: the raw cuts' errors, conservative; a plain fit's own are too small after smoothing): "
                    "stationary drift / error bar "
                    + ", ".join(f"{t['drift']:+.2f} / {t['tool_error_bar']:.2f}" for t in lt)
                    + f"; cuts of the ageing series within 1 / 2 of them: {100 * tc['z1']:.0f} / "
                      f"{100 * tc['z2']:.0f} % (n {tc['n']}).", ""]
    if "ageing_white" in res:
        out += ["### Ageing series with white noise", "",
                "The same Γ(t) (6 smooth 4× falls, 3 steps; 400 frames) as Eq. 3 2TCFs plus white Gaussian noise "
                "per cell: a second noise model, without the speckle statistics the model was trained on. Cuts' "
                "median relative error.", "",
                "| noise per cell | raw | lagnet | stage alone | age-axis smoother at its best width |",
                "| ---: | ---: | ---: | ---: | --- |"]
        for k, r in res["ageing_white"].items():
            out.append(f"| {k} | {r['raw']:.3f} | {r['lagnet']:.3f} | {r['stage']:.3f} | "
                       f"{r['best_age_error']:.3f} ({r['best_age']}) |")
        out.append("")
    if "coverage" in res:
        out += ["### Coverage of the tool's own fit", "",
                "`fit_two_time` (the lagnet path: the plain fit of the output, Γ's σ from the calibration stored in "
                "the card): share of fits with |z| < 1 / < 2, z = (Γ̂ − Γ)/σ, per bin of the true Γ. The simulated "
                "crops are new to the calibration; the real held-out crops are those it was measured on (both folds), "
                "so their row is in-sample: the card's `calibration.coverage` holds the fold-against-fold numbers.", "",
                "| set | " + " | ".join(res["coverage"]["simulated"]) + " |",
                "| --- |" + " --- |" * len(res["coverage"]["simulated"])]
        for name, tab in res["coverage"].items():
            cells = [f"{100 * tab[k]['z1']:.0f} / {100 * tab[k]['z2']:.0f} %" if k in tab else "—"
                     for k in res["coverage"]["simulated"]]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out += ["", "Its Γ, median signed / median absolute relative error per bin (the tool's fit weights the "
                "1TCF by the raw 2TCF's standard errors and, in short series, holds α within the calibration's "
                "bounds, 0.5–2, so it differs from the plain fits above):", "",
                "| set | " + " | ".join(res["coverage"]["simulated"]) + " |",
                "| --- |" + " --- |" * len(res["coverage"]["simulated"])]
        for name, tab in res["coverage"].items():
            cells = [f"{_pct(tab[k]['median_signed'])} / {tab[k]['median_abs']:.3f}"
                     if k in tab and tab[k]["median_abs"] is not None else "—" for k in res["coverage"]["simulated"]]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    if "speed" in res:
        sp = res["speed"]
        s = sp["seconds_1000"]
        mem = sp["memory_10000"]
        out += ["### Speed and memory", "",
                f"A 1,000-frame 2TCF: the paper's per-patch way over the sliding window's {s['windows']} windows "
                f"{s['paper_per_patch']:.2f} s, our batched ensemble {s['paper_batched']:.2f} s, the lag-band model "
                f"over the same lags (1–49) {s['lagnet_lags49']:.2f} s ({sp['speedup_vs_per_patch']:.0f}× the "
                f"per-patch way), over lags 1–256 {s['lagnet_lags256']:.2f} s. A 10,000-frame 2TCF, peak memory of "
                f"the whole process: {mem['float32']['peak_GiB']:.2f} GiB for float32 input "
                f"({mem['float32']['before_denoise_GiB']:.2f} before denoising), {mem['float64']['peak_GiB']:.2f} GiB "
                f"for float64 ({mem['float64']['before_denoise_GiB']:.2f} before).", ""]
    return "\n".join(out)


def _z_table(est, err, truth):
    """Per Γ bin (and overall): |z| coverage and the median signed / absolute relative error of Γ."""
    z = (est - truth) / err
    zz = np.where(np.isfinite(z), np.abs(z), np.inf)
    rel = (est - truth) / truth

    def row(sel):
        r = rel[sel][np.isfinite(rel[sel])]
        return {"n": int(sel.sum()), "z1": float(np.mean(zz[sel] < 1)), "z2": float(np.mean(zz[sel] < 2)),
                "median_signed": float(np.median(r)) if r.size else None,
                "median_abs": float(np.median(np.abs(r))) if r.size else None}

    rows = {"all": row(np.ones(truth.size, bool))}
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=False):
        sel = (truth >= lo) & (truth < hi)
        if sel.any():
            rows[f"{lo:g}–{hi:g}"] = row(sel)
    return rows


def part_coverage(n, seed):
    """|z| coverage of the tool's own fit (fit_two_time, the default lagnet path: the plain fit of the output with
    the stored calibration's σ) on simulated crops and real held-out crops."""
    from xpcs_denoise.analysis.uncertainty import fit_two_time

    measured, _, prm = simulate_crops(n, 50, seed=seed + 7, **JUDGED_RANGES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = fit_two_time(measured, seed=seed, model=LAGNET)
    sim = _z_table(t.fit.gamma, t.fit.gamma_err, prm["gamma"])
    x, gamma, _, _ = _real_val()
    fin = np.isfinite(gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(x[fin], seed=seed, model=LAGNET)
    real = _z_table(r.fit.gamma, r.fit.gamma_err, gamma[fin])
    print("\nCoverage of the tool's fit (fit_two_time, lagnet path): share of |z| < 1 / < 2")
    for name, tab in (("simulated", sim), ("real", real)):
        print(f"  {name}: " + "; ".join(f"{k} {100 * v['z1']:.0f}/{100 * v['z2']:.0f} % (n {v['n']})"
                                        for k, v in tab.items()))
    return {"simulated": sim, "real": real}


DATA = "../shared/data/cned_train.h5"


def main():
    global DATA, LAGNET
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="faithful,sim,real,ageing,long,speed,coverage")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--n-sim", type=int, default=1500)
    ap.add_argument("--n-ageing", type=int, default=9)
    ap.add_argument("--ageing-seed", type=int, default=700,
                    help="first seed of the 'ageing_sets' part (other photon levels, other draws of series)")
    ap.add_argument("--n-long", type=int, default=200)
    ap.add_argument("--seed", type=int, default=90210)
    ap.add_argument("--model", default=None, help="lag-band model folder to judge (default: the shipped one)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None, help="write the tables as Markdown here")
    a = ap.parse_args()
    DATA = a.data
    if a.model:
        from xpcs_denoise.nn.lagnet import LagDenoiser

        LAGNET = LagDenoiser.from_directory(a.model)
    parts = a.parts.split(",")
    res = {"seed": a.seed}
    if "faithful" in parts:
        res["faithful"] = part_faithful()
    if "sim" in parts:
        res["sim_crops"] = part_sim(a.n_sim, a.seed)
    if "real" in parts:
        res["real"] = part_real()
    if "ageing" in parts:
        res["ageing"] = part_ageing(a.n_ageing)
        res["ageing_low"] = part_ageing(a.n_ageing, pixels=5000, count=0.1)
        res["ageing_white"] = part_ageing_white(a.n_ageing)
    if "ageing_sets" in parts:  # not in the default parts: a check of the ageing bar's spread (docs/model.md)
        res["ageing_sets"] = part_ageing_sets(a.n_ageing, a.ageing_seed)
    if "long" in parts:
        res["long"] = part_long(a.n_long, a.seed + 1)
    if "speed" in parts:
        res["speed"] = part_speed()
    if "coverage" in parts:
        res["coverage"] = part_coverage(a.n_sim, a.seed)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(markdown(res) + "\n")


if __name__ == "__main__":
    main()
