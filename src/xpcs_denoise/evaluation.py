"""Quality metrics of denoised 2TCFs (METHOD §6): Eq. 3 fits of each 1TCF against the truth.

MRE(Γ) is the mean absolute relative error of Γ over the crops whose fit succeeded (overall and for
0.01 < Γ_true < 0.15 frames⁻¹); β, C∞, α are compared by mean squared error; MSE(1TCF) is taken against the
target's 1TCF; ``failed`` is the share of fits that did not succeed.
"""

from __future__ import annotations

import numpy as np

from .correlation import one_time_from_two_time
from .fitting import PARAMETERS, FitResult, fit_g2

__all__ = ["fit_metrics", "compare_methods", "truth_from_targets", "format_table", "GAMMA_BAND"]

GAMMA_BAND = (0.01, 0.15)


def fit_metrics(c2_pred: np.ndarray, truth: FitResult | dict, g2_target: np.ndarray | None = None,
                band=GAMMA_BAND) -> dict[str, float]:
    """Metrics of predicted (B, n, n) 2TCFs against true Eq. 3 parameters (arrays of B).

    Returns
    -------
    dict with ``mre_gamma``, ``mre_gamma_band``, ``mse_beta``, ``mse_baseline``, ``mse_alpha``,
    ``mse_1tcf`` (if ``g2_target``), ``failed``, ``n``, ``n_band``.
    """
    g2 = one_time_from_two_time(c2_pred)
    fit = fit_g2(g2)
    t = {k: np.asarray(truth[k] if isinstance(truth, dict) else getattr(truth, k), dtype=np.float64)
         for k in PARAMETERS}
    ok_truth = np.isfinite(t["gamma"])
    ok = fit.success & ok_truth
    rel = np.abs(fit.gamma - t["gamma"]) / t["gamma"]
    in_band = ok_truth & (t["gamma"] > band[0]) & (t["gamma"] < band[1])
    out = {
        "n": int(ok_truth.sum()),
        "n_band": int(in_band.sum()),
        "failed": float(1 - fit.success[ok_truth].mean()) if ok_truth.any() else float("nan"),
        "failed_band": float(1 - fit.success[in_band].mean()) if in_band.any() else float("nan"),
        "mre_gamma": float(np.mean(rel[ok])) if ok.any() else float("nan"),
        "mre_gamma_band": float(np.mean(rel[ok & in_band])) if (ok & in_band).any() else float("nan"),
    }
    for k in ("beta", "baseline", "alpha"):
        out[f"mse_{k}"] = float(np.mean((getattr(fit, k)[ok] - t[k][ok]) ** 2)) if ok.any() else float("nan")
    if g2_target is not None:
        out["mse_1tcf"] = float(np.mean((g2 - np.asarray(g2_target)) ** 2))
    return out


def truth_from_targets(targets: np.ndarray) -> FitResult:
    """Eq. 3 fits (four free parameters) of the targets' 1TCFs: the truth for real data."""
    return fit_g2(one_time_from_two_time(targets))


def compare_methods(inputs: np.ndarray, targets: np.ndarray, target_index: np.ndarray,
                    methods: dict, band=GAMMA_BAND) -> dict[str, dict[str, float]]:
    """Metrics of every method on crops with targets (all in model units).

    Parameters
    ----------
    inputs : (B, n, n) crops; targets : (n_targets, n, n); target_index : (B,) target of each crop.
    methods : ``{name: callable}`` mapping (B, n, n) → (B, n, n); ``"raw"`` is added.
    """
    truth = truth_from_targets(targets)
    t = {k: np.asarray(getattr(truth, k))[target_index] for k in PARAMETERS}
    g2t = one_time_from_two_time(targets)[target_index]
    table = {"raw": fit_metrics(inputs, t, g2t, band)}
    for name, fn in methods.items():
        table[name] = fit_metrics(fn(inputs), t, g2t, band)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`compare_methods` results."""
    cols = ["mre_gamma_band", "mre_gamma", "mse_beta", "mse_baseline", "mse_alpha", "mse_1tcf", "failed"]
    lines = ["method".ljust(12) + "".join(c.rjust(15) for c in cols)]
    for name, row in table.items():
        lines.append(name.ljust(12) + "".join(f"{row.get(c, float('nan')):15.4g}" for c in cols))
    return "\n".join(lines)
