"""End-to-end workflows (the paper's Figs. 5–7 as functions): q-dependence, ageing (Γ(t_a)), method comparison
on real validation data, the demo."""

from __future__ import annotations

import html
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.correlation import one_time_from_two_time, time_resolved_cuts, two_time
from ..core.errors import XPCSInputError, XPCSNoContrastWarning
from ..core.fitting import cut_trust, fit_diffusion, fit_g2, fit_rows, sigma_for_fit
from ..io.formats import write_csv
from .uncertainty import cut_fits, fit_two_time

__all__ = [
    "run_demo",
    "evaluate_model",
    "ageing_analysis",
    "ageing",
    "AgeingResult",
    "q_dependence",
    "QDependenceResult",
    "pixel_subset_two_times",
    "fit_one_times",
]


def ageing_analysis(c2: np.ndarray, *, width: int = 1, max_lag: int = 49, beta: float | None = None,
                    baseline: float | None = None, ages=None, fix: dict | None = None,
                    frame_time: float | None = None) -> dict:
    """Γ(t_a), C∞(t_a), α(t_a) from time-resolved cuts of one 2TCF, fitted with β fixed.

    Parameters
    ----------
    c2 : (N, N) 2TCF; width : cut width in frames; max_lag : lags fitted (frames);
    beta : contrast to fix; default β*(lag = 1) of Eq. 7 (mean lag-1 value − C∞*).
    baseline : C∞* used for that default (mean 1TCF over the longest quarter of lags if not given).
    ages : optional subset of ages (frames).
    fix : further parameters to hold fixed, e.g. ``{"alpha": 1.0}``.
    frame_time : seconds per frame; with it Γ is in s⁻¹ (else frames⁻¹).

    Returns
    -------
    dict with ``ages`` (frames), the :class:`FitResult` ``fit`` (with ``fit.trusted``: the cut resolves its
    decay, see :func:`~xpcs_denoise.fitting.cut_trust`) and the ``beta`` used.
    """
    from ..core.scaling import scale_parameters

    c2 = np.asarray(c2, dtype=np.float64)
    if c2.ndim != 2:
        raise XPCSInputError(f"ageing analysis takes one (N, N) 2TCF; got shape {c2.shape}")
    a, lags, g = time_resolved_cuts(c2, width=width, max_lag=min(max_lag, c2.shape[0] - 1))
    if ages is not None:
        sel = np.isin(a, np.asarray(ages))
        a, g = a[sel], g[sel]
    if beta is None:
        beta = float(scale_parameters(c2, 0, None, baseline)[0][0])
    fit = fit_g2(g, lags, fix={**(fix or {}), "beta": beta}, frame_time=frame_time)
    fit.trusted = cut_trust(fit, g)
    return {"ages": a, "fit": fit, "beta": beta}


def _method_outputs(c2, methods, *, model=None, seed=0, step=5, beta=None, baseline=None):
    """{method: denoised 2TCFs} with ``"raw"`` meaning the input itself, and the ensemble's spread."""
    from ..restoration.denoise import denoise

    out, spread = {}, None
    for m in methods:
        if m == "raw":
            out[m] = np.asarray(c2, dtype=np.float64)
        elif m == "cned":
            out[m], spread = denoise(c2, "cned", model=model, seed=seed, step=step, beta=beta, baseline=baseline,
                                     return_std=True)
        else:
            out[m] = denoise(c2, m, seed=seed, step=step, beta=beta, baseline=baseline)
    return out, spread


