"""Quality metrics of denoised 2TCFs (METHOD §6): Eq. 3 fits of each 1TCF against the truth.

MRE(Γ) is the mean absolute relative error of Γ over the crops whose fit succeeded (overall and for
0.01 < Γ_true < 0.15 frames⁻¹); β, C∞, α are compared by mean squared error; MSE(1TCF) is taken against the
target's 1TCF; ``failed`` is the share of fits that did not succeed.
"""

from __future__ import annotations

import json

import numpy as np

from ..core.correlation import one_time_from_two_time
from ..core.fitting import PARAMETERS, FitResult, fit_g2
from ..core.scaling import triu_to_matrix
from ..nn.config import pretrained_directory
from ..nn.lag_data import series_of
from ..restoration.denoise import available_methods, denoise, model_family

__all__ = [
    "fit_metrics",
    "compare_methods",
    "compare_denoisers",
    "available_methods",
    "truth_from_targets",
    "format_table",
    "coverage",
    "GAMMA_BAND", "held_out_real_crops"]

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
    # A fit with a parameter at its bound (no decay resolved, flat curve) converges but gives no usable Γ: it
    # counts as failed here, as it always has in these metrics.
    usable = fit.success & ~fit.at_bound
    t = {k: np.asarray(truth[k] if isinstance(truth, dict) else getattr(truth, k), dtype=np.float64)
         for k in PARAMETERS}
    ok_truth = np.isfinite(t["gamma"])
    ok = usable & ok_truth
    rel = np.abs(fit.gamma - t["gamma"]) / t["gamma"]
    in_band = ok_truth & (t["gamma"] > band[0]) & (t["gamma"] < band[1])
    out = {
        "n": int(ok_truth.sum()),
        "n_band": int(in_band.sum()),
        "failed": float(1 - usable[ok_truth].mean()) if ok_truth.any() else float("nan"),
        "failed_band": float(1 - usable[in_band].mean()) if in_band.any() else float("nan"),
        "mre_gamma": float(np.mean(rel[ok])) if ok.any() else float("nan"),
        "mre_gamma_band": float(np.mean(rel[ok & in_band])) if (ok & in_band).any() else float("nan"),
    }
    for k in ("beta", "baseline", "alpha"):
        out[f"mse_{k}"] = float(np.mean((getattr(fit, k)[ok] - t[k][ok]) ** 2)) if ok.any() else float("nan")
    if g2_target is not None:
        out["mse_1tcf"] = float(np.mean((g2 - np.asarray(g2_target)) ** 2))
    return out


def truth_from_targets(targets: np.ndarray) -> FitResult:
    """Eq. 3 fits (four free parameters) of the targets' 1TCFs: the truth for real data (NaN where the fit
    failed or ended with a parameter at its bound: no usable truth)."""
    from dataclasses import replace

    fit = fit_g2(one_time_from_two_time(targets))
    bad = ~(fit.success & ~fit.at_bound)
    return replace(fit, **{k: np.where(bad, np.nan, getattr(fit, k)) for k in PARAMETERS})


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


def compare_denoisers(inputs: np.ndarray, *, targets: np.ndarray | None = None, target_index=None,
                      truth: dict | None = None, methods=None, model=None, model_units: bool = True,
                      seed: int = 0, band=GAMMA_BAND) -> dict[str, dict[str, float]]:
    """METHOD §6 metrics of every denoising method, through the one entry point :func:`denoise`.

    Parameters
    ----------
    inputs : (B, n, n) crops (model units if ``model_units``, else raw physical units with Eq. 5 applied).
    targets, target_index : real data: (n_targets, n, n) high-SNR targets and the target of each crop; the
        truth is their Eq. 3 fit and MSE(1TCF) is taken against their 1TCFs.
    truth : simulated data instead: ``{"gamma", "beta", "baseline", "alpha"}`` arrays of B (model units when
        ``model_units``).
    methods : names (default :func:`available_methods`); ``"raw"`` is always included.

    Returns
    -------
    ``{method: metrics}`` as in :func:`fit_metrics`.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    if (targets is None) == (truth is None):
        raise ValueError("give either targets (with target_index) or truth")
    g2t = None
    if targets is not None:
        fit_t = truth_from_targets(targets)
        target_index = np.asarray(target_index)
        truth = {k: np.asarray(getattr(fit_t, k))[target_index] for k in PARAMETERS}
        g2t = one_time_from_two_time(targets)[target_index]
    scale = {"beta": 1.0, "baseline": 1.0} if model_units else {}
    table = {"raw": fit_metrics(inputs, truth, g2t, band)}
    fam = model_family(model)
    for m in (available_methods() if methods is None else methods):
        # a model goes to its own family (and sets the peers' window); the other family runs its shipped model
        mod = None if m in ("lagnet", "cned") and fam not in (None, m) else model
        opts = {} if m in ("lagnet", "age") else scale  # affine-invariant: nothing to scale by
        table[m] = fit_metrics(denoise(inputs, m, model=mod, seed=seed, **opts), truth, g2t, band)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`compare_methods` results."""
    cols = ["mre_gamma_band", "mre_gamma", "mse_beta", "mse_baseline", "mse_alpha", "mse_1tcf", "failed"]
    lines = ["method".ljust(12) + "".join(c.rjust(15) for c in cols)]
    for name, row in table.items():
        lines.append(name.ljust(12) + "".join(f"{row.get(c, float('nan')):15.4g}" for c in cols))
    return "\n".join(lines)


