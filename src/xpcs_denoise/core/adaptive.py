"""Adaptive smoothing along age (METHOD §8 coordinates): each lag of the band is smoothed along age by a local line
whose width is chosen from the data, and which never reaches across a step in the dynamics.

Why: a Gaussian of one width along age (the age-axis smoother) is a compromise. Slow ageing wants wide windows,
a step in the rate wants none across it, and a stationary series wants the widest. Two classical tools do both:

1. **Steps** (change points). The band's first lags are centred per lag and pooled into one signal along age. At
   every start frame a line fitted to the frames before it and one fitted to the frames after it are compared (each
   a one-sided Gaussian-weighted line at a few scales); where they differ by more than ``step_threshold`` standard
   errors of the difference, the series is cut. A straight or curved trend does not trigger it: both lines
   extrapolate it to the same point.
2. **Width** (intersection of confidence intervals, Goldenshluger & Nemirovski 1997; Katkovnik 1999). Within each
   segment, local lines of growing width are fitted to the pooled signal; at each age the widest one whose
   confidence interval (``ici_threshold`` standard errors) still meets those of all narrower ones is kept.

Every lag is then smoothed by the local line of its age's width, within its segment. A local line reproduces
constants and straight lines exactly, so a noise-free stationary 2TCF comes back unchanged (to rounding), and so
does one whose lags change linearly with age.

The noise of the pooled signal is measured from the data at each scale (second differences of block means), so the
stage needs no noise model, and it sees that slow dynamics make the noise correlated along age.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import fftconvolve, oaconvolve

from .band import band_lags, band_mask, check_two_time_any, from_band, to_band
from .errors import XPCSInputError

__all__ = ["AgeStage", "age_change_points", "max_step_score", "age_widths", "adaptive_age_band", "adaptive_age_smooth"]


@dataclass(frozen=True)
class AgeStage:
    """Settings of the adaptive age stage (stored in a model's card; these defaults are the shipped ones).

    Attributes
    ----------
    widths : tuple of float
        Ladder of Gaussian widths (standard deviations along age, frames) the width is chosen from.
    ici_threshold : float
        Half-width of the confidence intervals, in standard errors.
    step_threshold : float
        A step is cut where the before/after lines differ by more than this many standard errors (the pooled
        signal is tested at every frame, so this is well above 3).
    step_scales : tuple of float
        Widths (frames) of the one-sided lines that look for steps.
    pool_lags : int
        Lags pooled for the two decisions (the first ones carry most of the signal and stay within a few frames of
        the same age).
    """

    widths: tuple = (1.0, 2.0, 3.0, 4.5, 7.0, 10.0, 15.0, 23.0, 34.0, 51.0, 77.0, 115.0, 170.0)
    ici_threshold: float = 2.0
    step_threshold: float = 4.84  # scripts/age_stage.py: a false step in 5 % of simulated step-free series
    step_scales: tuple = (20.0, 50.0)
    pool_lags: int = 20

    def __post_init__(self):
        try:
            self._check()
        except (TypeError, ValueError) as exc:  # e.g. text where a number belongs
            raise XPCSInputError(f"invalid adaptive age settings: {self}") from exc

    def _check(self):
        if isinstance(self.pool_lags, bool):
            raise TypeError("pool_lags")
        w = np.asarray(self.widths, dtype=float)
        sc = np.asarray(self.step_scales, dtype=float)
        if (w.ndim != 1 or w.size < 1 or not np.all(np.isfinite(w)) or np.any(w <= 0) or np.any(np.diff(w) <= 0)
                or sc.ndim != 1 or sc.size < 1 or not np.all(np.isfinite(sc)) or np.any(sc < 2)
                or not np.isfinite(self.ici_threshold) or self.ici_threshold <= 0
                or not np.isfinite(self.step_threshold) or self.step_threshold <= 0
                or int(self.pool_lags) != self.pool_lags or self.pool_lags < 1):
            raise XPCSInputError(f"invalid adaptive age settings: {self}")
        object.__setattr__(self, "widths", tuple(float(v) for v in w))
        object.__setattr__(self, "step_scales", tuple(float(v) for v in sc))
        object.__setattr__(self, "pool_lags", int(self.pool_lags))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> AgeStage:
        known = set(cls.__dataclass_fields__)
        if not isinstance(d, dict) or set(d) - known:
            raise XPCSInputError(f"adaptive age settings must be a dict with keys from {sorted(known)}; got {d!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _kernels(widths, side: int = 0):
    """Gaussian weights of each width (rows) over offsets u = −R…R, R the widest's reach (3 widths); ``side``
    −1 / +1 keep u ≤ 0 / u ≥ 0."""
    h = np.asarray(widths, dtype=float)[:, None]
    r = max(1, int(np.ceil(3 * h.max())))
    u = np.arange(-r, r + 1, dtype=float)
    w = np.exp(-0.5 * (u / h) ** 2) * (np.abs(u) <= np.ceil(3 * h))
    if side:
        w = w * (side * u >= 0)
    return w, u, r


def _local_lines(y: np.ndarray, m: np.ndarray, widths, side: int = 0):
    """Gaussian-weighted local lines of a 1-D signal ``y`` over the frames with m = 1, one per width (rows): their
    values at every frame and the variance factors Σ l² of their weights (white noise of unit variance). ``side``
    −1 / +1 use only the frames before / after (each including the frame itself). A frame whose window holds too
    few points for a line gets the local mean. All widths in one FFT per moment."""
    w, u, r = _kernels(widths, side)
    n = y.size

    def corr(x, kern):  # Σ_u kern[u] x[t + u], zeros outside
        return fftconvolve(x[None, :], kern[:, ::-1], mode="full", axes=-1)[:, r:r + n]

    s0, s1, s2 = (corr(m, w * u ** j) for j in range(3))
    t0, t1 = (corr(y * m, w * u ** j) for j in range(2))
    q0, q1, q2 = (corr(m, w * w * u ** j) for j in range(3))
    det = s0 * s2 - s1 ** 2
    good = (s0 > 1e-6) & (det > 1e-9 * np.maximum(s0 * s2, 1e-300))
    det = np.where(good, det, 1.0)
    l0, l1 = s2 / det, -s1 / det
    est = l0 * t0 + l1 * t1
    var = l0 * l0 * q0 + 2 * l0 * l1 * q1 + l1 * l1 * q2
    # FFT rounding leaves ~1e-13 where a window holds no frame: those get 0 (no data there)
    s0 = np.where(s0 > 1e-6, s0, np.inf)
    est = np.where(good, est, t0 / s0)
    var = np.where(good, var, q0 / s0 ** 2)
    return est, np.maximum(var, 0.0)


def _band_line(target: np.ndarray, ends: np.ndarray, lo: int, hi: int, h: float, c0: int, c1: int) -> np.ndarray:
    """:func:`_local_lines` (one width) of a band whose row k holds data at columns [lo, min(hi, ends[k])), at
    columns c0…c1 − 1 only: the weights' sums in closed form (cumulative sums of the kernel), the data's by FFT over
    the columns the kernel reaches (direct sums for a short run), so that the cost grows with the columns asked
    for."""
    w, u, r = _kernels([h])
    w = w[0]
    t = np.arange(c0, c1)[None, :]
    top = np.minimum(hi, ends)[:, None]
    upper = np.minimum(top - 1 - t, r)
    lower = np.maximum(lo - t, -r)
    empty = upper < lower
    upper = np.where(empty, lower - 1, upper)

    def window_sum(kernel):
        q = np.concatenate([[0.0], np.cumsum(kernel)])
        return q[upper + r + 1] - q[lower + r]

    s0, s1, s2 = (window_sum(w * u ** j) for j in range(3))
    a, b = max(lo, c0 - r), min(hi, c1 + r)
    cols = np.arange(a, b)[None, :]
    y = np.where(cols < ends[:, None], target[:, a:b], 0.0)
    if c1 - c0 < 64:  # a short run (next to an edge or a step): direct sums beat an FFT of the kernel's reach
        pad = np.zeros((y.shape[0], (c1 - c0) + 2 * r))
        pad[:, a - (c0 - r):a - (c0 - r) + y.shape[1]] = y
        win = np.lib.stride_tricks.sliding_window_view(pad, 2 * r + 1, axis=1)  # (K, c1 − c0, 2r + 1)
        t0, t1 = (win @ (w * u ** j) for j in range(2))
    else:
        # Σ_u k[u] y[t + u] is a convolution with the reversed kernel
        t0, t1 = (oaconvolve(y, (w * u ** j)[None, ::-1], mode="same", axes=-1)[:, c0 - a:c1 - a] for j in range(2))
    det = s0 * s2 - s1 ** 2
    good = (s0 > 1e-6) & (det > 1e-9 * np.maximum(s0 * s2, 1e-300))
    det = np.where(good, det, 1.0)
    est = (s2 * t0 - s1 * t1) / det
    return np.where(good, est, t0 / np.where(s0 > 1e-6, s0, np.inf))


def _pooled(band: np.ndarray, valid: np.ndarray):
    """The first lags, each less its median, averaged per start frame, and the frames it covers."""
    med = np.array([np.median(b[v]) if v.any() else 0.0 for b, v in zip(band, valid, strict=True)])
    m = valid.sum(0)
    s = np.where(valid, band - med[:, None], 0.0).sum(0) / np.maximum(m, 1)
    return s, m > 0


class _Noise:
    """Noise of the pooled signal per frame, as seen at each scale. The 2TCF's noise is correlated along age over
    about 1/(2Γ) frames (neighbouring frames share their speckles), so a local line of width h averages fewer
    independent values than it has frames. At block lengths b = 1, 2, 4, …, the second differences of adjacent
    block means (blind to a straight trend; their robust scale is not moved by a step) give the noise variance per
    frame at that scale, b · Var / 6; it is made non-decreasing in b (the cautious side) and read at b ≈ h."""

    def __init__(self, s: np.ndarray, cover: np.ndarray):
        x = s[cover]
        c = np.concatenate([[0.0], np.cumsum(x)])
        self.blocks, var = [], []
        b = 1
        while 24 * b <= x.size:  # a step moves at most an eighth of the differences (the MAD ignores them)
            mean = (c[b:] - c[:-b]) / b  # mean of x[t:t+b] at t = 0 … n−b
            d2 = mean[:-2 * b] - 2 * mean[b:-b] + mean[2 * b:]
            if d2.size < 3:
                break
            self.blocks.append(b)
            var.append((1.4826 * np.median(np.abs(d2 - np.median(d2)))) ** 2 * b / 6)
            b *= 2
        #: False when the series is too short to measure its noise (under 24 frames): the stage then keeps it
        self.measured = bool(var)
        self.var = np.maximum.accumulate(np.asarray(var)) if var else np.zeros(1)
        if not self.blocks:
            self.blocks = [1]

    def sigma(self, h: float) -> float:
        i = int(np.clip(np.round(np.log2(max(h, 1.0))), 0, len(self.blocks) - 1))
        return float(np.sqrt(self.var[i]))


def _step_score(s: np.ndarray, cover: np.ndarray, noise: _Noise, stage: AgeStage) -> np.ndarray:
    """|before − after| / its standard error at each start frame, the largest over the step scales (0 where a
    side has fewer than one scale's frames)."""
    n = s.size
    score = np.zeros(n)
    if noise.sigma(max(stage.step_scales)) <= 0 or n < 8:
        return score
    c = cover.astype(float)
    last = int(np.flatnonzero(cover)[-1]) if cover.any() else 0
    el, vl = _local_lines(s, c, stage.step_scales, -1)
    er, vr = _local_lines(s, c, stage.step_scales, +1)
    for i, h in enumerate(stage.step_scales):
        z = np.zeros(n)
        z[:-1] = np.abs(er[i, 1:] - el[i, :-1]) / (noise.sigma(h) * np.sqrt(vl[i, :-1] + vr[i, 1:]) + 1e-300)
        edge = int(h)  # a line needs frames on both sides
        z[:edge] = 0
        z[max(0, last - edge):] = 0
        score = np.maximum(score, z)
    return score


def age_change_points(s: np.ndarray, cover: np.ndarray, noise: _Noise, stage: AgeStage = AgeStage()) -> list:
    """Start frames after which the pooled signal ``s`` steps (see the module's docstring)."""
    score = _step_score(s, cover, noise, stage)
    cps = []
    guard = int(2 * max(stage.step_scales))
    while score.max(initial=0.0) > stage.step_threshold:
        t = int(np.argmax(score))
        cps.append(t)
        score[max(0, t - guard):t + guard + 1] = 0
    return sorted(cps)


def max_step_score(c2, max_lag: int | None = None, stage: AgeStage | None = None) -> float:
    """Largest step score of one 2TCF (what ``step_threshold`` is compared with): its distribution over series
    without steps sets the threshold (``scripts/age_stage.py``)."""
    stage = stage or AgeStage()
    x, _ = check_two_time_any(c2)
    n = x.shape[-1]
    k = min(band_lags(n, max_lag), stage.pool_lags)
    valid = band_mask(n, k)
    band = 0.5 * (to_band(x[0], k).astype(np.float64) + to_band(np.swapaxes(x[0], 0, 1), k))
    s, cover = _pooled(band, valid)
    return float(_step_score(s, cover, _Noise(s, cover), stage).max(initial=0.0))


def age_widths(s: np.ndarray, cover: np.ndarray, noise: _Noise, segment: np.ndarray,
               stage: AgeStage = AgeStage()) -> np.ndarray:
    """Index into ``stage.widths`` chosen at each start frame by the intersection of confidence intervals, each
    segment on its own (``segment``: its label per frame)."""
    n = s.size
    choice = np.zeros(n, int)
    if noise.sigma(max(stage.widths)) <= 0:  # noise-free: any width gives the same line
        return np.full(n, len(stage.widths) - 1)
    for g in np.unique(segment):
        sel = segment == g
        m = (cover & sel).astype(float)
        lo = np.full(n, -np.inf)
        hi = np.full(n, np.inf)
        alive = np.ones(n, bool)
        est, var = _local_lines(s, m, stage.widths)
        for j, h in enumerate(stage.widths):
            sd = stage.ici_threshold * noise.sigma(h) * np.sqrt(var[j])
            lo = np.maximum(lo, est[j] - sd)
            hi = np.minimum(hi, est[j] + sd)
            alive &= lo <= hi
            choice[sel & alive] = j
    return choice


def adaptive_age_band(band: np.ndarray, valid: np.ndarray, stage: AgeStage = AgeStage(), *,
                      apply_to: np.ndarray | None = None):
    """Adaptive age stage on one (K, N) band (``valid`` its cells inside the matrix). Widths and steps are chosen
    from ``band``; the smoothing is applied to ``apply_to`` (default ``band``; e.g. a denoised band, so that the
    decisions rest on the data's own noise; a series under 24 frames, whose noise cannot be measured, is kept).
    Returns the smoothed band, the chosen width per start frame (frames, 0 where kept)
    and the change points."""
    band = np.asarray(band, dtype=np.float64)
    target = band if apply_to is None else np.asarray(apply_to, dtype=np.float64)
    if target.shape != band.shape or valid.shape != band.shape:
        raise XPCSInputError(f"band {band.shape}, target {target.shape} and mask {valid.shape} must match")
    kp = min(stage.pool_lags, band.shape[0])
    s, cover = _pooled(band[:kp], valid[:kp])
    noise = _Noise(s, cover)
    if not noise.measured:  # too short to tell noise from dynamics: nothing is smoothed
        return target.copy(), np.zeros(s.size), []
    cps = age_change_points(s, cover, noise, stage)
    segment = np.zeros(s.size, int)
    for t in cps:
        segment[t + 1:] += 1
    choice = age_widths(s, cover, noise, segment, stage)
    out = target.copy()
    ends = valid.sum(1)
    if not np.array_equal(valid, np.arange(valid.shape[1])[None, :] < ends[:, None]):
        raise XPCSInputError("the band's valid cells must start each row (core.band.band_mask)")
    bounds = np.flatnonzero(np.diff(segment)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, segment.size], strict=True):
        ch = choice[lo:hi]
        for j in np.unique(ch):
            cols = np.flatnonzero(ch == j) + lo
            if cols.size >= 64:  # one FFT over the span of this width's columns
                est = _band_line(target, ends, lo, hi, stage.widths[j], cols[0], cols[-1] + 1)
                out[:, cols] = est[:, cols - cols[0]]
                continue
            cut = np.flatnonzero(np.diff(cols) > 1) + 1
            for run in np.split(cols, cut):  # a few columns (next to an edge or a step): direct sums
                out[:, run[0]:run[-1] + 1] = _band_line(target, ends, lo, hi, stage.widths[j], run[0], run[-1] + 1)
    out = np.where(valid, out, target)
    return out, np.asarray(stage.widths)[choice], cps


def adaptive_age_smooth(c2, max_lag: int | None = None, stage: AgeStage | None = None) -> np.ndarray:
    """Smooth each lag of 2TCFs along age by local lines of data-chosen width that do not cross steps.

    Parameters
    ----------
    c2 : array_like, shape (N, N) or (B, N, N)
        2TCFs, finite within the band.
    max_lag : int, optional
        Smooth lags 1…max_lag (default all); longer lags and the diagonal keep their values.
    stage : AgeStage, optional
        Settings (default: the shipped ones).

    Returns
    -------
    ndarray, float64, symmetric where smoothed.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(120)
    >>> clean = 1 + 0.2 * np.exp(-2 * 0.05 * np.abs(np.subtract.outer(t, t)))
    >>> bool(np.allclose(adaptive_age_smooth(clean), clean, atol=1e-10))  # stationary and noise-free: unchanged
    True
    """
    stage = stage or AgeStage()
    x, single = check_two_time_any(c2)
    n = x.shape[-1]
    k = band_lags(n, max_lag)
    valid = band_mask(n, k)
    out = np.array(x, dtype=np.float64, copy=True)
    for i in range(x.shape[0]):
        band = 0.5 * (to_band(x[i], k).astype(np.float64) + to_band(np.swapaxes(x[i], 0, 1), k))
        if not np.all(np.isfinite(band[valid])):
            raise XPCSInputError("2TCF contains NaN or Inf within the band; fill or crop masked frames first")
        sm, _, _ = adaptive_age_band(band, valid, stage)
        from_band(out[i], sm, out=out[i])
    return out[0] if single else out
