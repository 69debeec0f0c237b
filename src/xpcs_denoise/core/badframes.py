"""Bad frames: single-frame events (cosmic rays, hot pixels, beam dumps, shutter glitches, detector hiccups)
found in a 2TCF and in the frames' statistics, and the exclusion of frames from averages and fits.

A frame that is wrong in one ROI draws a row and a column across that ROI's 2TCF. :func:`find_bad_frames`
compares each row with what its neighbours' rows show at the same lags and flags frames whose rows stand out;
with the frames and labels it also tests each frame's photon statistics (mean count, per-frame contrast,
largest count) against a running median. Everything is numpy and vectorised over frames and lags.

Frames are numbered from 0 (as rows of the 2TCF). Times are in frames.
"""

from __future__ import annotations

import warnings

import numpy as np

from .correlation import _frames_and_shape, _read_pixel_block, _validated_labels, auto_block_pixels
from .errors import XPCSInputError
from .exclusion import apply_exclusion, exclusion_mask, parse_frame_list
from .simulation import simulate_speckle
from .validation import check_square

__all__ = [
    "find_bad_frames",
    "frame_statistics",
    "exclusion_mask",
    "parse_frame_list",
    "apply_exclusion",
    "fill_excluded",
    "bad_frame_lists",
    "inject_bad_frames",
    "DEFAULT_THRESHOLD",
    "BAD_FRAME_KINDS",
]

#: Robust z-score above which a frame is flagged. Measured on clean simulated series
#: (benchmarks/bench_bad_frames.py): false alarms ≤ 1 per 1,000 frames with margin.
DEFAULT_THRESHOLD = 5.0

_MAD_TO_SIGMA = 1.4826


# --------------------------------------------------------------------------------------------------------------
# Exclusion lists and masks: core.exclusion (re-exported here)
# --------------------------------------------------------------------------------------------------------------

def bad_frame_lists(mask) -> list[list[int]]:
    """The frame numbers of a (K, N) mask, one list per ROI (pyCHX-style bad-frame lists)."""
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    return [np.flatnonzero(m).tolist() for m in mask]


def fill_excluded(c2, exclude) -> np.ndarray:
    """Copy of (N, N) or (K, N, N) 2TCFs with excluded rows/columns (and non-finite values) filled.

    Each value ``C2[t, t + k]`` of an excluded frame is replaced by linear interpolation along its diagonal
    (same lag k) between the nearest kept values; at the ends of a diagonal the nearest kept value is used, and a
    diagonal with no kept value (the far corner) takes the mean of the nearest shorter-lag one. The lag-0 value of
    an excluded frame is interpolated the same way along the main diagonal. Symmetric input gives symmetric
    output. Used to give a denoiser a finite 2TCF; the filled values are not data.

    Cost: O(N²) to find the holes, then O(holes × longest run of excluded frames).
    """
    c2 = np.array(c2, dtype=np.float64)
    single = c2.ndim == 2
    c = c2[None] if single else c2
    k_rois, n = c.shape[0], c.shape[-1]
    mask = exclusion_mask(exclude, n, k_rois)
    mask = np.zeros((k_rois, n), bool) if mask is None else mask
    for r in range(k_rois):
        bad = mask[r][:, None] | mask[r][None, :] | ~np.isfinite(c[r])
        if not bad.any():
            continue
        for mat, b in ((c[r], bad), (c[r].T, bad.T)):  # upper triangle, then the lower one (views)
            s, j = np.nonzero(np.triu(b))
            k = j - s
            _fill_holes(mat, b, s, k, n)
    return c[0] if single else c