def _per_roi_outputs(c2, methods, **kwargs):
    """As :func:`_method_outputs` for (K, N, N) ROIs, but an ROI that cannot be denoised (e.g. no positive
    contrast) gets NaN for the denoising methods, so its fits fail with a reason and the other ROIs go on."""
    try:
        with warnings.catch_warnings():
            # A batch passes a no-contrast ROI through undenoised; here it is marked failed instead, below.
            warnings.simplefilter("error", XPCSNoContrastWarning)
            return _method_outputs(c2, methods, **kwargs)
    except (XPCSInputError, XPCSNoContrastWarning):
        if c2.shape[0] == 1:
            raise
    parts = []
    for k in range(c2.shape[0]):
        try:
            parts.append(_method_outputs(c2[k:k + 1], methods, **kwargs)[0])
        except XPCSInputError:
            parts.append({m: c2[k:k + 1] if m == "raw" else np.full_like(c2[k:k + 1], np.nan) for m in methods})
    return {m: np.concatenate([p[m] for p in parts]) for m in methods}, None


@dataclass
class QDependenceResult:
    """Eq. 3 fits of each ROI's 1TCF per method (``"raw"``, ``"cned"``, peers, ``"target"``).

    ``q`` is in Å⁻¹ (ROI numbers 1..K if no q was given); Γ in frames⁻¹ of the input's frames, or s⁻¹ with a
    ``frame_time`` (see each fit's ``gamma_unit``). ``diffusion``: Γ = D q² per method (:func:`fit_diffusion`)
    where q is physical and at least two ROIs were fitted.
    """

    q: np.ndarray
    fits: dict
    alpha_free: bool
    window: tuple
    seed: int
    gamma_true: np.ndarray | None = None
    diffusion: dict | None = None
    frame_time: float | None = None
    #: per ROI, what the ensemble's entry fitted (:func:`~xpcs_denoise.uncertainty.fit_two_time`)
    paths: np.ndarray | None = None

    def table(self) -> list[dict]:
        """One row per ROI and method: method, q (Å⁻¹), Γ, β, C∞, α with standard errors, ``gamma_unit``,
        reduced χ², success, at_bound, message; ``path`` (what was fitted) for the ensemble's rows."""
        extra = None if self.gamma_true is None else {"gamma_true": self.gamma_true}
        rows = fit_rows(self.fits, self.q, index_name="q", columns=extra)
        if self.paths is not None:
            paths = iter(np.ravel(self.paths))
            for r in rows:
                r["path"] = next(paths) if r.get("method") == "cned" else ""
        return rows

    def diffusion_fit(self, method: str, *, power: float | None = 2.0):
        """Γ = D qⁿ of one method's converged fits (n fixed at ``power``, or free with None)."""
        fit = self.fits[method]
        ok = np.asarray(fit.success) & ~np.asarray(fit.at_bound if fit.at_bound is not None else False)
        return fit_diffusion(self.q, np.where(ok, fit.gamma, np.nan), np.where(ok, fit.gamma_err, np.nan),
                             power=power, gamma_unit=fit.gamma_unit)

    def to_csv(self, path, *, overwrite: bool = False) -> Path:
        """The :meth:`table` as CSV (atomic; an existing file is kept unless ``overwrite``)."""
        return write_csv(path, self.table(), overwrite=overwrite)

    def relative_error(self, method: str) -> np.ndarray:
        """|Γ − Γ_true| / Γ_true per ROI (NaN where the fit failed); needs ``gamma_true``."""
        if self.gamma_true is None:
            raise XPCSInputError("no gamma_true: pass the true rates to q_dependence(gamma_true=...)")
        g = np.where(self.fits[method].success, self.fits[method].gamma, np.nan)
        return np.abs(g - self.gamma_true) / self.gamma_true

    def plot(self, path=None):
        """Γ(q), β(q), C∞(q), α(q) with error bars (the paper's Fig. 5); saved to ``path`` if given."""
        from .plotting import plot_parameters

        return plot_parameters(self.q, self.fits, xlabel="q (Å⁻¹)" if self.q_is_physical else "ROI",
                               truth=None if self.gamma_true is None else {"gamma": self.gamma_true},
                               log=True, path=path, diffusion=self.diffusion,
                               title=f"frames {self.window[0]}–{self.window[1] - 1}, α "
                                     f"{'free' if self.alpha_free else 'fixed to 1'}")

    @property
    def q_is_physical(self) -> bool:
        return bool(self.fits and not np.array_equal(self.q, np.arange(1, len(self.q) + 1)))


