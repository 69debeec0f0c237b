"""The calibration of Γ's standard error: one validated object, stored as data beside the weights it belongs to.

Method (normalised-residual quantiles, a Mondrian split-conformal calibration; Angelopoulos & Bates 2021, §4):
every fit has an uncalibrated scale ``u`` of its error, the Eq. 3 fit's own covariance σ of Γ with the raw
1TCF's standard errors as weights (``absolute_sigma``). Its calibrated standard error is

    σ = sqrt((s·u)² + (r·Γ̂)²)

with one pair (s, r) per *cell*: the path (``lagnet``, ``raw``, ``paper-2021``), the series' regime (``short``:
fewer than :attr:`FitCalibration.long_frames` frames; ``long``), which parameters were held (``free``, ``alpha``;
any other held set takes ``alpha``'s cell, the closest measured) and a bin of Γ̂·L, the number of decay times
the fitted lags 1…L span (how well the window resolves the decay), times a bin of u/Γ̂ (how precise the fit says it
is: the fits that call themselves imprecise over-state their error, the precise ones under-state it, on real and
simulated data alike). (s, r) are chosen on held-out fits of known
truth (real CHX crops held out by series, and simulated ones) such that |Γ̂ − Γ| < σ for 68.3 % of them and < 2σ
for at least 93 % (:func:`~xpcs_denoise.analysis.uncertainty.calibrate`); a cell with too few fits takes its
cell-group's pooled pair. ``scripts/calibrate_fits.py`` writes it into the model card (key ``"calibration"``)
and, for raw fits, into ``pretrained/raw_calibration.json``; the coverage measured on the other half of the data
is stored with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import json_safe
from ..io.files import atomic_path
from ..nn.config import pretrained_directory

__all__ = ["FitCalibration", "calibrate", "calibration_scale", "cell_key", "fit_calibration", "load_calibration",
           "pool_fits", "pool_values", "raw_pool_weight"]

#: Version of the stored layout; a file of another version is refused.
VERSION = 1


def cell_key(path: str, n_frames: int, fix, long_frames: int) -> str:
    """The cell of a fit: ``"<path>/<short|long>/<free|alpha>"``."""
    regime = "long" if int(n_frames) >= long_frames else "short"
    held = "free" if not fix else "alpha"
    return f"{path}/{regime}/{held}"


@dataclass(frozen=True)
class FitCalibration:
    """(s, r) per cell and Γ̂·L bin (see the module's notes); checks itself when made.

    Attributes
    ----------
    edges : tuple of float
        Bin edges of Γ̂·L (decay times spanned by the fitted lags), increasing, from 0; the last bin is open.
    rel_edges : tuple of float
        Bin edges of u/Γ̂ alike; a cell's pairs run over Γ̂·L bins, and within each over u/Γ̂ bins.
    cells : dict
        ``key -> [[s, r], …]`` one pair per bin (σ = sqrt((s·u)² + (r·Γ̂)²)), keys as :func:`cell_key`;
        ``"<path>/*"`` the pooled pair of a path as ``[[s, r]]`` (used for a cell that was not measured).
    long_frames : int
        Series of at least this many frames are ``long``.
    coverage : dict
        What was measured on data the calibration did not see (|z| < 1, < 2 per cell and overall).
    source : dict
        Where it was measured (data, seeds, counts, model SHA-256).
    alpha_bounds : tuple of two floats, optional
        Bounds of α in the fits of short series with α free, part of what was calibrated: a short window cannot
        pin α down, and a free fit then runs to the fitter's bounds (0.2, 3) with a Γ far off; the KWW exponents of
        XPCS lie within about 0.5 (stretched) to 2 (compressed). None: the fitter's own bounds.
    raw_pool : dict, optional
        ``{"floor": c, "resolved": m}``: a denoised path pools its fit with the same fit of the raw 2TCF, by
        inverse variances with the denoised fit's error taken as c·Γ̂ (:func:`raw_pool_weight`), where both fits'
        decays are resolved (Γ̂·L ≥ m). Part of what was calibrated; None: no pooling.
    """

    edges: tuple
    cells: dict
    long_frames: int = 100
    rel_edges: tuple = (0.0,)
    alpha_bounds: tuple | None = None
    raw_pool: dict | None = None
    version: int = VERSION
    method: str = "normalised-residual quantiles per cell (Mondrian split-conformal): sigma = hypot(s*u, r*gamma)"
    coverage: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            edges = tuple(float(e) for e in self.edges)
            rel = tuple(float(e) for e in self.rel_edges)
        except (TypeError, ValueError):
            raise XPCSInputError(f"calibration edges must be numbers increasing from 0; got {self.edges!r}, "
                                 f"{self.rel_edges!r}") from None
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "rel_edges", rel)
        if self.version != VERSION:
            raise XPCSInputError(f"calibration version {self.version} is not {VERSION}; recalibrate "
                                 "(scripts/calibrate_fits.py)")
        for e in (edges, rel):
            if not e or e[0] != 0 or any(b <= a for a, b in zip(e[:-1], e[1:], strict=False)) \
                    or not all(math.isfinite(v) for v in e):
                raise XPCSInputError(f"calibration edges must increase from 0; got {e}")
        if self.alpha_bounds is not None:
            b = self.alpha_bounds
            ok = isinstance(b, (list, tuple)) and len(b) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
            lo, hi = (float(b[0]), float(b[1])) if ok else (math.nan, math.nan)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
                raise XPCSInputError(f"calibration alpha_bounds must be two numbers 0 < low < high; got "
                                     f"{self.alpha_bounds!r}")
            object.__setattr__(self, "alpha_bounds", (lo, hi))
        if self.raw_pool is not None:
            p = self.raw_pool
            ok = isinstance(p, dict) and set(p) == {"floor", "resolved"} and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p.values())
            if not ok or p["floor"] <= 0 or p["resolved"] < 0:
                raise XPCSInputError(f"calibration raw_pool must be {{'floor': c > 0, 'resolved': m >= 0}}; got {p!r}")
            object.__setattr__(self, "raw_pool", {"floor": float(p["floor"]), "resolved": float(p["resolved"])})
        if not isinstance(self.long_frames, int) or self.long_frames < 3:
            raise XPCSInputError(f"calibration long_frames must be a whole number >= 3; got {self.long_frames!r}")
        if not isinstance(self.cells, dict):
            raise XPCSInputError(f"calibration cells must map cell keys to pairs; got {type(self.cells).__name__}")
        if not self.cells:
            raise XPCSInputError("calibration holds no cells")
        for key, pairs in self.cells.items():
            if not isinstance(key, str):
                raise XPCSInputError(f"calibration cell keys are 'path/regime/held' text; got {key!r}")
            want = 1 if key.endswith("/*") else self.n_bins
            try:
                a = np.asarray(pairs, dtype=np.float64)
            except (TypeError, ValueError):
                a = np.full((0, 2), np.nan)  # ragged or not numbers: refused below
            if (a.shape != (want, 2) or not np.all(np.isfinite(a)) or np.any(a < 0)
                    or np.any(a.sum(axis=1) <= 0)):
                raise XPCSInputError(f"calibration cell {key!r} must hold {want} pairs (s, r >= 0, not both 0); "
                                     f"got {pairs}")

    @property
    def n_bins(self) -> int:
        return len(self.edges) * len(self.rel_edges)

    def pairs(self, key: str) -> np.ndarray:
        """(n_bins, 2) pairs of ``key``, else its path's pooled pair in every bin."""
        if key in self.cells:
            return np.asarray(self.cells[key], dtype=np.float64)
        path = key.split("/")[0]
        for fallback in (key.rsplit("/", 1)[0] + "/alpha", f"{path}/*"):
            if fallback in self.cells:
                a = np.asarray(self.cells[fallback], dtype=np.float64)
                return np.repeat(a, self.n_bins, axis=0) if len(a) == 1 else a
        raise XPCSInputError(f"the calibration has no cell for {key!r} (it holds {', '.join(sorted(self.cells))})")

    def sigma(self, key: str, gamma, u, span) -> np.ndarray:
        """Calibrated σ of Γ for fits of one cell: ``gamma`` Γ̂ and ``u`` its uncalibrated error (any one unit),
        ``span`` the longest lag fitted in frames × Γ̂'s unit (so that Γ̂·span is the decay times spanned)."""
        g = np.abs(np.asarray(gamma, dtype=np.float64))
        u = np.nan_to_num(np.asarray(u, dtype=np.float64), nan=0.0, posinf=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = self.bin(g * np.asarray(span, dtype=np.float64), np.where(g > 0, u / g, np.inf))
        p = self.pairs(key)
        return np.hypot(p[b, 0] * u, p[b, 1] * g)

    def bin(self, resolved, rel=0.0) -> np.ndarray:
        """The bin of fits that span ``resolved`` decay times with relative error ``rel`` (u/Γ̂)."""
        def one(v, e):
            v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=np.inf)
            return np.clip(np.searchsorted(np.asarray(e), v, side="right") - 1, 0, len(e) - 1)
        return one(resolved, self.edges) * len(self.rel_edges) + one(rel, self.rel_edges)

    def fit_bounds(self, n_frames: int, fix) -> dict | None:
        """The bounds that fits of this calibration use (``fit_g2``'s ``bounds``) for a series of ``n_frames``
        with ``fix`` held."""
        if self.alpha_bounds is None or int(n_frames) >= self.long_frames or (fix and "alpha" in fix):
            return None
        return {"alpha": self.alpha_bounds}

    def pool(self, den: dict, raw: dict, lag_max, ok=None) -> tuple[dict, np.ndarray]:
        """The denoised and raw fits pooled as :attr:`raw_pool` says (:func:`pool_fits`; unchanged without it)."""
        if self.raw_pool is None:
            return dict(den), np.zeros(np.shape(den["gamma"]))
        return pool_fits(den, raw, lag_max, self.raw_pool, ok=ok)

    def to_dict(self) -> dict:
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> FitCalibration:
        try:
            return cls(**d)
        except TypeError as exc:
            raise XPCSInputError(f"{where} is not a valid calibration: {exc}") from exc


def raw_pool_weight(gamma_raw, u_raw, lag_max, floor: float, resolved: float, gamma_den=None) -> np.ndarray:
    """Weight w of the raw 2TCF's fit pooled with the denoised one's: log Γ̂ = w log Γ̂_raw + (1 − w) log Γ̂_den.

    Inverse-variance weights, w = 1 / (1 + (u / (floor·Γ̂_raw))²), with u the raw fit's own error and the
    denoised fit's taken as ``floor``·Γ̂: what denoising cannot remove, its bias (a model rounds compressed
    decays by a few per cent), which a raw fit of a well-measured decay does not have. So a precise raw fit
    (bright data, long series) decides Γ and a noisy one leaves it to the denoised fit. Only where the decay is
    resolved (Γ̂·``lag_max`` ≥ ``resolved`` decay times) by the raw fit and, where ``gamma_den`` is given, by the
    denoised fit too: an unresolved decay's own error is not to be trusted, and a noisy raw fit that reads a slow
    decay fast would otherwise pass the raw fit's own test (simulated 0.01–0.03 frames⁻¹: +11 % with c = 0.2 and
    the raw test alone, +6 % with both); else 0, as where the raw fit failed.

    Examples
    --------
    >>> from xpcs_denoise.analysis.calibration import raw_pool_weight
    >>> raw_pool_weight([0.05, 0.05, 0.05, 0.01], [0.001, 0.01, 0.05, 0.0001], 49, floor=0.1, resolved=1.5).round(2)
    array([0.96, 0.2 , 0.01, 0.  ])
    >>> raw_pool_weight([0.05, 0.05], [0.001, 0.001], 49, floor=0.1, resolved=1.5, gamma_den=[0.04, 0.02]).round(2)
    array([0.96, 0.  ])
    """
    g = np.asarray(gamma_raw, dtype=np.float64)
    u = np.asarray(u_raw, dtype=np.float64)
    span = np.asarray(lag_max, dtype=np.float64)
    ok = np.isfinite(g) & (g > 0) & np.isfinite(u) & (g * span >= resolved)
    if gamma_den is not None:
        ok &= np.abs(np.nan_to_num(np.asarray(gamma_den, dtype=np.float64))) * span >= resolved
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = 1.0 / (1.0 + (u / (floor * g)) ** 2)
    return np.where(ok, w, 0.0)


def pool_values(den, raw, w, log: bool = False) -> np.ndarray:
    """``w``-weighted mean of the raw and denoised fits' values (of logarithms with ``log``, where both are > 0);
    the denoised value where w is 0 or the raw one is not finite."""
    den, raw, w = (np.asarray(v, dtype=np.float64) for v in (den, raw, w))
    use = (w > 0) & np.isfinite(raw) & np.isfinite(den)
    if log:
        use &= (raw > 0) & (den > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.exp(w * np.log(np.where(use, raw, 1.0)) + (1 - w) * np.log(np.where(use, den, 1.0)))
    else:
        v = w * np.where(use, raw, 0.0) + (1 - w) * np.where(use, den, 0.0)
    return np.where(use, v, den)


#: Values pooled as logarithms (positive, and their errors are relative): the others are pooled linearly.
_LOG_POOLED = ("gamma", "alpha")


def pool_fits(den: dict, raw: dict, lag_max, raw_pool: dict, ok=None) -> tuple[dict, np.ndarray]:
    """The one pooling of a denoised fit with the raw fit of the same 2TCFs, as ``fit_denoised`` returns it and
    ``scripts/calibrate_fits.py`` measures it.

    ``den`` and ``raw`` map names to arrays of one value per 2TCF and hold at least ``"gamma"`` and
    ``"gamma_err"`` (each fit's own error); every name of ``den`` is pooled, Γ and α as logarithms
    (:func:`pool_values`), with the raw fit's weight :func:`raw_pool_weight` from ``raw_pool``
    (``FitCalibration.raw_pool``: ``floor``, ``resolved``) and 0 where ``ok`` (default: both Γ̂ finite) is False.
    Returns the pooled values and the weights.

    Examples
    --------
    >>> from xpcs_denoise.analysis.calibration import pool_fits
    >>> den = {"gamma": [0.05, 0.01], "gamma_err": [0.01, 0.01]}
    >>> raw = {"gamma": [0.06, 0.02], "gamma_err": [0.003, 0.003]}
    >>> out, w = pool_fits(den, raw, 49, {"floor": 0.1, "resolved": 1.5})
    >>> w.round(2), out["gamma"].round(4)
    (array([0.8, 0. ]), array([0.0579, 0.01  ]))
    """
    g_den, g_raw = (np.asarray(d["gamma"], dtype=np.float64) for d in (den, raw))
    if ok is None:
        ok = np.isfinite(g_den) & np.isfinite(g_raw)
    w = np.where(ok, raw_pool_weight(g_raw, raw["gamma_err"], lag_max, **raw_pool, gamma_den=g_den), 0.0)
    return {k: pool_values(v, raw[k], w, log=k in _LOG_POOLED) for k, v in den.items()}, w


def fit_calibration(rows: dict, edges, *, rel_edges=(0.0,), long_frames: int = 100, min_fits: int = 60,
                    source=None, coverage=None, z1: float = 0.683, z2: float = 0.93,
                    z2_long: float | None = None, alpha_bounds=None, raw_pool=None) -> FitCalibration:
    """A :class:`FitCalibration` from held-out fits of known truth.

    ``rows`` maps a cell key to arrays ``residual`` (Γ̂ − Γ), ``u``, ``gamma`` (Γ̂) and ``resolved`` (Γ̂·L); a bin
    with fewer than ``min_fits`` fits takes the cell's pooled pair, a cell with fewer its path's. ``z1``, ``z2``:
    the shares of |z| < 1 (target) and < 2 (least) each pair is chosen for (:func:`calibrate`); ``z2_long`` instead
    of ``z2`` for the cells of long series (few fits per bin, heavier tails: a margin for the ≥ 90 % they must keep).
    ``alpha_bounds``, ``raw_pool``: those the fits in ``rows`` were made with (:class:`FitCalibration`).
    """
    edges = tuple(float(e) for e in edges)
    probe = FitCalibration(edges, {"x/*": [[1.0, 0.0]]}, long_frames, tuple(rel_edges))
    cells, per_path = {}, {}
    for key, r in rows.items():
        ok = np.isfinite(r["residual"]) & np.isfinite(r["gamma"])
        per_path.setdefault(key.split("/")[0], []).append({k: np.asarray(v)[ok] for k, v in r.items()})
    for path, parts in per_path.items():
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        cells[f"{path}/*"] = [_pair(cat, z1, z2)]
    for key, r in rows.items():
        ok = np.isfinite(r["residual"]) & np.isfinite(r["gamma"])
        r = {k: np.asarray(v)[ok] for k, v in r.items()}
        if r["residual"].size < min_fits:
            continue
        zz = z2_long if (z2_long is not None and "/long/" in key) else z2
        pooled = _pair(r, z1, zz)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = probe.bin(r["resolved"], np.where(r["gamma"] != 0, np.nan_to_num(r["u"]) / np.abs(r["gamma"]),
                                                  np.inf))
        cells[key] = [(_pair({k: v[b == i] for k, v in r.items()}, z1, zz) if np.sum(b == i) >= min_fits else pooled)
                      for i in range(probe.n_bins)]
    return FitCalibration(edges, cells, long_frames, probe.rel_edges, alpha_bounds=alpha_bounds, raw_pool=raw_pool,
                          source=dict(source or {}), coverage=dict(coverage or {}))


def _pair(r, z1: float = 0.683, z2: float = 0.93) -> list:
    # calibrate() scales its second error part (u; the kept part is 0) and adds the floor r·Γ̂
    s, rel = calibrate(r["residual"], np.zeros_like(r["u"]), np.nan_to_num(r["u"]), r["gamma"], z1=z1, z2=z2)
    return [round(float(s), 4), round(float(rel), 4)]


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


def load_calibration(method: str, model=None) -> FitCalibration | None:
    """The calibration of fits on ``method``'s path: the model card's ``"calibration"`` (``model`` or the shipped
    one), or for raw fits ``pretrained/raw_calibration.json``. None where the card has none."""
    if method == "none":
        p = pretrained_directory() / "raw_calibration.json"
        if not p.is_file():
            return None
        return FitCalibration.from_dict(json.loads(p.read_text()), str(p))
    card = getattr(model, "card", None) or {}
    if model is None:
        name = "lagnet/lagnet_card.json" if method == "lagnet" else "model_card.json"
        card = json.loads((pretrained_directory() / name).read_text())
    d = card.get("calibration")
    return None if d is None else FitCalibration.from_dict(d, "the model card's calibration")


def write_raw_calibration(cal: FitCalibration, path: Path) -> Path:
    """Store the raw fits' calibration (``scripts/calibrate_fits.py``)."""
    with atomic_path(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(cal.to_dict(), indent=1))
    return Path(path)
