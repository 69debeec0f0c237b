"""Fits of Eq. 3, ``C1(t) = C∞ + β exp(−2 (Γ t)^α)``, to one or many 1TCFs at once.

All curves are fitted together in numpy, in two stages:

1. a global start: for every (Γ, α) of a grid (log-spaced Γ over its bounds × a few α), the best C∞ and β are
   linear least squares, computed for all curves with three matrix products; each curve starts from its best
   grid point, so a fit does not depend on a heuristic initial guess and lands in the basin of the global
   minimum;
2. a batched, bound-constrained Levenberg–Marquardt (Γ on a log scale, Nielsen's damping, an active set for
   parameters pinned at a bound), iterating only the curves not yet converged. Convergence: the gradient is
   orthogonal to the residuals (cosine < ``gtol``), or the relative actual and predicted decreases of the sum
   of squares are below ``tol``, or the step is negligible.

A parameter that ends at a bound is reported (``at_bound``), not treated as a failure. Standard errors and
the covariance are ``(JᵀWJ)⁻¹ · χ²/(n − p)`` at the solution, as ``scipy.optimize.curve_fit`` reports them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import XPCSInputError
from .validation import numeric_array

__all__ = ["FitResult", "fit_g2", "g2_model", "fit_rows", "fit_status", "FIT_STATUSES", "sigma_for_fit", "cut_trust",
           "DiffusionFit", "fit_diffusion",
           "PARAMETERS", "DEFAULT_BOUNDS"]

PARAMETERS = ("gamma", "beta", "baseline", "alpha")
#: Default bounds; ``gamma`` is in units of 1/lag and scaled by the lags (see :func:`fit_g2`).
DEFAULT_BOUNDS = {"gamma": (None, None), "beta": (0.0, np.inf), "baseline": (-np.inf, np.inf),
                  "alpha": (0.2, 3.0)}


def g2_model(lags, gamma, beta, baseline, alpha=1.0):
    """Eq. 3: ``baseline + beta · exp(−2 (gamma · lags)^alpha)``; parameters broadcast against ``lags``."""
    lags = np.asarray(lags, dtype=np.float64)
    return baseline + beta * np.exp(-2.0 * (gamma * lags) ** alpha)


def _time_units(lag_unit: str) -> tuple[str, str]:
    """(lag unit, Γ unit) as written in tables and labels: ("frames", "1/frame") or ("s", "1/s")."""
    return (lag_unit, "1/frame") if lag_unit == "frames" else (lag_unit, f"1/{lag_unit}")


@dataclass
class FitResult:
    """Eq. 3 fits: one entry per 1TCF in every array (shape = the input's batch shape).

    Attributes
    ----------
    gamma, beta, baseline, alpha : ndarray
        Best-fit Γ (in 1/``lag_unit``: frames⁻¹ for lags in frames, s⁻¹ with a frame time), β, C∞ and α; NaN
        where the fit failed.
    gamma_err, beta_err, baseline_err, alpha_err : ndarray
        One-sigma standard errors (0 for a fixed parameter, NaN where undefined, e.g. Γ of a flat curve).
    success : ndarray of bool
        The fit converged to finite parameters (a parameter at its bound is still a success: see ``at_bound``).
    message : ndarray of str
        ``"ok"``, ``"ok; …"`` with what to look at (a parameter at its bound, undetermined errors), or why the
        fit failed.
    redchi : ndarray
        Reduced χ² (weighted sum of squared residuals / degrees of freedom).
    n_iter : ndarray of int
    lags : ndarray
        The lags the fits used, in ``lag_unit``.
    fixed : dict
        Parameters held fixed, and their values.
    at_bound : ndarray of bool
        Some free parameter ended at one of its bounds (its estimate is kept; its error may be undefined).
    at_bound_params : ndarray of bool, shape batch + (4,)
        Which one(s), in :data:`PARAMETERS` order.
    trusted : ndarray of bool or None
        Time-resolved cuts only: whether each fit resolves its decay (:func:`cut_trust`).
    covar : ndarray, shape batch + (4, 4)
        Covariance of (Γ, β, C∞, α) (scaled by the reduced χ² unless ``absolute_sigma``); NaN rows and columns
        for fixed parameters and where the fit failed.
    chisqr : ndarray
        Weighted sum of squared residuals, Σ w (y − model)² (w = 1/σ², 1 without σ).
    n_points : ndarray of int
        Finite points fitted per curve.
    lag_unit : str
        ``"frames"`` or ``"s"`` (with a frame time); Γ is in its inverse.
    weighted : bool
        Whether per-point σ were given.
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
    at_bound: np.ndarray | None = None
    #: For time-resolved cuts: whether each fit resolves its decay (:func:`cut_trust`); None elsewhere.
    trusted: np.ndarray | None = None
    at_bound_params: np.ndarray | None = None
    covar: np.ndarray | None = None
    chisqr: np.ndarray | None = None
    n_points: np.ndarray | None = None
    lag_unit: str = "frames"
    weighted: bool = False

    @property
    def gamma_unit(self) -> str:
        """Unit of Γ and its error: ``"1/frame"`` or ``"1/s"``."""
        return _time_units(self.lag_unit)[1]

    def model(self, lags=None) -> np.ndarray:
        """Eq. 3 evaluated with the fitted parameters, shape batch + (n_lags,)."""
        lags = self.lags if lags is None else np.asarray(lags, dtype=np.float64)
        p = [np.asarray(getattr(self, k))[..., None] for k in PARAMETERS]
        return g2_model(lags, *p)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Columns of a table: values, errors, reduced χ², success, at_bound, message (flattened to 1-D)."""
        out = {}
        for k in PARAMETERS:
            out[k] = np.ravel(getattr(self, k))
            out[k + "_err"] = np.ravel(getattr(self, k + "_err"))
        out["redchi"] = np.ravel(self.redchi)
        out["success"] = np.ravel(self.success)
        out["at_bound"] = np.ravel(self._at_bound())
        out["message"] = np.ravel(self.message)
        return out

    def _at_bound(self) -> np.ndarray:
        return np.zeros(np.shape(self.gamma), bool) if self.at_bound is None else np.asarray(self.at_bound)

    def __len__(self):
        return int(np.size(self.gamma))

    def report(self, i=None, *, min_correl: float = 0.1) -> str:
        """A readable report of one fit (as lmfit's ``fit_report``), or a summary of a batch.

        Parameters
        ----------
        i : int or tuple, optional
            Which fit (an index into the batch shape); default: the only one, or a summary of the batch.
        min_correl : float
            Correlations smaller in magnitude are not listed.
        """
        lag_unit, g_unit = _time_units(self.lag_unit)
        units = {"gamma": g_unit, "beta": "", "baseline": "", "alpha": ""}
        n = len(self)
        if i is None and n != 1:
            ok = np.ravel(self.success)
            bound = np.ravel(self._at_bound()) & ok
            lines = ["[[Eq. 3 fits]] C1(t) = C∞ + β exp(−2 (Γ t)^α)",
                     f"    # fits             = {n}",
                     f"    # converged        = {int(ok.sum())}",
                     f"    # at a bound       = {int(bound.sum())}",
                     f"    lags               = {self.lags[0]:.4g} … {self.lags[-1]:.4g} {lag_unit} "
                     f"({self.lags.size} points)"]
            if ok.any():
                lines.append("[[Medians of converged fits]]")
                for k in PARAMETERS:
                    v = np.ravel(getattr(self, k))[ok]
                    tag = " (fixed)" if k in self.fixed else ""
                    lines.append(f"    {k + ':':10s} {np.median(v):.6g}{tag} {units[k]}".rstrip())
            return "\n".join(lines)
        if isinstance(i, tuple):
            flat = int(np.ravel_multi_index(i, np.shape(self.gamma)))
        else:  # None (the only fit) or an index into the flattened batch
            flat = int(np.arange(n)[0 if i is None else i])

        def at(name):
            return np.ravel(getattr(self, name))[flat]

        n_pts = int(np.ravel(self.n_points)[flat]) if self.n_points is not None else self.lags.size
        n_var = len(PARAMETERS) - len(self.fixed)
        chisqr = np.ravel(self.chisqr)[flat] if self.chisqr is not None else np.nan
        lines = ["[[Fit Statistics]]",
                 "    # model            = C1(t) = C∞ + β exp(−2 (Γ t)^α)",
                 f"    # data points      = {n_pts} (lags {self.lags[0]:.4g} … {self.lags[-1]:.4g} {lag_unit})",
                 f"    # variables        = {n_var}",
                 f"    chi-square         = {chisqr:.6g}" + ("" if self.weighted else " (unweighted)"),
                 f"    reduced chi-square = {at('redchi'):.6g}",
                 f"    success            = {bool(at('success'))} ({at('message')})",
                 f"    iterations         = {int(at('n_iter'))}",
                 "[[Variables]]"]
        bound = (np.reshape(self.at_bound_params, (-1, 4))[flat] if self.at_bound_params is not None
                 else np.zeros(4, bool))
        for j, k in enumerate(PARAMETERS):
            v, e = at(k), at(k + "_err")
            if k in self.fixed:
                txt = f"{v:.6g} (fixed)"
            elif np.isfinite(e):
                rel = f" ({abs(e / v) * 100:.2f}%)" if v != 0 else ""
                txt = f"{v:.6g} +/- {e:.4g}{rel}"
            else:
                txt = f"{v:.6g} +/- nan"
            if bound[j]:
                txt += " (at bound)"
            lines.append(f"    {k + ':':10s} {txt} {units[k]}".rstrip())
        if self.covar is not None:
            cov = np.reshape(self.covar, (-1, 4, 4))[flat]
            sd = np.sqrt(np.diag(cov))
            pairs = []
            for a in range(4):
                for b in range(a + 1, 4):
                    if np.isfinite(cov[a, b]) and sd[a] > 0 and sd[b] > 0:
                        c = cov[a, b] / (sd[a] * sd[b])
                        if abs(c) >= min_correl:
                            pairs.append((abs(c), f"    C({PARAMETERS[a]}, {PARAMETERS[b]}) = {c:+.4f}"))
            if pairs:
                lines.append(f"[[Correlations]] (unreported correlations are < {min_correl:.3f})")
                lines += [t for _, t in sorted(pairs, reverse=True)]
        return "\n".join(lines)


def fit_rows(fits, index=None, *, index_name: str | None = None, columns: dict | None = None) -> list[dict]:
    """Table rows (list of dicts, for CSV/JSON) from one :class:`FitResult` or ``{method: FitResult}``.

    Parameters
    ----------
    fits : FitResult or dict of name → FitResult
        With a dict, every row carries a ``method`` column.
    index : array_like, optional
        One value per fit (e.g. q or the age), written as column ``index_name`` first.
    index_name : str
        Name of that column (e.g. ``"q"``, ``"age"``).
    columns : dict, optional
        More columns: name → a scalar (same in every row) or one value per fit, placed before the fit values.

    Returns
    -------
    list of dict
        Per fit: [method], [index], the extra columns, Γ, β, C∞, α and their errors, ``gamma_unit``
        (``"1/frame"`` or ``"1/s"``), reduced χ², ``success``, ``at_bound``, ``status`` (:func:`fit_status`;
        and ``trusted`` where the fit has it), ``message``. Values are Python scalars.
    """
    named = fits if isinstance(fits, dict) else {None: fits}
    rows = []
    for name, fit in named.items():
        cols = fit.to_dict()
        n = len(fit)
        trusted = getattr(fit, "trusted", None)
        for i in range(n):
            row = {} if name is None else {"method": name}
            if index is not None:
                row[index_name or "index"] = _py(np.ravel(index)[i])
            for k, v in (columns or {}).items():
                row[k] = _py(v if np.ndim(v) == 0 else np.ravel(v)[i])
            for k in PARAMETERS:
                row[k] = float(cols[k][i])
                row[k + "_err"] = float(cols[k + "_err"][i])
            row["gamma_unit"] = fit.gamma_unit
            row["redchi"] = float(cols["redchi"][i])
            row["success"] = bool(cols["success"][i])
            row["at_bound"] = bool(cols["at_bound"][i])
            row["status"] = fit_status(row)
            if trusted is not None:
                row["trusted"] = bool(np.ravel(trusted)[i])
            row["message"] = str(cols["message"][i])
            rows.append(row)
    return rows


#: The ``status`` of a fit row: a converged fit is "ok" only when it is physical and inside its bounds.
FIT_STATUSES = ("ok", "beta > 1", "at bound", "failed")


def fit_status(row: dict) -> str:
    """``"failed"`` (no convergence), ``"beta > 1"`` (a contrast no speckle pattern has: unphysical),
    ``"at bound"`` (a parameter on its bound: not resolved) or ``"ok"``."""
    if not row.get("success"):
        return "failed"
    beta = row.get("beta", float("nan"))
    if isinstance(beta, (int, float)) and np.isfinite(beta) and beta > 1:
        return "beta > 1"
    return "at bound" if row.get("at_bound") else "ok"


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _as_param_array(value, batch: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(batch, float(arr))
    arr = arr.ravel()
    if arr.size != batch:
        raise XPCSInputError(f"fixed value of {name!r} has {arr.size} entries for {batch} curves")
    return arr


# Grid of the global start: Γ log-spaced over its bounds (at most this many points per decade), a few α.
_GRID_PER_DECADE = 8
_GRID_ALPHA = 7
#: A second start where the grid's best point in another regime has a sum of squares within this fraction.
_ALT_GAP = 2e-4


def _grid_axis(lo, hi, n_max, per_decade, default_lo, default_hi):
    """Log-spaced grid over [lo, hi] (infinite ends replaced by the defaults)."""
    a = lo if np.isfinite(lo) and lo > 0 else default_lo
    b = hi if np.isfinite(hi) else default_hi
    if not b > a:
        return np.array([a])
    n = int(np.clip(np.ceil(np.log10(b / a) * per_decade) + 1, 2, n_max))
    return np.geomspace(a, b, n)


def _grid_start(y, w, lags, lo, hi, fixed_vals, is_fixed):
    """Best (Γ, β, C∞, α) of each curve over a (Γ, α) grid, β and C∞ by (bounded) linear least squares.

    Returns the best start (B, 4), the best start of a second basin (B, 4; NaN where not computed) and how
    much larger its sum of squares is, relative to the best (B,; inf where not computed)."""
    nb = y.shape[0]
    if nb == 0:
        return np.empty((0, 4)), np.empty((0, 4)), np.empty(0)
    g_axis = _grid_axis(lo[0, 0], hi[0, 0], 80, _GRID_PER_DECADE, 1e-3 / lags.max(), 10.0 / lags.min())
    a_axis = _grid_axis(lo[0, 3], hi[0, 3], _GRID_ALPHA, 1e9, 0.25, 3.0)
    if is_fixed[0]:
        g_vals = fixed_vals[:, 0]
        g_axis = g_vals[:1] if np.all(g_vals == g_vals[0]) else None
    if is_fixed[3]:
        a_vals = fixed_vals[:, 3]
        a_axis = a_vals[:1] if np.all(a_vals == a_vals[0]) else None
    wy = w * y
    sw = w.sum(axis=1)[:, None]
    sy = wy.sum(axis=1)[:, None]
    syy = (wy * y).sum(axis=1)[:, None]
    best = np.empty((nb, 4))
    log_t = np.log(lags)

    def basis(gs, as_):  # (..., G) Γ and α → (..., G, L)
        return np.exp(-2.0 * np.exp(as_[..., None] * (np.log(gs)[..., None] + log_t)))

    shared = g_axis is not None and a_axis is not None
    alt = np.full((nb, 4), np.nan)
    alt_gap = np.full(nb, np.inf)
    if shared:
        n_g, n_a = g_axis.size, a_axis.size
        gg, aa = [m.ravel() for m in np.meshgrid(g_axis, a_axis, indexing="ij")]
        e = basis(gg, aa)  # (G, L)
        chunks = [(slice(0, nb), e)]
    else:
        ga = np.broadcast_to(g_axis, (nb, g_axis.size)) if g_axis is not None else fixed_vals[:, :1]
        al = np.broadcast_to(a_axis, (nb, a_axis.size)) if a_axis is not None else fixed_vals[:, 3:4]
        gg = np.repeat(ga, al.shape[1], axis=1)
        aa = np.tile(al, (1, ga.shape[1]))
        step = max(1, 200_000 // (gg.shape[1] * lags.size))
        chunks = [(slice(s, s + step), None) for s in range(0, nb, step)]
    unit_w = bool(np.all(w == 1.0))
    for sl, e in chunks:
        if e is None:
            ec = basis(gg[sl], aa[sl])  # (n, G, L)
            se = np.einsum("nl,ngl->ng", w[sl], ec)
            see = np.einsum("nl,ngl->ng", w[sl], ec * ec)
            sye = np.einsum("nl,ngl->ng", wy[sl], ec)
            gsel, asel = gg[sl], aa[sl]
        else:
            if unit_w:  # the sums over the basis alone are the same for every curve
                se, see = e.sum(axis=1)[None], (e * e).sum(axis=1)[None]
            else:
                se, see = w[sl] @ e.T, w[sl] @ (e * e).T
            sye = wy[sl] @ e.T
            gsel, asel = gg[None], aa[None]
        s_w, s_y = np.maximum(sw[sl], 1e-300), sy[sl]
        blo, bhi = lo[sl, 1:2], hi[sl, 1:2]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if not (is_fixed[1] or is_fixed[2]):
                # C∞ eliminated: centred sums; SSR(β) − const = β (β See_c − 2 Sye_c), β clipped to its bounds.
                mean_y = s_y / s_w
                see_c = see - se * se / s_w
                sye_c = sye - se * mean_y
                b = np.where(see_c > 1e-12 * see, sye_c / see_c, 0.0)
                b = np.clip(np.nan_to_num(b), blo, bhi)
                crit = b * (b * see_c - 2.0 * sye_c)
                crit = np.where(np.isfinite(crit), crit, np.inf)
                k = np.argmin(crit, axis=1)
                r = np.arange(k.size)
                se_k = np.broadcast_to(se, crit.shape)[r, k]
                best[sl, 1] = b[r, k]
                best[sl, 2] = np.clip((s_y[:, 0] - b[r, k] * se_k) / s_w[:, 0], lo[sl, 2], hi[sl, 2])
                if shared and n_g > 3 and n_a > 2:
                    # Second basin: the best grid point away from the first (another Γ or α regime), and how
                    # much worse it is than the first, relative to the sum of squares.
                    ig, ja = np.divmod(k, n_a)
                    gi, aj = np.divmod(np.arange(crit.shape[1]), n_a)
                    near = (np.abs(gi[None] - ig[:, None]) <= 3) & (np.abs(aj[None] - ja[:, None]) <= 2)
                    crit2 = np.where(near, np.inf, crit)
                    k2 = np.argmin(crit2, axis=1)
                    ssr1 = syy[sl, 0] - s_y[:, 0] * mean_y[:, 0] + crit[r, k]
                    alt_gap[sl] = (crit2[r, k2] - crit[r, k]) / np.maximum(ssr1, 1e-300)
                    alt[sl, 0], alt[sl, 3] = gg[k2], aa[k2]
                    alt[sl, 1] = b[r, k2]
                    se_k2 = np.broadcast_to(se, crit.shape)[r, k2]
                    alt[sl, 2] = np.clip((s_y[:, 0] - b[r, k2] * se_k2) / s_w[:, 0], lo[sl, 2], hi[sl, 2])
            else:
                s_yy = syy[sl]
                bf, cf = fixed_vals[sl, 1:2], fixed_vals[sl, 2:3]
                b = np.where(is_fixed[1], bf, np.where(see > 0, (sye - cf * se) / see, 0.0))
                b = np.clip(np.nan_to_num(b), blo, bhi)
                c = np.where(is_fixed[2], cf, (s_y - b * se) / s_w)
                c = np.clip(np.nan_to_num(c), lo[sl, 2:3], hi[sl, 2:3])
                crit = s_yy - 2 * c * s_y - 2 * b * sye + c * c * s_w + 2 * c * b * se + b * b * see
                k = np.argmin(np.where(np.isfinite(crit), crit, np.inf), axis=1)
                r = np.arange(k.size)
                best[sl, 1] = np.broadcast_to(b, crit.shape)[r, k]
                best[sl, 2] = np.broadcast_to(c, crit.shape)[r, k]
        best[sl, 0] = np.broadcast_to(gsel, crit.shape)[r, k]
        best[sl, 3] = np.broadcast_to(asel, crit.shape)[r, k]
    return best, alt, alt_gap


def fit_g2(g2, lags=None, *, fix: dict | None = None, p0: dict | None = None, bounds: dict | None = None,
           sigma=None, absolute_sigma: bool = False, max_iter: int = 200, tol: float = 1e-10,
           n_starts: int = 3, frame_time: float | None = None, gtol: float = 1e-8) -> FitResult:
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
        Initial values (scalars or per-curve arrays) replacing those of the global grid start.
    bounds : dict, optional
        ``{name: (low, high)}`` overriding :data:`DEFAULT_BOUNDS`. Γ defaults to
        ``[1e-3 / max(lags), 10 / min(lags)]``; α to [0.2, 3]; β to [0, 5 × (max − min of the curve)].
    sigma : array_like, optional
        Standard deviations of ``g2`` (broadcast to its shape); weights are ``1/σ²``. A point with σ ≤ 0 or
        non-finite σ is left out.
    absolute_sigma : bool
        As in ``curve_fit``: if False (default) the covariance is scaled by the reduced χ².
    max_iter : int
        Most Levenberg–Marquardt iterations per curve.
    tol, gtol : float
        Convergence: relative decrease of the sum of squares (actual and predicted) below ``tol``, or every
        gradient component orthogonal to the residuals to a cosine below ``gtol``.
    n_starts : int
        Starts per curve: the best grid point, then, for the curves that did not converge, up to
        ``2 (n_starts − 1)`` more from Γ × 10, Γ / 10, Γ × 3, Γ / 3.
    frame_time : float, optional
        Seconds per frame. With it, ``lags`` (default 1..L) are in frames and multiplied by ``frame_time``:
        Γ comes out in s⁻¹ and ``lag_unit`` is ``"s"``.

    Returns
    -------
    FitResult
        Never raises for noisy data: a fit that fails has NaN parameters, ``success=False`` and a message.
    """
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
    lag_unit = "frames"
    if frame_time is not None:
        frame_time = _check_frame_time(frame_time)
        lags = lags * frame_time
        lag_unit = "s"
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
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            w = np.where(np.isfinite(s) & (s > 0), 1.0 / s**2, 0.0)
        w = np.where(np.isfinite(w), w, 0.0)
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
    masked = np.where(w > 0, y, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN curves fail later with a message
        rng_y = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)
    if "beta" not in (bounds or {}):
        # β at most 5× the data's range: beyond it a fit trades β against Γ on a decay that happened before the
        # first lag (degenerate, not a measurement); such fits end on the bound and are flagged.
        hi[:, 1] = np.where(np.isfinite(rng_y) & (rng_y > 0), 5.0 * rng_y, np.inf)

    fixed_vals = np.full((nb, 4), np.nan)
    for k, v in fix.items():
        fixed_vals[:, PARAMETERS.index(k)] = _as_param_array(v, nb, k)
    for k in fix:
        v = fixed_vals[:, PARAMETERS.index(k)]
        # NaN for some curves is "no value for this one" (that fit fails with its reason); never for all of them
        if np.all(np.isnan(v)) or np.any(np.isinf(v)):
            raise XPCSInputError(f"a fixed {k} must be a finite number; got {fix[k]!r}")
        if k != "baseline" and np.any(v[np.isfinite(v)] <= 0):
            raise XPCSInputError(f"a fixed {k} must be > 0; got {fix[k]!r}")
    is_fixed = np.array([k in fix for k in PARAMETERS])
    free = np.flatnonzero(~is_fixed)
    n_free = free.size

    start, alt, alt_gap = _grid_start(y, w, lags, lo, hi, np.nan_to_num(fixed_vals, nan=1.0), is_fixed)
    for k, v in (p0 or {}).items():
        start[:, PARAMETERS.index(k)] = _as_param_array(v, nb, k)
    start = np.where(is_fixed[None], fixed_vals, start)
    start = np.clip(start, lo, hi)
    if is_fixed[0]:
        start[:, 0] = np.maximum(start[:, 0], 1e-300)

    p, cost, n_it, conv = _levenberg_marquardt(start.copy(), y, w, lags, free, lo, hi, max_iter, tol, gtol)
    # Second basin: where the grid's best point of another (Γ, α) regime is nearly as good, fit from there too
    # and keep the lower minimum (noisy curves can have two).
    two = (alt_gap < _ALT_GAP) & (n_starts > 1 and not p0)
    if two.any():
        idx = np.flatnonzero(two)
        q = np.clip(alt[idx], lo[idx], hi[idx])
        q, c2, n2, v2 = _levenberg_marquardt(q, y[idx], w[idx], lags, free, lo[idx], hi[idx], max_iter, tol,
                                             gtol)
        better = v2 & (c2 < cost[idx])
        sel = idx[better]
        p[sel], cost[sel], n_it[sel], conv[sel] = q[better], c2[better], n2[better], v2[better]
    if not conv.all():  # stragglers (long, flat valleys): continue from where they are
        idx = np.flatnonzero(~conv)
        q, c2, n2, v2 = _levenberg_marquardt(p[idx].copy(), y[idx], w[idx], lags, free, lo[idx], hi[idx],
                                             max_iter, tol, gtol)
        p[idx], cost[idx], n_it[idx], conv[idx] = q, c2, n_it[idx] + n2, v2
    # Further starts only where the first did not converge (the grid start is already global): a Γ a decade
    # away, then Γ × 3 and Γ / 3; the best converged answer is kept.
    if not is_fixed[0] and n_starts > 1:
        for fac in [10.0, 0.1, 3.0, 1 / 3.0][: max(0, int(n_starts) - 1) * 2]:
            redo = ~conv
            if not redo.any():
                break
            idx = np.flatnonzero(redo)
            q = start[idx].copy()
            q[:, 0] = np.clip(q[:, 0] * fac, lo[idx, 0], hi[idx, 0])
            q, c2, n2, v2 = _levenberg_marquardt(q, y[idx], w[idx], lags, free, lo[idx], hi[idx], max_iter,
                                                 tol, gtol)
            better = (v2 & ~conv[idx]) | ((v2 == conv[idx]) & (c2 < cost[idx]))
            sel = idx[better]
            p[sel], cost[sel], n_it[sel], conv[sel] = q[better], c2[better], n2[better], v2[better]

    n_pts = (w > 0).sum(axis=1)
    dof = n_pts - n_free
    with np.errstate(invalid="ignore", divide="ignore"):
        redchi = np.where(dof > 0, cost / np.maximum(dof, 1), np.nan)
    cov, err = _covariance(p, w, lags, free, is_fixed, redchi, absolute_sigma)

    bound_p = np.zeros((nb, 4), dtype=bool)
    for i in free:
        span = np.where(np.isfinite(hi[:, i] - lo[:, i]), hi[:, i] - lo[:, i], np.abs(p[:, i]) + 1.0)
        if i == 0:  # Γ: relative to its (log) scale
            bound_p[:, i] = (p[:, 0] <= lo[:, 0] * (1 + 1e-6)) | (p[:, 0] >= hi[:, 0] * (1 - 1e-6))
        else:
            bound_p[:, i] = (p[:, i] <= lo[:, i] + 1e-9 * span) | (p[:, i] >= hi[:, i] - 1e-9 * span)
    at_bound = bound_p.any(axis=1)

    message = np.full(nb, "ok", dtype=object)
    success = np.ones(nb, dtype=bool)

    def fail(mask, why):
        new = mask & success
        message[new] = why
        success[new] = False

    fail(n_pts < n_free + 1, f"too few finite points (need more than {n_free})")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmedian(np.abs(masked), axis=1)
    # a 1TCF is of order 1; near float64's limits the optimiser's steps and tolerances lose their meaning
    fail(~((level > 1e-100) & (level < 1e100)), "values at the limits of float64 (a 1TCF is of order 1): rescale")
    fail(~np.isfinite(p).all(axis=1) | ~np.isfinite(cost), "non-finite result")
    fail((rng_y == 0) & ~is_fixed[1], "flat curve (all values equal): no decay to fit")
    fail(~conv, f"did not converge in {max_iter} iterations")
    undetermined = ~np.isfinite(err[:, free]).all(axis=1)
    message[success] = flag_messages(bound_p[success], undetermined[success])
    p = np.where(success[:, None], p, np.nan)
    err = np.where(success[:, None], err, np.nan)
    cov = np.where(success[:, None, None], cov, np.nan)

    def shaped(a):
        return a.reshape(batch_shape + a.shape[1:])

    return FitResult(
        gamma=shaped(p[:, 0]), beta=shaped(p[:, 1]), baseline=shaped(p[:, 2]), alpha=shaped(p[:, 3]),
        gamma_err=shaped(err[:, 0]), beta_err=shaped(err[:, 1]), baseline_err=shaped(err[:, 2]),
        alpha_err=shaped(err[:, 3]), success=shaped(success), message=shaped(message.astype(str)),
        redchi=shaped(redchi), n_iter=shaped(n_it), lags=lags,
        fixed={k: (v if np.ndim(v) == 0 else np.asarray(v)) for k, v in fix.items()},
        at_bound=shaped(at_bound & success), at_bound_params=shaped(bound_p & success[:, None]),
        covar=shaped(cov), chisqr=shaped(np.where(np.isfinite(cost), cost, np.nan)), n_points=shaped(n_pts),
        lag_unit=lag_unit, weighted=sigma is not None,
    )


def flag_messages(at_bound_params, undetermined) -> np.ndarray:
    """Messages of successful fits from their flags: ``"ok"``, or ``"ok; at bound: alpha"`` etc. for (B, 4) bools of
    parameters at a bound (:data:`PARAMETERS` order) and (B,) bools of undetermined errors."""
    bound_p = np.reshape(np.asarray(at_bound_params, dtype=bool), (-1, 4))
    flags = (bound_p * (1 << np.arange(4))).sum(axis=1) + 16 * np.ravel(np.asarray(undetermined, dtype=bool))
    message = np.full(flags.size, "ok", dtype=object)
    for code in np.unique(flags[flags > 0]):  # one message per combination of flags, not one Python step per fit
        notes = []
        if code & 15:
            notes.append("at bound: " + ", ".join(PARAMETERS[i] for i in range(4) if code & (1 << i)))
        if code & 16:
            notes.append("errors undetermined (singular covariance)")
        message[flags == code] = "ok; " + "; ".join(notes)
    return message


def _check_frame_time(frame_time) -> float:
    try:
        ft = float(frame_time)
    except (TypeError, ValueError):
        raise XPCSInputError(f"frame_time must be a number of seconds; got {frame_time!r}") from None
    if not np.isfinite(ft) or ft <= 0:
        raise XPCSInputError(f"frame_time must be a finite number of seconds > 0; got {frame_time!r}")
    return ft


def _covariance(p, w, lags, free, is_fixed, redchi, absolute_sigma):
    """(B, 4, 4) covariance and (B, 4) standard errors at ``p``; NaN where fixed or undetermined."""
    nb = p.shape[0]
    cov = np.full((nb, 4, 4), np.nan)
    err = np.full((nb, 4), np.nan)
    if nb and free.size:
        jac = _terms(np.where(np.isfinite(p), p, 1.0), lags, free, log_gamma=False)[1]
        jtj = np.matmul(jac * w[:, None, :], jac.transpose(0, 2, 1))
        d = np.sqrt(np.einsum("bii->bi", jtj))
        ok = np.isfinite(jtj).all(axis=(1, 2)) & (d > 0).all(axis=1)
        if ok.any():
            # Invert the correlation-normalised matrix: its condition number says whether the parameters are
            # determined, whatever their scales.
            dn = d[ok]
            corr = jtj[ok] / (dn[:, :, None] * dn[:, None, :])
            eig = np.linalg.eigvalsh(corr)
            good = eig[:, 0] > 1e-13 * eig[:, -1]
            inv = np.full_like(corr, np.nan)
            if good.any():
                inv[good] = np.linalg.inv(corr[good])
            c = inv / (dn[:, :, None] * dn[:, None, :])
            scale = np.ones(int(ok.sum())) if absolute_sigma else redchi[ok]
            c = c * scale[:, None, None]
            full = np.full((int(ok.sum()), 4, 4), np.nan)
            full[:, free[:, None], free[None, :]] = c
            cov[ok] = full
        diag = np.einsum("bii->bi", cov)
        with np.errstate(invalid="ignore"):
            err = np.sqrt(np.where(diag >= 0, diag, np.nan))
    err[:, is_fixed] = 0.0
    return cov, err


def _terms(p, lags, free, log_gamma=True, with_e=False):
    """Model values (B, L) and, if ``free`` is given, the Jacobian over the free parameters, shape (B, P, L)
    (parameter-major, so that each column is contiguous), sharing the powers.

    With ``log_gamma`` the Γ column is the derivative with respect to log Γ (the solver's variable)."""
    g, b, c, a = (p[:, i:i + 1] for i in range(4))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        # log(Γt) = log Γ + log t: one logarithm per curve instead of one per point.
        log_gt = np.log(g) + np.log(lags)[None]
        u = np.exp(a * log_gt)
        e = np.exp(-2.0 * u)
        f = b * e
        f += c
        if free is None:
            return f, None
        be2u = e * u
        be2u *= -2.0 * b
        jac = np.empty((f.shape[0], len(free), f.shape[1]))
        for col, i in enumerate(free):
            if i == 0:
                np.multiply(be2u, a if log_gamma else a / g, out=jac[:, col])
            elif i == 1:
                jac[:, col] = e
            elif i == 2:
                jac[:, col] = 1.0
            else:
                np.multiply(be2u, log_gt, out=jac[:, col])
    if not np.isfinite(jac).all():
        np.nan_to_num(jac, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return (f, jac, e) if with_e else (f, jac)


def _jacobian(p, lags, free):
    return _terms(p, lags, free, log_gamma=False)[1]


def _cost(f, y, w):
    r = y - f
    c = np.sum(w * r * r, axis=1)
    return np.where(np.isfinite(c), c, np.inf)


def _levenberg_marquardt(p, y, w, lags, free, lo, hi, max_iter, tol, gtol=1e-8):
    """Batched, bound-constrained LM over the free parameters; Γ is iterated as log Γ.

    Returns (parameters, cost, iterations, converged) per curve."""
    nb = p.shape[0]
    nf = free.size
    if nf == 0:
        f = _terms(p, lags, None)[0]
        return p, _cost(f, y, w), np.zeros(nb, np.int64), np.ones(nb, bool)
    # Solver variables x: the free parameters, log Γ in place of Γ.
    logg = free == 0

    def to_x(pp):
        x = pp[:, free].copy()
        x[:, logg] = np.log(x[:, logg])
        return x

    xlo, xhi = lo[:, free].copy(), hi[:, free].copy()
    with np.errstate(divide="ignore"):
        xlo[:, logg], xhi[:, logg] = np.log(xlo[:, logg]), np.log(xhi[:, logg])
    x = np.clip(to_x(p), xlo, xhi)

    def to_p(xx, rows):
        pp = p[rows].copy()
        v = xx.copy()
        v[:, logg] = np.exp(v[:, logg])
        pp[:, free] = v
        return pp

    p = to_p(x, np.arange(nb))
    f_cur, jac_cur = _terms(p, lags, free)
    cost = _cost(f_cur, y, w)
    lam = np.full(nb, 1e-3)
    nu = np.full(nb, 2.0)
    converged = np.zeros(nb, dtype=bool)
    n_iter = np.zeros(nb, dtype=np.int64)
    eye = np.eye(nf)
    ia = np.arange(nb)
    unweighted = bool(np.all(w == 1.0))
    span = np.where(np.isfinite(xhi - xlo), xhi - xlo, 1.0)
    # With β and C∞ both free, every trial point is completed by the exact least-squares β and C∞ for its
    # (Γ, α) (variable projection by elimination): the model is linear in them, so this costs a few sums, never
    # raises the sum of squares, and removes the long β–C∞–Γ valleys of slow decays from the iteration.
    project = bool(np.isin(1, free) and np.isin(2, free))
    if project:
        col_b, col_c = int(np.flatnonzero(free == 1)[0]), int(np.flatnonzero(free == 2)[0])
        cols_scaled = [i for i, k in enumerate(free) if k in (0, 3)]
        sw_all, sy_all = w.sum(axis=1), (w * y).sum(axis=1)
    for _ in range(max_iter):
        # Work on the curves still iterating only; the set shrinks quickly.
        ia = ia[~converged[ia]]
        if ia.size == 0:
            break
        xa, ya, wa = x[ia], y[ia], w[ia]
        f, jac = f_cur[ia], jac_cur[ia]
        r = ya - f
        jw = jac if unweighted else jac * wa[:, None, :]
        jtj = np.matmul(jw, jac.transpose(0, 2, 1))
        grad = np.matmul(jw, r[:, :, None])[..., 0]
        # Active set: a variable at a bound whose descent direction points outside is held this iteration.
        tiny = 1e-12 * span[ia]
        held = ((xa <= xlo[ia] + tiny) & (grad < 0)) | ((xa >= xhi[ia] - tiny) & (grad > 0))
        mfree = ~held
        diag = np.einsum("nii->ni", jtj)
        cost_a = cost[ia]
        # Gradient test (MINPACK's gtol): cosine between each free Jacobian column and the residuals.
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.abs(grad) / np.sqrt(np.maximum(diag, 1e-300) * np.maximum(cost_a, 1e-300)[:, None])
        g_ok = np.all(np.where(mfree, cosine, 0.0) < gtol, axis=1) | (cost_a <= 1e-300)
        mm = mfree[:, :, None] & mfree[:, None, :]
        a_mat = np.where(mm, jtj, 0.0) + eye * (~mfree)[:, :, None]
        g_m = np.where(mfree, grad, 0.0)
        dscale = np.maximum(np.einsum("nii->ni", a_mat), 1e-300)
        damp = a_mat + lam[ia, None, None] * (dscale[:, :, None] * eye[None])
        try:
            step = np.linalg.solve(damp, g_m[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.einsum("bij,bj->bi", np.linalg.pinv(damp), g_m)
        step = np.nan_to_num(step)
        trial = np.clip(xa + step, xlo[ia], xhi[ia])
        dx = trial - xa
        pt = to_p(trial, ia)
        if project:
            f_new, jac_new, e = _terms(pt, lags, free, with_e=True)
            we = e if unweighted else wa * e
            se, see, sye = we.sum(axis=1), np.einsum("nl,nl->n", we, e), np.einsum("nl,nl->n", we, ya)
            sw, sy = sw_all[ia], sy_all[ia]
            bt = pt[:, 1]
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                den = sw * see - se * se
                okp = (den > 1e-12 * sw * see) & (bt > 0) & np.isfinite(den)
                bn = np.clip(np.where(okp, (sw * sye - sy * se) / np.where(okp, den, 1.0), bt), lo[ia, 1], hi[ia, 1])
                cn = np.clip(np.where(okp, (sy - bn * se) / np.maximum(sw, 1e-300), pt[:, 2]), lo[ia, 2],
                             hi[ia, 2])
                ratio = np.where(okp, bn / np.where(okp, bt, 1.0), 1.0)
            okp &= np.isfinite(bn) & np.isfinite(cn) & np.isfinite(ratio)
            bn, cn, ratio = np.where(okp, bn, bt), np.where(okp, cn, pt[:, 2]), np.where(okp, ratio, 1.0)
            f_new = np.where(okp[:, None], cn[:, None] + bn[:, None] * e, f_new)
            for col in cols_scaled:
                jac_new[:, col] *= ratio[:, None]
            pt[:, 1], pt[:, 2] = bn, cn
            trial[:, col_b], trial[:, col_c] = bn, cn
        else:
            f_new, jac_new = _terms(pt, lags, free)
        new_cost = _cost(f_new, ya, wa)
        # Predicted decrease of Σ w r² for the step taken (linear model): 2 dx·g − dx·JᵀWJ·dx.
        pred = 2.0 * np.einsum("ni,ni->n", dx, grad) - np.einsum("ni,nij,nj->n", dx, jtj, dx)
        actual = cost_a - new_cost
        better = new_cost < cost_a
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(pred > 0, actual / pred, -1.0)
        acc = ia[better]
        x[acc], p[acc] = trial[better], pt[better]
        f_cur[acc], jac_cur[acc], cost[acc] = f_new[better], jac_new[better], new_cost[better]
        # Nielsen's damping update.
        fac = np.where(better, np.maximum(1.0 / 3.0, 1.0 - (2.0 * np.clip(rho, 0, 1) - 1.0) ** 3), nu[ia])
        lam[ia] = np.clip(lam[ia] * fac, 1e-15, 1e16)
        nu[ia] = np.where(better, 2.0, nu[ia] * 2.0)
        n_iter[ia] += 1
        scale_c = np.maximum(cost_a, 1e-300)
        f_ok = better & (actual / scale_c < tol) & (np.abs(pred) / scale_c < tol)
        x_ok = np.max(np.abs(dx) / (np.abs(xa) + 1e-8), axis=1) < 1e-12
        stuck = (~better) & (lam[ia] >= 1e16)
        converged[ia] = g_ok | f_ok | x_ok | stuck
    return p, cost, n_iter, converged


def sigma_for_fit(err, *, floor: float = 0.25) -> np.ndarray:
    """σ for :func:`fit_g2` from the standard errors of 1TCF points (e.g. ``one_time_from_two_time(...,
    return_err=True)``).

    A spread estimated from a few values can be small by chance and would then dominate a weighted fit, and
    the longest lags (one value) have none: per curve, every σ is raised to at least ``floor`` × the curve's
    median σ, and undefined or zero σ get the curve's largest σ. A curve with no usable σ (e.g. noise-free)
    gets σ = 1 everywhere: an unweighted fit.

    Parameters
    ----------
    err : array_like, shape (L,) or (..., L)
    floor : float
        Smallest σ as a fraction of the curve's median σ.

    Returns
    -------
    ndarray, same shape, finite and > 0.
    """
    e = np.array(err, dtype=np.float64)
    flat = e.reshape(-1, e.shape[-1]) if e.ndim else e.reshape(1, 1)
    good = np.isfinite(flat) & (flat > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(good, flat, np.nan), axis=1)
        top = np.nanmax(np.where(good, flat, np.nan), axis=1)
    out = np.where(good, np.maximum(flat, floor * med[:, None]), top[:, None])
    out[~np.isfinite(med)] = 1.0
    return out.reshape(e.shape)


def cut_trust(fit: FitResult, g2=None, *, min_frames: float = 5.0, min_half_decays: float = 2.0) -> np.ndarray:
    """Whether each fit resolves its decay (trust regions of time-resolved cuts).

    A fit is trusted when it succeeded, at least ``min_frames`` fitted lags lie before the half-decay time
    ``t½ = (ln 2 / 2)^(1/α) / Γ`` (where ``exp(−2 (Γ t)^α) = 1/2``) and the fitted lags reach at least
    ``min_half_decays`` × t½. Otherwise Γ rests on too few points of the decay, or on a decay that the lags
    barely start to cover.

    Parameters
    ----------
    fit : FitResult
    g2 : array_like, optional
        The fitted 1TCFs (batch + (L,)); their NaN lags (a cut leaving the matrix) do not count as fitted.
    min_frames, min_half_decays : float
        The two thresholds (defaults 5 lags and 2 half-decay times).

    Returns
    -------
    ndarray of bool, the fit's batch shape.
    """
    lags = np.asarray(fit.lags, dtype=np.float64)
    gamma = np.asarray(fit.gamma, dtype=np.float64).ravel()
    alpha = np.asarray(fit.alpha, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t_half = (np.log(2.0) / 2.0) ** (1.0 / alpha) / gamma
    if g2 is None:
        used = np.ones((gamma.size, lags.size), bool)
    else:
        used = np.isfinite(np.asarray(g2, dtype=np.float64).reshape(gamma.size, lags.size))
    before = np.sum(used & (lags[None] < t_half[:, None]), axis=1)
    reach = np.max(np.where(used, lags[None], -np.inf), axis=1)
    ok = np.asarray(fit.success).ravel() & np.isfinite(t_half)
    trusted = ok & (before >= min_frames) & (reach >= min_half_decays * t_half)
    return trusted.reshape(np.shape(fit.gamma))


@dataclass
class DiffusionFit:
    """Γ = D qⁿ fitted to Γ(q) (see :func:`fit_diffusion`).

    Attributes
    ----------
    D, D_err : float
        Prefactor and its one-sigma error, in ``gamma_unit`` × Å^n (Å²/s for n = 2 and Γ in s⁻¹).
    power, power_err : float
        Exponent n and its error (0 when fixed).
    power_fixed : bool
    redchi, chisqr : float
        Reduced and plain (weighted) χ² of the fit.
    n_points : int
        ROIs used (finite Γ > 0 with finite q > 0 and, with errors, finite σ > 0).
    used : ndarray of bool
        Which of the given points were used.
    gamma_unit : str
        Unit of Γ (``"1/frame"`` or ``"1/s"``); q is in Å⁻¹.
    weighted, absolute_sigma : bool
    """

    D: float
    D_err: float
    power: float
    power_err: float
    power_fixed: bool
    redchi: float
    chisqr: float
    n_points: int
    used: np.ndarray
    gamma_unit: str = "1/frame"
    weighted: bool = False
    absolute_sigma: bool = False

    @property
    def D_unit(self) -> str:
        """Unit of D: ``gamma_unit`` times Å to the power n, e.g. ``"Å^2/s"``."""
        per = self.gamma_unit.split("/", 1)[1]
        return f"Å^{self.power:.4g}/{per}"

    def model(self, q) -> np.ndarray:
        """Γ(q) = D qⁿ."""
        return self.D * np.asarray(q, dtype=np.float64) ** self.power

    def to_dict(self) -> dict:
        """JSON-ready summary, keys naming their units."""
        return {"model": "gamma = D * q**power", "D": self.D, "D_err": self.D_err, "D_unit": self.D_unit,
                "power": self.power, "power_err": self.power_err, "power_fixed": self.power_fixed,
                "gamma_unit": self.gamma_unit, "q_unit": "1/Å", "redchi": self.redchi, "chisqr": self.chisqr,
                "n_points": self.n_points, "weighted": self.weighted}

    def report(self) -> str:
        """A readable report, as lmfit's ``fit_report``."""
        pw = f"{self.power:.6g} (fixed)" if self.power_fixed else f"{self.power:.6g} +/- {self.power_err:.4g}"
        return "\n".join([
            "[[Fit Statistics]]",
            "    # model            = Γ(q) = D q^n",
            f"    # data points      = {self.n_points}",
            f"    # variables        = {1 if self.power_fixed else 2}",
            f"    chi-square         = {self.chisqr:.6g}" + ("" if self.weighted else " (unweighted)"),
            f"    reduced chi-square = {self.redchi:.6g}",
            "[[Variables]]",
            f"    D:         {self.D:.6g} +/- {self.D_err:.4g} {self.D_unit}",
            f"    power:     {pw}",
            f"    (Γ in {self.gamma_unit}, q in 1/Å)"])


def fit_diffusion(q, gamma, gamma_err=None, *, power: float | None = 2.0, absolute_sigma: bool = False,
                  gamma_unit: str = "1/frame") -> DiffusionFit:
    """Fit Γ = D qⁿ to relaxation rates against q (pyCHX: n = 2 through the origin; xpcs-viewer: n free).

    Parameters
    ----------
    q : array_like, shape (K,)
        Momentum transfer, Å⁻¹.
    gamma : array_like, shape (K,)
        Relaxation rates Γ(q) (any time unit, e.g. ``FitResult.gamma``). Points with non-finite or non-positive
        Γ or q (failed fits) are left out.
    gamma_err : array_like, optional
        One-sigma errors of Γ: weights 1/σ² (points with non-finite or non-positive σ are left out).
    power : float or None
        The exponent n, held fixed (default 2: diffusion); None fits it.
    absolute_sigma : bool
        As in ``curve_fit``: if False (default) the errors are scaled by the reduced χ².
    gamma_unit : str
        Unit of Γ, recorded in the result (``FitResult.gamma_unit``).

    Returns
    -------
    DiffusionFit

    Notes
    -----
    With n fixed the fit is linear, ``D = Σ w qⁿ Γ / Σ w q²ⁿ`` and ``σ_D² = 1 / Σ w q²ⁿ`` (× reduced χ²).
    With n free it is a weighted nonlinear least-squares fit of Γ (not of log Γ), started from the straight
    line through log Γ against log q.
    """
    q = np.asarray(q, dtype=np.float64).ravel()
    g = np.asarray(gamma, dtype=np.float64).ravel()
    if q.shape != g.shape:
        raise XPCSInputError(f"need one Γ per q: got {q.size} q and {g.size} Γ")
    used = np.isfinite(q) & (q > 0) & np.isfinite(g) & (g > 0)
    w = np.ones_like(g)
    if gamma_err is not None:
        s = np.asarray(gamma_err, dtype=np.float64).ravel()
        if s.shape != g.shape:
            raise XPCSInputError(f"need one Γ error per Γ: got {s.size} for {g.size}")
        used &= np.isfinite(s) & (s > 0)
        w = np.where(used, 1.0 / np.where(used, s, 1.0) ** 2, 0.0)
    if power is not None:
        try:
            ok_power = np.isfinite(float(power)) and float(power) > 0
        except (TypeError, ValueError):
            ok_power = False
        if not ok_power:
            raise XPCSInputError(f"power must be a finite number > 0 (Γ = D qⁿ), or None to fit it; got {power!r}")
    n_par = 1 if power is not None else 2
    n = int(used.sum())
    if n < n_par:
        raise XPCSInputError(f"Γ(q) fit needs at least {n_par} point(s) with finite Γ > 0 and q > 0; got {n}")
    qu, gu, wu = q[used], g[used], w[used]
    if power is not None:
        pw = float(power)
        x = qu ** pw
        sxx = np.sum(wu * x * x)
        d = float(np.sum(wu * x * gu) / sxx)
        chisqr = float(np.sum(wu * (gu - d * x) ** 2))
        var_d, var_n = 1.0 / sxx, 0.0
        p_err_scale = 1.0
    else:
        # Start: weighted straight line through (log q, log Γ), σ_logΓ = σ_Γ / Γ.
        lw = wu * gu * gu
        lq, lg = np.log(qu), np.log(gu)
        if n >= 2 and np.ptp(lq) > 0:
            a = np.vstack([np.ones_like(lq), lq]).T
            coef = np.linalg.lstsq(a * np.sqrt(lw)[:, None], lg * np.sqrt(lw), rcond=None)[0]
            ld, pw = float(coef[0]), float(coef[1])
        else:
            raise XPCSInputError("Γ(q) fit with a free power needs at least 2 distinct q")
        # Gauss–Newton with step halving on Σ w (Γ − D qⁿ)², in (log D, n).
        def chi(ld_, pw_):
            return float(np.sum(wu * (gu - np.exp(ld_ + pw_ * lq)) ** 2))

        c = chi(ld, pw)
        for _ in range(100):
            m = np.exp(ld + pw * lq)
            jac = np.vstack([m, m * lq]).T
            jtj = (jac * wu[:, None]).T @ jac
            grad = (jac * wu[:, None]).T @ (gu - m)
            try:
                step = np.linalg.solve(jtj, grad)
            except np.linalg.LinAlgError:
                break
            t = 1.0
            while t > 1e-6:
                c_new = chi(ld + t * step[0], pw + t * step[1])
                if c_new <= c:
                    break
                t /= 2
            if c_new > c:
                break
            ld, pw = ld + t * step[0], pw + t * step[1]
            done = abs(c - c_new) <= 1e-14 * max(c, 1e-300)
            c = c_new
            if done or np.max(np.abs(t * step)) < 1e-13:
                break
        d = float(np.exp(ld))
        chisqr = c
        m = d * qu ** pw
        jac = np.vstack([qu ** pw, d * qu ** pw * lq]).T  # ∂Γ/∂D, ∂Γ/∂n
        jtj = (jac * wu[:, None]).T @ jac
        try:
            cov = np.linalg.inv(jtj)
            var_d, var_n = float(cov[0, 0]), float(cov[1, 1])
        except np.linalg.LinAlgError:
            var_d = var_n = np.nan
        p_err_scale = 1.0
    dof = n - n_par
    redchi = chisqr / dof if dof > 0 else np.nan
    scale = p_err_scale if absolute_sigma else (redchi if dof > 0 else np.nan)
    return DiffusionFit(D=d, D_err=float(np.sqrt(var_d * scale)), power=float(pw),
                        power_err=0.0 if power is not None else float(np.sqrt(var_n * scale)),
                        power_fixed=power is not None, redchi=float(redchi), chisqr=float(chisqr), n_points=n,
                        used=used, gamma_unit=gamma_unit, weighted=gamma_err is not None,
                        absolute_sigma=absolute_sigma)