def q_dependence(c2, *, q=None, methods=("raw", "cned"), targets=None, start: int = 0, n_frames: int = 50,
                 alpha_free: bool = True, gamma_true=None, model=None, seed: int = 0,
                 frame_time: float | None = None, weighted: bool = True) -> QDependenceResult:
    """Γ(q), β(q), C∞(q), α(q) from a short stretch of each ROI's 2TCF, raw and denoised (paper Fig. 5).

    Parameters
    ----------
    c2 : (K, N, N) raw 2TCFs, one per q-ROI, N ≥ start + n_frames.
    q : (K,) momentum transfer of each ROI in Å⁻¹ (optional, for the table and plot).
    methods : names from :data:`xpcs_denoise.denoising.METHODS` and ``"raw"``.
    targets : optional (K, M, M) high-SNR 2TCFs (e.g. the whole long series); their 1TCFs are fitted too, as
        the ``"target"`` entry.
    start, n_frames : the stretch of frames used (the shipped ensemble needs n_frames ≥ 50; 50 is Eq. 5).
    alpha_free : fit α (else fixed to 1).
    gamma_true : optional (K,) true Γ (frames⁻¹), for simulated data.
    model : a :class:`Denoiser` (default: the shipped ensemble); seed : lag-0 replacement draws.
    frame_time : seconds per frame: Γ (and ``gamma_true``) in s⁻¹ instead of frames⁻¹.
    weighted : weight each 1TCF point by its standard error from the 2TCF (σ of Eq. 2's average,
        :func:`~xpcs_denoise.fitting.sigma_for_fit`); False for unweighted fits.
    """
    c2 = np.asarray(c2, dtype=np.float64)
    if c2.ndim != 3:
        raise XPCSInputError(f"q-dependence takes (K, N, N) 2TCFs, one per ROI; got shape {c2.shape}")
    stop = int(start) + int(n_frames)
    if start < 0 or stop > c2.shape[-1]:
        raise XPCSInputError(f"frames {start}..{stop - 1} are outside the {c2.shape[-1]}-frame 2TCFs")
    k_rois = c2.shape[0]
    q = np.arange(1, k_rois + 1, dtype=float) if q is None else np.asarray(q, dtype=float)
    if q.shape != (k_rois,):
        raise XPCSInputError(f"need one q per ROI ({k_rois}); got shape {q.shape}")
    window = c2[:, start:stop, start:stop]
    outputs, _ = _per_roi_outputs(window, methods, model=model, seed=seed)
    fix = None if alpha_free else {"alpha": 1.0}
    fits = {m: fit_one_times(x, fix=fix, frame_time=frame_time, weighted=weighted) for m, x in outputs.items()}
    # Raw and ensemble fits carry errors that include the noise and the model (residual bootstrap); the
    # ensemble's entry takes, per ROI, the path uncertainty.fit_two_time chooses (raw where it cannot help).
    paths = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if "raw" in fits:
            fits["raw"] = fit_two_time(window, method="none", fix=fix, seed=seed, frame_time=frame_time).fit
        if "cned" in fits:
            tf = fit_two_time(window, method="cned", model=model, fix=fix, seed=seed, frame_time=frame_time)
            fits["cned"], paths = tf.fit, tf.path
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 3 or targets.shape[0] != k_rois:
            raise XPCSInputError(f"targets must be (K={k_rois}, M, M); got shape {targets.shape}")
        fits["target"] = fit_one_times(targets, fix=fix, frame_time=frame_time, weighted=weighted)
    gt = None if gamma_true is None else np.asarray(gamma_true, dtype=float).reshape(k_rois)
    res = QDependenceResult(q, fits, bool(alpha_free), (int(start), stop), int(seed), gt, None, frame_time)
    res.paths = paths
    if res.q_is_physical:
        res.diffusion = {}
        for m in fits:
            try:
                res.diffusion[m] = res.diffusion_fit(m)
            except XPCSInputError:  # fewer than one converged ROI: no Γ(q) line for this method
                pass
    return res


