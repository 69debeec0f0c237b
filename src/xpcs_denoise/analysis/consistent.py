"""Model-consistent fits: Eq. 3 parameters that explain the raw 1TCF *and*, passed through the ensemble, the
denoised one.

Fitting Eq. 3 straight to a denoised 1TCF inherits the model's habits: on real crops it imposes the training
data's typical long-lag level (≈ 0.1 β above C∞), so Γ follows the sample's own baseline offset (+45 % where
C∞ ≈ 1, −30 % where it lies 0.2 β higher), and on slow simulated decays it adds +30 %. The denoiser is a
deterministic map M, so the fit can model it instead of trusting it: the parameters θ are those for which

    χ²(θ) = Σ_τ [(g_θ(τ) − g_raw(τ)) / σ_raw(τ)]² + Σ_τ [(M[g_θ](τ) − g_den(τ)) / σ_M]²

is smallest, where g_θ is Eq. 3, M[g_θ] the ensemble's denoised 1TCF of the stationary 2TCF built from g_θ
(:meth:`~xpcs_denoise.nn.denoiser.Denoiser.stationary_response`), g_raw/σ_raw the raw 1TCF and its standard
errors (the weights of the raw fit) and g_den the denoised 1TCF. The denoised term pins the directions the model
resolves with little noise; the raw term decides the directions the model blurs together (slow decays against a
raised baseline), so the estimate keeps the raw fit's centre there and the denoised fit's precision elsewhere.
σ_M = :data:`MODEL_WEIGHT` × σ_raw(lag 1) per curve.

A window that holds less than about three decay times cannot separate a slow decay from a raised baseline, and
the χ² minimum drifts to both (simulated Γ 0.01–0.02 frames⁻¹: +21 %, with C∞ 0.04 β high). The 2TCFs of one
measurement share their baseline's causes and their kind of dynamics, so :func:`pooled_priors` takes the offset
(C∞ − 1)/β and α from the fits that resolve their decay and :func:`consistent_fit` adds them as priors
(``baseline_prior``, ``alpha_prior``) to those that do not, or that seem to only by raising their baseline
(:func:`needs_prior`; :func:`~xpcs_denoise.analysis.uncertainty.fit_two_time` does all of it). The README has
the measured tables.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..core.correlation import one_time_from_two_time
from ..core.errors import XPCSInputError
from ..core.fitting import PARAMETERS, FitResult, fit_g2
from ..core.scaling import replace_diagonal, scale_parameters, to_model_units

__all__ = ["consistent_fit", "pooled_priors", "offset_prior", "needs_prior", "MODEL_WEIGHT", "POOL_MODEL_WEIGHT",
           "ALPHA_RANGE", "BASELINE_MIN"]

#: σ_M / σ_raw(lag 1): weight of the denoised term. Chosen on simulated (seed 4711) and real validation crops
#: among 0.3, 0.6, 1 (bias alike; 0.3 the smallest errors); judged on other seeds by benchmarks/bench_bias.py.
MODEL_WEIGHT = 0.3
#: α's range: stretched to compressed decays as XPCS sees them. Wider (fit_g2's 0.2–3) let 50-frame fits trade α
#: for Γ (α → 3 with Γ ×2–4).
ALPHA_RANGE = (0.3, 2.5)
#: Lowest C∞, in units of the contrast below the scaling's baseline: a fit that sinks the baseline further has
#: traded it for a vanishing Γ (slow decays), which the data cannot tell apart.
BASELINE_MIN = -0.5
#: Most n×n windows whose denoised 1TCFs are averaged into g_den (N > n).
MAX_WINDOWS = 8
#: A fit resolves its decay when Γ × its longest lag reaches this (the contrast has fallen to e⁻⁶ for α = 1):
#: only such fits define the pooled priors (:func:`pooled_priors`).
POOL_RESOLVED = 3.0
#: σ_M / σ_raw(lag 1) of the refits with pooled priors, ten times MODEL_WEIGHT: where the window does not resolve
#: the decay, the denoised term adds the model's pull toward faster decays and little precision. Fixed priors,
#: simulated Γ 0.005–0.03 frames⁻¹: median error +4.0 / +2.7 / +1.7 % at 0.3 / 3 / raw term alone, median |error|
#: 20.6 / 20.5 / 20.7 %. Whole calls (1,500 crops, 0.3 → 3): simulated 0.005–0.01 +12 → +9 % (|error| 36 → 34 %),
#: 0.01–0.03 +6 → +5 % (18 → 16 %); real held-out 0.005–0.01 |error| 14 → 10 %, other bins alike; 10 measured
#: as 3.
POOL_MODEL_WEIGHT = 3.0
#: Fewest resolved fits to pool from, and the narrowest prior width, in units of β.
POOL_MIN_FITS = 5
POOL_MIN_WIDTH = 0.02
#: Narrowest width of the pooled prior on log α.
POOL_MIN_ALPHA_WIDTH = 0.05
#: The offset's prior follows its trend with ln Γ̂ across the resolved fits where that trend stands far above
#: what their scatter makes: a Theil–Sen slope beyond this many half-widths of its 95 % interval, from at least
#: POOL_TREND_MIN fits. Real validation crops fitted together carry one (slower series, larger offsets: −0.045
#: per unit of ln Γ̂, 4.6 half-widths); simulated ones with C∞ = 1 show the fits' own −0.007 … −0.016 (1.3–1.7).
POOL_TREND_T = 3.0
POOL_TREND_MIN = 20
#: A fit that reaches POOL_RESOLVED only by raising its baseline: offset above the pooled one (its trend at the
#: fit's Γ̂) by more than this many widths. A slow decay seen in a short window trades C∞ for a faster Γ̂
#: (simulated Γ 0.01–0.06 frames⁻¹: such fits +90 … +270 %, offsets 0.1–0.25 β high), and the test on Γ̂ alone
#: lets them pass as resolved.
POOL_OFFSET_K = 3.0
#: How far below the slowest resolved fits (in ln Γ̂) the trend's centre goes on (:func:`offset_prior`): further
#: takes the real 0.01–0.03 frames⁻¹ bin closer to 0 and the four slowest series' bin beyond +10 %.
POOL_TREND_REACH = 0.5
_TREND_MAX_FITS = 2000  # Theil–Sen takes all pairs: a larger call is thinned to this many resolved fits
_STEP_H = 1e-3  # finite-difference step of the Jacobian (log Γ, log A, c, log α)


def _curves(p, n, lag_unit):
    """Eq. 3 in model units at lags 0 … n − 1 (lag 0 = lag 1, as the model sees it): (B, n)."""
    tau = np.arange(n, dtype=np.float64)
    tau[0] = 1.0
    tau = tau * lag_unit
    lg, la_, c, lal = (p[:, k][:, None] for k in range(4))
    return 1.0 + c + np.exp(la_) * np.exp(-2.0 * np.exp(np.exp(lal) * (lg + np.log(tau))))


def _raw_sigma(x, max_lag):
    """σ of each raw 1TCF point, (B, max_lag): one robust pixel spread per 2TCF (1.4826 × the median absolute
    deviation of the pixels at lags 1 … max_lag from their lag's mean) over √(pairs at that lag).

    One spread per 2TCF, not one per lag: per-lag spreads from a few pixels are noisy and correlated with the
    values, and weights that follow the data bias a fit (simulated crops, Γ 0.1–0.15 frames⁻¹: median |error|
    of Γ 0.12 with this σ alone, 0.40 for the raw fit weighted per lag)."""
    n = x.shape[-1]
    i, j = np.triu_indices(n, 1)
    keep = (j - i) <= max_lag
    i, j = i[keep], j[keep]
    lag = j - i
    vals = 0.5 * (x[:, i, j] + x[:, j, i])
    good = np.isfinite(vals)
    nfin = np.zeros((x.shape[0], max_lag + 1))
    np.add.at(nfin.T, lag, good.T.astype(float))
    dev = np.where(good, vals - one_time_from_two_time(x, max_lag=max_lag)[:, lag - 1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = 1.4826 * np.nanmedian(np.abs(dev), axis=1)
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)  # noise-free: unweighted
    return spread[:, None] / np.sqrt(np.maximum(nfin[:, 1:], 1.0))  # finite pairs: excluded frames count not


def pooled_priors(gamma, beta, baseline, alpha, lag_span, *, min_fits: int = POOL_MIN_FITS) -> dict | None:
    """Priors on the baseline offset (C∞ − 1)/β and on α, pooled from the fits that resolve their decay.

    Where a 2TCF window holds less than about three decay times, Γ trades against C∞ and α, and the fit's median
    drifts upward with the baseline (simulated 50-frame crops, Γ 0.01–0.02 frames⁻¹: +21 %) or α runs to a bound.
    The 2TCFs fitted together (the q-ROIs of a measurement, its crops) share the baseline's causes and the kind
    of dynamics, and the fits that see their whole decay measure both. Empirical Bayes: the median of their
    offsets and of their log α are the centres, the robust spreads (at least :data:`POOL_MIN_WIDTH` and
    :data:`POOL_MIN_ALPHA_WIDTH`) the widths. Where the offsets follow Γ̂ (a Theil–Sen slope against ln Γ̂ beyond
    :data:`POOL_TREND_T` half-widths of its 95 % interval, e.g. static scattering that grows toward slow, small-q
    ROIs), the offset's centre is that trend at the slowest resolved fits and its width the scatter about it.

    Parameters
    ----------
    gamma, beta, baseline, alpha : array of B
        Fitted Γ (frames⁻¹), β, C∞ and α; NaN for fits that failed or ended at a bound (they do not count).
    lag_span : array of B
        The longest lag each fit saw, frames.
    min_fits : int
        Fewest resolved fits to pool from.

    Returns
    -------
    dict or None
        ``{"offset": (centre, width), "alpha": (centre, width of log α), "n_fits": n, "offset_slope": b,
        "offset_at": Γ_q}`` (b: the trend's slope per unit of ln Γ̂, Γ_q the rate where the centre was taken,
        frames⁻¹; both None where the offsets show no trend); None with fewer than ``min_fits`` resolved fits.
    """
    gamma, beta, baseline, alpha, span = (np.ravel(np.asarray(v, dtype=np.float64))
                                          for v in (gamma, beta, baseline, alpha, lag_span))
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = (baseline - 1.0) / beta
        log_alpha = np.log(alpha)
        ok = (np.isfinite(offset) & np.isfinite(log_alpha) & np.isfinite(gamma) & (beta > 0)
              & (gamma * span >= POOL_RESOLVED))
    if ok.sum() < min_fits:
        return None

    def centre_width(v, floor):
        c = float(np.median(v[ok]))
        return c, max(1.4826 * float(np.median(np.abs(v[ok] - c))), floor)

    off, la = centre_width(offset, POOL_MIN_WIDTH), centre_width(log_alpha, POOL_MIN_ALPHA_WIDTH)
    slope = at = None
    if ok.sum() >= POOL_TREND_MIN:
        from scipy.stats import theilslopes

        idx = np.flatnonzero(ok)
        idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), _TREND_MAX_FITS)).astype(int)]
        lg, y = np.log(gamma[idx]), offset[idx]
        # a trend needs as many distinct rates as fits asked for, not a few rates repeated
        distinct = np.unique(lg).size >= POOL_TREND_MIN
        b, a, lo, hi = theilslopes(y, lg) if distinct else (0.0, 0.0, 0.0, 0.0)
        if abs(b) > POOL_TREND_T * 0.5 * (hi - lo):
            # the unresolved fits lie below the resolved ones in Γ: the trend's value at the slowest resolved
            # fits (5 % quantile of ln Γ̂), not extrapolated further; the width is the scatter about the trend
            resid = y - (a + b * lg)
            at = float(np.exp(np.quantile(lg, 0.05)))
            off = (float(a + b * np.log(at)),
                   max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), POOL_MIN_WIDTH))
            slope = float(b)
    return {"offset": off, "alpha": (float(np.exp(la[0])), la[1]), "n_fits": int(ok.sum()), "offset_slope": slope,
            "offset_at": at}


def needs_prior(pool: dict, gamma, beta, baseline, lag_span, k: float | None = None) -> np.ndarray:
    """Which fits the pooled priors should refit: those that do not resolve their decay (Γ̂ × longest lag below
    :data:`POOL_RESOLVED`) and those that reach it with a baseline offset (C∞ − 1)/β above the pooled offset (its
    trend at the fit's Γ̂, where there is one) by more than ``k`` widths (default :data:`POOL_OFFSET_K`).

    Parameters
    ----------
    pool : dict
        From :func:`pooled_priors`.
    gamma, beta, baseline, lag_span : array of B
        First-pass Γ̂ (frames⁻¹), β, C∞ and the longest lag of each fit (frames).

    Returns
    -------
    ndarray of bool, shape (B,)
    """
    gamma, beta, baseline, span = (np.asarray(v, dtype=np.float64) for v in (gamma, beta, baseline, lag_span))
    k = POOL_OFFSET_K if k is None else k
    centre, width = pool["offset"]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = centre + (0.0 if pool.get("offset_slope") is None
                             else pool["offset_slope"] * np.log(gamma / pool["offset_at"]))
        raised = (baseline - 1.0) / beta > expected + k * width  # NaN compares False: never raised
        return ~(gamma * span >= POOL_RESOLVED) | raised


def offset_prior(pool: dict, gamma) -> tuple:
    """The prior (centre per fit, width per fit) on (C∞ − 1)/β for unresolved fits of first-pass rates ``gamma``
    (frames⁻¹), from :func:`pooled_priors`' ``pool``.

    Without a trend: the pooled centre and width for all. With one, below the rate where the centre was taken the
    trend goes on for at most :data:`POOL_TREND_REACH` in ln Γ̂ (a first-pass Γ̂ of a slow decay is itself too
    high, and the trend's reach is unknown), and the width grows by the slope times the whole distance (real
    held-out crops, seed 11: pooled refits within 2σ 79 → 82 %). Reach 0 / 0.5 / 1 / 2, same crops: Γ
    0.01–0.03 frames⁻¹ (35 series) −4.0 / −2.3 / −1.5 / −0.7 %, 0.005–0.01 (4 series) +5.1 / +6.4 / +7.7 / +10.7 %.
    The simulator shows no trend.
    """
    centre, width = pool["offset"]
    g = np.asarray(gamma, dtype=np.float64)
    if pool.get("offset_slope") is None:
        return centre, np.full(g.shape, width)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.nan_to_num(np.clip(np.log(pool["offset_at"] / g), 0.0, None), posinf=0.0)
    slope = pool["offset_slope"]
    return centre - slope * np.minimum(dist, POOL_TREND_REACH), np.hypot(width, slope * dist)


def consistent_fit(c2, model=None, *, beta=None, baseline=None, max_lag: int | None = None,
                   fix: dict | None = None, lag_unit: float = 1.0, weight: float = MODEL_WEIGHT,
                   n_iter: int = 15, seed: int = 0, baseline_prior=None, alpha_prior=None) -> FitResult:
    """Fit Eq. 3 to raw and denoised 2TCFs together, through the ensemble (module notes).

    Parameters
    ----------
    c2 : array_like, shape (B, N, N)
        Raw 2TCFs in physical units, N ≥ the model's window n.
    model : Denoiser, optional
        The ensemble (its map is part of the fit); default the shipped one.
    beta, baseline : array of B, optional
        The contrast and baseline to scale by; default as the denoiser's (Eq. 5/7).
    max_lag : int, optional
        Lags fitted (frames of ``c2``), at most n − 1 (default).
    fix : dict, optional
        Parameters held fixed (physical units, Γ per original frame), scalars or one value per 2TCF, as
        :func:`fit_g2`. They may lie outside the bounds of the free parameters.
    lag_unit : float
        Frames per frame of ``c2`` (binned 2TCFs): Γ comes out per original frame.
    weight : float
        σ_M / σ_raw(lag 1).
    n_iter : int
        Levenberg–Marquardt iterations (the start is the plain fit of the denoised 1TCF).
    seed : int
        Seed of the lag-0 replacement, as :func:`~xpcs_denoise.denoise`.
    baseline_prior : (centre, width), optional
        A Gaussian prior on the baseline offset (C∞ − 1)/β, scalars or one per 2TCF, added to χ² as
        ``((offset − centre)/width)²`` (:func:`pooled_priors` gives one from the fits that resolve their decay).
    alpha_prior : (centre, width), optional
        The same for α, on log α: ``((ln α − ln centre)/width)²``.

    Notes
    -----
    g_den is the denoised 1TCF of n×n windows of ``c2`` (the model's window n), each denoised on its own and
    scaled as the whole 2TCF: one window for N = n (exactly ``denoise(c2)``), up to :data:`MAX_WINDOWS` spread
    along the diagonal for N > n. The forward model M[g_θ] is one such window, so the two match for any N; the
    sliding-window average of :func:`~xpcs_denoise.denoise` would not (its edges weigh lags unevenly: +7–14 %
    on noise-free decays of 70–200 frames).

    Returns
    -------
    FitResult
        Γ (1/frame), β, C∞, α with errors from the covariance of the joint χ² (not scaled by the reduced χ²;
        :func:`~xpcs_denoise.analysis.uncertainty.fit_two_time` calibrates them on simulated data).
    """
    from ..nn.denoiser import Denoiser, _pretrained  # defers torch

    model = _pretrained() if model is None else model
    if not isinstance(model, Denoiser):
        raise XPCSInputError(f"model must be a Denoiser (e.g. Denoiser.pretrained()); got {type(model).__name__}")
    x = np.asarray(c2, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != x.shape[-2]:
        raise XPCSInputError(f"need 2TCFs of shape (B, N, N); got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise XPCSInputError("2TCFs with NaN or Inf values (excluded frames) cannot be denoised; fit them raw "
                             "(fit_two_time(method='none')) or fill the frames first")
    nb, n_frames, n = x.shape[0], x.shape[-1], model.size
    if n_frames < n:
        raise XPCSInputError(f"2TCFs have {n_frames} frames, fewer than the model's window {n}")
    if not 0 < weight < np.inf:
        raise XPCSInputError(f"weight must be positive and finite; got {weight}")
    L = min(max_lag or n - 1, n - 1)
    if beta is None or baseline is None:
        b_est, c_est = scale_parameters(x, n, beta=beta, baseline=baseline, partial=True)
    b = np.broadcast_to(np.asarray(beta if beta is not None else b_est, dtype=np.float64), (nb,)).copy()
    base = np.broadcast_to(np.asarray(baseline if baseline is not None else c_est, dtype=np.float64),
                           (nb,)).copy()
    usable = np.isfinite(b) & (b > 0) & np.isfinite(base)
    b[~usable], base[~usable] = 1.0, 1.0

    def units(v):
        return (v - base[:, None]) / b[:, None] + 1.0

    g_raw = units(one_time_from_two_time(x, max_lag=L))
    sig_raw = _raw_sigma(x, L) / b[:, None]
    starts = np.unique(np.round(np.linspace(0, n_frames - n, min(MAX_WINDOWS, n_frames - n + 1))).astype(int))
    g_den = np.zeros((nb, L))
    for s0 in starts:
        win = to_model_units(replace_diagonal(x[:, s0:s0 + n, s0:s0 + n], seed), b, base)
        g_den += one_time_from_two_time(model.predict_model_units(win)[0], max_lag=L) / len(starts)
    sig_m = weight * sig_raw[:, :1]
    lags = np.arange(1, L + 1, dtype=np.float64) * lag_unit

    # fixed values in the fit's parameters: log Γ, log A (β in model units), c (C∞ − 1 in model units), log α
    priors = {}
    for name, given in (("baseline_prior", baseline_prior), ("alpha_prior", alpha_prior)):
        if given is None:
            continue
        try:
            mu, sd = (np.broadcast_to(np.asarray(v, dtype=np.float64), (nb,)) for v in given)
        except (TypeError, ValueError):
            raise XPCSInputError(f"{name} must be (centre, width), scalars or one per 2TCF ({nb}); got "
                                 f"{given!r}") from None
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd)) and np.all(sd > 0)
                and (name == "baseline_prior" or np.all(mu > 0))):
            raise XPCSInputError(f"{name} needs a finite{'' if name == 'baseline_prior' else ', positive'} centre "
                                 f"and a positive width; got {given!r}")
        priors[name] = (mu if name == "baseline_prior" else np.log(mu), sd)
    fixed = {}
    for k, v in (fix or {}).items():
        if k not in PARAMETERS:
            raise XPCSInputError(f"unknown parameter to fix {k!r}; choose from {PARAMETERS}")
        try:
            v = np.broadcast_to(np.asarray(v, dtype=np.float64), (nb,))
        except (TypeError, ValueError):
            raise XPCSInputError(f"fixed {k} must be a number or one per 2TCF ({nb}); got {v!r}") from None
        if not np.all(np.isfinite(v)) or (k != "baseline" and np.any(v <= 0)):
            raise XPCSInputError(f"fixed {k} must be finite{'' if k == 'baseline' else ' and positive'}; got {v}")
        fixed[k] = (v - base) / b if k == "baseline" else np.log(v / b if k == "beta" else v)
    free = [i for i, k in enumerate(PARAMETERS) if k not in fixed]
    # the same values in model units for fit_g2's start (β: amplitude A, C∞: 1 + c)
    fix0 = {k: 1.0 + v if k == "baseline" else np.exp(v) for k, v in fixed.items()}
    start = fit_g2(g_den, lags, fix=fix0 or None)
    g_lo, g_hi = 1e-3 / lags[-1], 10.0 / lags[0]

    def finite(v, default):
        v = np.asarray(v, dtype=np.float64)
        return np.where(np.isfinite(v), v, default)

    p = np.stack([np.log(np.clip(finite(start.gamma, 0.05 / lag_unit), g_lo, g_hi)),
                  np.log(np.clip(finite(start.beta, 1.0), 1e-3, 1e3)),
                  finite(start.baseline, 1.0) - 1.0,
                  np.log(np.clip(finite(start.alpha, 1.0), *ALPHA_RANGE))], axis=1)

    def residuals(pp):
        """Weighted residuals (K·B, 2L) of stacked parameter sets (K·B, 4)."""
        k = len(pp) // nb
        g = _curves(pp, n, lag_unit)
        r_raw = (g[:, 1:L + 1] - np.tile(g_raw, (k, 1))) / np.tile(sig_raw, (k, 1))
        r_den = (model.stationary_response(g)[:, :L] - np.tile(g_den, (k, 1))) / np.tile(sig_m, (k, 1))
        parts = [r_raw, r_den]
        if "baseline_prior" in priors:  # the offset (C∞ − 1)/β in physical units: (base + c·b − 1) / (A·b)
            mu, sd = priors["baseline_prior"]
            bb = np.tile(b, k)
            offset = (np.tile(base, k) + pp[:, 2] * bb - 1.0) / (np.exp(pp[:, 1]) * bb)
            parts.append(((offset - np.tile(mu, k)) / np.tile(sd, k))[:, None])
        if "alpha_prior" in priors:
            mu, sd = priors["alpha_prior"]
            parts.append(((pp[:, 3] - np.tile(mu, k)) / np.tile(sd, k))[:, None])
        return np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0, posinf=0.0, neginf=0.0)

    def clip(pp):
        pp[:, 0] = np.clip(pp[:, 0], np.log(g_lo), np.log(g_hi))
        pp[:, 3] = np.clip(pp[:, 3], *np.log(ALPHA_RANGE))
        pp[:, 2] = np.maximum(pp[:, 2], BASELINE_MIN)
        pp[:, 1] = np.clip(pp[:, 1], np.log(1e-3), np.log(1e3))
        for k, v in fixed.items():  # the bounds are for the free parameters: a fixed value stays as given
            pp[:, PARAMETERS.index(k)] = v
        return pp

    def jacobian(p, r):
        pp = np.repeat(p[None], len(free), axis=0)
        for j, k in enumerate(free):
            pp[j, :, k] += _STEP_H
        rr = residuals(pp.reshape(-1, 4)).reshape(len(free), nb, -1)
        return np.transpose((rr - r[None]) / _STEP_H, (1, 2, 0))  # (B, 2L, k)

    p = clip(p)
    r = residuals(p)
    cost = (r ** 2).sum(axis=1)
    lam = np.full(nb, 1e-2)
    eye = np.eye(len(free))[None]
    for _ in range(int(n_iter)):
        J = jacobian(p, r)
        jtj = np.einsum("bli,blj->bij", J, J)
        jtr = np.einsum("bli,bl->bi", J, r)
        damp = lam[:, None, None] * eye * (np.einsum("bii->bi", jtj)[:, :, None] + 1e-12)
        try:
            step = -np.linalg.solve(jtj + damp, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -np.einsum("bij,bj->bi", np.linalg.pinv(jtj + damp), jtr)
        trial = p.copy()
        trial[:, free] += np.clip(np.nan_to_num(step), -1.0, 1.0)  # at most a factor e per step
        trial = clip(trial)
        r_t = residuals(trial)
        c_t = (r_t ** 2).sum(axis=1)
        better = c_t < cost
        p[better], r[better], cost[better] = trial[better], r_t[better], c_t[better]
        lam = np.where(better, lam / 3.0, lam * 4.0)

    J = jacobian(p, r)
    jtj = np.einsum("bli,blj->bij", J, J)
    # a direction the data do not constrain (e.g. Γ at a bound, no decay seen) must get a large variance, which
    # a pseudo-inverse would set to zero: a tiny ridge keeps the inverse finite instead
    ridge = 1e-9 * np.einsum("bii->b", jtj)[:, None, None] * np.eye(len(free))[None] + 1e-300
    cov_free = np.linalg.inv(jtj + ridge)
    cov = np.full((nb, 4, 4), np.nan)
    cov[:, np.ix_(free, free)[0], np.ix_(free, free)[1]] = cov_free
    gamma, amp, alpha = np.exp(p[:, 0]), np.exp(p[:, 1]), np.exp(p[:, 3])
    scale = np.stack([gamma, amp * b, b, alpha], axis=1)  # d(physical)/d(fit parameter)
    covar = cov * scale[:, :, None] * scale[:, None, :]
    errs = np.sqrt(np.clip(np.einsum("bii->bi", covar), 0, None))
    values = {"gamma": gamma, "beta": amp * b, "baseline": base + p[:, 2] * b, "alpha": alpha}
    at_bound_params = np.zeros((nb, 4), bool)
    at_bound_params[:, 0] = (p[:, 0] <= np.log(g_lo) + 1e-9) | (p[:, 0] >= np.log(g_hi) - 1e-9)
    at_bound_params[:, 3] = (p[:, 3] <= np.log(ALPHA_RANGE[0]) + 1e-9) | (p[:, 3] >= np.log(ALPHA_RANGE[1]) - 1e-9)
    at_bound_params[:, 2] = p[:, 2] <= BASELINE_MIN + 1e-9
    for k in fixed:
        at_bound_params[:, PARAMETERS.index(k)] = False
    success = usable & np.asarray(start.success) & np.all(np.isfinite(p), axis=1)
    message = np.where(success, np.where(at_bound_params.any(axis=1), "ok; a parameter at its bound", "ok"),
                       np.where(usable, "failed: the denoised 1TCF could not be fitted",
                                "failed: no contrast to scale by"))
    out = {k: np.where(success, values[k], np.nan) for k in PARAMETERS}
    err_out = {k + "_err": np.where(success, 0.0 if k in fixed else errs[:, i], np.nan)
               for i, k in enumerate(PARAMETERS)}
    n_points = np.full(nb, 2 * L)
    return FitResult(**out, **err_out, success=success, message=message.astype(str),
                     redchi=cost / np.maximum(n_points - len(free), 1), n_iter=np.full(nb, int(n_iter)),
                     lags=lags, fixed=dict(fix or {}), at_bound=at_bound_params.any(axis=1),
                     at_bound_params=at_bound_params, covar=covar, chisqr=cost, n_points=n_points,
                     weighted=True)