def _fill_holes(mat, b, s, k, n):
    """Fill mat[s, s + k] (holes marked in b) along their diagonals, in place."""
    prev = s - 1
    while True:                                        # iterations: the longest run of holes on a diagonal
        step = (prev >= 0) & b[np.maximum(prev, 0), np.maximum(prev, 0) + k]
        if not step.any():
            break
        prev[step] -= 1
    nxt = s + 1
    while True:
        inside = nxt + k <= n - 1
        step = inside & b[np.where(inside, nxt, 0), np.where(inside, nxt + k, 0)]
        if not step.any():
            break
        nxt[step] += 1
    has_p, has_n = prev >= 0, nxt + k <= n - 1
    pp, nn = np.where(has_p, prev, 0), np.where(has_n, nxt, 0)
    vp = np.where(has_p, mat[pp, pp + np.where(has_p, k, 0)], np.nan)
    vn = np.where(has_n, mat[nn, nn + np.where(has_n, k, 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = (s - prev) / np.where(has_p & has_n, nxt - prev, 1)
        val = np.where(has_p & has_n, vp + w * (vn - vp), np.where(has_p, vp, vn))
    empty = ~has_p & ~has_n
    if empty.any():                                    # diagonals without a kept value: nearest shorter lag
        for lag in np.unique(k[empty]):
            fill = np.nan
            for k2 in range(int(lag) - 1, -1, -1):
                d, db = np.diagonal(mat, k2), np.diagonal(b, k2)
                if (~db).any():
                    fill = float(d[~db].mean())
                    break
            val[empty & (k == lag)] = fill
    mat[s, s + k] = val


# --------------------------------------------------------------------------------------------------------------
# Robust statistics
# --------------------------------------------------------------------------------------------------------------

def _running_median(x: np.ndarray, half: int) -> np.ndarray:
    """NaN-aware running median along the last axis over ``2 half + 1`` samples (truncated at the ends)."""
    from numpy.lib.stride_tricks import sliding_window_view

    pad = [(0, 0)] * (x.ndim - 1) + [(half, half)]
    xp = np.pad(x.astype(np.float64, copy=False), pad, constant_values=np.nan)
    win = np.sort(sliding_window_view(xp, 2 * half + 1, axis=-1), axis=-1)  # NaN sort last
    cnt = np.sum(np.isfinite(win), axis=-1, keepdims=True)
    lo = np.take_along_axis(win, np.maximum(cnt - 1, 0) // 2, axis=-1)[..., 0]
    hi = np.take_along_axis(win, np.maximum(cnt, 1) // 2, axis=-1)[..., 0]
    hi = np.where(cnt[..., 0] % 2 == 1, lo, hi)
    return np.where(cnt[..., 0] > 0, 0.5 * (lo + hi), np.nan)


def _robust_z(x: np.ndarray, *, floor: float = 0.0) -> np.ndarray:
    """(x − median) / (1.4826 MAD) along the last axis, NaN-aware; scale at least ``floor``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=-1, keepdims=True)
        mad = _MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=-1, keepdims=True)
    scale = np.maximum(mad, floor)
    scale = np.where(scale > 0, scale, np.inf)
    return (x - med) / scale


def _detrended_z(x: np.ndarray, half: int, *, floor: float = 0.0) -> np.ndarray:
    """Robust z-score of x against its running median (window 2 half + 1), scale from the MAD over frames."""
    return _robust_z(x - _running_median(x, half), floor=floor)


# --------------------------------------------------------------------------------------------------------------
# Statistics of a 2TCF's rows
# --------------------------------------------------------------------------------------------------------------

def _row_scores(c2: np.ndarray, max_lag: int, window: int, lag0: bool) -> dict:
    """Per-frame robust z-scores of the rows of one (N, N) 2TCF (see :func:`two_time_scores`)."""
    n = c2.shape[-1]
    # a frame without a usable row: most of its off-diagonal values NaN/Inf (no photons, or excluded)
    nonfinite = unusable_rows(c2)[0]
    t = np.arange(n)
    lags = np.arange(1, max_lag + 1)
    col = t[None, :] + lags[:, None]                          # (L, N)
    ok = col < n
    colc = np.where(ok, col, 0)
    rows = np.broadcast_to(t[None, :], col.shape)
    # d[k-1, t] = (C2[t, t + k] + C2[t + k, t]) / 2, gathered without forming the symmetric (N, N) matrix
    d = np.where(ok, 0.5 * (c2[rows, colc] + c2[colc, rows]), np.nan)
    d[~np.isfinite(d) | nonfinite[None, :] | (nonfinite[colc] & ok)] = np.nan
    back = t[None, :] - lags[:, None]                         # row i holds d[k-1, i - k] in its lower half
    okb = back >= 0
    backc = np.where(okb, back, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        resid = d - _running_median(d, window)
        scale = _MAD_TO_SIGMA * np.nanmedian(np.abs(resid), axis=1)          # (L,)
        scale = np.where(scale > 0, scale, np.inf)
        z = resid / scale[:, None]
        zz = np.concatenate([z, np.where(okb, z[np.arange(max_lag)[:, None], backc], np.nan)])  # (2L, N)
        fin = np.isfinite(zz)
        cnt = fin.sum(axis=0)
        z0 = np.where(fin, zz, 0.0)
        level = z0.sum(axis=0) / np.sqrt(np.maximum(cnt, 1))
        # matched to the decay: lag k weighted by its contrast over the far-lag baseline, in noise units
        med_k = np.nanmedian(d, axis=1)
        base = np.nanmedian(med_k[-max(1, max_lag // 4):]) if max_lag >= 8 else 1.0
        w = np.nan_to_num(np.clip((med_k - base) / scale, 0, None))
        ww = np.concatenate([w, w])[:, None] * fin
        norm = np.sqrt(np.sum(ww**2, axis=0))
        match = np.where(norm > 0, np.sum(ww * z0, axis=0) / np.where(norm > 0, norm, 1), np.nan)
        spread = np.log(np.nanmean(np.clip(zz, -50, 50) ** 2, axis=0))  # clipped: one wild value is not a row
    none = cnt == 0
    level[none] = spread[none] = match[none] = np.nan
    out = {"level": _robust_z(level), "match": _robust_z(match),
           "spread": np.maximum(_robust_z(spread), 0.0)}          # only a noisier row is suspicious
    if lag0:
        diag = np.diagonal(c2).astype(np.float64).copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            diag = np.where(np.isfinite(diag) & (diag > 0) & ~nonfinite, np.log(np.abs(diag)), np.nan)
        out["lag0"] = _detrended_z(diag, window)
    out["nonfinite"] = nonfinite
    return out


def two_time_scores(c2, *, max_lag: int | None = None, window: int = 10, lag0: bool = True) -> dict:
    """Per-frame robust scores of the rows of (N, N) or (K, N, N) 2TCFs, each ~N(0, 1) on clean data.

    For lag k = 1..L and frame t, ``z[k, t]`` is the deviation of ``C2[t, t + k]`` from the running median
    along its diagonal (``2 window + 1`` values), divided by the MAD of those deviations along the diagonal.
    Frame i's row holds ``z[k, i]`` and ``z[k, i − k]`` (both triangles). Scores per frame, each made a
    robust z-score over frames (median, MAD):

    - ``level``: sum of its row's z over lags / √count (a row lifted or lowered, e.g. hot pixels);
    - ``match``: the same weighted by each lag's contrast-to-noise (a decorrelated frame loses the decay);
    - ``spread``: log of the mean z² of its row, one-sided (a noisy row: few photons, a burst of counts);
    - ``lag0``: log ``C2[i, i]`` against its running median (shot noise, hot pixels), if ``lag0``;
    - ``nonfinite``: boolean, the frame's row is mostly NaN/Inf (no photons, or already excluded).

    Returns a dict of (K, N) arrays.
    """
    c = np.asarray(c2, dtype=np.float64)
    c = c[None] if c.ndim == 2 else c
    n = c.shape[-1]
    max_lag = min(n - 1, 100 if max_lag is None else int(max_lag))
    rows = [_row_scores(c[r], max_lag, int(window), lag0) for r in range(c.shape[0])]
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}


# --------------------------------------------------------------------------------------------------------------
# Statistics of the frames
# --------------------------------------------------------------------------------------------------------------

def frame_statistics(frames, labels, *, block_pixels: int | None = None) -> dict:
    """Per-ROI photon statistics of every frame, read in pixel blocks like :func:`~xpcs_denoise.two_time`.

    Parameters
    ----------
    frames : array_like (T, H, W) or (T, P), numpy / memmap / h5py.Dataset, photon counts
    labels : (H, W) or (P,) ROI labels, 0 unused, 1..K

    Returns
    -------
    dict: ``sum`` (K, T) photons per frame in each ROI, ``max`` (K, T) largest count of a pixel, ``npix`` (K,)
    pixels per ROI.
    """
    frames, shape = _frames_and_shape(frames)
    n_frames = int(shape[0])
    frame_shape = tuple(int(s) for s in shape[1:])
    flat, n_rois = _validated_labels(labels, frame_shape)
    if block_pixels is None:
        block_pixels = auto_block_pixels(n_frames, frame_shape[-1] if len(frame_shape) == 2 else 1)
    s = np.zeros((n_rois, n_frames))
    mx = np.full((n_rois, n_frames), -np.inf)
    for start in range(0, flat.size, int(block_pixels)):
        stop = min(start + int(block_pixels), flat.size)
        lab = flat[start:stop]
        if not np.any(lab):
            continue
        block = _read_pixel_block(frames, frame_shape, start, stop)
        if not np.all(np.isfinite(block)):
            raise XPCSInputError("frames contain NaN or Inf; mask bad pixels by setting their label to 0")
        for k in np.unique(lab[lab > 0]):
            cols = block[:, lab == k]
            s[k - 1] += cols.sum(axis=1, dtype=np.float64)
            mx[k - 1] = np.maximum(mx[k - 1], cols.max(axis=1))
    npix = np.bincount(flat, minlength=n_rois + 1)[1:].astype(np.float64)
    return {"sum": s, "max": mx, "npix": npix}


def frame_scores(stats: dict, *, window: int = 10) -> dict:
    """Robust per-frame z-scores (K, T) from :func:`frame_statistics`.

    - ``mean``: Anscombe transform ``2 √(S + 3/8)`` of the photons per frame S against its running median
      (beam dumps, shutter glitches, intensity spikes, gain jumps);
    - ``max``: Anscombe transform of the largest pixel count against the median over frames, one-sided
      (cosmic rays, hot pixels);
    - ``empty``: boolean, no photon in the ROI.

    Scales are MADs over frames, at least 1 (≈ the Poisson σ in Anscombe units).
    """
    s, mx = stats["sum"], stats["max"]
    return {"mean": _detrended_z(2.0 * np.sqrt(s + 0.375), window, floor=1.0),
            "max": np.maximum(_robust_z(2.0 * np.sqrt(np.maximum(mx, 0) + 0.375), floor=1.0), 0.0),
            "empty": s <= 0}


# --------------------------------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------------------------------

def _over(scores: dict, threshold: float) -> np.ndarray:
    """Frames over ``threshold`` in any score (booleans count as flags)."""
    mask = None
    for v in scores.values():
        f = v if v.dtype == np.bool_ else np.abs(np.nan_to_num(v, nan=0.0)) > threshold
        mask = f.copy() if mask is None else mask | f
    return mask


def find_bad_frames(c2=None, *, frames=None, labels=None, threshold: float = DEFAULT_THRESHOLD,
                    max_lag: int | None = None, window: int = 10, lag0: bool = True,
                    return_scores: bool = False, stats: dict | None = None):
    """Flag single bad frames of each ROI from its 2TCF and, when given, from the frames' photon statistics.

    Parameters
    ----------
    c2 : array_like, shape (N, N) or (K, N, N)
        Raw two-time correlation functions (Eq. 1), lag 0 included. Frames whose rows are mostly NaN/Inf
        (no photons, already excluded) are flagged. May be None when ``frames`` and ``labels`` are given.
    frames : array_like (N, H, W) or (N, P), optional
        The photon counts the 2TCF was computed from (numpy, memmap or h5py.Dataset).
    labels : array_like (H, W) or (P,), optional
        ROI labels (0 unused, 1..K), required with ``frames``.
    threshold : float
        Robust z-score (in MAD σ) above which a frame is flagged by any test; the default
        :data:`DEFAULT_THRESHOLD` keeps false alarms under 1 per 1,000 frames on clean simulated series.
    max_lag : int, optional
        Lags used by the row tests, in frames (default min(N − 1, 100)).
    window : int
        Half-width in frames of the running medians that give the expected values (default 10).
    lag0 : bool
        Also test the lag-0 value ``C2[i, i]`` (raw 2TCFs; turn off for 2TCFs whose diagonal was replaced).
    return_scores : bool
        Also return the per-test scores: dict of (K, N) arrays (``c2_*`` from the last pass of
        :func:`two_time_scores`, ``frames_*`` from :func:`frame_scores`).
    stats : dict, optional
        :func:`frame_statistics` of the frames, instead of ``frames`` and ``labels`` (saves reading them again).

    Returns
    -------
    mask : ndarray of bool, shape (K, N)
        True for flagged frames; row k is ROI k + 1.
    scores : dict, only with ``return_scores``

    Notes
    -----
    A frame is flagged when any test exceeds ``threshold``. Frames flagged from their photon statistics are
    excluded before the 2TCF is scored. The 2TCF tests then run in passes from 16 × ``threshold`` down to
    ``threshold`` (halving), the rows and columns of the frames flagged so far excluded, so that a strong event
    (whose column crosses its neighbours' rows) does not get its neighbours flagged. On clean data this costs
    one pass. A pure gain change (all counts of a frame × c) leaves the 2TCF unchanged (Eq. 1 divides it out)
    and is found only from the frames. Time and memory O(K N L): N = 5,000 frames, L = 100 lags is about a
    second per ROI and pass.

    A frame whose speckle pattern is displaced (beam or detector jitter, a sample jump) keeps the photon
    statistics of a good frame: only its lost correlation with its neighbours shows, in its 2TCF row at the
    lags where the neighbours are still correlated (``match``). The frames add nothing to this: the ROI-averaged
    correlation with each neighbour is the 2TCF row itself. The evidence grows with the photons per frame S,
    the contrast β and the correlation the neighbours keep (e^{-2Γ} one frame away): roughly β √S over the
    correlated lags. Where the dynamics already decorrelate the neighbours (Γ ≳ 0.5 frames⁻¹, or β √S ≲ 3) such a
    frame is indistinguishable from a good one, and is not found; it then also carries no correlation that a
    1TCF or fit would miss. Detection per regime: ``benchmarks/bench_bad_frames.py`` and the README.
    """
    if c2 is None and frames is None and stats is None:
        raise XPCSInputError("give a 2TCF, or frames and labels")
    if frames is not None and labels is None:
        raise XPCSInputError("frames need their ROI labels (labels=) to be tested")
    threshold = float(threshold)
    if not threshold > 0:
        raise XPCSInputError(f"threshold must be > 0 (a robust z-score); got {threshold}")
    scores: dict = {}
    shape = None
    c = None
    if c2 is not None:
        c = np.asarray(c2, dtype=np.float64)
        check_square(c.shape, batch="K")
        if c.shape[-1] < 8:
            raise XPCSInputError(f"need at least 8 frames to find bad frames; got {c.shape[-1]}")
        c = c[None] if c.ndim == 2 else c
        shape = (c.shape[0], c.shape[-1])
    if frames is not None:
        stats = frame_statistics(frames, labels)
    if stats is not None:
        if shape is not None and stats["sum"].shape != shape:
            raise XPCSInputError(
                f"frames give {stats['sum'].shape[0]} ROI(s) × {stats['sum'].shape[1]} frames but the 2TCF is "
                f"{shape[0]} × {shape[1]}; give the frames and labels the 2TCF was computed from"
            )
        shape = stats["sum"].shape
        scores.update({f"frames_{k}": v for k, v in frame_scores(stats, window=window).items()})
    mask = np.zeros(shape, dtype=bool) if not scores else _over(scores, threshold)
    if c is not None:
        n = c.shape[-1]
        max_lag = min(n - 1, 100 if max_lag is None else int(max_lag))
        last = {}
        for r in range(c.shape[0]):
            level = 16.0 * threshold
            sc = None
            kept = None     # each frame's scores from the pass that flagged it, else from the last pass
            while True:
                if sc is None:
                    cr = c[r]
                    if mask[r].any():
                        cr = cr.copy()
                        cr[mask[r], :] = np.nan
                        cr[:, mask[r]] = np.nan
                    sc = _row_scores(cr, max_lag, int(window), lag0)
                    if kept is None:
                        kept = {k: v.copy() for k, v in sc.items()}
                    else:
                        for k, v in sc.items():
                            kept[k][~mask[r]] = v[~mask[r]]
                new = _over(sc, level) & ~mask[r]
                if new.any():
                    mask[r] |= new
                    sc = None               # rescore with these frames excluded
                elif level > threshold:
                    level = max(threshold, level / 2)
                else:
                    break
            last[r] = kept
        scores.update({f"c2_{k}": np.stack([last[r][k] for r in range(c.shape[0])]) for k in last[0]})
    return (mask, scores) if return_scores else mask


# --------------------------------------------------------------------------------------------------------------
# Simulated bad frames (tests and benchmarks)
# --------------------------------------------------------------------------------------------------------------

#: Kinds of bad frame :func:`inject_bad_frames` makes.
BAD_FRAME_KINDS = ("spike", "zero", "cosmic", "decorrelated")


def inject_bad_frames(sim, *, fraction: float = 0.01, kinds=BAD_FRAME_KINDS, seed: int = 0,
                      margin: int = 2) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frames of a one-ROI :class:`~xpcs_denoise.simulation.SpeckleSeries` with bad frames injected.

    Kinds (cycled over the chosen frames from a random one):

    - ``"spike"``: the beam is 3–10× brighter for one frame: counts drawn from the same speckle field at
      ×c intensity (the series re-simulated at 10× intensity with the same seed, binomially thinned by c/10);
    - ``"zero"``: no photon (beam dump, closed shutter);
    - ``"cosmic"``: 1–4 adjacent pixels get 50–500 extra counts each (a cosmic ray or hot pixel);
    - ``"decorrelated"``: the frame's speckle pattern shifted by 1–50 pixels (sample jump, shifted speckle):
      same photon statistics, no correlation with its neighbours.

    Parameters
    ----------
    sim : SpeckleSeries with one ROI (``n_rois=1``)
    fraction : share of the frames made bad (at least one), chosen at random at least ``margin`` frames apart
        and away from the first and last ``margin`` frames
    kinds : sequence of the kinds above
    seed : seed of the choices

    Returns
    -------
    frames : (T, 1, P) int array, a modified copy
    bad : (T,) int array of the bad frames' numbers, sorted
    bad_kinds : list of the kind of each bad frame
    """
    if sim.n_rois != 1:
        raise XPCSInputError("inject_bad_frames takes a one-ROI simulated series")
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in BAD_FRAME_KINDS]
    if unknown or not kinds:
        raise XPCSInputError(f"unknown bad-frame kind(s) {unknown}; choose from {BAD_FRAME_KINDS}")
    rng = np.random.default_rng(seed)
    frames = sim.frames.copy()
    n, _, p = frames.shape
    n_bad = max(1, int(round(fraction * n)))
    cand = np.arange(margin, n - margin)
    chosen: list[int] = []
    for t in rng.permutation(cand):
        if all(abs(int(t) - c) > margin for c in chosen):
            chosen.append(int(t))
        if len(chosen) == n_bad:
            break
    bad = np.array(sorted(chosen), dtype=np.int64)
    first = int(rng.integers(len(kinds)))
    bad_kinds = [kinds[(first + i) % len(kinds)] for i in range(bad.size)]
    bright = None
    for t, kind in zip(bad, bad_kinds, strict=False):
        if kind == "spike":
            if bright is None:
                bright = simulate_speckle(n, p, gamma=sim.gamma[0] if sim.gamma.ndim == 1 else sim.gamma,
                                          beta=sim.beta, alpha=sim.alpha, mean_count=10 * sim.mean_count,
                                          seed=sim.seed).frames
            c = rng.uniform(3.0, 10.0)
            frames[t] = rng.binomial(bright[t], c / 10.0)
        elif kind == "zero":
            frames[t] = 0
        elif kind == "cosmic":
            w = int(rng.integers(1, 5))
            start = int(rng.integers(0, p - w))
            frames[t, 0, start:start + w] += np.exp(rng.uniform(np.log(50), np.log(500), w)).astype(frames.dtype)
        else:
            frames[t, 0] = np.roll(frames[t, 0], int(rng.integers(1, 51)))
    return frames, bad, bad_kinds


# --------------------------------------------------------------------------------------------------------------
# Helpers of the file functions and the CLI
# --------------------------------------------------------------------------------------------------------------

def unusable_rows(c2) -> np.ndarray:
    """(K, N) mask of frames whose 2TCF row is mostly NaN/Inf (excluded earlier, or no photons)."""
    c = np.asarray(c2)
    c = c[None] if c.ndim == 2 else c
    n = c.shape[-1]
    bad = np.stack([np.count_nonzero(~np.isfinite(c[r]), axis=-1) for r in range(c.shape[0])])
    return bad > (n - 1) / 2


def stored_exclusion(attrs: dict, n_rois: int, n_frames: int) -> np.ndarray | None:
    """The (K, N) mask of the ``excluded_frames`` attribute a file written by xpcs-denoise holds, if any."""
    lists = attrs.get("excluded_frames") if attrs else None
    if isinstance(lists, str):
        import json

        try:
            lists = json.loads(lists)
        except ValueError:
            return None
    if not isinstance(lists, (list, tuple)) or len(lists) != n_rois:
        return None
    mask = np.zeros((n_rois, n_frames), dtype=bool)
    for r, frames in enumerate(lists):
        idx = np.asarray(frames, dtype=np.int64).ravel()
        idx = idx[(idx >= 0) & (idx < n_frames)]
        mask[r, idx] = True
    return mask if mask.any() else None


def describe_exclusion(mask, limit: int = 8) -> str:
    """One-line summary of a (K, N) exclusion, e.g. ``"3 frame(s) excluded: ROI 1 [12, 40], ROI 2 [7]"``."""
    if mask is None or not np.any(mask):
        return "no frame excluded"
    parts = []
    for r, frames in enumerate(bad_frame_lists(mask)):
        if frames:
            shown = ", ".join(str(f) for f in frames[:limit]) + (", ..." if len(frames) > limit else "")
            parts.append(f"ROI {r + 1} [{shown}]")
    return f"{int(np.sum(mask))} frame(s) excluded: " + ", ".join(parts)