def fit_one_times(c2, *, max_lag: int | None = None, fix: dict | None = None, frame_time: float | None = None,
                  weighted: bool = True):
    """Eq. 3 fits of the 1TCFs of (K, N, N) 2TCFs, weighted by each point's standard error from the 2TCF.

    Parameters
    ----------
    c2 : (K, N, N) 2TCFs; max_lag : lags fitted (frames, default N − 1); fix : parameters held fixed.
    frame_time : seconds per frame: Γ in s⁻¹ (else frames⁻¹).
    weighted : σ of each 1TCF point from the spread along its diagonal (:func:`sigma_for_fit`); False for
        unweighted fits.

    Returns
    -------
    FitResult
    """
    g, err = one_time_from_two_time(c2, max_lag=max_lag, return_err=True)
    return fit_g2(g, fix=fix, sigma=sigma_for_fit(err) if weighted else None, frame_time=frame_time)


@dataclass
class AgeingResult:
    """Γ(t_a), C∞(t_a), α(t_a) per method from cuts of width ``width`` (β fixed to ``beta``)."""

    ages: np.ndarray
    fits: dict
    beta: float
    baseline: float
    width: int
    c2: dict
    std: np.ndarray | None
    seed: int
    gamma_true: np.ndarray | None = None
    frame_time: float | None = None

    def table(self) -> list[dict]:
        """One row per age and method: age (frames; ``age_s`` in s with a frame time), Γ, β (fixed), C∞, α with
        errors, ``gamma_unit``, success, at_bound, ``trusted`` (the cut resolves its decay), message."""
        extra = {"age_unit": "frames"}
        if self.frame_time is not None:
            extra["age_s"] = self.ages * self.frame_time
        if self.gamma_true is not None:
            extra["gamma_true"] = self.gamma_true[self.ages]
        return fit_rows(self.fits, self.ages, index_name="age", columns=extra)

    def to_csv(self, path, *, overwrite: bool = False) -> Path:
        """The :meth:`table` as CSV (atomic; an existing file is kept unless ``overwrite``)."""
        return write_csv(path, self.table(), overwrite=overwrite)

    def relative_error(self, method: str) -> np.ndarray:
        """|Γ(t_a) − Γ_true(t_a)| / Γ_true(t_a) per age, NaN where the fit failed; needs ``gamma_true``."""
        if self.gamma_true is None:
            raise XPCSInputError("no gamma_true: pass the true Γ(t) to ageing(gamma_true=...)")
        g = np.where(self.fits[method].success, self.fits[method].gamma, np.nan)
        truth = self.gamma_true[self.ages]
        return np.abs(g - truth) / truth

    def plot(self, path=None):
        """2TCFs per method and Γ(t_a), C∞(t_a), α(t_a) (the paper's Fig. 6); saved to ``path`` if given."""
        from .plotting import plot_ageing

        return plot_ageing(self, path=path)


