"""Parameters with honest uncertainties from raw or denoised 2TCFs, and the choice of what to fit.

A fit of a denoised 2TCF has smooth, correlated residuals: its own standard error says how well Eq. 3
describes the denoised curve, not how far the curve is from the truth, and its centre inherits the model's pull
toward the training data's typical curves. Denoised 2TCFs are therefore fitted by the *model-consistent fit*
(:mod:`xpcs_denoise.analysis.consistent`): the parameters must explain the raw 1TCF within its photon noise and,
passed through the ensemble, the denoised 1TCF. Its covariance, scaled by ``s`` and with a relative floor ``r``
on Γ (``σ² = (s·σ_cov)² + (r·Γ̂)²``, the model card's ``uncertainty.fit_scale`` and ``rel_floor``), is
calibrated on simulated data of known truth (``scripts/calibrate_uncertainty.py``). Where a 2TCF's window
does not resolve its decay (Γ̂ × its longest lag < 3, or ≥ 3 only with a raised baseline), C∞, α and Γ trade
against each other; such fits are done again with priors on (C∞ − 1)/β and α pooled from the fits of the same
call that do resolve theirs (empirical Bayes, :func:`~xpcs_denoise.analysis.consistent.pooled_priors`;
``pooled``), calibrated on their own (``uncertainty.pooled``).

Raw fits' uncertainty comes from a residual bootstrap over frames:

1. ``D`` = Eq. 3 of the raw fit and ``R = C2 − D`` the residual;
2. replicates ``D + R[π, π]`` for random permutations π of the frames: the noise of a 2TCF is organised by
   frames (one frame's intensity fluctuation moves its whole row and column), which a permutation of rows and
   columns together keeps, lag 0 staying lag 0;
3. each replicate is fitted; the spread of the replicates' Γ, β, C∞, α is combined with the fit's own standard
   error: ``σ² = (a·σ_fit)² + (s·σ_boot)²``, and for Γ ``+ (r·Γ̂)²``, with a, s and r calibrated alike
   (:func:`calibrate`, :data:`RAW_FIT_SCALE`). For long series s = 1; for short ones (fewer than
   :data:`LONG_FRAMES` frames) the replicates' best scale measured 0 — the fit's own σ, scaled, with a floor, does
   better — so none are drawn.

:func:`fit_two_time` also decides, per 2TCF, which path gives the best estimate (``path``):

- ``"denoised"``: the model's range;
- ``"binned k"``: slow dynamics (little decay within the model's window) in a long series: the 2TCF is averaged
  in k×k frame blocks (a series of k-frame exposures, as the paper's every-k-th-frame subsampling, with all
  frames used), denoised, fitted in lags of k frames, Γ divided by k;
- ``"raw: fast"``: dynamics faster than the model's range (contrast halves within about 3 frames): the model
  cannot help there, so the raw fit is returned, with a warning;
- ``"raw: long series"``: a series of at least :data:`LONG_FRAMES` frames and two model windows whose raw fit
  succeeds (and, for slow dynamics, is not degenerate: :data:`RAW_DEGENERATE`): measured better than the
  denoised fit in every Γ bin (see :data:`LONG_FRAMES`);
- ``"raw: precise"``: only with ``raw_precise`` > 0 (off by default, :data:`RAW_PRECISE`): the raw fit's relative
  σ of Γ is below it;
- ``"raw: no contrast"``: no contrast could be estimated, nothing to denoise (fits fail with that reason).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core.correlation import one_time_from_two_time, time_resolved_cuts
from ..core.errors import XPCSInputError
from ..core.fitting import (
    PARAMETERS,
    FitResult,
    _check_frame_time,
    cut_trust,
    fit_g2,
    fit_rows,
    g2_model,
    sigma_for_fit,
)
from ..core.scaling import scale_parameters
from ..core.validation import check_square
from ..core.window import check_two_times
from ..io.files import write_csv
from ..nn.config import WINDOW
from ..restoration.denoise import denoise, resolve_method
from .consistent import POOL_MODEL_WEIGHT, consistent_fit, needs_prior, offset_prior, pooled_priors

__all__ = ["calibrate", "calibration_scale", "cut_fits", "residual_bootstrap", "slow_bin_factor", "bin_two_time",
           "fit_two_time", "TwoTimeFit", "CutFits", "GAMMA_FAST", "RAW_PRECISE", "RAW_BOUND_FLOOR",
           "RAW_BASELINE_FLOOR", "RAW_SUNK_OFFSET", "RAW_SUNK_SPAN", "LONG_FRAMES"]

#: Above this rate (frames⁻¹) the contrast halves within ~3 frames and the shipped model measures no better than
#: the raw fit (METHOD §5; our bias benchmark agrees): the raw fit is returned.
GAMMA_FAST = 0.2
#: Relative standard error of the raw Γ below which the raw fit is kept ("raw: precise"); 0 (default): never.
#: It served the plain denoised fit (0.2 then: real MRE(Γ) 0.245 → 0.233), whose bias outweighed what it removed
#: where raw fits are good; the model-consistent fit holds the raw data's centre itself, and without the path it
#: measured smaller errors (1,500 real held-out crops, Γ 0.01–0.02 / 0.02–0.03 / 0.1–0.15 frames⁻¹: median
#: |error| 0.28 → 0.23, 0.19 → 0.17, 0.13 → 0.08; 4,000 simulated crops alike or better in every bin) and honest
#: σ where the selected raw fits had not (|z| < 2 for 69–81 % of them in 0.01–0.1: chosen for a small σ).
RAW_PRECISE = 0.0
#: A short raw fit's Γ error: σ² = (RAW_FIT_SCALE·σ_fit)² + (RAW_BOOT_SCALE·σ_boot)² + (RAW_REL_FLOOR·Γ̂)², plus
#: the bound and baseline floors below. Weighted raw fits' own σ over-covers the core (|z| < 1 for 77 % of
#: simulated 50-frame crops) while the fits that look precise miss more often (σ/Γ̂ < 0.2: |z| < 2 for 79–88 %):
#: a scale below 1 with a relative floor fits both, and the replicates then add nothing (their best scale: 0).
#: With the sunk-baseline floor (RAW_SUNK_SPAN) the scale is 0.61: seed 31337, 3,000 crops, |z| < 1 72.0 %, < 2
#: 92.5 %, and 73.6 / 92.8 % on 3,000 others (seed 4711; scale 0.81 without that floor: 71.0 / 92.2 % and
#: 72.3 / 91.4 %, 90.8 % on the benchmark's crops); on two sets it did not see (seeds 2718 / 2719) 71.8 / 91.5 %
#: and 72.9 / 92.8 %.
RAW_FIT_SCALE = 0.61
RAW_BOOT_SCALE = 0.0
RAW_REL_FLOOR = 0.06
#: RAW_FIT_SCALE for raw fits with a parameter held fixed (``fix=``, as ``fit --fix-alpha`` / ``--fix-beta`` and the
#: demo): with one free parameter fewer their covariance shrinks and their tail is heavier (the baseline sinks to
#: mimic a slower decay: see RAW_SUNK_SPAN). Measured with α held at 1 on α = 1 data (seeds 1357 / 2468, 3,000 crops
#: each), with the floor below: |z| < 1 73.3 / 73.8 %, < 2 93.9 / 93.6 % (scale 1.15 without it: 72.4 / 73.2 %,
#: 90.2 / 89.4 %, and Γ 0.06–0.4 frames⁻¹ only 76–84 % within 2σ).
RAW_FIXED_FIT_SCALE = 0.86
#: …with β held (``fit --fix-beta``), measured with β held at its truth (seeds 8642 / 8643, 3,000 crops each, with
#: the floor below): |z| < 1 71.2 / 71.2 %, < 2 92.1 / 92.2 % (1.15 without the floor: 65.5 / 65.5 %, 86.7 / 86.4 %).
RAW_FIXED_BETA_FIT_SCALE = 1.3
#: A short raw fit whose C∞ sank more than RAW_SUNK_OFFSET·β̂ below 1 (Eq. 5 puts the baseline at 1) gets
#: σ(Γ) ≥ RAW_SUNK_SPAN / (longest lag): with α held at 1, two thirds of the |z| > 2 tail were fast decays (true
#: Γ ≈ 0.14 frames⁻¹) read as a slow one with a sunk baseline (Γ̂ ≈ 0.01 Γ, β̂ ≈ 2 β), which no multiple of Γ̂
#: reaches (α free: 40 % of the tail); the data do not say which, so σ spans the rates the window can resolve. A
#: quarter of the fits sink that far (slow decays too, whose σ this makes generous: α held, Γ < 0.03 frames⁻¹
#: |z| < 1 for 90 % / 75 %).
RAW_SUNK_OFFSET = 0.3
RAW_SUNK_SPAN = 10.0
#: Relative floor of Γ's error for a raw fit that ended with a parameter at its bound (about half of the raw
#: fits of noisy 50-frame crops): the bound removes a direction from the covariance, so its σ is too small
#: (those fits were 80 % of the |z| > 2 tail). Measured on two disjoint simulated sets of 1,530 fits
#: (scripts/calibrate_uncertainty.py's ranges): |z| < 1 / < 2 went from 66–70 % / 84–87 % to 69–72 % / 89–91 %.
RAW_BOUND_FLOOR = 0.5
#: …and, for a short series, an absolute floor of this over the longest lag fitted (frames⁻¹): most raw fits that
#: miss by more than 2σ after the floors above collapsed to Γ̂ ≈ 0 (α̂ at 0.2; 82 % of them under-estimate), where
#: no multiple of Γ̂ is a scale; a window of L lags cannot tell rates below about 1/L apart.
RAW_BOUND_SPAN = 1.0
#: A raw fit (Eq. 5: baseline 1; of a short series, and of a long one: see below) whose fitted C∞ left 1 traded
#: baseline for rate: σ(Γ) gains
#: ``RAW_BASELINE_FLOOR · Γ̂ · |C∞̂ − 1| / β̂`` (most of the rest of the |z| > 2 tail: Γ over-estimated ×1.6–1.7
#: with C∞̂ ≈ 1.04 and a small σ). Measured on the same two sets: |z| < 2 87–89 % → 90–92 % overall, 85–90 % →
#: 90–94 % for Γ 0.01–0.03; |z| < 1 68–72 % → 74–77 %.
RAW_BASELINE_FLOOR = 0.5
#: A series of at least this many frames (and of two model windows) is "long": its raw fit uses lags up to half
#: the series and averages every frame pair, and measured better than the denoised one in every Γ bin
#: (median |error| of Γ 0.046–0.058 vs 0.06–0.135 on 220 simulated series of 200–1000 frames, realistic noise):
#: it is returned ("raw: long series") whenever it succeeds. The model still serves long series through the
#: time-resolved cuts (:func:`cut_fits`) and when the raw fit fails.
LONG_FRAMES = 100
#: A long series' raw Γ error: σ² = (RAW_LONG_FIT_SCALE·σ_fit)² + (RAW_LONG_BOOT_SCALE·σ_boot)²
#: + RAW_LONG_DURATION_FLOOR²·Γ̂/N + (RAW_LONG_REL_FLOOR·Γ̂)², N the series' frames, Γ̂ in frames⁻¹, plus the
#: bound and traded-baseline floors of short fits (RAW_BOUND_FLOOR, RAW_BASELINE_FLOOR). Its 1TCF points share
#: frames, so the weighted fit's own σ is too small (|z| < 1 for 48–50 %); the bootstrap over frames sees those
#: correlations, but its permutations break the noise's correlation over the ~1/Γ frames of one decay: slow decays
#: in few-pixel ROIs missed (|z| < 2 for 81 % of simulated Γ < 0.01 frames⁻¹), as did fits that moved C∞ off 1
#: by more than 0.1 β̂ (83 %). The third term is the finite duration's relative error ∝ 1/√(Γ̂ N) (the number of
#: decay times the series spans); with it the fit's own part needs only half its size (fast decays over-covered:
#: |z| < 1 for 86 %). Measured on 2,100 simulated series of 100–2,000 frames (half with α held at 1;
#: scripts/calibrate_long_series.py): |z| < 1 / < 2 72.1 / 90.5 % → 73.0 / 92.9 % (Γ < 0.01: 59 / 81 → 69 / 90 %;
#: Γ > 0.1: 86 / 97 → 80 / 96 %); on three disjoint parts 71.6 / 92.5, 72.0 / 92.7 (600 series of 200 frames)
#: and 77.0 / 94.0 %; on 600 series none of them saw (seed 13) 69.8 / 92.0 % (before: 66.0 / 87.2 %).
RAW_LONG_FIT_SCALE = 0.5
RAW_LONG_BOOT_SCALE = 1.0
RAW_LONG_DURATION_FLOOR = 0.11
#: …except for slow dynamics whose raw fit is degenerate (relative σ of Γ above this: little decay within the
#: fitted lags, so C∞ and Γ trade off): those are binned and denoised.
RAW_DEGENERATE = 0.5
RAW_LONG_REL_FLOOR = 0.02
#: Slow dynamics: less than this share of the decay seen over the whole series happens within the model's
#: window → the 2TCF is binned (when the series is long enough) until about ``SLOW_TARGET`` of it does.
SLOW_SHARE = 0.4
SLOW_TARGET = 0.7


def slow_bin_factor(c2, size: int = WINDOW) -> int:
    """Block size k ≥ 1 that brings slow dynamics into an n-frame window (n = ``size``) of a long 2TCF.

    From the 1TCF over all lags: the share of the decay seen over the series (lag 1..3 mean minus the median of
    the longest quarter of lags) that has happened by lag n − 1. Below ``SLOW_SHARE``, the smallest k with about
    ``SLOW_TARGET`` of it by lag k(n − 1), at most N // n. No Eq. 3 fit is needed (a raw fit of slow dynamics is
    the least reliable of all).
    """
    g = one_time_from_two_time(np.asarray(c2, float)[None])[0]
    n_frames = g.size + 1
    if n_frames < 2 * size:
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        base = np.nanmedian(g[-max(1, g.size // 4):])
        head = np.nanmean(g[:3])
        total = head - base
        if not np.isfinite(total) or total <= 0:
            return 1

        def share(lag):
            return (head - np.nanmean(g[max(0, lag - 3):lag])) / total

        if share(size - 1) >= SLOW_SHARE:
            return 1
        k_max = n_frames // size
        for k in range(2, k_max + 1):
            if share(k * (size - 1)) >= SLOW_TARGET:
                return k
        return k_max


def calibration_scale(residual, fit_err, boot_err, target: float = 0.683) -> float:
    """The factor s for which ``|residual| < sqrt(fit_err² + (s·boot_err)²)`` holds for ``target`` of the cases.

    Measured on simulated data with known truth (``residual`` = estimate − truth) by bisection; the coverage
    grows with s. Returns 1 where the inputs are empty.
    """
    r = np.abs(np.asarray(residual, float))
    f = np.nan_to_num(np.asarray(fit_err, float))
    b = np.nan_to_num(np.asarray(boot_err, float))
    ok = np.isfinite(r)
    r, f, b = r[ok], f[ok], b[ok]
    if r.size == 0:
        return 1.0
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(r < np.sqrt(f**2 + (mid * b) ** 2)) < target:
            lo = mid
        else:
            hi = mid
    return float(hi)


def calibrate(residual, fit_err, boot_err, value, *, z1: float = 0.683, z2: float = 0.93) -> tuple[float, float]:
    """Scale s of the bootstrap error and relative floor r such that, with
    ``σ² = fit_err² + (s·boot_err)² + (r·value)²``, |residual| < σ for ``z1`` of the cases and < 2σ for at least
    ``z2``.

    Of the r on a grid of 0.01 that reach both (|z| < 1 within 0.01 of ``z1``), the one with the largest share
    within 2σ is taken (the smallest within 0.5 % of it): the floor stands for what no replicate shows, the
    estimator's bias and the tails of the noise, and where the tails are heavy it decides how many stay within 2σ.
    Where none does (tails too heavy for a core at ``z1``), z2 wins: r = 0 and the s for which exactly ``z2`` lie
    within 2σ, so |z| < 1 comes out above ``z1``; a floor-only solution is kept only where no such s exists
    (``boot_err`` ≈ 0).

    Parameters
    ----------
    residual : array of n
        Estimate − truth, measured on simulated data.
    fit_err, boot_err, value : array of n
        The error part kept as it is, the part to scale, and the estimate (for the floor).
    z1, z2 : float
        Target share of |z| < 1 and least share of |z| < 2.

    Returns
    -------
    (s, r) : tuple of float
    """
    v = np.abs(np.asarray(value, float))
    r_res = np.asarray(residual, float)
    f = np.asarray(fit_err, float)
    b = np.asarray(boot_err, float)
    ok = np.isfinite(r_res)
    floor_only, reached = None, []
    for rel in np.arange(0.0, 1.0001, 0.01):
        fr = np.hypot(np.nan_to_num(f), rel * v)
        s = calibration_scale(r_res, fr, b, z1)
        sig = np.sqrt(fr**2 + (s * np.nan_to_num(b)) ** 2)
        c1, c2 = np.mean(np.abs(r_res[ok]) < sig[ok]), np.mean(np.abs(r_res[ok]) < 2 * sig[ok])
        if c2 >= z2:
            if c1 <= z1 + 0.01:
                reached.append((c2, float(s), float(round(rel, 2))))
            else:
                floor_only = floor_only or (float(s), float(round(rel, 2)))
        if c1 > z1 + 0.01:
            break  # the floor alone covers more than z1: larger floors only add to it
    if reached:  # the most within 2σ at the core's target; the smallest floor within 0.5 % of that
        best = max(c for c, _, _ in reached)
        return next((s, rel) for c, s, rel in reached if c >= best - 0.005)
    s2 = calibration_scale(r_res / 2.0, f, b, z2)  # |residual| < 2σ ⟺ |residual| / 2 < σ
    if s2 < 99.0 or floor_only is None:  # 100: calibration_scale's bound, no scale reached z2
        return s2, 0.0
    return floor_only


def residual_bootstrap(c2, c2_model, n_boot: int = 16, seed: int = 0) -> np.ndarray:
    """Replicates ``c2_model + R[π, π]`` of a (N, N) 2TCF, ``R = c2 − c2_model``, π random frame permutations.

    Returns (n_boot, N, N).
    """
    c2 = np.asarray(c2, dtype=np.float64)
    m = np.asarray(c2_model, dtype=np.float64)
    if c2.ndim != 2 or c2.shape != m.shape or c2.shape[0] != c2.shape[1]:
        raise XPCSInputError(f"need two (N, N) 2TCFs of one shape; got {c2.shape} and {m.shape}")
    if int(n_boot) < 2:
        raise XPCSInputError(f"n_boot must be >= 2; got {n_boot}")
    rng = np.random.default_rng(seed)
    r = c2 - m
    n = c2.shape[0]
    out = np.empty((int(n_boot), n, n))
    for b in range(int(n_boot)):
        p = rng.permutation(n)
        out[b] = m + r[np.ix_(p, p)]
    return out


def bin_two_time(c2, k: int) -> np.ndarray:
    """Mean of (…, N, N) 2TCFs over k×k frame blocks, lag 0 left out: (…, N // k, N // k).

    The 2TCF of a series of k-frame exposures, up to the shape of the decay within one block (negligible for
    the slow dynamics it is used for). Lags in the result are in units of k frames; the diagonal blocks hold
    lags 1..k−1 only and are replaced before denoising anyway.
    """
    c2 = np.asarray(c2, dtype=np.float64)
    k = int(k)
    n = c2.shape[-1] // k
    if k < 1 or n < 2:
        raise XPCSInputError(f"cannot bin {c2.shape[-1]} frames in blocks of {k}")
    x = c2[..., : n * k, : n * k].copy()
    i = np.arange(n * k)
    x[..., i, i] = np.nan
    x = x.reshape(*x.shape[:-2], n, k, n, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmean(x, axis=(-3, -1))
    if k == 1:
        j = np.arange(n)
        out[..., j, j] = c2[..., j, j]
    return out


@dataclass
class TwoTimeFit:
    """Eq. 3 parameters of 2TCFs with uncertainties that include the noise and the model.

    Attributes
    ----------
    fit : FitResult
        Parameters; their ``*_err`` are the combined standard errors ``sqrt(σ_fit² + σ_boot²)``.
    fit_error, boot_error : dict of ndarray
        The two parts of each parameter's error (keys ``gamma``, ``beta``, ``baseline``, ``alpha``), with their
        calibration scales: for raw fits the fit's own error and the bootstrap's (long series; for short ones NaN,
        none drawn), Γ's floors added to the second part; for denoised fits the consistent fit's scaled
        covariance and NaN (no bootstrap) or Γ's floors. A parameter with neither part known has σ NaN.
    path : ndarray of str
        What was fitted, per 2TCF (see the module's notes).
    n_boot, seed : int
        Bootstrap replicates (raw fits of long series; short ones' σ takes none, :data:`RAW_BOOT_SCALE`) and seed
        (reproducible).
    raw_boot_error : ndarray
        Γ's error part before calibration (the bootstrap spread of raw fits of long series, NaN for short ones;
        the covariance error of denoised ones), for ``scripts/calibrate_uncertainty.py``.
    pooled : ndarray of bool
        Denoised fits that did not resolve their decay (or only with a raised baseline) and were refitted with the
        pooled priors (:func:`~xpcs_denoise.analysis.consistent.needs_prior`).
    priors : dict or None
        Those priors (:func:`~xpcs_denoise.analysis.consistent.pooled_priors`: ``offset`` on (C∞ − 1)/β,
        ``alpha``, ``n_fits``, ``offset_slope`` and ``offset_at`` (frames⁻¹, also with ``frame_time``) where the
        offset followed a trend with ln Γ̂); None where not
        used (fewer than five resolved fits, ``pool_baseline=False``, C∞ fixed, or a model card without their
        calibration). With α fixed only the baseline's is applied.
    """

    fit: FitResult
    fit_error: dict
    boot_error: dict
    path: np.ndarray
    n_boot: int
    seed: int
    denoised: np.ndarray | None = None
    notes: list = field(default_factory=list)
    raw_boot_error: np.ndarray | None = None
    pooled: np.ndarray | None = None
    priors: dict | None = None


def _fit(c2, max_lag, fix, lag_unit=1.0, weighted=False):
    """Eq. 3 fits of the 1TCFs of (B, n, n) 2TCFs, lags in frames (× ``lag_unit`` for binned 2TCFs); raw
    2TCFs weighted by each point's standard error from the spread along its diagonal."""
    if weighted:
        g2, err = one_time_from_two_time(c2, max_lag=max_lag, return_err=True)
        sigma = sigma_for_fit(err)
    else:
        g2, sigma = one_time_from_two_time(c2, max_lag=max_lag), None
    lags = np.arange(1, g2.shape[-1] + 1, dtype=np.float64) * lag_unit
    return fit_g2(g2, lags, fix=fix, sigma=sigma)


def _model_matrix(fit: FitResult, i: int, n: int, lag_unit=1.0) -> np.ndarray | None:
    p = {k: float(np.ravel(getattr(fit, k))[i]) for k in PARAMETERS}
    if not all(np.isfinite(list(p.values()))):
        return None
    tau = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) * lag_unit
    return g2_model(tau, p["gamma"], p["beta"], p["baseline"], p["alpha"])


def _half_ensembles(den, rng):
    """Two denoisers of complementary random halves of the members: replicates alternate between them, so that
    the members' disagreement enters the bootstrap spread."""
    from ..nn.denoiser import Denoiser  # defers torch

    m = den.n_members
    if m < 2:
        return [den]
    perm = rng.permutation(m)
    return [Denoiser(den.model.select(sorted(part.tolist())), den.card, batch_size=den.batch_size)
            for part in (perm[: m // 2], perm[m // 2:])]


def fit_two_time(c2, *, method: str | None = None, model=None, n_boot: int = 16, seed: int = 0,
                 max_lag: int | None = None, fix: dict | None = None, step: int = 5,
                 gamma_fast: float = GAMMA_FAST, raw_precise: float = RAW_PRECISE,
                 auto_path: bool = True, frame_time: float | None = None, pool_baseline: bool = True) -> TwoTimeFit:
    """Fit Eq. 3 to raw or denoised 2TCFs with standard errors that include the noise and the model.

    Parameters
    ----------
    c2 : array_like, (N, N) or (B, N, N)
        Raw 2TCFs in physical units (N ≥ the model's window for ``method="cned"``).
    method : str, optional
        ``"lagnet"`` (default without a model: the lag-band model's output fitted as it stands, with the raw
        fit's σ; any baseline and contrast), ``"cned"`` / ``"paper-2021"`` (the ensemble, ``model`` or the shipped
        one; its Eq. 5 scaling takes C∞ = 1, the path switching below applies) or ``"none"`` (fit the raw 2TCF).
        Default: the family of ``model``, else ``"lagnet"``.
    n_boot : int
        Bootstrap replicates per raw fit of a long series (see the module's notes); 16 gives σ to about ±18 %.
    max_lag : int, optional
        Lags of raw fits (frames; default all lags up to 100 frames, else half the series). Denoised fits
        use at most the model's window − 1 (49: the denoised band).
    fix : dict, optional
        Parameters to hold fixed, as :func:`fit_g2`.
    auto_path : bool
        Choose per 2TCF between denoised, binned and raw fits (module notes); False always denoises.
    frame_time : float, optional
        Seconds per frame: Γ and its error in s⁻¹ (else frames⁻¹). Fits of raw 2TCFs are weighted by the
        standard error of each 1TCF point from the spread along its diagonal; denoised 1TCFs, whose points
        carry no such spread, unweighted.
    pool_baseline : bool
        Refit denoised 2TCFs whose window does not resolve the decay (or does only with a raised baseline,
        :func:`~xpcs_denoise.analysis.consistent.needs_prior`) with priors on (C∞ − 1)/β and α pooled
        from the fits of this call that do (at least five; :func:`~xpcs_denoise.analysis.consistent.
        pooled_priors`). The 2TCFs of one call should then come from one measurement.

    Returns
    -------
    TwoTimeFit
        Γ in frames⁻¹, or s⁻¹ with ``frame_time``.
    """
    from ..nn.denoiser import _pretrained  # defers torch

    method = resolve_method(method, model)
    if method not in ("lagnet", "cned", "none"):
        raise XPCSInputError(f"fit_two_time supports method 'lagnet', 'cned' (paper-2021) or 'none'; got {method!r}")
    if method == "lagnet":
        x = np.asarray(c2, dtype=np.float64)
        check_square(x.shape, min_n=3)
        return lagnet_fit(x, denoise(x, "lagnet", model=model), n_boot=n_boot, seed=seed, max_lag=max_lag,
                          fix=fix, frame_time=frame_time)
    den = None
    if method == "cned":
        den = model or _pretrained()
        size = den.size
    else:
        size = 2
    if den is None and not np.all(np.isfinite(np.asarray(c2, dtype=np.float64))):
        # raw fits ignore NaN (excluded frames' rows and columns): only the shape is checked
        x = np.asarray(c2, dtype=np.float64)
        check_square(x.shape, min_n=3)
        single = x.ndim == 2
        x = x[None] if single else x
    else:
        x, single = check_two_times(c2, size)
    nb, n = x.shape[0], x.shape[-1]
    rng = np.random.default_rng(seed)
    raw_lag = max_lag or (n - 1 if n <= 100 else n // 2)
    raw = _fit(x, min(raw_lag, n - 1), fix, weighted=True)  # the whole batch: per-2TCF values as given
    res = {k: np.full(nb, np.nan) for k in PARAMETERS}
    ferr = {k: np.full(nb, np.nan) for k in PARAMETERS}
    berr = {k: np.full(nb, np.nan) for k in PARAMETERS}
    success = np.zeros(nb, bool)
    message = np.array(["not fitted"] * nb, dtype=object)
    redchi = np.full(nb, np.nan)
    at_bound = np.zeros(nb, bool)
    path = np.array(["raw"] * nb, dtype=object)
    denoised = x.copy() if den is not None else None
    notes = []
    fix_all = fix
    pending = {}  # (frames, bin factor, lags) -> [(index, 2TCF, fix)] for batched consistent fits

    def _store(i, r):
        for k in PARAMETERS:
            res[k][i], ferr[k][i], berr[k][i] = r["value"][k], r["fit_err"][k], r["boot_err"][k]
        success[i], message[i], redchi[i], at_bound[i] = r["success"], r["message"], r["redchi"], r["at_bound"]

    for i in range(nb):
        fix = _fix_of(fix_all, i, nb)  # per-2TCF values (e.g. one β per ROI) for this 2TCF's own fits
        use, k_bin = "raw", 1
        if den is not None:
            use = "denoised"
            if not np.isfinite(_contrast(x[i], size)):
                use = "raw: no contrast"
                notes.append(f"2TCF {i}: no contrast could be estimated; not denoised")
            elif auto_path:
                # (the short bootstrap is needed only to judge a long series or a 'raw: precise' threshold)
                raw_rel = (_raw_relative_error(x[i], raw, i, raw_lag, fix, rng) if raw_precise > 0 or n >= 2 * size
                           else np.nan)
                precise = bool(np.isfinite(raw_rel) and raw_rel < raw_precise)
                if n >= 2 * size:
                    k_bin = slow_bin_factor(x[i], size)
                    raw_ok = np.isfinite(raw_rel) and n >= LONG_FRAMES
                    if raw_ok and (k_bin == 1 or raw_rel < RAW_DEGENERATE):
                        use, k_bin = "raw: long series", 1
                    elif precise:
                        use, k_bin = "raw: precise", 1
                    elif k_bin > 1:
                        use = f"binned {k_bin}"
                elif precise:
                    use = "raw: precise"
        if not use.startswith("raw"):
            xi = bin_two_time(x[i], k_bin) if k_bin > 1 else x[i]
            lag_den = min(max_lag or size - 1, size - 1, xi.shape[-1] - 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                d = denoise(xi, "cned", model=den, seed=seed, step=step)
            fd = _fit(d[None], lag_den, fix, lag_unit=float(k_bin))
            gamma_den = float(fd.gamma[0]) if fd.success[0] else np.nan
            if auto_path and k_bin == 1 and np.isfinite(gamma_den) and gamma_den > gamma_fast:
                # judged on the denoised fit: the raw one of a noisy crop scatters too much to decide on
                use = "raw: fast"
                notes.append(f"2TCF {i}: Γ ≈ {gamma_den:.3g} frames⁻¹ is faster than the model's range "
                             f"(> {gamma_fast}); the raw fit is returned")
            else:
                if denoised is not None and k_bin == 1:
                    denoised[i] = d
                # fitted below, batched: the parameters that explain the raw 1TCF and, through the ensemble,
                # the denoised one (analysis.consistent); the plain fit above inherits the model's pull toward
                # typical tails
                pending.setdefault((xi.shape[-1], k_bin, lag_den), []).append((i, xi, fix))
                path[i] = use
                continue
        path[i] = use
        # a short raw fit's σ takes no replicates (RAW_BOOT_SCALE = 0): none are drawn
        boot = n_boot if (n >= LONG_FRAMES or RAW_BOOT_SCALE > 0) else 0
        _store(i, _fit_with_bootstrap(x[i], raw, i, raw_lag, fix, boot, rng))
    span = np.full(nb, float(min(raw_lag, n - 1)))  # longest lag of each fit, frames
    groups = []
    for (_, k_bin, lag_den), rows in pending.items():
        ids = [row[0] for row in rows]
        fix_rows = {k: np.array([row[2][k] for row in rows], dtype=np.float64) for k in (fix_all or {})}
        stack = np.stack([row[1] for row in rows])
        fc = consistent_fit(stack, den, max_lag=lag_den, fix=fix_rows or None, lag_unit=float(k_bin), seed=seed)
        for j, i in enumerate(ids):
            _store(i, _fit_with_bootstrap(None, fc, j, lag_den, None, 0, rng))
            span[i] = lag_den * k_bin
        groups.append((np.asarray(ids), stack, fix_rows, k_bin, lag_den))
    # Denoised fits that do not resolve their decay (or only by raising their baseline: consistent.needs_prior) are
    # refitted with priors on C∞ and α pooled from the batch's fits that do (analysis.consistent.pooled_priors):
    # simulated Γ 0.01–0.02 frames⁻¹ +21 % → +6 %.
    unc = (den.card.get("uncertainty") or {}) if den is not None else {}
    if fix_all and "alpha" in fix_all and "fix_alpha" in unc:
        unc = unc["fix_alpha"]  # fewer free parameters: the covariance shrinks more than the error does
    pool = None
    wanted = bool(groups) and pool_baseline and not (fix_all and "baseline" in fix_all)
    if wanted and "pooled" not in unc:
        # the priors shrink the covariance: without their own calibration σ would be too small (a card from
        # before the pooled priors, e.g. an older fine-tuned model's)
        notes.append("the model card has no calibration for fits with pooled priors; slow decays fitted without")
    elif wanted:
        clean = success & ~at_bound
        pool = pooled_priors(*(np.where(clean, res[k], np.nan) for k in ("gamma", "beta", "baseline", "alpha")),
                             span)
    pooled = np.zeros(nb, bool)
    if pool is not None:
        a_prior = None if (fix_all and "alpha" in fix_all) else pool["alpha"]
        for ids, stack, fix_rows, k_bin, lag_den in groups:
            slow = success[ids] & needs_prior(pool, *(res[k][ids] for k in ("gamma", "beta", "baseline")), span[ids])
            if not slow.any():
                continue
            sub = {k: v[slow] for k, v in fix_rows.items()}
            fc = consistent_fit(stack[slow], den, max_lag=lag_den, fix=sub or None, lag_unit=float(k_bin),
                                seed=seed, baseline_prior=offset_prior(pool, res["gamma"][ids][slow]),
                                alpha_prior=a_prior,
                                weight=POOL_MODEL_WEIGHT)
            trend = pool.get("offset_slope")
            note = (f"; priors pooled from {pool['n_fits']} resolved fits: (C∞ − 1)/β {pool['offset'][0]:+.3f} ± "
                    f"{pool['offset'][1]:.3f}"
                    + ("" if trend is None else f" (its trend with ln Γ, {trend:+.3f}, at the slowest; wider "
                                                f"below them)")
                    + ("" if a_prior is None else f", α {a_prior[0]:.2f} (ln α ± {a_prior[1]:.2f})"))
            for j, i in enumerate(ids[slow]):
                r = _fit_with_bootstrap(None, fc, j, lag_den, None, 0, rng)
                if r["success"]:
                    r["message"] += note
                    _store(i, r)
                    pooled[i] = True
    # Calibration (scripts/calibrate_uncertainty.py, simulated data of known truth): short raw fits' own error
    # scaled by RAW_FIT_SCALE and their bootstrap part by RAW_BOOT_SCALE (long ones: RAW_LONG_*); denoised fits'
    # error, the consistent fit's covariance, by the card's fit_scale (those with the pooled prior by the card's
    # pooled.fit_scale).
    model_scale, model_floor = float(unc.get("fit_scale", 1.0)), float(unc.get("rel_floor", 0.0))
    pool_unc = unc.get("pooled") or {}  # fits with the pooled prior: calibrated on their own
    model_scale = np.where(pooled, float(pool_unc.get("fit_scale", model_scale)), model_scale)
    model_floor = np.where(pooled, float(pool_unc.get("rel_floor", model_floor)), model_floor)
    is_raw = np.array([p.startswith("raw") for p in path])
    long_raw = is_raw & (n >= LONG_FRAMES)
    scale = np.where(long_raw, RAW_LONG_BOOT_SCALE, np.where(is_raw, RAW_BOOT_SCALE, 1.0))
    floor = np.where(long_raw, RAW_LONG_REL_FLOOR, np.where(is_raw, RAW_REL_FLOOR, model_floor))
    gamma_boot_unscaled = np.where(is_raw, berr["gamma"], ferr["gamma"])
    berr = {k: v * scale for k, v in berr.items()}
    raw_scale = (RAW_FIXED_BETA_FIT_SCALE if fix_all and "beta" in fix_all
                 else RAW_FIXED_FIT_SCALE if fix_all else RAW_FIT_SCALE)
    # calibrated for Γ: the other parameters of raw fits keep their own error
    ferr = {k: v * np.where(long_raw, RAW_LONG_FIT_SCALE if k == "gamma" else 1.0,
                            np.where(is_raw, raw_scale if k == "gamma" else 1.0, model_scale))
            for k, v in ferr.items()}
    # Γ's floor r·Γ̂ (calibrated with the scale): the estimator's bias and noise tails no replicate shows
    berr["gamma"] = np.hypot(np.nan_to_num(berr["gamma"]), floor * np.abs(np.nan_to_num(res["gamma"])))
    # a long series spans Γ̂·n decay times: the bootstrap over frames cannot see that finite duration's error
    duration = RAW_LONG_DURATION_FLOOR * np.sqrt(np.abs(np.nan_to_num(res["gamma"])) / n)
    berr["gamma"] = np.hypot(berr["gamma"], np.where(long_raw, duration, 0.0))
    bound_floor = np.where(is_raw & at_bound, RAW_BOUND_FLOOR, 0.0)
    berr["gamma"] = np.hypot(berr["gamma"], bound_floor * np.abs(np.nan_to_num(res["gamma"])))
    # …and at least RAW_BOUND_SPAN / (longest lag): a fit whose Γ̂ collapsed toward 0 has no scale of its own
    berr["gamma"] = np.hypot(berr["gamma"], np.where(is_raw & ~long_raw & at_bound, RAW_BOUND_SPAN / span, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        traded = np.abs(res["baseline"] - 1.0) / np.maximum(np.abs(res["beta"]), 1e-3)
    # fits, raw or consistent (whose raw term shares the degeneracy), that moved C∞ off 1; long raw ones too
    base_floor = RAW_BASELINE_FLOOR * np.nan_to_num(traded)
    berr["gamma"] = np.hypot(berr["gamma"], base_floor * np.abs(np.nan_to_num(res["gamma"])))
    # a short raw fit whose baseline sank: Γ anywhere the window resolves
    sunk = is_raw & ~long_raw & (res["baseline"] - 1.0 < -RAW_SUNK_OFFSET * np.abs(res["beta"]))
    berr["gamma"] = np.hypot(berr["gamma"], np.where(sunk, RAW_SUNK_SPAN / span, 0.0))
    fix = fix_all
    no_contrast = path == "raw: no contrast"  # nothing to measure a decay against: not a result
    message[no_contrast & success] = "no contrast could be estimated (lag-1 values at the baseline): no decay"
    success[no_contrast] = False
    for k in PARAMETERS:
        res[k][no_contrast] = np.nan
    err = {k: np.sqrt(np.nan_to_num(ferr[k]) ** 2 + np.nan_to_num(berr[k]) ** 2) for k in PARAMETERS}
    for k in PARAMETERS:
        # neither part known (a covariance left singular at a bound, no replicates drawn): unknown, not 0
        unknown = ~np.isfinite(ferr[k]) & ~np.isfinite(berr[k])
        err[k] = np.where(success & ~unknown, err[k], np.nan)
        if fix and k in fix:
            err[k] = np.where(success, 0.0, np.nan)
    shape = () if single else (nb,)
    lags = np.arange(1, min(max_lag or (size - 1 if den is not None else raw_lag), n - 1) + 1, dtype=float)
    lag_unit = "frames"
    if frame_time is not None:
        ft = _check_frame_time(frame_time)
        for d in (res, err, ferr, berr):
            d["gamma"] = d["gamma"] / ft
        gamma_boot_unscaled = gamma_boot_unscaled / ft
        lags, lag_unit = lags * ft, "s"
    fit = FitResult(**{k: res[k].reshape(shape) for k in PARAMETERS},
                    **{k + "_err": err[k].reshape(shape) for k in PARAMETERS},
                    success=success.reshape(shape), message=message.astype(str).reshape(shape),
                    redchi=redchi.reshape(shape), n_iter=np.zeros(shape, int),
                    lags=lags, fixed=dict(fix or {}), at_bound=at_bound.reshape(shape), lag_unit=lag_unit,
                    weighted=den is None)
    if notes:
        warnings.warn("; ".join(notes[:3]) + (f" (and {len(notes) - 3} more)" if len(notes) > 3 else ""),
                      stacklevel=2)
    return TwoTimeFit(fit=fit, fit_error={k: v.reshape(shape) for k, v in ferr.items()},
                      boot_error={k: v.reshape(shape) for k, v in berr.items()},
                      path=path.astype(str).reshape(shape), n_boot=int(n_boot), seed=int(seed),
                      denoised=None if denoised is None else (denoised[0] if single else denoised), notes=notes,
                      raw_boot_error=gamma_boot_unscaled.reshape(shape), pooled=pooled.reshape(shape),
                      priors=pool)


def lagnet_fit(raw, denoised, *, n_boot: int = 16, seed: int = 0, max_lag: int | None = None,
               fix: dict | None = None, frame_time: float | None = None, weighted: bool = True) -> TwoTimeFit:
    """Fits of 2TCFs denoised by the lag-band model: the plain Eq. 3 fit of the denoised 1TCF (it is faithful,
    so its output is fitted as it stands), weighted by the raw 1TCF's standard errors, with the σ of the raw
    fit (:func:`fit_two_time` with ``method="none"``, the same lags): conservative, since on the benchmark the
    denoised fit's errors stay within the raw fit's. The one function behind ``fit_two_time(method="lagnet")``,
    ``fit`` and ``report`` on files denoised with it.
    """
    raw = np.asarray(raw, dtype=np.float64)
    den = np.asarray(denoised, dtype=np.float64)
    single = raw.ndim == 2
    raw3, den3 = (raw[None], den[None]) if single else (raw, den)
    n = raw3.shape[-1]
    lag_max = min(max_lag or (n - 1 if n <= 100 else n // 2), n - 1)
    tf = fit_two_time(raw, method="none", n_boot=n_boot, seed=seed, max_lag=lag_max, fix=fix,
                      frame_time=frame_time)
    g2 = one_time_from_two_time(den3, max_lag=lag_max)
    sigma = sigma_for_fit(one_time_from_two_time(raw3, max_lag=lag_max, return_err=True)[1]) if weighted else None
    if single:
        g2, sigma = g2[0], None if sigma is None else sigma[0]
    fit = fit_g2(g2, fix=fix, sigma=sigma, frame_time=frame_time)
    for k in PARAMETERS:
        setattr(fit, f"{k}_err", np.where(fit.success, getattr(tf.fit, f"{k}_err"), np.nan))
    shape = () if single else (raw3.shape[0],)
    return TwoTimeFit(fit=fit, fit_error=tf.fit_error, boot_error=tf.boot_error,
                      path=np.full(shape, "lagnet: plain fit of the denoised 2TCF"), n_boot=int(n_boot),
                      seed=int(seed), denoised=den, notes=tf.notes)


def _fix_of(fix, i, nb):
    """The fixed values of 2TCF ``i`` of ``nb``: scalars as they are, per-2TCF arrays indexed."""
    if not fix:
        return fix
    out = {}
    for k, v in fix.items():
        a = np.asarray(v, dtype=np.float64)
        out[k] = float(a.ravel()[i]) if a.ndim and a.size == nb else v
    return out


def _contrast(c2, size):
    try:
        return float(scale_parameters(c2[None], size)[0][0])
    except XPCSInputError:
        return np.nan


def _raw_relative_error(c2, raw, i, max_lag, fix, rng, n_boot: int = 8):
    """Relative standard error of the raw Γ (fit error and a short bootstrap), NaN where the fit failed."""
    if not raw.success[i]:
        return np.nan
    r = _fit_with_bootstrap(c2, raw, i, max_lag, fix, n_boot, rng)
    g = r["value"]["gamma"]
    e = np.hypot(np.nan_to_num(r["fit_err"]["gamma"]), np.nan_to_num(r["boot_err"]["gamma"]))
    return float(e / g) if r["success"] and g > 0 else np.nan


def _fit_with_bootstrap(c2, fit, i, max_lag, fix, n_boot, rng):
    """Value, fit error and bootstrap error of one raw 2TCF's parameters (``n_boot`` < 2: no bootstrap, as for
    the consistent fits of denoised 2TCFs, whose error is their calibrated covariance)."""
    out = {"value": {k: float(np.ravel(getattr(fit, k))[i]) for k in PARAMETERS},
           "fit_err": {k: float(np.ravel(getattr(fit, k + "_err"))[i]) for k in PARAMETERS},
           "boot_err": dict.fromkeys(PARAMETERS, np.nan),
           "success": bool(np.ravel(fit.success)[i]), "message": str(np.ravel(fit.message)[i]),
           "redchi": float(np.ravel(fit.redchi)[i]),
           "at_bound": bool(np.ravel(fit.at_bound)[i]) if fit.at_bound is not None else False}
    if not out["success"] or n_boot < 2:
        return out
    centre = _model_matrix(fit, i, c2.shape[-1])
    if centre is None:
        return out
    reps = residual_bootstrap(c2, centre, n_boot, int(rng.integers(2**31)))
    fb = _fit(reps, max_lag, fix, weighted=True)
    ok = fb.success
    if ok.sum() >= max(2, n_boot // 2):
        for k in PARAMETERS:
            out["boot_err"][k] = float(np.std(np.asarray(getattr(fb, k))[ok], ddof=1))
    return out


@dataclass
class CutFits:
    """Γ(t_a), C∞(t_a), α(t_a) of one 2TCF from its time-resolved cuts, β fixed (:func:`cut_fits`,
    :func:`~xpcs_denoise.analysis.workflows.ageing_analysis`).

    ``ages`` (frames), ``fit`` (:class:`FitResult` over the ages, with ``fit.trusted``: the cut resolves its
    decay), ``beta`` (the contrast held fixed); from :func:`cut_fits` also ``denoised`` (the denoised 2TCF or
    None) and ``boot_error`` (dict of arrays over ages). ``result["fit"]``, as with the dict these functions
    returned up to 0.2, still works, with a ``DeprecationWarning``: use ``result.fit``.
    """

    ages: np.ndarray
    fit: FitResult
    beta: float
    denoised: np.ndarray | None = None
    boot_error: dict | None = None
    frame_time: float | None = None

    def keys(self) -> tuple:
        """The keys of the dict returned up to 0.2 (deprecated access)."""
        return ("ages", "fit", "beta") + (("denoised", "boot_error") if self.boot_error is not None else ())

    def __getitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        warnings.warn(f'result["{key}"] is deprecated (the result is a CutFits, no longer a dict); use '
                      f"result.{key}", DeprecationWarning, stacklevel=2)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def table(self) -> list[dict]:
        """One row per age: age (frames; ``age_s`` in s with a frame time), Γ, β (fixed), C∞, α with errors,
        ``gamma_unit``, success, at_bound, ``trusted``, message."""
        extra = {"age_unit": "frames"}
        if self.frame_time is not None:
            extra["age_s"] = self.ages * self.frame_time
        return fit_rows(self.fit, self.ages, index_name="age", columns=extra)

    def to_csv(self, path, *, overwrite: bool = False):
        """The :meth:`table` as CSV (atomic; an existing file is kept unless ``overwrite``)."""
        return write_csv(path, self.table(), overwrite=overwrite)


def cut_fits(c2, *, method: str | None = None, model=None, width: int = 1, max_lag: int | None = None, beta=None,
             baseline=None, fix: dict | None = None, n_boot: int = 8, seed: int = 0, step: int = 5,
             frame_time: float | None = None):
    """Γ(t_a), C∞(t_a), α(t_a) from time-resolved cuts of one (N, N) 2TCF, β fixed, with honest errors.

    For ``method="cned"`` the 2TCF is denoised (sliding window) and the errors of each age combine the fit's
    standard error with the spread over ``n_boot`` residual-bootstrap replicates, each denoised by one half of
    the members and cut and fitted the same way (scaled by the model card's calibration factor). For
    ``method="none"`` the raw cuts' fit errors are returned (their residuals are close to independent).

    Returns
    -------
    CutFits
        ``ages`` (frames), ``fit`` (:class:`FitResult`, combined errors), ``beta``, ``denoised`` (the denoised
        2TCF or None) and ``boot_error`` (dict of arrays over ages).
    """
    from ..nn.denoiser import _pretrained  # defers torch

    x = np.asarray(c2, dtype=np.float64)
    check_square(x.shape, "cut_fits: the 2TCF", ndim=(2,))
    method = resolve_method(method, model)
    if method not in ("lagnet", "cned", "none"):
        raise XPCSInputError(f"cut_fits supports method 'lagnet', 'cned' (paper-2021) or 'none'; got {method!r}")
    b, base = scale_parameters(x, 0, beta, baseline)
    beta, baseline = float(b[0]), float(base[0])
    den = (model or _pretrained()) if method == "cned" else None
    window = den.size if den is not None else WINDOW  # lags the model's band holds
    lag_max = min(int(max_lag) if max_lag else window - 1, x.shape[0] - 1)

    def fit_cuts(m):
        ages, lags, g = time_resolved_cuts(m, width=width, max_lag=lag_max)
        f = fit_g2(g, lags, fix={**(fix or {}), "beta": beta}, frame_time=frame_time)
        f.trusted = cut_trust(f, g)
        return ages, f

    if method == "none":
        ages, fit = fit_cuts(x)
        return CutFits(ages, fit, beta, None, {k: np.zeros_like(fit.gamma) for k in PARAMETERS}, frame_time)
    if method == "lagnet":
        # Faithful: the denoised cuts are fitted as they stand, with the raw cuts' errors (conservative).
        d = denoise(x, "lagnet", model=model)
        ages, fit = fit_cuts(d)
        _, raw = fit_cuts(x)
        for k in PARAMETERS:
            setattr(fit, k + "_err", np.where(fit.success, getattr(raw, k + "_err"), np.nan))
        return CutFits(ages, fit, beta, d, {k: np.zeros_like(fit.gamma) for k in PARAMETERS}, frame_time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        d = denoise(x, "cned", model=den, seed=seed, step=step, beta=beta, baseline=baseline)
    ages, fit = fit_cuts(d)
    rng = np.random.default_rng(seed)
    reps = residual_bootstrap(x, d, max(2, int(n_boot)), int(rng.integers(2**31)))
    halves = _half_ensembles(den, rng)
    vals = {k: [] for k in PARAMETERS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for b in range(reps.shape[0]):
            rb = denoise(reps[b], "cned", model=halves[b % len(halves)], seed=seed + b + 1, step=step, beta=beta,
                         baseline=baseline)
            _, fb = fit_cuts(rb)
            for k in PARAMETERS:
                vals[k].append(np.where(fb.success, getattr(fb, k), np.nan))
    unc = den.card.get("uncertainty") or {}
    # the cuts keep the bootstrap of plain fits, calibrated as such (the card's boot_* keys)
    scale = float(unc.get("boot_scale", 1.0))
    floor = float(unc.get("boot_rel_floor", unc.get("rel_floor", 0.0)))
    boot = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in PARAMETERS:
            boot[k] = scale * np.nanstd(np.array(vals[k]), axis=0, ddof=1)
            if k == "gamma":
                boot[k] = np.hypot(np.nan_to_num(boot[k]), floor * np.abs(np.nan_to_num(fit.gamma)))
            e = getattr(fit, k + "_err")
            setattr(fit, k + "_err", np.where(fit.success, np.sqrt(np.nan_to_num(e) ** 2 +
                                                                  np.nan_to_num(boot[k]) ** 2), np.nan))
    return CutFits(ages, fit, beta, d, boot, frame_time)
