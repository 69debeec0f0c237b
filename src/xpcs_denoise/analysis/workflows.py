"""The paper's Figs. 5–7 as functions: q-dependence (Γ(q) per method), ageing (Γ(t_a) from time-resolved cuts),
the low-SNR pixel-subset pair; each returns a result with ``table``/``to_csv``/``plot``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.correlation import one_time_from_two_time, time_resolved_cuts, two_time
from ..core.errors import XPCSInputError, XPCSNoContrastWarning
from ..core.fitting import cut_trust, fit_diffusion, fit_g2, fit_rows, sigma_for_fit
from ..core.scaling import scale_parameters
from ..core.validation import check_square
from ..io.files import write_csv
from ..nn.config import WINDOW
from ..restoration.denoise import denoise
from .plotting import plot_ageing, plot_parameters
from .uncertainty import CutFits, cut_fits, fit_two_time, raw_cut_errors

__all__ = [
    "ageing_analysis",
    "ageing",
    "AgeingResult",
    "WorkflowResult",
    "q_dependence",
    "QDependenceResult",
    "pixel_subset_two_times",
    "fit_one_times",
]


def ageing_analysis(c2: np.ndarray, *, width: int = 1, max_lag: int = WINDOW - 1, beta: float | None = None,
                    baseline: float | None = None, ages=None, fix: dict | None = None,
                    frame_time: float | None = None) -> CutFits:
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
    CutFits
        ``ages`` (frames), the :class:`FitResult` ``fit`` (with ``fit.trusted``: the cut resolves its decay, see
        :func:`~xpcs_denoise.fitting.cut_trust`) and the ``beta`` used; ``table()``/``to_csv()``. (A dict up to
        0.2: ``result["fit"]`` still works, with a ``DeprecationWarning``.)
    """
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
    return CutFits(a, fit, beta, frame_time=frame_time)


def _method_outputs(c2, methods, *, model=None, seed=0, step=5, beta=None, baseline=None):
    """{method: denoised 2TCFs} with ``"raw"`` meaning the input itself, and the ensemble's spread."""
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


class WorkflowResult:
    """What every workflow returns: :meth:`table` (one dict a row, the columns of the CSV), :meth:`to_csv` and
    :meth:`plot` (a figure, saved to ``path`` if given)."""

    def table(self) -> list[dict]:
        raise NotImplementedError

    def plot(self, path=None):
        raise NotImplementedError

    def to_csv(self, path, *, overwrite: bool = False) -> Path:
        """The :meth:`table` as CSV (atomic; an existing file is kept unless ``overwrite``)."""
        return write_csv(path, self.table(), overwrite=overwrite)


@dataclass
class QDependenceResult(WorkflowResult):
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

    def relative_error(self, method: str) -> np.ndarray:
        """|Γ − Γ_true| / Γ_true per ROI (NaN where the fit failed); needs ``gamma_true``."""
        if self.gamma_true is None:
            raise XPCSInputError("no gamma_true: pass the true rates to q_dependence(gamma_true=...)")
        g = np.where(self.fits[method].success, self.fits[method].gamma, np.nan)
        return np.abs(g - self.gamma_true) / self.gamma_true

    def plot(self, path=None):
        """Γ(q), β(q), C∞(q), α(q) with error bars (the paper's Fig. 5); saved to ``path`` if given."""
        return plot_parameters(self.q, self.fits, xlabel="q (Å⁻¹)" if self.q_is_physical else "ROI",
                               truth=None if self.gamma_true is None else {"gamma": self.gamma_true},
                               log=True, path=path, diffusion=self.diffusion,
                               title=f"frames {self.window[0]}–{self.window[1] - 1}, α "
                                     f"{'free' if self.alpha_free else 'fixed to 1'}")

    @property
    def q_is_physical(self) -> bool:
        return bool(self.fits and not np.array_equal(self.q, np.arange(1, len(self.q) + 1)))


