"""fit_g2 against a loop of bounded scipy curve_fit (TRF) on real 1TCFs: convergence, sum of squares, speed.

Run: python3 benchmarks/bench_fit.py [--data ../shared/data/cned_train.h5] [--n 10000] [--denoised] [--quick]

- Quality: the 1TCFs (lags 1..49 frames) of the validation crops of the real CHX data (split_by_target with its
  default seed), of their targets and, with --denoised, of the crops denoised by the shipped ensemble. For each
  curve both fitters get the same bounds (Γ in [1e-3/49, 10] frames⁻¹, β in [0, 5 × range], C∞ free,
  α in [0.2, 3]); curve_fit starts from the classic data-driven guess (C∞ from the tail, β from the first lags,
  Γ from the 1/e point, α = 1). Table: curve_fit converged (no exception), fit_g2 converged where curve_fit did,
  fit_g2's sum of squares ≤ curve_fit's × (1 + 1e-6), and how often fit_g2's is lower by > 1e-6.
- Speed: N real noisy 1TCFs (crops of the whole file, a fixed random draw): fit_g2 (best of 3 runs) and the
  curve_fit loop over the same N curves, in this one run; fits/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

REL = 1e-6


def _model(t, g, b, c, a):
    return c + b * np.exp(-2.0 * (g * t) ** a)


def classic_p0(y, lags):
    """C∞ from the last fifth of the lags, β from the first three, Γ from the first lag below 1/e."""
    n = y.shape[1]
    c0 = y[:, -max(1, n // 5):].mean(axis=1)
    b0 = np.maximum(y[:, :3].mean(axis=1) - c0, 1e-3 * np.maximum(np.abs(c0), 1e-12))
    below = (y - c0[:, None]) / b0[:, None] < np.exp(-1.0)
    idx = np.where(below.any(axis=1), below.argmax(axis=1), n - 1)
    return np.stack([0.5 / lags[idx], b0, c0, np.ones(len(y))], axis=1)


def curve_fit_loop(y, lags):
    """Bounded TRF curve_fit of every curve: parameters (B, 4), sum of squares, converged, seconds."""
    from scipy.optimize import OptimizeWarning, curve_fit

    p0 = classic_p0(y, lags)
    rng = y.max(axis=1) - y.min(axis=1)
    out = np.full((len(y), 4), np.nan)
    ssr = np.full(len(y), np.nan)
    conv = np.zeros(len(y), bool)
    t0 = time.perf_counter()
    for i in range(len(y)):
        lo = [1e-3 / lags.max(), 0.0, -np.inf, 0.2]
        hi = [10.0 / lags.min(), 5 * rng[i] if rng[i] > 0 else np.inf, np.inf, 3.0]
        start = np.clip(p0[i], np.array(lo) + 1e-12, np.array(hi) - 1e-12)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                p, _ = curve_fit(_model, lags, y[i], p0=start, bounds=(lo, hi), method="trf")
        except (RuntimeError, ValueError):
            continue
        out[i], conv[i] = p, True
        ssr[i] = np.sum((y[i] - _model(lags, *p)) ** 2)
    return out, ssr, conv, time.perf_counter() - t0


def quality_row(name, y, lags):
    from xpcs_denoise import fit_g2

    _, ssr_ref, conv_ref, _ = curve_fit_loop(y, lags)
    r = fit_g2(y, lags)
    ssr = np.sum((y - r.model()) ** 2, axis=1)
    c = conv_ref
    ok = r.success[c]
    not_worse = (ssr <= ssr_ref * (1 + REL))[c]
    lower = (ssr < ssr_ref * (1 - REL))[c]
    return (name, len(y), f"{100 * c.mean():.2f}", f"{100 * ok.mean():.2f}", f"{100 * not_worse.mean():.2f}",
            f"{100 * lower.mean():.2f}", f"{100 * (r.success & r.at_bound)[c].mean():.1f}")


def print_table(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{str(x):>{w}}" for x, w in zip(r, widths, strict=True)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cned_train.h5"
    ap.add_argument("--data", default=str(default))
    ap.add_argument("--n", type=int, default=10000, help="real noisy 1TCFs timed (default 10,000)")
    ap.add_argument("--denoised", action="store_true", help="also the validation crops denoised by the ensemble")
    ap.add_argument("--quick", action="store_true", help="2,000 curves timed")
    ap.add_argument("--only", choices=["quality", "speed"], default=None, help="one of the two tables")
    args = ap.parse_args()

    from xpcs_denoise.io.prepared import load_prepared

    ds = load_prepared(args.data)
    lags = np.arange(1, 50, dtype=float)
    if args.only != "speed":
        quality_table(ds, lags, args.denoised)
    if args.only != "quality":
        speed_table(ds, lags, 2000 if args.quick else args.n)


def quality_table(ds, lags, denoised):
    from xpcs_denoise import one_time_from_two_time
    from xpcs_denoise.core.scaling import split_by_target

    _, val = split_by_target(ds)
    crops = np.isin(ds.target_index, val)
    sets = [("validation crops (raw)", one_time_from_two_time(ds.inputs[crops])),
            ("validation targets", one_time_from_two_time(ds.targets[val]))]
    if denoised:
        from xpcs_denoise.nn.denoiser import Denoiser

        den = Denoiser.pretrained().predict_model_units(ds.inputs[crops])[0]
        sets.append(("validation crops (denoised)", one_time_from_two_time(den)))
    print(f"Quality on real CHX 1TCFs (49 lags), bounded curve_fit (TRF) vs fit_g2; SSR tolerance {REL:g} relative")
    print_table(("set", "curves", "curve_fit conv %", "fit_g2 conv % (where cf conv)", "SSR ≤ cf %",
                 "SSR < cf %", "at a bound %"),
                [quality_row(name, y, lags) for name, y in sets])
    print()


def speed_table(ds, lags, n):
    from xpcs_denoise import fit_g2, one_time_from_two_time

    rng = np.random.default_rng(0)
    pick = rng.choice(len(ds.inputs), size=min(n, len(ds.inputs)), replace=False)
    y = one_time_from_two_time(ds.inputs[pick])
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        r = fit_g2(y, lags)
        best = min(best, time.perf_counter() - t0)
    _, ssr_ref, conv_ref, dt_ref = curve_fit_loop(y, lags)
    ssr = np.sum((y - r.model()) ** 2, axis=1)
    c = conv_ref
    print(f"Speed on {len(y)} real noisy 1TCFs (random crops of the whole file), one thread")
    print_table(("fitter", "fits/s", "seconds", "converged %", "SSR ≤ cf % (where cf conv)"),
                [("curve_fit loop (TRF)", f"{len(y) / dt_ref:,.1f}", f"{dt_ref:.2f}", f"{100 * c.mean():.2f}", ""),
                 ("fit_g2 (batched)", f"{len(y) / best:,.0f}", f"{best:.3f}", f"{100 * r.success.mean():.2f}",
                  f"{100 * (ssr <= ssr_ref * (1 + REL))[c].mean():.2f}")])
    print(f"speed ratio fit_g2 / curve_fit: {dt_ref / best:.1f}×")


if __name__ == "__main__":
    main()