def ageing(c2, *, methods=("raw", "cned"), width: int = 1, max_lag: int = 49, beta: float | None = None,
           baseline: float | None = None, fix: dict | None = None, gamma_true=None, model=None, step: int = 5,
           seed: int = 0, frame_time: float | None = None) -> AgeingResult:
    """Non-equilibrium analysis of one long 2TCF (paper Fig. 6).

    Each method denoises the whole (N, N) 2TCF (the ensemble by the sliding window, Eq. 7 scaling), then
    1TCF cuts of width ``width`` frames are taken at every age and Eq. 3 is fitted with β fixed.

    Parameters
    ----------
    c2 : (N, N) raw 2TCF, N ≥ 50.
    methods : ``"raw"`` and names from :data:`xpcs_denoise.denoising.METHODS`.
    width, max_lag : cut width and longest lag fitted, frames (the denoised band spans lags < 50).
    beta, baseline : β and C∞* of Eq. 7 (estimated from the 2TCF if not given); β is the fixed contrast.
    fix : other parameters to hold fixed, e.g. ``{"alpha": 1.0}``.
    gamma_true : optional (N,) true Γ(t) in frames⁻¹ (simulations).
    model, step, seed : the ensemble, the sliding-window step (frames), the lag-0 replacement seed.
    frame_time : seconds per frame: Γ (and ``gamma_true``) in s⁻¹ instead of frames⁻¹; ages stay in frames
        (the table adds ``age_s``).
    """
    from ..core.scaling import scale_parameters

    c2 = np.asarray(c2, dtype=np.float64)
    if c2.ndim != 2 or c2.shape[0] != c2.shape[1]:
        raise XPCSInputError(f"ageing takes one square (N, N) 2TCF; got shape {c2.shape}")
    b, base = scale_parameters(c2, 0, beta, baseline)
    b, base = float(b[0]), float(base[0])
    outputs, spread = _method_outputs(c2, methods, model=model, seed=seed, step=step, beta=b, baseline=base)
    fits, ages = {}, None
    for m, x in outputs.items():
        if m == "cned":
            # errors that include the noise and the model: residual bootstrap through the same denoising
            r = cut_fits(c2, method="cned", model=model, width=width, max_lag=max_lag, beta=b, baseline=base,
                         fix=fix, seed=seed, step=step, frame_time=frame_time)
        else:
            r = ageing_analysis(x, width=width, max_lag=max_lag, beta=b, fix=fix, frame_time=frame_time)
        fits[m], ages = r["fit"], r["ages"]
    gt = None
    if gamma_true is not None:
        gt = np.broadcast_to(np.asarray(gamma_true, dtype=float), (c2.shape[0],)).copy()
    return AgeingResult(ages, fits, b, base, int(width), outputs, spread, int(seed), gt, frame_time)


def pixel_subset_two_times(frames, labels, roi: int = 1, fraction: float = 0.26, *, seed: int = 0,
                           **two_time_options) -> tuple[np.ndarray, np.ndarray]:
    """The paper's non-equilibrium test pair from one ROI: a low-SNR 2TCF from a random ``fraction`` of its
    pixels and the high-SNR target from all of them.

    Parameters
    ----------
    frames : (T, …) frame stack; labels : ROI label map; roi : the ROI label used.
    fraction : share of the ROI's pixels in the low-SNR 2TCF (the paper used about 26 %).
    seed : seed of the pixel draw.

    Returns
    -------
    (low_snr, target) : two (T, T) 2TCFs.
    """
    labels = np.asarray(labels)
    pix = np.flatnonzero(labels.ravel() == int(roi))
    if pix.size == 0:
        raise XPCSInputError(f"ROI {roi} has no pixels in the label map")
    if not 0 < fraction < 1:
        raise XPCSInputError(f"fraction must be in (0, 1); got {fraction}")
    n_sub = max(1, int(round(fraction * pix.size)))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pix, n_sub, replace=False)
    sub = np.zeros(labels.size, dtype=np.int32)
    sub[chosen] = 1
    full = np.zeros(labels.size, dtype=np.int32)
    full[pix] = 1
    low = two_time(frames, sub.reshape(labels.shape), **two_time_options)[0]
    target = two_time(frames, full.reshape(labels.shape), **two_time_options)[0]
    return low, target


