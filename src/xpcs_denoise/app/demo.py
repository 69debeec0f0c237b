"""The two sub-commands that run a whole study on built-in or prepared data: ``demo`` (a simulated ageing
experiment, correlated, denoised, fitted, written as a small report) and ``evaluate`` (METHOD §6 metrics of a
model and its peers)."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np

from ..analysis.evaluation import compare_denoisers
from ..analysis.uncertainty import fit_two_time
from ..analysis.workflows import ageing_analysis
from ..core.correlation import one_time_from_two_time, two_time
from ..core.errors import XPCSInputError
from ..core.scaling import card_split, scale_parameters
from ..core.simulation import simulate_speckle
from ..core.validation import check_seed
from ..io.files import write_csv
from ..io.prepared import load_prepared
from ..nn.denoiser import Denoiser
from ..nn.lagnet import LagDenoiser

__all__ = ["run_demo", "evaluate_model"]


def _demo_experiment(seed: int):
    t_frames, n_rois = 250, 4
    q = np.array([0.004, 0.005, 0.006, 0.007])  # Å⁻¹
    ageing = np.linspace(1.6, 0.6, t_frames)  # dynamics slow down by ~2.7× over the series
    gamma = 2.5e3 * q[:, None] ** 2 * ageing[None, :]  # Γ(q, t) = D(t) q², frames⁻¹
    counts = 0.25 * (q / q[0]) ** -2.0
    sim = simulate_speckle(t_frames, 1500, gamma=gamma, beta=0.25, mean_count=counts, n_rois=n_rois, seed=seed)
    sim.q = q
    return sim


def run_demo(out_dir="xpcs-denoise-demo", *, seed: int = 0, progress: bool = True, overwrite: bool = False) -> dict:
    """Simulate a small ageing experiment with four q-ROIs, correlate, denoise with the shipped lag-band model,
    fit, and write a report (PNG figures, CSV/JSON tables, index.html) into ``out_dir``.

    An existing ``out_dir`` is refused unless ``overwrite``; even then only the demo's own files are replaced."""
    t0 = time.time()
    seed = check_seed(seed)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise XPCSInputError(f"{out} exists; choose another folder or pass overwrite=True to replace the "
                             "demo's files in it")
    if out.exists() and not out.is_dir():
        raise XPCSInputError(f"{out} exists and is not a folder; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    sim = _demo_experiment(seed)
    c2 = two_time(sim.frames, sim.labels, progress=progress)
    den = LagDenoiser.pretrained()
    clean = den.denoise(c2)
    betas, _ = scale_parameters(c2, 0)  # β*(lag = 1) of each ROI (Eq. 7), fixed in the cuts
    k_rois = c2.shape[0]
    rows = []
    w = 50  # the first 50 frames are fitted: a short series, where denoising matters most
    first = slice(0, w)
    # Fits of the first w frames (uncertainty.fit_two_time): raw, and the plain fit of the lag-band model's
    # output (faithful, so fitted as it stands), each with Γ's σ from its path's stored calibration.
    fr = fit_two_time(c2[:, first, first], method="none", fix={"alpha": 1.0}, seed=seed)
    fd = fit_two_time(c2[:, first, first], method="lagnet", model=den, fix={"alpha": 1.0}, seed=seed)
    f_raw, f_den = fr.fit, fd.fit
    g_raw = one_time_from_two_time(c2[:, first, first])
    g_den = one_time_from_two_time(fd.denoised)
    truth_first = sim.gamma[:, :w].mean(axis=1)
    age_results = {}
    for k in range(k_rois):
        rows.append({"roi": k + 1, "q": float(sim.q[k]), "gamma_true": float(truth_first[k]),
                     "gamma_raw": float(f_raw.gamma[k]), "gamma_raw_err": float(f_raw.gamma_err[k]),
                     "gamma_denoised": float(f_den.gamma[k]), "gamma_denoised_err": float(f_den.gamma_err[k]),
                     "z_denoised": float((f_den.gamma[k] - truth_first[k]) / f_den.gamma_err[k]),
                     "path": str(fd.path[k]),
                     "fit_raw_ok": bool(f_raw.success[k]), "fit_denoised_ok": bool(f_den.success[k])})
        beta_k = float(betas[k])
        age_results[k] = {
            "raw": ageing_analysis(c2[k], beta=beta_k, max_lag=40),
            "denoised": ageing_analysis(clean[k], beta=beta_k, max_lag=40),
        }
    figures = _demo_figures(out, sim, c2, clean, g_raw, g_den, f_raw, f_den, age_results)
    write_csv(out / "gamma_q.csv", rows, overwrite=True)
    summary = {"report": str(out / "index.html"), "seed": seed, "rois": rows,
               "model": {"name": den.card.get("name", "lagnet"), "weights_sha256": den.card.get("weights_sha256")},
               "seconds": round(time.time() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_html(out / "index.html", rows, figures, summary, w)
    return summary


def _demo_figures(out, sim, c2, clean, g_raw, g_den, f_raw, f_den, age_results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    k_rois = c2.shape[0]
    fig, axes = plt.subplots(2, k_rois, figsize=(3.2 * k_rois, 6.2), constrained_layout=True)
    for k in range(k_rois):
        off = c2[k][~np.eye(c2.shape[1], dtype=bool)]
        vmin, vmax = np.percentile(off, [1, 99.5])
        for row, (data, title) in enumerate([(c2[k], "raw"), (clean[k], "denoised")]):
            ax = axes[row, k]
            im = ax.imshow(data, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
            ax.set_title(f"ROI {k + 1} (q={sim.q[k]:.3f} Å⁻¹), {title}", fontsize=8)
            ax.set_xlabel("t₁ (frames)")
            ax.set_ylabel("t₂ (frames)")
        fig.colorbar(im, ax=axes[:, k], shrink=0.6, label="C₂(t₁, t₂)")
    files.append(("Two-time correlation functions, raw and denoised (one colour scale per ROI)", "c2_maps.png"))
    fig.savefig(out / "c2_maps.png", dpi=90)
    plt.close(fig)

    w = g_raw.shape[-1] + 1  # the model's window
    lags = np.arange(1, w)
    fig, axes = plt.subplots(1, k_rois, figsize=(3.2 * k_rois, 3.2), constrained_layout=True, sharey=True)
    for k in range(k_rois):
        ax = axes[k]
        ax.plot(lags, g_raw[k], ".", color="0.6", label="raw")
        ax.plot(lags, g_den[k], ".", color="C0", label="denoised")
        if np.isfinite(f_raw.gamma[k]):
            ax.plot(lags, f_raw.model()[k], "-", color="0.4", lw=1, label="fit raw")
        if np.isfinite(f_den.gamma[k]):
            ax.plot(lags, f_den.model()[k], "-", color="C0", lw=1.5, label="fit denoised")
        true = 1 + sim.beta[k] * np.exp(-2 * sim.gamma[k, :w].mean() * lags)
        ax.plot(lags, true, "--", color="k", lw=1, label="truth")
        ax.set_xscale("log")
        ax.set_xlabel("lag (frames)")
        ax.set_title(f"ROI {k + 1}, first {w} frames", fontsize=8)
    axes[0].set_ylabel("C₁ (1TCF)")
    axes[0].legend(fontsize=7)
    files.append((f"1TCFs of the first {w} frames with Eq. 3 fits (α = 1)", "g2_fits.png"))
    fig.savefig(out / "g2_fits.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, k_rois, figsize=(3.2 * k_rois, 3.2), constrained_layout=True)
    for k in range(k_rois):
        ax = axes[k]
        for name, color in (("raw", "0.6"), ("denoised", "C0")):
            r = age_results[k][name]
            ax.plot(r.ages, r.fit.gamma, ".", ms=3, color=color, label=name)
        ax.plot(np.arange(sim.gamma.shape[1]), sim.gamma[k], "k-", lw=1, label="truth")
        ax.set_yscale("log")
        ax.set_xlabel("age t_a (frames)")
        ax.set_title(f"ROI {k + 1}: Γ(t_a), 1-frame cuts", fontsize=8)
    axes[0].set_ylabel("Γ (frames⁻¹)")
    axes[0].legend(fontsize=7)
    files.append(("Ageing: Γ(t_a) from 1-frame cuts, β fixed", "gamma_age.png"))
    fig.savefig(out / "gamma_age.png", dpi=90)
    plt.close(fig)
    return files


def _write_html(path, rows, figures, summary, window):
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                    for v in r.values()) + "</tr>" for r in rows)
    figs = "".join(f"<h2>{html.escape(t)}</h2><img src='{f}' alt='{html.escape(t)}'>" for t, f in figures)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>xpcs-denoise demo</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #aaa;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
        "<h1>xpcs-denoise demo: simulated ageing experiment, 4 q-ROIs</h1>"
        f"<p>Seed {summary['seed']}; lag-band model {html.escape(str(summary['model']['name']))} "
        f"(weights SHA-256 {html.escape(str(summary['model']['weights_sha256']))[:16]}…). Γ in frames⁻¹, "
        f"fits of the first {window} frames with α = 1; truth = mean simulated Γ over those frames. Errors (±1σ): "
        "each path's calibrated error (the fit's own error scaled per calibration cell, stored beside the "
        "weights); z = (Γ̂ − Γ)/σ; path = what was fitted for the denoised column.</p>"
        f"<table><tr>{head}</tr>{body}</table>{figs}</body></html>\n")


def evaluate_model(model, data, *, split: str = "validation", methods=None, seed: int = 0) -> dict:
    """Metrics (METHOD §6) of a model and every classical peer on prepared data.

    ``model`` is a model folder or ``"pretrained"``; ``split="validation"`` uses the held-out targets named in
    the model card, ``"all"`` every crop of ``data`` (your own held-out data). ``methods`` defaults to every
    available method (BM3D only where its package is installed).
    """
    den = Denoiser.pretrained() if str(model) == "pretrained" else Denoiser.from_directory(model)
    ds = load_prepared(data)
    if split == "validation":
        ds = card_split(ds, den.card)
    elif split != "all":
        raise XPCSInputError(f"split must be 'validation' or 'all'; got {split!r}")
    return compare_denoisers(ds.inputs, targets=ds.targets, target_index=ds.target_index, methods=methods,
                             model=den, seed=seed)