def q_dependence(c2, *, q=None, methods=("raw", "cned"), targets=None, start: int = 0, n_frames: int | None = None,
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
    start, n_frames : the stretch of frames used (default n_frames: the model's window, 50 for the shipped
        ensemble; Eq. 5 at the window, Eq. 7 above it).
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
    stop = int(start) + int(n_frames or getattr(model, "size", WINDOW))
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
    # Raw and ensemble fits carry Γ errors calibrated per path (uncertainty.fit_two_time), whose name each row states.
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
class AgeingResult(WorkflowResult):
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

    def relative_error(self, method: str) -> np.ndarray:
        """|Γ(t_a) − Γ_true(t_a)| / Γ_true(t_a) per age, NaN where the fit failed; needs ``gamma_true``."""
        if self.gamma_true is None:
            raise XPCSInputError("no gamma_true: pass the true Γ(t) to ageing(gamma_true=...)")
        g = np.where(self.fits[method].success, self.fits[method].gamma, np.nan)
        truth = self.gamma_true[self.ages]
        return np.abs(g - truth) / truth

    def plot(self, path=None):
        """2TCFs per method and Γ(t_a), C∞(t_a), α(t_a) (the paper's Fig. 6); saved to ``path`` if given."""
        return plot_ageing(self, path=path)


def ageing(c2, *, methods=("raw", "cned"), width: int = 1, max_lag: int | None = None, beta: float | None = None,
           baseline: float | None = None, fix: dict | None = None, gamma_true=None, model=None, step: int = 5,
           seed: int = 0, frame_time: float | None = None) -> AgeingResult:
    """Non-equilibrium analysis of one long 2TCF (paper Fig. 6).

    Each method denoises the whole (N, N) 2TCF (the ensemble by the sliding window, Eq. 7 scaling), then
    1TCF cuts of width ``width`` frames are taken at every age and Eq. 3 is fitted with β fixed.

    Parameters
    ----------
    c2 : (N, N) raw 2TCF, N ≥ the model's window (50 for the shipped ensemble).
    methods : ``"raw"`` and names from :data:`xpcs_denoise.denoising.METHODS`.
    width, max_lag : cut width and longest lag fitted, frames (default the model's window − 1: the denoised band
        spans lags below the window, 50 frames for the shipped ensemble).
    beta, baseline : β and C∞* of Eq. 7 (estimated from the 2TCF if not given); β is the fixed contrast.
    fix : other parameters to hold fixed, e.g. ``{"alpha": 1.0}``.
    gamma_true : optional (N,) true Γ(t) in frames⁻¹ (simulations).
    model, step, seed : the ensemble, the sliding-window step (frames), the lag-0 replacement seed.
    frame_time : seconds per frame: Γ (and ``gamma_true``) in s⁻¹ instead of frames⁻¹; ages stay in frames
        (the table adds ``age_s``).
    """
    c2 = np.asarray(c2, dtype=np.float64)
    check_square(c2.shape, "ageing: the 2TCF", ndim=(2,))
    b, base = scale_parameters(c2, 0, beta, baseline)
    b, base = float(b[0]), float(base[0])
    outputs, spread = _method_outputs(c2, methods, model=model, seed=seed, step=step, beta=b, baseline=base)
    max_lag = max_lag or getattr(model, "size", WINDOW) - 1
    fits, ages, raw_fit = {}, None, None
    for m, x in outputs.items():
        if m == "cned":
            # errors that include the noise and the model: residual bootstrap through the same denoising
            r = cut_fits(c2, method="cned", model=model, width=width, max_lag=max_lag, beta=b, baseline=base,
                         fix=fix, seed=seed, step=step, frame_time=frame_time)
        else:
            r = ageing_analysis(x, width=width, max_lag=max_lag, beta=b, fix=fix, frame_time=frame_time)
            if m in ("raw", "none"):
                raw_fit = r.fit  # the raw cuts, fitted once for every method
            else:  # a denoised 2TCF's cuts carry the raw cuts' errors (raw_cut_errors)
                if raw_fit is None:
                    raw_fit = ageing_analysis(c2, width=width, max_lag=max_lag, beta=b, fix=fix,
                                              frame_time=frame_time).fit
                raw_cut_errors(r.fit, raw_fit)
        fits[m], ages = r.fit, r.ages
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