def _demo_experiment(seed: int):
    from ..core.simulation import simulate_speckle

    t_frames, n_rois = 250, 4
    q = np.array([0.004, 0.005, 0.006, 0.007])  # Å⁻¹
    ageing = np.linspace(1.6, 0.6, t_frames)  # dynamics slow down by ~2.7× over the series
    gamma = 2.5e3 * q[:, None] ** 2 * ageing[None, :]  # Γ(q, t) = D(t) q², frames⁻¹
    counts = 0.25 * (q / q[0]) ** -2.0
    sim = simulate_speckle(t_frames, 1500, gamma=gamma, beta=0.25, mean_count=counts, n_rois=n_rois, seed=seed)
    sim.q = q
    return sim


def run_demo(out_dir="xpcs-denoise-demo", *, seed: int = 0, progress: bool = True, overwrite: bool = False) -> dict:
    """Simulate a small ageing experiment with four q-ROIs, correlate, denoise with the shipped ensemble,
    fit, and write a report (PNG figures, CSV/JSON tables, index.html) into ``out_dir``.

    An existing ``out_dir`` is refused unless ``overwrite``; even then only the demo's own files are replaced."""
    from ..restoration.denoise import Denoiser
    from ..core.validation import check_seed

    t0 = time.time()
    seed = check_seed(seed)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise XPCSInputError(f"{out} exists; choose another folder (--out) or pass --overwrite to replace the "
                             "demo's files in it")
    if out.exists() and not out.is_dir():
        raise XPCSInputError(f"{out} exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    sim = _demo_experiment(seed)
    c2 = two_time(sim.frames, sim.labels, progress=progress)
    den = Denoiser.pretrained()
    res = den.denoise_full(c2, seed=seed)
    clean = res.c2
    k_rois = c2.shape[0]
    rows = []
    first = slice(0, 50)
    # Fits of the first 50 frames with errors that include the noise and the model (uncertainty.fit_two_time):
    # the denoised value comes from the path the tool chooses per ROI (raw where the model cannot help).
    fr = fit_two_time(c2[:, first, first], method="none", fix={"alpha": 1.0}, seed=seed)
    fd = fit_two_time(c2[:, first, first], method="cned", model=den, fix={"alpha": 1.0}, seed=seed)
    f_raw, f_den = fr.fit, fd.fit
    g_raw = one_time_from_two_time(c2[:, first, first])
    g_den = one_time_from_two_time(fd.denoised)
    truth_first = sim.gamma[:, :50].mean(axis=1)
    age_results = {}
    for k in range(k_rois):
        rows.append({"roi": k + 1, "q": float(sim.q[k]), "gamma_true": float(truth_first[k]),
                     "gamma_raw": float(f_raw.gamma[k]), "gamma_raw_err": float(f_raw.gamma_err[k]),
                     "gamma_denoised": float(f_den.gamma[k]), "gamma_denoised_err": float(f_den.gamma_err[k]),
                     "z_denoised": float((f_den.gamma[k] - truth_first[k]) / f_den.gamma_err[k]),
                     "path": str(fd.path[k]),
                     "fit_raw_ok": bool(f_raw.success[k]), "fit_denoised_ok": bool(f_den.success[k])})
        beta_k = float(res.beta[k])
        age_results[k] = {
            "raw": ageing_analysis(c2[k], beta=beta_k, max_lag=40),
            "denoised": ageing_analysis(clean[k], beta=beta_k, max_lag=40),
        }
    figures = _demo_figures(out, sim, c2, clean, g_raw, g_den, f_raw, f_den, age_results)
    write_csv(out / "gamma_q.csv", rows, overwrite=True)
    summary = {"report": str(out / "index.html"), "seed": seed, "rois": rows,
               "model": {"members": den.n_members, "weights_sha256": den.card.get("weights_sha256")},
               "seconds": round(time.time() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _write_html(out / "index.html", rows, figures, summary)
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

    lags = np.arange(1, 50)
    fig, axes = plt.subplots(1, k_rois, figsize=(3.2 * k_rois, 3.2), constrained_layout=True, sharey=True)
    for k in range(k_rois):
        ax = axes[k]
        ax.plot(lags, g_raw[k], ".", color="0.6", label="raw")
        ax.plot(lags, g_den[k], ".", color="C0", label="denoised")
        if np.isfinite(f_raw.gamma[k]):
            ax.plot(lags, f_raw.model()[k], "-", color="0.4", lw=1, label="fit raw")
        if np.isfinite(f_den.gamma[k]):
            ax.plot(lags, f_den.model()[k], "-", color="C0", lw=1.5, label="fit denoised")
        true = 1 + sim.beta[k] * np.exp(-2 * sim.gamma[k, :50].mean() * lags)
        ax.plot(lags, true, "--", color="k", lw=1, label="truth")
        ax.set_xscale("log")
        ax.set_xlabel("lag (frames)")
        ax.set_title(f"ROI {k + 1}, first 50 frames", fontsize=8)
    axes[0].set_ylabel("C₁ (1TCF)")
    axes[0].legend(fontsize=7)
    files.append(("1TCFs of the first 50 frames with Eq. 3 fits (α = 1)", "g2_fits.png"))
    fig.savefig(out / "g2_fits.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, k_rois, figsize=(3.2 * k_rois, 3.2), constrained_layout=True)
    for k in range(k_rois):
        ax = axes[k]
        for name, color in (("raw", "0.6"), ("denoised", "C0")):
            r = age_results[k][name]
            ax.plot(r["ages"], r["fit"].gamma, ".", ms=3, color=color, label=name)
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


def _write_html(path, rows, figures, summary):
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                    for v in r.values()) + "</tr>" for r in rows)
    figs = "".join(f"<h2>{html.escape(t)}</h2><img src='{f}' alt='{html.escape(t)}'>" for t, f in figures)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>xpcs-denoise demo</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #aaa;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
        "<h1>xpcs-denoise demo: simulated ageing experiment, 4 q-ROIs</h1>"
        f"<p>Seed {summary['seed']}; ensemble of {summary['model']['members']} CNN-ED members "
        f"(weights SHA-256 {html.escape(str(summary['model']['weights_sha256']))[:16]}…). Γ in frames⁻¹, "
        "fits of the first 50 frames with α = 1; truth = mean simulated Γ over those frames. Errors (±1σ) "
        "include the photon noise and the model's spread (residual bootstrap); z = (Γ̂ − Γ)/σ; path = what "
        "was fitted for the denoised column (raw where the model cannot help).</p>"
        f"<table><tr>{head}</tr>{body}</table>{figs}</body></html>\n")


def evaluate_model(model, data, *, split: str = "validation", methods=None, seed: int = 0) -> dict:
    """Metrics (METHOD §6) of a model and every classical peer on prepared data.

    ``model`` is a model folder or ``"pretrained"``; ``split="validation"`` uses the held-out targets named in
    the model card, ``"all"`` every crop of ``data`` (your own held-out data). ``methods`` defaults to every
    available method (BM3D only where its package is installed).
    """
    from ..restoration.denoise import Denoiser
    from .evaluation import compare_denoisers
    from ..core.scaling import load_prepared

    den = Denoiser.pretrained() if str(model) == "pretrained" else Denoiser.from_directory(model)
    ds = load_prepared(data)
    if split == "validation":
        names = set(den.card.get("split", {}).get("val_target_names", []))
        ids = [i for i, nm in enumerate(ds.target_names) if nm in names]
        if not ids:
            raise XPCSInputError("none of the model card's validation targets is in this file; use --split all")
        ds = ds.subset_targets(ids)
    elif split != "all":
        raise XPCSInputError(f"split must be 'validation' or 'all'; got {split!r}")
    return compare_denoisers(ds.inputs, targets=ds.targets, target_index=ds.target_index, methods=methods,
                             model=den, seed=seed)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("OMP_NUM_THREADS", "2")