#: Log bins of the true Γ (frames⁻¹) in which bias and error are reported (METHOD §7).
GAMMA_BINS = (0.003, 0.005, 0.01, 0.03, 0.06, 0.1, 0.15, 0.3, 0.4)


def bias_table(fit: FitResult, truth: dict, bins=GAMMA_BINS, params=("gamma", "beta", "alpha")) -> list[dict]:
    """Per Γ bin: median signed and median absolute relative error of each parameter, share of failed fits,
    and the calibration of Γ's standard error (share of |z| < 1 and < 2, z = (Γ̂ − Γ)/σ̂; σ̂ = 0 counts as a
    miss, as in :func:`coverage`).

    ``truth`` holds arrays of the true ``gamma`` (and the other ``params``); failed fits count in ``failed``
    and are left out of the medians.
    """
    g = np.asarray(truth["gamma"], dtype=np.float64)
    ok_all = np.asarray(fit.success, bool)
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (g >= lo) & (g < hi)
        ok = sel & ok_all
        row = {"bin": f"{lo:g}-{hi:g}", "n": int(sel.sum()),
               "failed": float(1 - ok.sum() / sel.sum()) if sel.any() else float("nan")}
        for k in params:
            t = np.asarray(truth[k], dtype=np.float64)[ok]
            rel = (np.asarray(getattr(fit, k))[ok] - t) / t
            row[f"{k}_bias"] = float(np.median(rel)) if rel.size else float("nan")
            row[f"{k}_abs"] = float(np.median(np.abs(rel))) if rel.size else float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (np.asarray(fit.gamma)[ok] - g[ok]) / np.asarray(fit.gamma_err)[ok]
        z = z[~np.isnan(z)]  # as coverage(): an infinite z (σ̂ = 0) is a miss, not a gap
        row["z1"] = float(np.mean(np.abs(z) < 1)) if z.size else float("nan")
        row["z2"] = float(np.mean(np.abs(z) < 2)) if z.size else float("nan")
        rows.append(row)
    return rows


def coverage(fit: FitResult, truth: dict, select=None, gamma_range=(GAMMA_BINS[0], GAMMA_BINS[-1])) -> dict:
    """Calibration of Γ's standard error over a range of rates at once.

    Parameters
    ----------
    fit : FitResult
        Fits of B 2TCFs.
    truth : dict
        ``{"gamma": array of B}``, the true Γ (the fits' units).
    select : array of B bool, optional
        Only these (e.g. targets with a sound truth).
    gamma_range : (float, float)
        True Γ counted: lo ≤ Γ < hi (default the bias table's 0.003–0.4).

    Returns
    -------
    dict
        ``{"n", "z1", "z2"}``: successful fits counted and their shares of |z| < 1 and < 2, z = (Γ̂ − Γ)/σ̂ (σ̂ = 0
        counts as a miss).
    """
    g = np.asarray(truth["gamma"], dtype=np.float64)
    ok = np.asarray(fit.success, bool) & (g >= gamma_range[0]) & (g < gamma_range[1])
    if select is not None:
        ok &= np.asarray(select, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(np.asarray(fit.gamma)[ok] - g[ok]) / np.asarray(fit.gamma_err)[ok]
    z = z[~np.isnan(z)]  # an infinite z (σ̂ = 0) is a miss, not a gap
    nan = float("nan")
    return {"n": int(z.size), "z1": float(np.mean(z < 1)) if z.size else nan,
            "z2": float(np.mean(z < 2)) if z.size else nan}


def format_bias_table(rows_by_method: dict[str, list[dict]], params=("gamma", "beta", "alpha")) -> str:
    """Plain-text table of :func:`bias_table` rows for several methods (relative errors in %)."""
    cols = ["n", "failed"] + [f"{k}_{s}" for k in params for s in ("bias", "abs")] + ["z1", "z2"]
    head = "method".ljust(10) + "Γ bin".ljust(13) + "".join(c.rjust(11) for c in cols)
    lines = [head]
    for m, rows in rows_by_method.items():
        for r in rows:
            cells = []
            for c in cols:
                v = r[c]
                cells.append(f"{v:11d}" if c == "n" else f"{100 * v:10.1f}%")
            lines.append(m.ljust(10) + r["bin"].ljust(13) + "".join(cells))
    return "\n".join(lines)


def held_out_real_crops(path) -> dict:
    """The real CHX crops of the series that the paper model's card holds out (every crop of a held-out series,
    never single crops), with their truth: ``x`` (B, 50, 50) float64 inputs, ``gamma`` (B,) the Eq. 3 fit of each
    crop's target (:func:`truth_from_targets`; NaN where it has none), ``g2_target`` (B, 49) the target's 1TCF,
    ``target_index`` (B,) and ``series`` (B,) the series' names. One helper for the benchmark and the
    calibration."""
    import h5py  # defers h5py: the other helpers need none

    card = json.loads((pretrained_directory() / "model_card.json").read_text())
    val_series = {series_of(nm) for nm in card["split"]["val_target_names"]}
    with h5py.File(path, "r") as f:
        tnames = [s.decode() for s in f["target_names"][()]]
        tidx = f["target_index"][()]
        keep = np.array([series_of(tnames[t]) in val_series for t in tidx])
        x = triu_to_matrix(f["inputs_triu"][()][keep], 50).astype(np.float64)
        targets = triu_to_matrix(f["targets_triu"][()], 50).astype(np.float64)
    ti = tidx[keep]
    return {"x": x, "gamma": truth_from_targets(targets).gamma[ti],
            "g2_target": one_time_from_two_time(targets)[ti][:, :49], "target_index": ti,
            "series": np.array([series_of(tnames[t]) for t in ti])}
