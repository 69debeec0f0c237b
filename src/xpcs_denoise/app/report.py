"""Reports a user looks at: raw and denoised 2TCFs on one colour scale, 1TCFs with Eq. 3 fits and residuals,
Γ(q) and Γ(t_a), as PNG figures and one self-contained HTML page (no network, no CDN), with CSV/JSON tables.

The report folder is written atomically: built in a temporary folder beside it, then renamed into place. It holds
a manifest (:data:`MANIFEST`) of the files the report wrote; ``overwrite`` replaces only a folder with a manifest,
and in it only those files: a user's folder (``-o .``) or files of their own are never deleted.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..analysis.plotting import log_ticks, plot_cut_gammas, plot_parameters
from ..analysis.uncertainty import fit_denoised, raw_cut_errors
from ..analysis.workflows import ageing_analysis
from ..core.correlation import one_time_from_two_time
from ..core.errors import XPCSInputError
from ..core.fitting import fit_diffusion, fit_g2, fit_rows, sigma_for_fit
from ..core.validation import json_safe
from ..io.files import write_csv
from ..nn.anomaly import anomaly_map, flagged_share
from ..nn.config import WINDOW
from ..restoration.denoise import model_family

__all__ = ["fit_table", "whole_series_fit", "write_report", "default_max_lag"]

_MAX_ROIS_SHOWN = 6
#: The report's list of its own files, written last into the report folder.
MANIFEST = ".xpcs-denoise-report.json"


def _own_files(out: Path) -> list[str]:
    """Names of the files that an earlier report wrote into ``out`` (its manifest); refuses any other folder."""
    if not out.is_dir():
        raise XPCSInputError(f"{out} exists and is not a folder; choose another report folder")
    try:
        names = json.loads((out / MANIFEST).read_text())["files"]
        if not all(isinstance(n, str) and n == Path(n).name and not n.startswith(".") for n in names):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise XPCSInputError(f"{out} is not a report folder written by xpcs-denoise (no valid {MANIFEST}); "
                             "overwrite=True replaces only those: choose a new folder") from None
    return names


def _publish_report(tmp: Path, out: Path) -> None:
    """Move the finished report ``tmp`` into ``out``: a rename when ``out`` is new, else file by file over the
    files of the earlier report (listed in its manifest), whose other files are removed; nothing else is touched."""
    if not out.exists():
        os.rename(tmp, out)  # fails, rather than merges, if a non-empty folder appeared meanwhile
        return
    old = _own_files(out)
    new = json.loads((tmp / MANIFEST).read_text())["files"]
    for name in new:
        if (out / name).exists() and not (out / name).is_file():
            raise XPCSInputError(f"{out / name} is not a regular file; the report will not replace it")
    for name in new + [MANIFEST]:
        os.replace(tmp / name, out / name)
    for name in set(old) - set(new):
        if (out / name).is_file():
            (out / name).unlink()
    tmp.rmdir()


def default_max_lag(n_frames: int) -> int:
    """Lags fitted by default (frames): all of them up to 100 frames, else the first half (longer lags rest
    on few frame pairs)."""
    return n_frames - 1 if n_frames <= 100 else n_frames // 2


def whole_series_fit(c2, *, method: str, raw=None, model=None, model_sha256: str | None = None,
                     max_lag: int | None = None, fix: dict | None = None, frame_time: float | None = None,
                     weighted: bool = True, seed: int = 0, progress: bool = False):
    """Eq. 3 fits of each ROI's whole 2TCF, and how they were obtained: the one place that decides it for
    :func:`fit_table` (the report) and :func:`~xpcs_denoise.pipeline.fit_file`.

    Parameters
    ----------
    c2 : (K, N, N) 2TCFs (an array, or anything with ``shape`` whose ``[k]`` is one (N, N) matrix); excluded
        frames NaN
    method : what ``c2`` is: ``"none"``/``"raw"`` (raw 2TCFs), ``"lagnet"`` or ``"cned"`` (denoised by that
        model) or the name of a classical filter
    raw : (K, N, N) raw 2TCFs behind a denoised ``c2`` (excluded frames NaN), optional
    model : the model behind ``c2`` (its card holds the calibration); None: the shipped one
    model_sha256 : SHA-256 of the weights that denoised ``c2`` as its file records it; checked against
        ``model``'s
    max_lag : lags fitted (frames); default :func:`default_max_lag`
    fix : parameters held fixed, e.g. ``{"alpha": 1.0}``
    frame_time : seconds per frame: Γ in s⁻¹ (else frames⁻¹)
    weighted : weight 1TCF points by the raw 2TCF's standard errors (the calibration is measured so)
    seed : recorded with the fit

    Raw 2TCFs, and those denoised by ``lagnet`` or ``cned`` with their raw 2TCFs, are fitted by
    :func:`~xpcs_denoise.uncertainty.fit_denoised` (Γ's σ calibrated, the path named per row). Anything else (a
    classical filter, or a model's output without its raw 2TCFs) is fitted as it is, with a warning that its
    errors are the fit's own.

    Returns
    -------
    fit : :class:`~xpcs_denoise.fitting.FitResult`
    columns : dict: ``path`` (K,) what was fitted per ROI, ``errors`` what the standard errors include,
        ``lag_range`` the lags fitted, ``raw_weight`` (K,) the raw fit's share (1: the raw fit; 0: the denoised one)
    """
    import warnings

    k_rois = c2.shape[0]
    lag_max = max_lag or default_max_lag(c2.shape[-1])
    if method in ("cned", "lagnet") and raw is not None:
        if model_sha256 and model is not None and model_sha256 != model.card.get("weights_sha256"):
            raise XPCSInputError(f"the file was denoised by the model with weights SHA-256 {model_sha256[:12]}…, "
                                 f"not by the model given (SHA-256 {str(model.card.get('weights_sha256'))[:12]}…);"
                                 " pass that model (model=DIR) so that its calibration is used")
        tf = fit_denoised(_whole(raw, progress), _whole(c2, progress), method=method, model=model,
                          max_lag=lag_max, fix=fix, frame_time=frame_time, weighted=weighted, seed=seed)
    elif method in ("none", "raw"):
        x = _whole(c2, progress)
        tf = fit_denoised(x, x, method="none", max_lag=lag_max, fix=fix, frame_time=frame_time,
                          weighted=weighted, seed=seed)
    else:
        why = ("come without their raw 2TCFs (keep them when denoising)" if raw is None else
               "were denoised by a classical filter (calibrations exist for raw data and the models)")
        warnings.warn(f"the {method} 2TCFs {why}: their fits' errors are the fit's own and understate the "
                      "uncertainty", stacklevel=3)
        g2, err = zip(*(one_time_from_two_time(np.asarray(c2[k], dtype=np.float64), max_lag=lag_max,
                                               return_err=True)
                        for k in _progress(range(k_rois), progress, f"1TCF {method}")), strict=False)
        fit = fit_g2(np.stack(g2), fix=fix, sigma=sigma_for_fit(np.stack(err)) if weighted else None,
                     frame_time=frame_time)  # as workflows.fit_one_times, ROI by ROI
        return fit, {"path": np.full(k_rois, f"{method} (as stored)"), "errors": "fit only",
                     "lag_range": f"1–{lag_max} frames", "raw_weight": np.zeros(k_rois)}
    cells = sorted(set(np.atleast_1d(tf.cell).tolist()))
    errors = ("calibrated (" + ", ".join(cells) + ")" if "uncalibrated" not in cells else "the fit's own")
    return tf.fit, {"path": np.atleast_1d(tf.path), "errors": errors, "lag_range": f"1–{lag_max} frames",
                    "raw_weight": np.atleast_1d(tf.raw_weight)}


def _whole(c2, progress: bool = False) -> np.ndarray:
    """(K, N, N) float64 array of 2TCFs given as an array or read ROI by ROI."""
    if isinstance(c2, np.ndarray):
        return np.asarray(c2, dtype=np.float64)
    return np.stack([np.asarray(c2[k], dtype=np.float64) for k in _progress(range(c2.shape[0]), progress, "read")])


def fit_table(c2s: dict, q=None, *, max_lag: int | None = None, fix: dict | None = None, phi=None, rois=None,
              progress: bool = False, frame_time: float | None = None, weighted: bool = True,
              model=None, model_sha256: str | None = None, seed: int = 0) -> tuple[list, dict]:
    """Eq. 3 fits of the 1TCF of every ROI for each method.

    Parameters
    ----------
    c2s : dict of name → (K, N, N) 2TCFs (arrays, or anything with ``shape`` whose ``[k]`` is one (N, N)
        matrix: read one ROI at a time where the fit allows)
    q : (K,) q values in Å⁻¹, optional
    max_lag : lags fitted (frames); default :func:`default_max_lag`
    fix : parameters held fixed, e.g. ``{"alpha": 1.0}``
    phi : (K,) φ of each ROI in degrees, optional (q×φ bins)
    rois : (K,) ROI labels as the input numbers them (APS ``processed_bins``); default 1..K
    progress : a progress bar on stderr
    frame_time : seconds per frame: Γ in s⁻¹ (else frames⁻¹)
    weighted : weight each 1TCF point by its standard error from the 2TCF
    model : the model behind the ``"lagnet"`` or ``"cned"`` entry of its family (default: the shipped one); its
        card holds the calibration
    model_sha256 : the weights' SHA-256 recorded with that entry, checked against ``model``'s
    seed : recorded with the fits

    Each entry is fitted by :func:`whole_series_fit` (as :func:`~xpcs_denoise.pipeline.fit_file` fits a
    file), the ``"lagnet"`` and ``"cned"`` ones with the ``"raw"`` entry as their raw 2TCFs: those and ``"raw"``
    carry calibrated errors of Γ, other methods the fit's own errors (with a warning); ``path`` and ``lag_range``
    columns say what was fitted per ROI.

    Returns
    -------
    rows : list of dict, one per (method, ROI): ``roi``, ``q``, ``phi``, values, standard errors,
        ``gamma_unit``, reduced χ², status
    fits : dict of name → :class:`~xpcs_denoise.fitting.FitResult`
    """
    rows, fits = [], {}
    for name, c2 in c2s.items():
        k_rois = c2.shape[0]
        mine = model is not None and model_family(model) == name  # the model (and its hash) of its family's entry
        fit, cols = whole_series_fit(c2, method=name, raw=c2s.get("raw") if name != "raw" else None,
                                     model=model if mine else None, model_sha256=model_sha256 if mine else None,
                                     max_lag=max_lag, fix=fix, frame_time=frame_time, weighted=weighted, seed=seed,
                                     progress=progress)
        fits[name] = fit
        q_col = np.asarray(q, dtype=float) if q is not None else np.full(k_rois, np.nan)
        phi_col = np.asarray(phi, dtype=float) if phi is not None else np.full(k_rois, np.nan)
        labels = np.asarray(rois) if rois is not None else np.arange(1, k_rois + 1)
        rows += [{"method": name, **r} for r in fit_rows(fit, labels, index_name="roi",
                                                          columns={"q": q_col, "phi": phi_col,
                                                                   "path": cols["path"],
                                                                   "raw_weight": cols["raw_weight"],
                                                                   "lag_range": cols["lag_range"]})]
    return rows, fits


def _progress(iterable, progress: bool, desc: str, unit: str = "ROI"):
    if not progress:
        return iterable
    import sys

    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, file=sys.stderr, leave=False)


#: Largest image drawn per panel (pixels a side); larger 2TCFs are shown block-averaged.
_MAX_IMAGE = 800


def _display(m: np.ndarray) -> tuple[np.ndarray, int]:
    """(image, frames per image pixel): ``m`` itself up to :data:`_MAX_IMAGE` frames, else its mean over
    f × f blocks (the last N mod f frames left out), so a figure never holds N × N arrays."""
    n = m.shape[-1]
    f = -(-n // _MAX_IMAGE)
    if f == 1:
        return m, 1
    k = n // f
    return m[:k * f, :k * f].reshape(k, f, k, f).mean(axis=(1, 3)), f


def _roi_label(k: int, q=None, phi=None, rois=None) -> str:
    """"ROI 5: q = 0.006 Å⁻¹, φ = 45°" for ROI index k."""
    text = f"ROI {int(rois[k]) if rois is not None else k + 1}"
    if q is not None and np.isfinite(q[k]):
        text += f": q = {q[k]:.4g} Å⁻¹"
    if phi is not None and np.isfinite(phi[k]):
        text += f", φ = {phi[k]:.4g}°"
    return text


#: Methods that denoise with the sliding window, so only within its band (the image filters act everywhere).
_BANDED = ("cned", "pca")
_FONTS = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 10,
          "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.titlesize": 12}


def _clim(c2s: dict, k: int, band: int) -> tuple[float, float]:
    """One robust colour scale for ROI ``k`` shared by every panel: percentiles 1–99 of the off-diagonal band
    (lags 1..``band`` − 1 frames) of the first denoised entry (of the raw one if there is none), widened to
    include the raw band's median."""
    names = list(c2s)
    return _band_clim(np.asarray(c2s[names[1] if len(names) > 1 else names[0]][k], dtype=np.float64), band)


def _fig_maps(path, c2s, rois, q, phi=None, labels=None, band=None, span=None):
    """The 2TCF maps; ``span``: only the first ``span`` frames (a zoom on the band of a long series)."""
    import matplotlib.pyplot as plt

    names = list(c2s)
    n = c2s[names[0]].shape[-1] if span is None else int(span)
    with plt.rc_context(_FONTS):
        fig, axes = plt.subplots(len(rois), len(names), figsize=(4.2 * len(names) + 1.2, 3.9 * len(rois)),
                                 constrained_layout=True, squeeze=False)
        for i, k in enumerate(rois):
            vmin, vmax = _clim(c2s, k, band or WINDOW)
            for j, name in enumerate(names):
                ax = axes[i, j]
                img, f = _display(np.asarray(c2s[name][k], dtype=np.float64)[:n, :n])
                im = ax.imshow(img, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis",
                               interpolation="nearest" if n <= 400 else "antialiased",
                               extent=(-0.5, img.shape[-1] * f - 0.5, -0.5, img.shape[-1] * f - 0.5))
                del img
                ax.set_title(f"{_roi_label(k, q, phi, labels)}\n{name}"
                             + (f", frames 0–{n - 1}" if span is not None else ""))
                ax.set_xlabel("t₁ (frames)")
                ax.set_ylabel("t₂ (frames)")
                if band and name in _BANDED and n > band:  # where the sliding window's band ends
                    t = np.array([0, n - 1 - band])
                    for sign in (1, -1):
                        ax.plot(t if sign > 0 else t + band, t + band if sign > 0 else t, "w--", lw=0.9)
                    ax.set_xlim(-0.5, n - 0.5)
                    ax.set_ylim(-0.5, n - 0.5)
            fig.colorbar(im, ax=axes[i, :], shrink=0.85, label="C₂(t₁, t₂)")
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _fig_anomaly(path, c2, anomaly, rois, q, phi=None, labels=None, name="cned"):
    """Where the model is outside what it learned, per ROI: the denoised 2TCF with the flagged windows outlined
    (red squares), the anomaly score map (each pixel: the largest score of the windows covering it; grey:
    outside the band) with the threshold as a contour and on the colour bar, and the score of each window
    against its age."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    starts, win = anomaly["window_start"], int(anomaly["attrs"].get("window", 50))
    thr = float(anomaly["attrs"]["threshold"])
    vmax = max(2.0 * thr, float(np.nanmax(anomaly["score"])) if np.isfinite(anomaly["score"]).any() else 0.0)
    norm = TwoSlopeNorm(vcenter=thr, vmin=0.0, vmax=vmax)
    cmap = plt.get_cmap("RdYlBu_r").with_extremes(bad="0.85")
    with plt.rc_context(_FONTS):
        fig, axes = plt.subplots(len(rois), 3, figsize=(15.5, 4.2 * len(rois)), constrained_layout=True,
                                 squeeze=False)
        for i, k in enumerate(rois):
            m = np.asarray(c2[k], dtype=np.float64)
            n = m.shape[-1]
            score, flag = anomaly["score"][k], anomaly["flagged"][k]
            share = np.mean(flag[np.isfinite(score)]) if np.isfinite(score).any() else np.nan
            head = _roi_label(k, q, phi, labels)
            ax = axes[i, 0]
            vmin, vmax_c = _band_clim(m, win)
            img, f = _display(m)
            im = ax.imshow(img, origin="lower", vmin=vmin, vmax=vmax_c, cmap="gray",
                           extent=(-0.5, img.shape[-1] * f - 0.5, -0.5, img.shape[-1] * f - 0.5),
                           interpolation="nearest" if n <= 400 else "antialiased")
            for s0 in starts[flag]:
                ax.add_patch(Rectangle((s0 - 0.5, s0 - 0.5), win, win, fill=False, ec="red", lw=1.3))
            ax.set_title(f"{head}\n{name} 2TCF; red squares: flagged windows")
            fig.colorbar(im, ax=ax, shrink=0.85, label="C₂(t₁, t₂)")
            ax = axes[i, 1]
            amap = anomaly_map(starts, win, score, n)
            img = amap if f == 1 else _display_max(amap, f)
            im = ax.imshow(img, origin="lower", cmap=cmap, norm=norm,
                           extent=(-0.5, img.shape[-1] * f - 0.5, -0.5, img.shape[-1] * f - 0.5),
                           interpolation="nearest")
            if (amap > thr).any():
                ax.contour(np.nan_to_num(img, nan=0.0), levels=[thr], colors="k", linewidths=1.0,
                           extent=(-0.5, img.shape[-1] * f - 0.5, -0.5, img.shape[-1] * f - 0.5))
            what = f"{share:.0%} of windows flagged" if np.isfinite(share) else "none (ROI not denoised)"
            ax.set_title(f"anomaly score map; {what}\n(black contour: threshold {thr:.2f}; grey: outside the "
                         f"{win}-frame band)")
            cb = fig.colorbar(im, ax=ax, shrink=0.85, label="anomaly score (max over covering windows)")
            cb.ax.axhline(thr, color="k", lw=1.5)
            for a in axes[i, :2]:
                a.set_xlabel("t₁ (frames)")
                a.set_ylabel("t₂ (frames)")
            ax = axes[i, 2]
            age = starts + (win - 1) / 2
            ax.plot(age, score, "-", color="0.4", lw=1)
            ax.plot(age[~flag], score[~flag], "o", ms=3, color="C0", label="inside")
            ax.plot(age[flag], score[flag], "o", ms=4, color="red", label="flagged")
            ax.axhline(thr, color="k", ls="--", lw=1, label=f"threshold {thr:.2f}")
            ax.set_ylim(0, vmax * 1.05)
            ax.set_xlabel("window centre = age t_a (frames)")
            ax.set_ylabel("anomaly score")
            top = float(np.max(score[np.isfinite(score)])) if np.isfinite(score).any() else np.nan
            ax.set_title(f"score per window (max {top:.2f})" if np.isfinite(top) else "not denoised: no scores")
            ax.legend(loc="upper right")
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _band_clim(m, band):
    """Percentiles 1–99 of the off-diagonal band (lags 1..band − 1) of one matrix."""
    vals = np.concatenate([np.diagonal(m, d) for d in range(1, max(2, min(int(band), m.shape[-1])))])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1e-12)


def _display_max(m, f):
    """Max over f × f blocks, NaN-aware (a flagged window stays visible when a long map is shrunk)."""
    k = m.shape[-1] // f
    b = m[:k * f, :k * f].reshape(k, f, k, f)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks (outside the band) stay NaN
        return np.nanmax(b, axis=(1, 3))


def _fig_g2(path, c2s, fits, rois, q, phi=None, labels=None):
    import matplotlib.pyplot as plt

    with plt.rc_context(_FONTS):
        fig, axes = plt.subplots(2, len(rois), figsize=(4.3 * len(rois) + 0.8, 6.2), constrained_layout=True,
                                 squeeze=False, gridspec_kw={"height_ratios": [3, 1.3]}, sharex="col")
        for j, k in enumerate(rois):
            for i, (name, fit) in enumerate(fits.items()):
                lags = fit.lags
                g = one_time_from_two_time(np.asarray(c2s[name][k], dtype=np.float64), max_lag=len(lags))
                color = "0.55" if i == 0 else f"C{i - 1}"
                axes[0, j].plot(lags, g, ".", ms=3, color=color, label=name)
                if fit.success[k]:
                    model = fit.model()[k]
                    axes[0, j].plot(lags, model, "-", lw=1.2, color=color)
                    axes[1, j].plot(lags, g - model, ".", ms=3, color=color)
            axes[0, j].set_xscale("log")
            axes[0, j].set_title(_roi_label(k, q, phi, labels))
            axes[1, j].axhline(0, color="k", lw=0.7)
            axes[1, j].set_xlabel(f"lag ({fit.lag_unit})")
        axes[0, 0].set_ylabel("C₁ (1TCF); lines: Eq. 3 fits")
        axes[1, 0].set_ylabel("1TCF − fit")
        axes[0, 0].legend()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _fig_ageing(path, c2s, rois, width, q=None, phi=None, labels=None, frame_time=None, window=WINDOW):
    import matplotlib.pyplot as plt

    unit = "1/frame"
    with plt.rc_context(_FONTS):
        fig, axes = plt.subplots(1, len(rois), figsize=(4.3 * len(rois) + 0.8, 4.0), constrained_layout=True,
                                 squeeze=False)
        for j, k in enumerate(rois):
            ax = axes[0, j]
            beta, raw_fit = None, None
            for i, (name, c2) in enumerate(c2s.items()):
                n = c2.shape[-1]
                try:
                    r = ageing_analysis(np.asarray(c2[k], dtype=np.float64), width=width,
                                        max_lag=min(window - 1, n - 1), beta=beta, frame_time=frame_time)
                except XPCSInputError as exc:  # e.g. no contrast: say so on the panel, draw the others
                    ax.text(0.5, 0.5 - 0.1 * i, f"{name}: {str(exc).split(':')[0]}", transform=ax.transAxes,
                            ha="center", fontsize=9, wrap=True)
                    continue
                beta = r.beta if beta is None else beta  # every method's cuts are fitted with the raw β*
                if i == 0 and name in ("raw", "none"):
                    raw_fit = r.fit
                elif raw_fit is not None:  # a denoised 2TCF's cuts with the raw cuts' errors (raw_cut_errors)
                    raw_cut_errors(r.fit, raw_fit)
                unit = r.fit.gamma_unit
                plot_cut_gammas(ax, r.ages, r.fit, color="0.55" if i == 0 else f"C{i - 1}", label=name,
                                legend_marks=(j == 0 and i == 0))
            ax.set_yscale("log")
            log_ticks(ax, "y", max_labels=4)
            ax.set_xlabel("age t_a (frames)")
            ax.set_title(_roi_label(k, q, phi, labels))
        axes[0, 0].set_ylabel(f"Γ ({unit}), cuts of {width} frame(s)")
        axes[0, 0].legend()
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _fig_gamma_q(path, q, phi, fits, diffusion=None, flagged=None):
    """Eq. 3 parameters against q, one marker series per φ bin (q×φ bins would otherwise overlap); ROIs with
    windows flagged by the anomaly scores (``flagged``, one bool per ROI) ringed in red on the Γ panel."""
    import dataclasses

    import matplotlib.pyplot as plt

    groups = [None] if phi is None or not np.all(np.isfinite(phi)) else list(np.unique(phi))
    split = {}
    for name, fit in fits.items():
        for p in groups:
            idx = np.arange(len(q)) if p is None else np.flatnonzero(phi == p)
            sub = {f.name: (getattr(fit, f.name)[idx] if isinstance(getattr(fit, f.name), np.ndarray)
                            and getattr(fit, f.name).shape[:1] == (len(q),) else getattr(fit, f.name))
                   for f in dataclasses.fields(fit)}
            split[(name, p)] = (idx, dataclasses.replace(fit, **sub))
    label = {key: key[0] if key[1] is None else f"{key[0]}, φ = {key[1]:.4g}°" for key in split}
    with plt.rc_context(_FONTS):
        diff = {label[key]: diffusion[key[0]] for key in split if diffusion and key[0] in diffusion
                and key[1] == next(k[1] for k in split if k[0] == key[0])}  # each method's D line once
        fig = plot_parameters({label[key]: q[idx] for key, (idx, _) in split.items()},
                              {label[key]: sub for key, (_, sub) in split.items()},
                              title="Eq. 3 parameters against q (1σ error bars; lines: Γ = D q²)",
                              diffusion=diff)
        main = next((m for m in fits if m != "raw"), None)
        if flagged is not None and main is not None and np.any(flagged):
            ok = np.asarray(flagged, bool) & np.asarray(fits[main].success, bool)
            if ok.any():
                ax = fig.axes[0]
                ax.plot(q[ok], np.asarray(fits[main].gamma)[ok], "o", ms=13, mfc="none", mec="red", mew=1.5,
                        label=f"{main}: flagged windows (anomaly.png)")
                ax.legend(fontsize=8, framealpha=0.7)
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _anomaly_rows(anomaly, rows, rois, k_rois) -> dict:
    """Add each ROI's ``anomalous_share`` and ``anomaly_score_max`` to its table rows; the summary's entry."""
    import warnings

    share = flagged_share(anomaly["flagged"], anomaly["score"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a ROI not denoised: NaN
        top = np.nanmax(anomaly["score"], axis=1)
    labels = rois if rois is not None else np.arange(1, k_rois + 1)
    per = {int(lb): (float(sh), float(tp)) for lb, sh, tp in zip(labels, share, top, strict=True)}
    for r in rows:
        r["anomalous_share"], r["anomaly_score_max"] = per.get(int(r["roi"]), (np.nan, np.nan))
    return {"threshold": float(anomaly["attrs"]["threshold"]), "window": int(anomaly["attrs"].get("window", 50)),
            "step": int(anomaly["attrs"].get("step", 0)),
            "threshold_source": str(anomaly["attrs"].get("threshold_source", "")),
            "rois": [{"roi": lb, "anomalous_share": sh, "anomaly_score_max": tp} for lb, (sh, tp) in per.items()],
            "rois_with_flagged_windows": [lb for lb, (sh, _) in per.items() if sh > 0]}


def _html_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"<td>{v:.4g}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir, c2s: dict, *, q=None, title: str = "xpcs-denoise report", notes: str = "",
                 max_lag: int | None = None, fix: dict | None = None, cut_width: int = 1,
                 provenance: dict | None = None, overwrite: bool = False, phi=None, rois=None,
                 band: int | None = WINDOW, progress: bool = False, frame_time: float | None = None,
                 weighted: bool = True, model=None, anomaly: dict | None = None,
                 model_sha256: str | None = None, seed: int = 0) -> Path:
    """Write a report folder: ``c2_maps.png``, ``g2_fits.png``, ``gamma_q.png`` (several ROIs with q),
    ``gamma_age.png`` (N above the window), ``anomaly.png`` (with ``anomaly``), ``fits.csv``, ``summary.json``
    and ``index.html``.

    Parameters
    ----------
    out_dir : path of the report folder (must not exist unless ``overwrite``)
    c2s : dict of name → (K, N, N) 2TCFs, raw first, e.g. ``{"raw": c2, "cned": denoised, "gaussian": ...}``;
        arrays, or objects with ``shape`` whose ``[k]`` reads one ROI (the report then holds one matrix at a
        time)
    q : (K,) q values in Å⁻¹, optional
    max_lag, fix : passed to :func:`fit_table`; with denoised entries the default is at most 49 frames, the
        lags the 50-frame window denoises (longer lags keep the raw values)
    cut_width : cut width (frames) of the Γ(t_a) figure
    provenance : recorded in ``summary.json`` and shown on the page (method, model hash, seed, …)
    phi : (K,) φ of each ROI in degrees (q×φ bins), optional
    rois : (K,) ROI labels as the input numbers them (APS ``processed_bins``), optional
    band : sliding-window size (frames): its band edge is drawn on the denoised maps and sets the band whose
        percentiles 1–99 give each ROI's colour scale; None: no edge drawn
    progress : progress bars on stderr
    frame_time : seconds per frame: Γ in s⁻¹ and lags in s (else frames)
    weighted : weight 1TCF points by their standard errors from the 2TCF
    model : the model behind the ``"lagnet"`` or ``"cned"`` entry (its card's calibration gives Γ's σ)
    anomaly : stored anomaly scores of the ``"cned"`` entry (:meth:`~xpcs_denoise.io.C2Source.anomaly`:
        ``window_start`` (W,), ``score`` and ``flagged`` (K, W), ``attrs`` with ``window`` and ``threshold``):
        the figure ``anomaly.png``, columns ``anomalous_share`` and ``anomaly_score_max`` in the table, and
        ``summary.json["anomaly"]``
    model_sha256, seed : passed to :func:`fit_table` (the weights' SHA-256 the model's entry records; the seed)

    Returns
    -------
    Path of ``index.html``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise XPCSInputError(f"report folder {out} exists; choose another or pass overwrite=True")
    if out.exists():
        _own_files(out)  # --overwrite: only a report folder, before any work
    c2s = {k: v if hasattr(v, "shape") and len(v.shape) == 3 and not isinstance(v, np.ndarray)
           else np.asarray(v, dtype=np.float64).reshape((-1,) + np.shape(v)[-2:]) for k, v in c2s.items()}
    shapes = {tuple(v.shape) for v in c2s.values()}
    if len(shapes) != 1:
        raise XPCSInputError(f"all 2TCFs of a report must have one shape; got {sorted(shapes)}")
    k_rois, n = next(iter(shapes))[:2]
    q = None if q is None else np.asarray(q, dtype=float).ravel()
    if q is not None and q.size != k_rois:
        raise XPCSInputError(f"{q.size} q values for {k_rois} ROIs")
    phi = None if phi is None else np.asarray(phi, dtype=float).ravel()
    if phi is not None and phi.size != k_rois:
        raise XPCSInputError(f"{phi.size} φ values for {k_rois} ROIs")
    rois = None if rois is None else np.asarray(rois).ravel()
    if anomaly is not None and np.shape(anomaly["score"])[0] != k_rois:
        raise XPCSInputError(f"anomaly scores for {np.shape(anomaly['score'])[0]} ROIs, 2TCFs for {k_rois}")
    # Every ROI is drawn: pages of _MAX_ROIS_SHOWN ROIs per figure (beamline files have dozens of q–φ bins).
    pages = [list(range(i, min(i + _MAX_ROIS_SHOWN, k_rois))) for i in range(0, k_rois, _MAX_ROIS_SHOWN)]
    labels = rois if rois is not None else np.arange(1, k_rois + 1)

    def paged(stem, title, caption, draw):
        """Draw ``draw(path, shown)`` once per page of ROIs; (title, caption, file) entries, ROIs named."""
        out_figs = []
        for p, shown in enumerate(pages):
            name = f"{stem}.png" if len(pages) == 1 else f"{stem}_{p + 1}.png"
            draw(tmp / name, shown)
            which = f"ROI {labels[shown[0]]}" if len(shown) == 1 else \
                f"ROIs {', '.join(str(labels[i]) for i in shown)}"
            out_figs.append((title + (f" ({p + 1} of {len(pages)})" if len(pages) > 1 else ""),
                             f"{which}. {caption}", name))
        return out_figs
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary folder
    window = band or getattr(model, "size", WINDOW)  # the model's window: its lags are the denoised ones
    band = band if len(c2s) > 1 else None
    try:
        if max_lag is None and len(c2s) > 1:
            max_lag = min(default_max_lag(n), window - 1)
        rows, fits = fit_table(c2s, q, max_lag=max_lag, fix=fix, phi=phi, rois=rois, progress=progress,
                               frame_time=frame_time, weighted=weighted, model=model,
                               model_sha256=model_sha256, seed=seed)
        g_unit = next(iter(fits.values())).gamma_unit
        lag_unit = next(iter(fits.values())).lag_unit
        diffusion, anom_summary = {}, None
        steps = _progress(range(4), progress, "figures", unit="figure")
        steps = iter(steps)
        edge = (f" Dashed white lines on the {' and '.join(m for m in _BANDED if m in c2s)} panels: "
                f"|t₁ − t₂| = {band} frames, the edge of the sliding window's band; that method changes only the "
                "pixels between them, pixels farther from the diagonal keep the raw values (hence the sharp "
                "edge)." if band and n > band and any(m in c2s for m in _BANDED) else "")
        figures = paged("c2_maps", "Two-time correlation functions",
                        "One colour scale per ROI shared by every panel, percentiles 1–99 of the off-diagonal band "
                        "of the denoised 2TCF." + edge,
                        lambda path, shown: _fig_maps(path, c2s, shown, q, phi, rois, band))
        if band and n > 8 * band:  # the band is a sliver of a long series: show its start up close too
            figures += paged("c2_zoom", f"Zoom on the first {8 * band} frames",
                             "The same maps and colour scales." + edge,
                             lambda path, shown: _fig_maps(path, c2s, shown, q, phi, rois, band, span=8 * band))
        next(steps, None)
        lag_text = f"lags 1–{max_lag} frames" if max_lag else "every lag"
        figures += paged("g2_fits", "1TCFs and their fits",
                         f"1TCFs with Eq. 3 fits (top) and residuals (bottom); fits over {lag_text}, as in the table.",
                         lambda path, shown: _fig_g2(path, c2s, fits, shown, q, phi, rois))
        next(steps, None)
        if k_rois > 1 and q is not None and np.all(q > 0):
            for name, fit in fits.items():
                ok = fit.success & ~fit.at_bound
                try:
                    diffusion[name] = fit_diffusion(q, np.where(ok, fit.gamma, np.nan),
                                                    np.where(ok, fit.gamma_err, np.nan), gamma_unit=g_unit)
                except XPCSInputError:
                    pass
            if anomaly is not None:
                anom_summary = _anomaly_rows(anomaly, rows, rois, k_rois)
            flagged = (np.array([(r.get("anomalous_share") or 0) > 0 for r in rows
                                 if r.get("method") in ("cned", "lagnet")])
                       if anomaly is not None else None)
            if flagged is not None and len(flagged) != len(q):
                flagged = None
            _fig_gamma_q(tmp / "gamma_q.png", q, phi, fits, diffusion, flagged)
            figures.append(("Γ(q), β(q), C∞(q), α(q): every ROI",
                            "Every ROI's fit against q" + (", one series per φ bin" if phi is not None else "") +
                            ": the overview of all ROIs.", "gamma_q.png"))
        next(steps, None)
        if n > window:
            figures += paged("gamma_age", "Γ(t_a): dynamics against age",
                             f"Γ(t_a) from time-resolved cuts of width {cut_width} frame(s), β fixed; open "
                             "markers: the cut does not resolve its decay (fewer than 5 lags before half decay "
                             "or lags shorter than 2 half-decay times), ×: failed fits.",
                             lambda path, shown: _fig_ageing(path, c2s, shown, cut_width, q, phi, rois, frame_time,
                                                             window))
        next(steps, None)
        if anomaly is not None:
            anom_summary = anom_summary or _anomaly_rows(anomaly, rows, rois, k_rois)
            main = next((m for m in c2s if m != "raw"), "raw")
            figures += paged("anomaly", "Where the model is outside what it learned",
                             f"The {main} 2TCF with the flagged windows outlined, the anomaly score map and the "
                             f"score of each window against its age. A window is flagged when its score exceeds "
                             f"{anom_summary['threshold']:.3g}, the "
                             f"{anomaly['attrs'].get('threshold_quantile', 0.99):.0%} quantile of the scores of "
                             "held-out real crops; its denoised values (and fits resting on them) deserve "
                             "a check against the raw 2TCF.",
                             lambda path, shown: _fig_anomaly(path, c2s[main], anomaly, shown, q, phi, rois, main))
        write_csv(tmp / "fits.csv", rows)
        summary = {"title": title, "n_rois": int(k_rois), "n_frames": int(n), "methods": list(c2s),
                   "gamma_unit": g_unit, "lag_unit": lag_unit, "q_unit": "1/Å", "frame_time_s": frame_time,
                   "weighted": bool(weighted), "provenance": provenance or {}, "fits": rows,
                   "diffusion": {m: d.to_dict() for m, d in diffusion.items()},
                   "figures": [f for _, _, f in figures], "rois_shown": [int(v) for v in labels],
                   "lags_fitted": lag_text}
        if anom_summary is not None:
            summary["anomaly"] = anom_summary

        summary = json.loads(json.dumps(summary, default=str))  # Paths, numpy values → text/numbers
        (tmp / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
        cols = ["method", "roi", "q", "phi", "gamma", "gamma_err", "gamma_unit", "beta", "beta_err", "baseline",
                "baseline_err", "alpha", "alpha_err", "redchi", "success", "at_bound", "path", "message"]
        diff_html = "".join(f"<li>{html.escape(m)}: D = {d.D:.4g} ± {d.D_err:.2g} {html.escape(d.D_unit)} "
                            f"(Γ = D q², {d.n_points} ROIs, reduced χ² {d.redchi:.3g})</li>"
                            for m, d in diffusion.items())
        diff_html = f"<h2>Γ(q) = D q²</h2><ul>{diff_html}</ul>" if diff_html else ""
        if phi is None:
            cols.remove("phi")
        anom_html = ""
        if anom_summary is not None:
            cols += ["anomalous_share", "anomaly_score_max"]
            bad = anom_summary["rois_with_flagged_windows"]
            anom_html = ("<p><b>Anomaly:</b> " + (
                f"ROI(s) {', '.join(map(str, bad))} have windows outside what the model learned (score above "
                f"{anom_summary['threshold']:.3g}; see the anomaly figure): compare the denoised and raw 2TCFs "
                "there, and prefer the raw fit (or exclude those frames) where they disagree." if bad else
                f"no window scores above the threshold {anom_summary['threshold']:.3g}: the data look like "
                "what the model learned.") + "</p>")
        prov = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
                       for k, v in (provenance or {}).items())
        figs = "".join(f"<h2>{html.escape(t)}</h2><p>{html.escape(c)}</p>"
                       f"<img src='{f}' alt='{html.escape(c)}'>" for t, c, f in figures)
        (tmp / "index.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #aaa;padding:2px 6px;"
            "text-align:right}img{max-width:100%}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>"
            f"<p>{k_rois} ROI(s), {n} frames"
            + (f" of {frame_time:.6g} s" if frame_time is not None else "")
            + f". Γ in {html.escape(g_unit)}, q in Å⁻¹, φ in degrees, lags in {html.escape(lag_unit)}. "
            "ROI numbers are the input's labels (APS processed bins). "
            "Fits: Eq. 3, C₁ = C∞ + β exp(−2 (Γt)^α), one-sigma standard errors"
            + (", 1TCF points weighted by their standard errors from the 2TCF" if weighted else "")
            + f".</p><ul>{prov}</ul>{anom_html}{_html_table(rows, cols)}{diff_html}{figs}</body></html>\n")
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MANIFEST).write_text(json.dumps({"files": files}) + "\n")
        _publish_report(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"
