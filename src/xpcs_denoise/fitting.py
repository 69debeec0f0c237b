"""Fits of Eq. 3, ``C1(t) = C∞ + β exp(−2 (Γ t)^α)``, to one or many 1TCFs at once.

All curves are fitted together by a batched Levenberg–Marquardt solver in numpy: every iteration is a handful
of array operations over (n_curves, n_lags), so thousands of fits run as fast as a few. Bounds are enforced by
projection; any parameter can be fixed (to one value or one value per curve). Standard errors come from the
covariance ``(JᵀWJ)⁻¹ · χ²/(n − p)`` at the solution, as ``scipy.optimize.curve_fit`` reports them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import XPCSInputError

__all__ = ["FitResult", "fit_g2", "g2_model", "PARAMETERS", "DEFAULT_BOUNDS"]

PARAMETERS = ("gamma", "beta", "baseline", "alpha")
#: Default bounds; ``gamma`` is in units of 1/lag and scaled by the lags (see :func:`fit_g2`).
DEFAULT_BOUNDS = {"gamma": (None, None), "beta": (0.0, np.inf), "baseline": (-np.inf, np.inf),
                  "alpha": (0.2, 3.0)}


def g2_model(lags, gamma, beta, baseline, alpha=1.0):
    """Eq. 3: ``baseline + beta · exp(−2 (gamma · lags)^alpha)``; parameters broadcast against ``lags``."""
    lags = np.asarray(lags, dtype=np.float64)
    return baseline + beta * np.exp(-2.0 * (gamma * lags) ** alpha)


@dataclass
class FitResult:
    """Eq. 3 fits: one entry per 1TCF in every array (shape = the input's batch shape).

    Attributes
    ----------
    gamma, beta, baseline, alpha : ndarray
        Best-fit Γ (1/lag unit: frames⁻¹ for lags in frames), β, C∞ and α; NaN where the fit failed.
    gamma_err, beta_err, baseline_err, alpha_err : ndarray
        One-sigma standard errors (0 for a fixed parameter, NaN where undefined).
    success : ndarray of bool
    message : ndarray of str
        ``"ok"`` or why the fit failed.
    redchi : ndarray
        Reduced χ² (weighted sum of squared residuals / degrees of freedom).
    n_iter : ndarray of int
    lags : ndarray
        The lags the fits used.
    fixed : dict
        Parameters held fixed, and their values.
    """

    gamma: np.ndarray
    beta: np.ndarray
    baseline: np.ndarray
    alpha: np.ndarray
    gamma_err: np.ndarray
    beta_err: np.ndarray
    baseline_err: np.ndarray
    alpha_err: np.ndarray
    success: np.ndarray
    message: np.ndarray
    redchi: np.ndarray
    n_iter: np.ndarray
    lags: np.ndarray
    fixed: dict = field(default_factory=dict)

    def model(self, lags=None) -> np.ndarray:
        """Eq. 3 evaluated with the fitted parameters, shape batch + (n_lags,)."""
        lags = self.lags if lags is None else np.asarray(lags, dtype=np.float64)
        p = [np.asarray(getattr(self, k))[..., None] for k in PARAMETERS]
        return g2_model(lags, *p)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Columns of a table: values, errors, success, message (flattened to 1-D)."""
        out = {}
        for k in PARAMETERS:
            out[k] = np.ravel(getattr(self, k))
            out[k + "_err"] = np.ravel(getattr(self, k + "_err"))
        out["redchi"] = np.ravel(self.redchi)
        out["success"] = np.ravel(self.success)
        out["message"] = np.ravel(self.message)
        return out

    def __len__(self):
        return int(np.size(self.gamma))


def _as_param_array(value, batch: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(batch, float(arr))
    arr = arr.ravel()
    if arr.size != batch:
        raise XPCSInputError(f"fixed value of {name!r} has {arr.size} entries for {batch} curves")
    return arr


def _initial_values(y, w, lags, baseline_fixed, beta_fixed):
    """Initial Γ, β, C∞ from the data: baseline from the longest lags, β from the first, Γ from the 1/e point."""
    n = y.shape[1]
    tail = max(1, n // 5)
    wt = w[:, -tail:]
    c0 = np.where(np.isnan(baseline_fixed),
                  np.sum(np.nan_to_num(y[:, -tail:]) * wt, axis=1) / np.maximum(wt.sum(axis=1), 1e-300),
                  baseline_fixed)
    head = min(3, n)
    wh = w[:, :head]
    first = np.sum(np.nan_to_num(y[:, :head]) * wh, axis=1) / np.maximum(wh.sum(axis=1), 1e-300)
    b0 = np.where(np.isnan(beta_fixed), np.maximum(first - c0, 1e-3 * np.maximum(np.abs(c0), 1e-12)),
                  beta_fixed)
    # exp(-2 Γ t) = 1/e at Γ t = 1/2: first lag where the normalised decay drops below 1/e.
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = (y - c0[:, None]) / b0[:, None]
    below = (norm < np.exp(-1.0)) & (w > 0)
    idx = np.where(below.any(axis=1), below.argmax(axis=1), n - 1)
    t_e = lags[idx]
    g0 = 0.5 / np.maximum(t_e, lags[0])
    return g0, b0, c0


def fit_g2(g2, lags=None, *, fix: dict | None = None, p0: dict | None = None, bounds: dict | None = None,
           sigma=None, absolute_sigma: bool = False, max_iter: int = 200, tol: float = 1e-8,
           n_starts: int = 3) -> FitResult:
    """Fit Eq. 3, ``C∞ + β exp(−2 (Γ t)^α)``, to one or many 1TCFs.

    Parameters
    ----------
    g2 : array_like, shape (L,) or (..., L)
        1TCF values at ``lags``. NaN/Inf values are ignored (weight 0).
    lags : array_like, shape (L,), optional
        Lag times, default 1..L frames. Γ comes out in the inverse unit of ``lags``.
    fix : dict, optional
        Parameters to hold fixed, e.g. ``{"alpha": 1.0}`` or ``{"beta": beta_per_curve}``. Names:
        ``gamma``, ``beta``, ``baseline``, ``alpha``.
    p0 : dict, optional
        Initial values (scalars or per-curve arrays); default: estimated from the data.
    bounds : dict, optional
        ``{name: (low, high)}`` overriding :data:`DEFAULT_BOUNDS`. Γ defaults to
        ``[1e-3 / max(lags), 10 / min(lags)]``; α to [0.2, 3]; β to [0, 5 × (max − min of the curve)].
    sigma : array_like, optional
        Standard deviations of ``g2`` (broadcast to its shape); weights are ``1/σ²``.
    absolute_sigma : bool
        As in ``curve_fit``: if False (default) the covariance is scaled by the reduced χ².
    max_iter : int
        Levenberg–Marquardt iterations.
    n_starts : int
        Most starts per curve: Γ₀, then Γ₀/3, 3Γ₀, Γ₀/10, 10Γ₀ for the curves whose fit did not converge or
        ended on a Γ bound.

    Returns
    -------
    FitResult
        Never raises for noisy data: a fit that fails has NaN parameters, ``success=False`` and a message.
    """
    from .safety import numeric_array

    y = numeric_array(g2, "g2").astype(np.float64)
    if y.ndim < 1:
        raise XPCSInputError("g2 must have a lag axis: shape (L,) or (..., L)")
    if y.shape[-1] == 0 or y.size == 0:
        raise XPCSInputError(f"g2 has shape {y.shape}: no lags to fit; give at least one lag")
    batch_shape = y.shape[:-1]
    n_lag = y.shape[-1]
    y = y.reshape(-1, n_lag)
    nb = y.shape[0]
    lags = np.arange(1, n_lag + 1, dtype=np.float64) if lags is None else np.asarray(lags, dtype=np.float64)
    if lags.shape != (n_lag,):
        raise XPCSInputError(f"lags has shape {lags.shape}; need one lag per 1TCF point ({n_lag})")
    if not np.all(np.isfinite(lags)) or np.any(lags <= 0):
        raise XPCSInputError("lags must be finite and > 0 (lag 0 is not part of the 1TCF)")
    fix = dict(fix or {})
    unknown = set(fix) | set(p0 or {}) | set(bounds or {})
    unknown -= set(PARAMETERS)
    if unknown:
        raise XPCSInputError(f"unknown parameter name(s) {sorted(unknown)}; use {PARAMETERS}")
    w = np.ones_like(y)
    if sigma is not None:
        try:
            s = np.broadcast_to(numeric_array(sigma, "sigma").astype(np.float64),
                                (nb, n_lag) if np.ndim(sigma) < 2 else y.shape)
        except ValueError:
            raise XPCSInputError(f"sigma has shape {np.shape(sigma)}; give one per 1TCF point, shape "
                                 f"({n_lag},) or {tuple(batch_shape) + (n_lag,)}") from None
        with np.errstate(divide="ignore"):
            w = np.where(np.isfinite(s) & (s > 0), 1.0 / s**2, 0.0)
    finite = np.isfinite(y)
    w = np.where(finite, w, 0.0)
    y = np.where(finite, y, 0.0)

    bnd = {k: v for k, v in DEFAULT_BOUNDS.items()}
    bnd["gamma"] = (1e-3 / lags.max(), 10.0 / lags.min())
    bnd.update(bounds or {})
    lo = np.array([bnd[k][0] if bnd[k][0] is not None else -np.inf for k in PARAMETERS], dtype=np.float64)
    hi = np.array([bnd[k][1] if bnd[k][1] is not None else np.inf for k in PARAMETERS], dtype=np.float64)
    if np.any(lo >= hi) or lo[0] <= 0:
        raise XPCSInputError(f"invalid bounds {bnd}: need low < high and a positive lower bound for gamma")
    lo, hi = np.tile(lo, (nb, 1)), np.tile(hi, (nb, 1))
    if "beta" not in (bounds or {}):
        # β at most 5× the data's range: beyond it a fit trades β against Γ on a decay that happened before the
        # first lag (degenerate, not a measurement); such fits end on the bound and are reported as failed.
        masked = np.where(w > 0, y, np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN curves fail later with a message
            rng_y = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)
        hi[:, 1] = np.where(np.isfinite(rng_y) & (rng_y > 0), 5.0 * rng_y, np.inf)

    fixed_vals = np.full((nb, 4), np.nan)
    for k, v in fix.items():
        fixed_vals[:, PARAMETERS.index(k)] = _as_param_array(v, nb, k)
    is_fixed = np.array([k in fix for k in PARAMETERS])
    free = np.flatnonzero(~is_fixed)
    n_free = free.size

    g0, b0, c0 = _initial_values(y, w, lags, fixed_vals[:, 2], fixed_vals[:, 1])
    start = np.stack([g0, b0, c0, np.ones(nb)], axis=1)
    for k, v in (p0 or {}).items():
        start[:, PARAMETERS.index(k)] = _as_param_array(v, nb, k)
    start = np.where(is_fixed[None], fixed_vals, start)
    start = np.clip(start, lo, hi)

    p, cost, n_it, conv = _levenberg_marquardt(start.copy(), y, w, lags, free, lo, hi, max_iter, tol)
    # Restarts from Γ₀/3, 3Γ₀, … only where the first start did not converge or ended on a Γ bound, so that
    # well-behaved curves cost one start.
    for fac in [1 / 3.0, 3.0, 1 / 10.0, 10.0][: max(0, int(n_starts) - 1)]:
        redo = ~conv | (p[:, 0] <= lo[:, 0] * (1 + 1e-9)) | (p[:, 0] >= hi[:, 0] * (1 - 1e-9))
        if is_fixed[0] or not redo.any():
            break
        idx = np.flatnonzero(redo)
        q = start[idx].copy()
        q[:, 0] = np.clip(q[:, 0] * fac, lo[idx, 0], hi[idx, 0])
        # Restarts get fewer iterations: a curve that needs more from a second start is ill-determined anyway.
        q, c2, n2, v2 = _levenberg_marquardt(q, y[idx], w[idx], lags, free, lo[idx], hi[idx],
                                             min(max_iter, 60), tol)
        better = (v2 & ~conv[idx]) | ((v2 == conv[idx]) & (c2 < cost[idx]))
        sel = idx[better]
        p[sel], cost[sel], n_it[sel], conv[sel] = q[better], c2[better], n2[better], v2[better]
    best_iter, best_conv = n_it, conv

    n_pts = (w > 0).sum(axis=1)
    dof = n_pts - n_free
    jac = _jacobian(np.where(np.isfinite(p), p, 1.0), lags, free)
    jtj = np.matmul((jac * w[:, :, None]).transpose(0, 2, 1), jac)
    err = np.full((nb, 4), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        redchi = np.where(dof > 0, cost / np.maximum(dof, 1), np.nan)
    ok_cov = np.isfinite(jtj).all(axis=(1, 2)) & (np.abs(np.linalg.det(jtj)) > 0) if nb else np.zeros(0, bool)
    if ok_cov.any():
        cov = np.full((nb, n_free, n_free), np.nan)
        cov[ok_cov] = np.linalg.pinv(jtj[ok_cov], hermitian=True)
        scale = np.ones(nb) if absolute_sigma else redchi
        diag = np.einsum("bii->bi", cov) * scale[:, None]
        err[:, free] = np.sqrt(np.where(diag >= 0, diag, np.nan))
    err[:, is_fixed] = 0.0

    message = np.full(nb, "ok", dtype=object)
    success = np.ones(nb, dtype=bool)

    def fail(mask, why):
        new = mask & success
        message[new] = why
        success[new] = False

    fail(n_pts < n_free + 1, f"too few finite points (need more than {n_free})")
    fail(~np.isfinite(p).all(axis=1) | ~np.isfinite(cost), "non-finite result")
    fail(~best_conv, f"did not converge in {max_iter} iterations")
    at_bound = np.zeros(nb, dtype=bool)
    for i in free:
        if i == 1:  # beta = 0 is a flat curve: Γ is then undefined
            at_bound |= (p[:, 1] <= np.maximum(lo[:, 1], 0) + 1e-12) | (p[:, 1] >= hi[:, 1] * (1 - 1e-9))
        elif i in (0, 3):
            span = hi[:, i] - lo[:, i]
            at_bound |= (p[:, i] <= lo[:, i] + 1e-9 * span) | (p[:, i] >= hi[:, i] - 1e-9 * span)
    fail(at_bound, "a parameter is at its bound (no decay resolved in the lag range, or flat data)")
    fail(~np.isfinite(err[:, free]).all(axis=1), "singular covariance (parameters not determined)")
    p = np.where(success[:, None], p, np.nan)
    err = np.where(success[:, None], err, np.nan)

    def shaped(a):
        return a.reshape(batch_shape)

    return FitResult(
        gamma=shaped(p[:, 0]), beta=shaped(p[:, 1]), baseline=shaped(p[:, 2]), alpha=shaped(p[:, 3]),
        gamma_err=shaped(err[:, 0]), beta_err=shaped(err[:, 1]), baseline_err=shaped(err[:, 2]),
        alpha_err=shaped(err[:, 3]), success=shaped(success), message=shaped(message.astype(str)),
        redchi=shaped(redchi), n_iter=shaped(best_iter), lags=lags,
        fixed={k: (v if np.ndim(v) == 0 else np.asarray(v)) for k, v in fix.items()},
    )


def _terms(p, lags, free):
    """Model values and, if ``free`` is given, the Jacobian over the free parameters, sharing the powers."""
    g, b, c, a = (p[:, i:i + 1] for i in range(4))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        # log(Γt) = log Γ + log t: one logarithm per curve instead of one per point.
        log_gt = np.log(g) + np.log(lags)[None]
        u = np.exp(a * log_gt)
        e = np.exp(-2.0 * u)
        f = c + b * e
        if free is None:
            return f, None
        be2u = -2.0 * b * e * u
        jac = np.empty(f.shape + (len(free),))
        for col, i in enumerate(free):
            if i == 0:
                np.multiply(be2u, a / g, out=jac[..., col])
            elif i == 1:
                jac[..., col] = e
            elif i == 2:
                jac[..., col] = 1.0
            else:
                np.multiply(be2u, log_gt, out=jac[..., col])
    return f, np.nan_to_num(jac, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _jacobian(p, lags, free):
    return _terms(p, lags, free)[1]


def _cost(f, y, w):
    r = y - f
    c = np.sum(w * r * r, axis=1)
    return np.where(np.isfinite(c), c, np.inf)


def _levenberg_marquardt(p, y, w, lags, free, lo, hi, max_iter, tol):
    nb = p.shape[0]
    lam = np.full(nb, 1e-3)
    # Model values and Jacobian at the current point, kept between iterations: each iteration evaluates the
    # model (with its Jacobian) once, at the trial point, and keeps it where the step is accepted.
    f_cur, jac_cur = _terms(p, lags, free)
    cost = _cost(f_cur, y, w)
    converged = np.zeros(nb, dtype=bool)
    n_iter = np.zeros(nb, dtype=np.int64)
    eye = np.eye(free.size)
    ia = np.arange(nb)
    for _ in range(max_iter):
        # Work on the curves still iterating only; the set shrinks quickly (most converge in ~10 steps).
        ia = ia[~converged[ia]]
        if ia.size == 0:
            break
        pa, ya, wa = p[ia], y[ia], w[ia]
        f, jac = f_cur[ia], jac_cur[ia]
        r = np.nan_to_num(ya - f)
        jwt = (jac * wa[:, :, None]).transpose(0, 2, 1)
        jtj = np.matmul(jwt, jac)
        grad = np.matmul(jwt, r[:, :, None])[..., 0]
        diag = np.einsum("bii->bi", jtj)
        damp = jtj + lam[ia, None, None] * (np.maximum(diag, 1e-12)[:, :, None] * eye[None])
        try:
            step = np.linalg.solve(damp, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("bij,bj->bi", np.linalg.pinv(damp), grad)
        trial = pa.copy()
        trial[:, free] = np.clip(pa[:, free] + np.nan_to_num(step), lo[ia][:, free], hi[ia][:, free])
        f_new, jac_new = _terms(trial, lags, free)
        new_cost = _cost(f_new, ya, wa)
        old = cost[ia]
        better = new_cost < old
        rel = np.where(better, (old - new_cost) / np.maximum(old, 1e-300), 0.0)
        acc = ia[better]
        p[acc], f_cur[acc], jac_cur[acc], cost[acc] = trial[better], f_new[better], jac_new[better], new_cost[better]
        lam[ia] = np.where(better, np.maximum(lam[ia] / 10.0, 1e-12), lam[ia] * 10.0)
        n_iter[ia] += 1
        stepsize = np.max(np.abs(trial[:, free] - pa[:, free]) / (np.abs(pa[:, free]) + 1e-12), axis=1)
        converged[ia] = (better & ((rel < tol) | (stepsize < 1e-10))) | (lam[ia] > 1e10) | (old <= 1e-300)
    return p, cost, n_iter, converged
