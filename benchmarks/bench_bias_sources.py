"""Where the ensemble's bias of Γ comes from: the model, the fit, or the noise (issue 13's diagnosis).

    python benchmarks/bench_bias_sources.py [--model DIR] [--data ../shared/data/cned_train.h5] [--n-sim 1000]

For 50-frame crops, median signed / median absolute relative error of Γ per true-Γ bin (frames⁻¹) of:

- ``raw``: the raw 1TCF fitted with four free parameters (weighted by its standard errors);
- ``raw C∞=1``: the same with the baseline held at 1 (Eq. 5's assumption for a 50-frame crop);
- ``denoised``: the ensemble's output (Eq. 5 from each crop), four free parameters, lags 1–49;
- ``denoised C∞=1``: the same with the baseline held at 1;
- ``clean in`` (simulated only): the *noise-free* crop through the ensemble, four free parameters: a bias here
  is the model's own mapping, not noise;
- ``raw lags 1–2``: the denoised 1TCF with its first two lags replaced by the raw ones (tests whether the
  fast-side bias is the blur next to the diagonal).

Real: the held-out validation series of the model card, truth = Eq. 3 fit of each target (four free
parameters); the denoised fit's error is also split by the target's baseline offset (C∞ − 1)/β, which is what
it follows: the model imposes the training data's typical tail level (C∞ − 1 ≈ 0.1 β), so Γ comes out high
where the true baseline is 1 and low where it is well above. Simulated: :func:`simulate_crops` over the judged
ranges (``bench_bias.JUDGED``), C∞ = 1, seed disjoint from training. Prints one table per data set.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from xpcs_denoise import Denoiser, denoise, fit_g2, one_time_from_two_time, sigma_for_fit
from xpcs_denoise.analysis.evaluation import truth_from_targets
from xpcs_denoise.core.simulation import simulate_crops
from xpcs_denoise.io.prepared import load_prepared

try:  # run from the repository root or from benchmarks/
    from bench_bias import JUDGED
except ImportError:  # pragma: no cover
    from benchmarks.bench_bias import JUDGED

EDGES = (0.003, 0.01, 0.03, 0.06, 0.1, 0.15, 0.3, 1.0)


def _row(name, gamma, success, truth):
    err = np.asarray(gamma) / truth - 1
    cells = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        m = (truth >= lo) & (truth < hi) & np.asarray(success) & np.isfinite(err)
        cells.append(f"{np.median(err[m]):+6.0%}/{np.median(np.abs(err[m])):4.0%}" if m.any() else " " * 11)
    band = (truth > 0.01) & (truth < 0.15) & np.asarray(success) & np.isfinite(err)
    return f"{name:15s} {np.mean(np.abs(err[band])):6.3f} " + " ".join(cells)


OFFSETS = ((-np.inf, 0.03), (0.03, 0.1), (0.1, 0.2), (0.2, np.inf))


def table(title, inputs, truth, den, clean=None, offset=None):
    lags = den.size - 1
    d = denoise(inputs, "cned", model=den, seed=0)
    g_raw, err = one_time_from_two_time(inputs, max_lag=lags, return_err=True)
    g_den = one_time_from_two_time(d, max_lag=lags)
    sig = sigma_for_fit(err)
    rows = {"raw": fit_g2(g_raw, sigma=sig), "raw C∞=1": fit_g2(g_raw, sigma=sig, fix={"baseline": 1.0}),
            "denoised": fit_g2(g_den), "denoised C∞=1": fit_g2(g_den, fix={"baseline": 1.0})}
    if clean is not None:
        rows["clean in"] = fit_g2(one_time_from_two_time(denoise(clean, "cned", model=den, seed=0), max_lag=lags))
    hybrid = g_den.copy()
    hybrid[:, :2] = g_raw[:, :2]
    rows["raw lags 1–2"] = fit_g2(hybrid)
    bins = list(zip(EDGES[:-1], EDGES[1:], strict=True))
    head = " ".join(f"{f'{lo:g}–{hi:g}':>11s}" for lo, hi in bins)
    n = " ".join(f"{int(((truth >= lo) & (truth < hi)).sum()):>11d}" for lo, hi in bins)
    print(f"\n## {title}: median signed/abs relative error of Γ per true-Γ bin; MRE = mean |error| in 0.01–0.15")
    print(f"{'':15s} {'MRE':>6s} {head}\n{'crops':15s} {'':6s} {n}")
    for name, f in rows.items():
        print(_row(name, f.gamma, f.success, truth))
    if offset is not None:
        print("denoised, by the target's (C∞ − 1)/β:")
        for lo, hi in OFFSETS:
            m = (offset >= lo) & (offset < hi)
            ok = np.asarray(rows["denoised"].success) & m
            print(_row(f"  {lo:+.2f}..{hi:+.2f}", rows["denoised"].gamma, ok, truth))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--n-sim", type=int, default=1000)
    p.add_argument("--seed", type=int, default=4711)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    den = Denoiser.from_directory(a.model) if a.model else Denoiser.pretrained()
    ds = load_prepared(a.data)
    names = set(den.card["split"]["val_target_names"])
    val = ds.subset_targets([i for i, nm in enumerate(ds.target_names) if nm in names])
    fit_t = truth_from_targets(val.targets)
    truth = np.asarray(fit_t.gamma)[val.target_index]
    offset = ((np.asarray(fit_t.baseline) - 1) / np.asarray(fit_t.beta))[val.target_index]
    table(f"Real validation ({len(truth)} crops)", val.inputs, truth, den, offset=offset)
    measured, clean, prm = simulate_crops(a.n_sim, den.size, seed=a.seed, **JUDGED)
    table(f"Simulated ({a.n_sim} crops, seed {a.seed})", measured, prm["gamma"], den, clean)


if __name__ == "__main__":
    main()
