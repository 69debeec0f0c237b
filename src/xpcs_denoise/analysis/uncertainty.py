"""Γ, β, C∞, α of raw or denoised 2TCFs with a calibrated standard error of Γ, in three steps.

1. **Path** (:func:`choose_path`): what is fitted, per 2TCF, and said in every row. ``"lagnet"`` (default): the
   lag-band model's output, which is faithful, so it is fitted as it stands; ``"raw"``: the 2TCF itself;
   ``"paper-2021"``: the 2021 ensemble's output (its Eq. 5 scaling takes C∞ = 1 unless the decay shows another
   baseline). A 2TCF without contrast (its first lags at the level of its tail) has no decay to fit:
   ``"failed: no contrast"``.
2. **Fit** (:func:`fit_denoised`): one batched Levenberg–Marquardt fit (:func:`~xpcs_denoise.core.fitting.fit_g2`)
   of Eq. 3 to the 1TCF of what the path gives, lags 1…L, weighted by the *raw* 1TCF's standard errors (from the
   spread along each diagonal); its covariance with those weights taken as absolute gives Γ's uncalibrated error
   ``u``. Where the calibration says so (``FitCalibration.raw_pool``, the shipped lagnet one), the same fit of
   the raw 2TCF is pooled in by precision: a well-measured decay keeps what the raw data show, beyond the model's
   few per cent of bias (:func:`~xpcs_denoise.analysis.calibration.raw_pool_weight`; ``raw_weight`` per row).
3. **Calibration** (:mod:`~xpcs_denoise.analysis.calibration`): σ = sqrt((s·u)² + (r·Γ̂)²), (s, r) read from the
   calibration stored beside the model's weights (raw fits: ``pretrained/raw_calibration.json``) for the path,
   the series' length, the parameters held and the decay times the lags span; measured on held-out real and
   simulated fits (``scripts/calibrate_fits.py``). β, C∞ and α keep the fit's own errors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

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
    flag_messages,
    sigma_for_fit,
)
from ..core.scaling import scale_parameters
from ..core.simulation import JUDGED_RANGES, simulate_crops
from ..core.validation import check_int, check_square, numeric_array
from ..io.files import write_csv
from ..nn.config import WINDOW
from ..restoration.denoise import denoise, resolve_method
from .calibration import (
    FitCalibration,
    calibrate,
    calibration_scale,
    cell_key,
    fit_calibration,
    load_calibration,
    pool_fits,
)

__all__ = ["calibrate", "calibration_scale", "calibration_records", "choose_path", "pool_records", "cut_fits",
           "raw_cut_errors", "default_max_lag", "fit_denoised", "fit_two_time", "recalibrate", "residual_bootstrap",
           "TwoTimeFit", "CutFits", "PATH_NAMES", "POOLED_PATH_NAMES"]

#: The path of each method, as every row states it.
PATH_NAMES = {"lagnet": "lagnet: plain fit of the denoised 2TCF", "none": "raw: plain fit",
              "cned": "paper-2021: plain fit of the denoised 2TCF"}
_CELL_PATH = {"lagnet": "lagnet", "none": "raw", "cned": "paper-2021"}
#: The path's name where its calibration pools the denoised fit with the raw one (``FitCalibration.raw_pool``).
POOLED_PATH_NAMES = {"lagnet": "lagnet: denoised and raw fits pooled by precision"}
NO_CONTRAST = "failed: no contrast"


def default_max_lag(n_frames: int) -> int:
    """Lags fitted by default: all of a series of up to 100 frames, else half of it."""
    n = int(n_frames)
    return n - 1 if n <= 100 else n // 2


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


@dataclass
class TwoTimeFit:
    """Eq. 3 parameters of 2TCFs; Γ's standard error calibrated (:mod:`~xpcs_denoise.analysis.calibration`).

    Attributes
    ----------
    fit : FitResult
        Parameters; ``gamma_err`` calibrated, the others the fit's own (raw 1TCF weights, absolute).
    path : ndarray of str
        What was fitted, per 2TCF (:data:`PATH_NAMES`, or ``"failed: no contrast"``).
    gamma_err_fit : ndarray
        Γ's uncalibrated error u (the fit's covariance), in Γ's unit.
    cell : ndarray of str
        The calibration cell of each fit (path/regime/held), or ``"uncalibrated"``.
    lag_range : tuple
        First and last lag fitted, in ``fit.lag_unit``.
    denoised : ndarray or None
        What was fitted (the path's 2TCFs).
    raw_weight : ndarray or None
        The raw fit's weight in each result: 1 on the raw path, 0 for a denoised fit alone, in between where the
        calibration pools the two (:func:`~xpcs_denoise.analysis.calibration.raw_pool_weight`).
    """

    fit: FitResult
    path: np.ndarray
    gamma_err_fit: np.ndarray
    cell: np.ndarray
    lag_range: tuple
    seed: int = 0
    denoised: np.ndarray | None = None
    notes: list = field(default_factory=list)
    raw_weight: np.ndarray | None = None


def _has_contrast(c2: np.ndarray, max_lag: int) -> np.ndarray:
    """(B,) True where the first lags stand above the fitted lags' tail (a decay to fit)."""
    g = one_time_from_two_time(c2, max_lag=max_lag)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        head = np.nanmean(g[:, : min(3, g.shape[-1])], axis=-1)
        tail = np.nanmedian(g[:, -max(1, g.shape[-1] // 4):], axis=-1)
        spread = np.nanstd(g, axis=-1)
    return np.isfinite(head) & np.isfinite(tail) & (head - tail > 1e-9 * np.maximum(np.abs(tail), 1.0)) & (spread > 0)


def choose_path(c2, method: str, max_lag: int) -> np.ndarray:
    """Path of each of (B, N, N) 2TCFs for ``method`` (``"lagnet"``, ``"none"``, ``"cned"``): its name in
    :data:`PATH_NAMES`, or ``"failed: no contrast"`` where the first lags are not above the tail."""
    x = np.asarray(c2, dtype=np.float64)
    ok = _has_contrast(x, max_lag)
    return np.where(ok, PATH_NAMES[method], NO_CONTRAST).astype(object)


def fit_denoised(raw, denoised, *, method: str = "lagnet", model=None, max_lag: int | None = None,
                 fix: dict | None = None, frame_time: float | None = None, weighted: bool = True,
                 calibration: FitCalibration | None = None, seed: int = 0, failed=None) -> TwoTimeFit:
    """Fit and calibrate: the 1TCFs of ``denoised`` (what ``method``'s path gives; the raw 2TCFs themselves for
    ``"none"``), weighted by ``raw``'s 1TCF standard errors, with Γ's σ from the calibration; in a short series
    with α free, α is held within the calibration's ``alpha_bounds`` (the fits it was measured on). The one function
    behind :func:`fit_two_time`, ``fit`` and ``report``.

    Parameters
    ----------
    raw, denoised : array_like, (N, N) or (B, N, N)
        The raw 2TCFs and what the path made of them (same shape).
    method : {"lagnet", "none", "cned"}
        The path (:data:`PATH_NAMES`); its calibration is ``calibration`` or that of ``model`` (the shipped one).
    max_lag : int, optional
        Lags 1…max_lag (default :func:`default_max_lag`; at most the model's window − 1 for ``"cned"``).
    fix : dict, optional
        Parameters held, as :func:`~xpcs_denoise.core.fitting.fit_g2` (scalars or one value per 2TCF).
    frame_time : float, optional
        Seconds per frame: Γ and its errors in s⁻¹, lags in s.
    weighted : bool
        Weight by the raw 1TCF's errors (default); False: unweighted (u is then the covariance scaled by the
        reduced χ², not what the calibration measured: a note says so).
    failed : array of bool, optional
        2TCFs the path could not take (no contrast for the model): their fits fail with that reason.
    """
    if method not in PATH_NAMES:
        raise XPCSInputError(f"fit_denoised supports method 'lagnet', 'cned' or 'none'; got {method!r}")
    raw = numeric_array(raw, "raw 2TCF").astype(np.float64, copy=False)
    den = numeric_array(denoised, "denoised 2TCF").astype(np.float64, copy=False)
    if raw.shape != den.shape:
        raise XPCSInputError(f"raw and denoised 2TCFs differ in shape: {raw.shape} and {den.shape}")
    check_square(raw.shape, min_n=3)
    single = raw.ndim == 2
    raw3, den3 = (raw[None], den[None]) if single else (raw, den)
    nb, n = raw3.shape[0], raw3.shape[-1]
    if nb == 0:
        raise XPCSInputError(f"no 2TCF to fit: shape {raw.shape}")
    lag_max = default_max_lag(n) if max_lag is None else check_int(max_lag, "max_lag (frames)", 1, n - 1)
    if method == "cned":  # the ensemble denoises lags up to its window − 1
        lag_max = min(lag_max, int(getattr(model, "size", None) or WINDOW) - 1)
    path = choose_path(den3, method, lag_max)
    if failed is not None:
        path[np.ravel(failed)] = NO_CONTRAST
    g2 = one_time_from_two_time(den3, max_lag=lag_max)
    sigma = None
    if weighted:
        sigma = sigma_for_fit(one_time_from_two_time(raw3, max_lag=lag_max, return_err=True)[1])
    if calibration is None:
        calibration = load_calibration(method, model)
    # The calibration was measured on fits with its bounds (α of short series): the same fits here.
    bounds = calibration.fit_bounds(n, fix) if calibration is not None else None
    fit = fit_g2(g2, fix=fix, sigma=sigma, absolute_sigma=weighted, bounds=bounds)
    w = np.full(nb, 1.0 if method == "none" else 0.0)
    if method in POOLED_PATH_NAMES and calibration is not None and calibration.raw_pool is not None:
        # the same fit of the raw 2TCF, pooled by precision: a well-measured decay keeps what the raw data show
        raw_fit = fit_g2(one_time_from_two_time(raw3, max_lag=lag_max), fix=fix, sigma=sigma,
                         absolute_sigma=weighted, bounds=bounds)
        names = [*PARAMETERS, *(f"{k}_err" for k in PARAMETERS)]
        pooled, w = calibration.pool({k: getattr(fit, k) for k in names}, {k: getattr(raw_fit, k) for k in names},
                                     lag_max, ok=fit.success & raw_fit.success)
        for k, v in pooled.items():
            setattr(fit, k, v)
        # flags of the pooled values: a bound is kept only where the fits with weight there both end on it
        den_b, raw_b = (np.reshape(f.at_bound_params, (-1, 4)) for f in (fit, raw_fit))
        wb = w[:, None]
        bound = np.where(wb <= 0, den_b, np.where(wb >= 1, raw_b, den_b & raw_b))
        both = (w > 0) & fit.success
        # (a held parameter's error is 0, finite)
        undetermined = ~np.isfinite(np.stack([getattr(fit, f"{k}_err") for k in PARAMETERS], axis=1)).all(axis=1)
        fit.at_bound_params = bound.reshape(np.shape(fit.at_bound_params))
        fit.at_bound = bound.any(axis=1).reshape(np.shape(fit.at_bound))
        fit.message = np.where(both, flag_messages(bound, undetermined), fit.message)
        path = np.where(path == PATH_NAMES[method], POOLED_PATH_NAMES[method], path).astype(object)
    notes = [] if weighted else ["unweighted fit: its σ of Γ is calibrated for weighted fits only"]
    if bounds is not None and fit.at_bound_params is not None:
        lo, hi = bounds["alpha"]
        # the denoised fit's α at a bound; after pooling with the raw fit, only where the pooled α is there too
        held = np.reshape(fit.at_bound_params, (-1, 4))[:, 3] & (np.isclose(fit.alpha, lo) | np.isclose(fit.alpha, hi))
        fit.message = np.where(held, np.char.add(fit.message.astype(str), f" (α held within the calibration's {lo:g}–"
                                                 f"{hi:g} for short series)"), fit.message)
    failed = path == NO_CONTRAST
    fit.success = fit.success & ~failed
    fit.message = np.where(failed, "no contrast: the first lags are not above the tail, no decay to fit",
                           fit.message)
    for k in PARAMETERS:
        setattr(fit, k, np.where(failed, np.nan, getattr(fit, k)))
        setattr(fit, f"{k}_err", np.where(fit.success, getattr(fit, f"{k}_err"), np.nan))
    u = fit.gamma_err.copy()
    key = cell_key(_CELL_PATH[method], n, fix, calibration.long_frames if calibration else 100)
    if calibration is None:
        notes.append(f"no calibration for the {method} path: Γ's σ is the fit's own")
        cell = np.full(nb, "uncalibrated", dtype=object)
    else:
        fit.gamma_err = np.where(fit.success, calibration.sigma(key, fit.gamma, u, lag_max), np.nan)
        cell = np.full(nb, key, dtype=object)
    if fix:
        for k in fix:
            setattr(fit, f"{k}_err", np.where(fit.success, 0.0, np.nan))
    lags = (1.0, float(lag_max))
    if frame_time is not None:
        ft = _check_frame_time(frame_time)
        fit.gamma, fit.gamma_err, u = fit.gamma / ft, fit.gamma_err / ft, u / ft
        fit.lags, fit.lag_unit = fit.lags * ft, "s"
        lags = (ft, lag_max * ft)
    shape = () if single else (nb,)
    for k in PARAMETERS:
        for name in (k, f"{k}_err"):
            setattr(fit, name, np.asarray(getattr(fit, name)).reshape(shape))
    for name in ("success", "message", "redchi", "n_iter", "at_bound"):
        v = getattr(fit, name, None)
        if v is not None:
            setattr(fit, name, np.asarray(v).reshape(shape))
    fit.weighted = weighted
    if notes:
        warnings.warn("; ".join(notes), stacklevel=3)
    return TwoTimeFit(fit=fit, path=path.astype(str).reshape(shape), gamma_err_fit=u.reshape(shape),
                      cell=cell.astype(str).reshape(shape), lag_range=lags, seed=int(seed),
                      denoised=den, notes=notes, raw_weight=np.where(failed, np.nan, w).reshape(shape))


def fit_two_time(c2, *, method: str | None = None, model=None, max_lag: int | None = None, fix: dict | None = None,
                 frame_time: float | None = None, seed: int = 0, calibration: FitCalibration | None = None,
                 step: int = 5) -> TwoTimeFit:
    """Fit Eq. 3 to raw 2TCFs along one path, with a calibrated standard error of Γ (see the module's notes).

    Parameters
    ----------
    c2 : array_like, (N, N) or (B, N, N)
        Raw 2TCFs in physical units (any baseline and contrast; N ≥ 50 for ``"cned"``).
    method : str, optional
        ``"lagnet"`` (default without a model), ``"cned"`` / ``"paper-2021"`` or ``"none"`` (the raw 2TCF).
        Default: the family of ``model``, else ``"lagnet"``.
    model : optional
        The denoiser (default the shipped one); its card holds the calibration.
    max_lag : int, optional
        Lags 1…max_lag (default all up to 100 frames, else half the series).
    fix : dict, optional
        Parameters to hold fixed, as :func:`~xpcs_denoise.core.fitting.fit_g2`.
    frame_time : float, optional
        Seconds per frame: Γ and its error in s⁻¹.
    seed, step : int
        The ensemble's seed and sliding-window step (``"cned"`` only).
    calibration : FitCalibration, optional
        Instead of the stored one (e.g. while measuring one).

    Returns
    -------
    TwoTimeFit

    Examples
    --------
    >>> import numpy as np
    >>> from xpcs_denoise import fit_two_time, simulate_speckle
    >>> c2 = simulate_speckle(60, 3000, gamma=0.05, beta=0.2, mean_count=0.5, seed=1).two_time()[0]
    >>> r = fit_two_time(c2)
    >>> str(r.path), bool(abs(r.fit.gamma - 0.05) < 3 * r.fit.gamma_err), bool(0 <= r.raw_weight <= 1)
    ('lagnet: denoised and raw fits pooled by precision', True, True)
    """
    method = resolve_method(method, model)
    if method not in PATH_NAMES:
        raise XPCSInputError(f"fit_two_time supports method 'lagnet', 'cned' (paper-2021) or 'none'; got {method!r}")
    x = numeric_array(c2, "2TCF").astype(np.float64, copy=False)
    check_square(x.shape, min_n=3)
    if x.ndim == 3 and x.shape[0] == 0:
        raise XPCSInputError(f"no 2TCF to fit: shape {x.shape}")
    if method == "none":
        den = x
    elif method == "lagnet":
        den = denoise(x, "lagnet", model=model)
    else:
        den = np.array(x, copy=True)
        x3, d3 = (x[None], den[None]) if x.ndim == 2 else (x, den)
        failed = np.zeros(x3.shape[0], bool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                d3[:] = denoise(x3, "cned", model=model, seed=seed, step=step)
            except XPCSInputError:  # one by one: a 2TCF without contrast stops only its own denoising
                for i in range(x3.shape[0]):
                    try:
                        d3[i] = denoise(x3[i], "cned", model=model, seed=seed, step=step)
                    except XPCSInputError:
                        failed[i] = True
    return fit_denoised(x, den, method=method, model=model, max_lag=max_lag, fix=fix, frame_time=frame_time,
                        calibration=calibration, seed=seed, failed=failed if method == "cned" else None)


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


#: Bins of Γ̂·L (decay times spanned by the fitted lags) and of u/Γ̂ (the fit's own relative error) of the
#: calibrations that :func:`recalibrate` and ``scripts/calibrate_fits.py`` measure.
CALIBRATION_EDGES = (0.0, 1.5, 4.0)
CALIBRATION_REL_EDGES = (0.0, 0.15, 0.5)
_IDENTITY = FitCalibration(CALIBRATION_EDGES, {f"{p}/*": [[1.0, 0.0]] for p in _CELL_PATH.values()})


def calibration_records(x, truth, method: str, model=None, fix: dict | None = None, alpha_bounds=None) -> dict:
    """Uncalibrated fits of (B, N, N) 2TCFs of known Γ (``truth``), with ``alpha_bounds``
    (:attr:`~xpcs_denoise.analysis.calibration.FitCalibration.alpha_bounds`): arrays ``key`` (the calibration cell),
    ``residual`` (Γ̂ − Γ), ``u``, ``gamma`` (Γ̂), ``resolved`` (Γ̂·L) and ``truth``, what
    :func:`~xpcs_denoise.analysis.calibration.fit_calibration` takes; on a path that can pool its fit with the raw
    one (:data:`POOLED_PATH_NAMES`), also the raw fit's ``gamma_raw`` and ``u_raw`` (see :func:`pool_records`)."""
    ident = replace(_IDENTITY, alpha_bounds=alpha_bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fit_two_time(x, method=method, model=model, fix=fix, calibration=ident)
        raw = fit_two_time(x, method="none", fix=fix, calibration=ident) if method in POOLED_PATH_NAMES else None
    g = np.atleast_1d(r.fit.gamma)
    key = cell_key(_CELL_PATH[method], x.shape[-1], fix, _IDENTITY.long_frames)
    out = {"key": np.full(g.size, key), "residual": g - np.asarray(truth, float), "u": np.atleast_1d(r.gamma_err_fit),
           "gamma": g, "resolved": np.abs(g) * r.lag_range[1], "truth": np.asarray(truth, float)}
    if raw is not None:
        out.update(gamma_raw=np.atleast_1d(raw.fit.gamma), u_raw=np.atleast_1d(raw.gamma_err_fit))
    return out


def pool_records(rec: dict, raw_pool: dict | None) -> dict:
    """Records of :func:`calibration_records` (with ``gamma_raw``, ``u_raw``, and ``resolved`` / ``gamma`` = L)
    as :func:`fit_denoised` pools them with ``raw_pool`` (``FitCalibration.raw_pool``; None: unchanged)."""
    if raw_pool is None:
        return rec
    with np.errstate(divide="ignore", invalid="ignore"):
        span = np.where(rec["gamma"] != 0, rec["resolved"] / np.abs(rec["gamma"]), 0.0)
    pooled, w = pool_fits({"gamma": rec["gamma"], "gamma_err": rec["u"]},
                          {"gamma": rec["gamma_raw"], "gamma_err": rec["u_raw"]}, span, raw_pool)
    g = pooled["gamma"]
    out = dict(rec)
    out.update(gamma=g, residual=g - rec["truth"], u=pooled["gamma_err"], resolved=np.abs(g) * span, raw_weight=w)
    return out


def recalibrate(method: str, model=None, *, n: int = 900, seed: int = 0) -> FitCalibration:
    """The calibration of ``method``'s path for ``model`` measured again, on simulated 50-frame crops of known Γ
    (the judged ranges; a third with α = 1 fitted with α held): what a fine-tuned model stores in its card, whose
    user has no data of known truth. Cells it does not measure (long series) take the path's pooled pair."""
    rows = []
    # α's bounds stay those of the model's calibration (else the shipped one's)
    stored = load_calibration(method, model) or load_calibration(method)
    bounds = stored.alpha_bounds if stored is not None else None
    pool = stored.raw_pool if stored is not None else None  # and its pooling with the raw fit
    for alpha_one, m in ((False, n), (True, n // 3)):
        kw = {**JUDGED_RANGES, **({"alpha_range": (1.0, 1.0)} if alpha_one else {})}
        x, _, prm = simulate_crops(m, 50, seed=seed + alpha_one, **kw)
        rows.append(pool_records(calibration_records(x, prm["gamma"], method, model,
                                                     {"alpha": 1.0} if alpha_one else None, alpha_bounds=bounds), pool))
    by_key = {}
    for r in rows:
        ok = np.isfinite(r["residual"])
        by_key[str(r["key"][0])] = {k: r[k][ok] for k in ("residual", "u", "gamma", "resolved")}
    return fit_calibration(by_key, CALIBRATION_EDGES, rel_edges=CALIBRATION_REL_EDGES, alpha_bounds=bounds,
                           raw_pool=pool, source={"simulated": f"{n} + {n // 3} (α held) 50-frame crops, judged ranges",
                                   "seed": int(seed), "model": (getattr(model, "card", None) or {}).get(
                                       "weights_sha256")})


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


def raw_cut_errors(fit, raw_fit):
    """``fit`` (cuts of a denoised 2TCF) with the errors of ``raw_fit`` (the same cuts of its raw 2TCF), in place.

    Smoothing along age leaves each denoised cut's residuals small while its error is shared with its neighbours
    and across lags, so a plain fit's own errors are too small. The raw cuts' are conservative (the ageing benchmark:
    99 % of cuts within 2 of them) and honest; the same ages, widths and lags must have been fitted.
    """
    if np.shape(fit.gamma) != np.shape(raw_fit.gamma):
        raise XPCSInputError(f"raw cuts {np.shape(raw_fit.gamma)} do not match the denoised ones {np.shape(fit.gamma)}")
    for k in PARAMETERS:
        setattr(fit, k + "_err", np.where(fit.success, getattr(raw_fit, k + "_err"), np.nan))
    return fit


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
        raw_cut_errors(fit, fit_cuts(x)[1])
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
