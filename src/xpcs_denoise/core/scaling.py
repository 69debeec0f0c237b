"""Data preparation (METHOD §2 and §4): crops, targets, lag-0 replacement, contrast scaling, prepared datasets
(read and written by :mod:`xpcs_denoise.io.prepared`).

A *prepared dataset* is an HDF5 file in the layout of the paper's training data (``cned_train.h5``):

=================  ====================  =========================================================
dataset            shape                 meaning
=================  ====================  =========================================================
``inputs_triu``    (n_inputs, n(n+1)/2)  upper triangle (``numpy.triu_indices(n)``) of each n×n crop
``targets_triu``   (n_targets, …)        upper triangle of each target (mean of its 2TCF's crops)
``target_index``   (n_inputs,) int32     ``targets_triu[target_index[i]]`` is the target of input i
``input_names``    (n_inputs,) bytes     ``<scan>_<roi>_<crop>``
``target_names``   (n_targets,) bytes    ``<scan>_<roi>``; a scan ending in ``2`` is every 2nd frame
=================  ====================  =========================================================

Values are in model units (Eq. 4): ``(C2 − 1)/β + 1``, lag-0 replaced by draws from the lag-1 values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .correlation import one_time_from_two_time
from .defaults import WINDOW
from .errors import XPCSInputError
from .fitting import fit_g2
from .validation import check_square

__all__ = [
    "PreparedDataset",
    "eq5_baseline",
    "triu_to_matrix",
    "matrix_to_triu",
    "split_by_target",
    "card_split",
    "series_key",
    "lag1_values",
    "scale_parameters",
    "subsample_frames",
    "replace_diagonal",
    "contrast_from_two_time",
    "to_model_units",
    "from_model_units",
    "diagonal_crops",
    "prepare_two_times",
    "contrast_xsvs",
]


def triu_to_matrix(tri: np.ndarray, n: int | None = None) -> np.ndarray:
    """Symmetric (…, n, n) matrices from their upper triangles (…, n(n+1)/2) in ``triu_indices`` order."""
    tri = np.asarray(tri)
    if n is None:
        n = int(round((np.sqrt(8 * tri.shape[-1] + 1) - 1) / 2))
    if n * (n + 1) // 2 != tri.shape[-1]:
        raise XPCSInputError(f"last axis {tri.shape[-1]} is not the length of an upper triangle n(n+1)/2")
    iu = np.triu_indices(n)
    m = np.empty(tri.shape[:-1] + (n, n), dtype=tri.dtype)
    m[..., iu[0], iu[1]] = tri
    m[..., iu[1], iu[0]] = tri
    return m


def matrix_to_triu(m: np.ndarray) -> np.ndarray:
    """Upper triangles (…, n(n+1)/2) of (…, n, n) matrices (symmetrised first)."""
    m = np.asarray(m)
    n = m.shape[-1]
    iu = np.triu_indices(n)
    return (0.5 * (m + np.swapaxes(m, -1, -2)))[..., iu[0], iu[1]]


def series_key(target_name: str) -> str:
    """The series a target comes from: ``<scan>`` with the every-2nd-frame suffix ``2`` folded in.

    Used to split by series, so that a 2TCF and its every-second-frame copy never land on both sides.
    """
    scan = target_name.rsplit("_", 1)[0]
    return scan


@dataclass
class PreparedDataset:
    """Crops and targets in model units. ``inputs``/``targets`` are (·, n, n) float32 matrices."""

    inputs: np.ndarray
    targets: np.ndarray
    target_index: np.ndarray
    input_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    source_sha256: str | None = None

    @property
    def size(self) -> int:
        return int(self.inputs.shape[-1])

    def subset_targets(self, target_ids) -> PreparedDataset:
        """The crops of the given targets, with targets renumbered."""
        target_ids = np.asarray(sorted(set(int(t) for t in target_ids)), dtype=np.int64)
        remap = -np.ones(len(self.targets), dtype=np.int64)
        remap[target_ids] = np.arange(len(target_ids))
        keep = np.flatnonzero(remap[self.target_index] >= 0)
        return PreparedDataset(
            inputs=self.inputs[keep],
            targets=self.targets[target_ids],
            target_index=remap[self.target_index[keep]].astype(np.int32),
            input_names=[self.input_names[i] for i in keep] if self.input_names else [],
            target_names=[self.target_names[i] for i in target_ids] if self.target_names else [],
            source_sha256=self.source_sha256,
        )


def split_by_target(data: PreparedDataset, val_fraction: float = 0.2, seed: int = 0,
                    by: str = "series") -> tuple[np.ndarray, np.ndarray]:
    """Split target ids into (train, validation), never splitting the crops of one target.

    ``by="series"`` (default) keeps every ROI of a scan, and its every-second-frame copy, on one side: stricter
    than by target, because ROIs of one series share sample and beam conditions. ``by="target"`` splits
    targets independently.
    """
    n_targets = len(data.targets)
    if not 0 < val_fraction < 1:
        raise XPCSInputError(f"val_fraction must be in (0, 1); got {val_fraction}")
    if by == "series" and data.target_names:
        keys = [series_key(nm) for nm in data.target_names]
        # A scan ending in "2" whose stem also exists is the every-second-frame copy of that stem.
        stems = set(keys)
        keys = [k[:-1] if k.endswith("2") and k[:-1] in stems else k for k in keys]
    elif by in ("series", "target"):
        keys = [str(i) for i in range(n_targets)]
    else:
        raise XPCSInputError(f"split 'by' must be 'series' or 'target'; got {by!r}")
    groups = sorted(set(keys))
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_inputs_per_target = np.bincount(data.target_index, minlength=n_targets)
    per_group = {g: 0 for g in groups}
    for t, k in enumerate(keys):
        per_group[k] += n_inputs_per_target[t]
    total = n_inputs_per_target.sum()
    val_groups, count = set(), 0
    for g in groups:
        if count >= val_fraction * total:
            break
        val_groups.add(g)
        count += per_group[g]
    val = np.array([t for t, k in enumerate(keys) if k in val_groups], dtype=np.int64)
    train = np.array([t for t, k in enumerate(keys) if k not in val_groups], dtype=np.int64)
    if not train.size or not val.size:
        raise XPCSInputError(f"the dataset has {len(groups)} {'series' if by == 'series' else 'target'}(s) "
                             f"({n_targets} target(s)): need at least 2 to hold one out for validation; add data "
                             "(or TrainConfig.simulated crops with more real targets)")
    return train, val


def card_split(data: PreparedDataset, card: dict, part: str = "validation") -> PreparedDataset:
    """The crops of the targets a model card holds out (``part="validation"``: ``split.val_target_names``) or
    trains on (``part="training"``: every other target), so that every evaluation uses the card's own split.

    Raises
    ------
    XPCSInputError
        ``part`` is neither, or none of the card's validation targets is in ``data``.
    """
    if part not in ("validation", "training"):
        raise XPCSInputError(f"part must be 'validation' or 'training'; got {part!r}")
    names = set((card or {}).get("split", {}).get("val_target_names", []))
    if not any(nm in names for nm in data.target_names):
        raise XPCSInputError("none of the model card's validation targets is in this file; use split='all'")
    return data.subset_targets([i for i, nm in enumerate(data.target_names) if (nm in names) == (part == "validation")])


def lag1_values(c2: np.ndarray) -> np.ndarray:
    """Values of the first off-diagonal (lag 1) of (…, n, n) matrices, both triangles: (…, 2(n−1))."""
    c2 = np.asarray(c2)
    return np.concatenate([np.diagonal(c2, 1, -2, -1), np.diagonal(c2, -1, -2, -1)], axis=-1)


def replace_diagonal(c2: np.ndarray, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Copy of (…, n, n) 2TCFs with lag 0 replaced by random draws from each matrix's own lag-1 values.

    The lag-0 value is the normalised variance of the photon count, far above the correlations; the paper
    replaces it so that it neither dominates the cost nor creates a discontinuity. Symmetry is kept.
    """
    c2 = np.array(c2, dtype=np.float64, copy=True)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = c2.shape[-1]
    lag1 = lag1_values(c2).reshape(-1, 2 * (n - 1))
    flat = c2.reshape(-1, n, n)
    for_each = np.take_along_axis(lag1, rng.integers(0, 2 * (n - 1), size=(lag1.shape[0], n)), axis=1)
    idx = np.arange(n)
    flat[:, idx, idx] = for_each
    return flat.reshape(c2.shape)


def trimmed_mean(x: np.ndarray, cut: float = 0.1, axis: int = -1) -> np.ndarray:
    """Mean of ``x`` along ``axis`` after dropping the lowest and highest ``cut`` share of the finite values.

    Robust to the outlier pixels of real 2TCFs (heavy tails, values far outside [0, 3]) and, unlike the median,
    unbiased for the skewed but light-tailed values of photon-limited data. NaN where no value is finite.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n_fin = np.isfinite(x).sum(axis=-1)
    srt = np.sort(np.where(np.isfinite(x), x, np.inf), axis=-1)  # NaN/Inf pushed to the end
    lo = np.floor(cut * n_fin).astype(np.int64)
    hi = n_fin - lo
    idx = np.arange(x.shape[-1])
    keep = (idx >= lo[..., None]) & (idx < hi[..., None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(keep, srt, 0.0).sum(axis=-1) / np.where(hi > lo, hi - lo, np.nan)


#: The contrast used for scaling is at least this many standard errors of the lag-1 mean (see
#: :func:`contrast_from_two_time`).
CONTRAST_FLOOR_SE = 2.0


def contrast_from_two_time(c2: np.ndarray, baseline: float | np.ndarray = 1.0, *,
                           return_floored: bool = False):
    """Contrast β̂ of each (…, n, n) 2TCF (Eq. 5): robust mean of the lag-1 values minus the baseline.

    The paper names the contrast estimate as the method's main limit: a plain mean is pulled by the outlier
    pixels of real 2TCFs, so the lag-1 values are averaged after trimming 10 % at each end
    (:func:`trimmed_mean`). Where that lies within the noise of zero — within ``CONTRAST_FLOOR_SE`` standard
    errors of the lag-1 mean (robust: 1.4826 × MAD / √(n − 1), n frames), as for very noisy or very fast
    2TCFs — it is raised to that floor: dividing by a contrast that is mostly noise would blow the scaled 2TCF up
    by orders of magnitude. NaN (no contrast) where the lag-1 values lie clearly below the baseline (a bad
    normalisation) or carry no spread at all (a constant 2TCF). With ``return_floored`` also a boolean array:
    where the floor was used.
    """
    c2 = np.asarray(c2, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    vals = lag1_values(c2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        b = trimmed_mean(vals) - base
        n_fin = np.sum(np.isfinite(vals), axis=-1)
        # robust spread (MAD): the outlier pixels the trimmed mean ignores must not inflate the floor either
        mad = np.nanmedian(np.abs(vals - np.nanmedian(vals, axis=-1, keepdims=True)), axis=-1)
        se = 1.4826 * mad / np.sqrt(np.maximum(n_fin / 2, 1))  # both triangles: n/2 independent values
    # spread at rounding level (an analytic or constant 2TCF) is no spread: nothing to floor by
    floor = np.where(se > 1e-9 * np.maximum(1.0, np.abs(b + base)), CONTRAST_FLOOR_SE * se, 0.0)
    # within the noise of zero: floored; clearly below the baseline (bad normalisation, anti-correlation): none
    floored = np.isfinite(b) & (floor > 0) & (b < floor) & (b > -floor)
    b = np.where(floored, floor, b)
    b = np.where(np.isfinite(b) & (b > 1e-12 * np.maximum(1.0, np.abs(base))), b, np.nan)  # not rounding
    if np.ndim(b) == 0:
        b, floored = float(b), bool(floored)
    return (b, floored) if return_floored else b


def scale_parameters(c2: np.ndarray, size: int = WINDOW, beta=None, baseline=None, *,
                     partial: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Contrast β and baseline C∞ used to bring (B, N, N) 2TCFs to model units.

    N = ``size`` (Eq. 5): C∞ = 1 (unless the 2TCF shows another baseline, :func:`eq5_baseline`) and
    β̂ = robust mean lag-1 value − C∞, at least 2 standard errors of that mean
    (:func:`contrast_from_two_time`). N > ``size`` (Eq. 7): C∞* = median of the 1TCF over the longest
    quarter of the lags and β*(lag = 1) = robust mean lag-1 value − C∞*, floored alike. Either can be given
    instead (scalar or one per 2TCF). Returns (β, C∞), arrays of B.

    Zero or negative contrast is an error; with ``partial=True`` it is an error only when every 2TCF has it,
    and the others get β = NaN (the caller leaves them undenoised). An estimated contrast also counts as zero
    when it is not above a tolerance (:data:`FLAT_RTOL` × max(1, |C∞|)) or the 2TCF is flat (constant).
    """
    x = np.asarray(c2, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    nb, n_frames = x.shape[0], x.shape[-1]
    if baseline is None:
        if n_frames == size:
            base = eq5_baseline(x)
        else:
            g2 = one_time_from_two_time(x)
            with warnings.catch_warnings():  # an all-NaN tail gives NaN, refused below with a message
                warnings.simplefilter("ignore", RuntimeWarning)
                # median over the long lags: robust to the few noisy lags resting on few frame pairs
                base = np.nanmedian(g2[:, -max(1, (n_frames - 1) // 4):], axis=1)
    else:
        base = _per_matrix(baseline, nb, "baseline")
    b = contrast_from_two_time(x, base) if beta is None else _per_matrix(beta, nb, "beta")
    bad = ~np.isfinite(b) | (b <= 0)
    if beta is None:
        bad |= ~_significant_contrast(x, b, base)
    if partial and not np.all(bad):
        b[bad] = np.nan
    elif np.any(bad):
        raise XPCSInputError(
            f"{int(bad.sum())} 2TCF(s) have no contrast (mean lag-1 value not significantly above the baseline "
            f"{np.round(base[bad][:3], 4).tolist()}, or a flat 2TCF): there is no decay to denoise; check the "
            "normalisation "
            "or pass beta= explicitly"
        )
    return b, base


def eq5_baseline(c2, *, n_sigma: float = 5.0, min_offset: float = 0.5, max_gamma_rel_err: float = 0.15
                 ) -> np.ndarray:
    """Baseline C∞ for Eq. 5 scaling of (B, N, N) 2TCFs: 1, as the paper's method assumes, unless a plain Eq. 3
    fit of the 1TCF (C∞ free, lags weighted by their number of frame pairs) shows another one beyond doubt; then
    that fit's C∞.

    Why: an intensity gradient across a ring, or a 2TCF normalised another way, raises the baseline (Eq. 1
    gives ⟨m²⟩/⟨m⟩² > 1); scaled with C∞ = 1 the decay looks incomplete, and Γ came out 3–500× too small.
    "Beyond doubt" because a 50-frame 1TCF's errors are correlated and its C∞ often wild: the fit must see most
    of the decay (at most e^-1.5 of β left at the last lag), determine Γ to ``max_gamma_rel_err``, and put C∞
    more than ``n_sigma`` standard errors and ``min_offset`` × β from 1. With the defaults, 0.3 % of
    simulated 50-frame crops whose baseline is 1 (judged ranges) are moved, and a baseline of 1.25 with β = 0.2 is
    found in 100 / 98.5 / 75 % of crops with noise 0.01 / 0.02 / 0.05 per cell.

    Examples
    --------
    >>> import numpy as np
    >>> tau = np.abs(np.subtract.outer(np.arange(50), np.arange(50)))
    >>> c2 = 1 + 0.2 * np.exp(-2 * 0.1 * tau)
    >>> eq5_baseline(np.stack([c2, c2 + 0.25])).round(3).tolist()
    [1.0, 1.25]
    """
    x = np.asarray(c2, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x
    n = x.shape[-1]
    base = np.ones(x.shape[0])
    if n < 8:
        return base
    g2 = one_time_from_two_time(x)  # lags 1 … N − 1
    sigma = 1.0 / np.sqrt(n - np.arange(1, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_g2(g2, sigma=sigma, n_starts=1)
    off = fit.baseline - 1.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        resolved = (fit.gamma * (n - 1)) ** fit.alpha >= 0.75
        sure = ((np.abs(off) > n_sigma * fit.baseline_err) & (np.abs(off) > min_offset * fit.beta)
                & (fit.gamma_err < max_gamma_rel_err * fit.gamma))
    use = fit.success & ~fit.at_bound & resolved & sure & np.isfinite(off)
    base[use] = fit.baseline[use]
    return base


def _per_matrix(value, nb: int, name: str) -> np.ndarray:
    """A scalar or one value per 2TCF, as a float array of ``nb``."""
    try:
        out = np.broadcast_to(np.asarray(value, float), (nb,)).copy()
    except (ValueError, TypeError):
        raise XPCSInputError(f"{name} must be one number or one per 2TCF ({nb}); got shape "
                             f"{np.shape(value)}") from None
    # a baseline or contrast given by the user is used as given: NaN, ±inf or ≤ 0 would give NaN or a sign flip
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise XPCSInputError(f"{name} must be finite and > 0 (a contrast or baseline of a 2TCF); got "
                             f"{np.asarray(value).ravel()[:5].tolist()}")
    return out


#: Relative tolerance below which a contrast is rounding, and a 2TCF flat (no structure at all).
FLAT_RTOL = 1e-6


def _significant_contrast(x: np.ndarray, b: np.ndarray, base: np.ndarray) -> np.ndarray:
    """True where the estimated contrast ``b`` of (B, N, N) 2TCFs ``x`` is more than rounding (above
    :data:`FLAT_RTOL` × max(1, |C∞|), not an exact ``> 0``; contrasts within the noise of zero are floored by
    :func:`contrast_from_two_time`) and the matrix is not flat (:func:`flat_two_times`: a constant 2TCF has no
    decay, whatever Eq. 5's baseline of 1 says)."""
    with np.errstate(invalid="ignore"):
        return (b > FLAT_RTOL * np.maximum(1.0, np.abs(base))) & ~flat_two_times(x)


def flat_two_times(c2) -> np.ndarray:
    """True for each (…, N, N) 2TCF that is flat: its values at lags 1, N/2 and N − 1 all equal within
    :data:`FLAT_RTOL` (relative to max(1, |mean lag-1 value|)); O(N) per matrix. A flat 2TCF has no decay to
    denoise or fit."""
    x = np.asarray(c2, dtype=np.float64)
    n = x.shape[-1]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        off = np.concatenate([np.diagonal(x, offset=k, axis1=-2, axis2=-1) for k in sorted({1, n // 2, n - 1})],
                             axis=-1)
        scale = np.maximum(1.0, np.abs(np.nanmean(np.diagonal(x, offset=1, axis1=-2, axis2=-1), axis=-1)))
        return (np.nanmax(off, axis=-1) - np.nanmin(off, axis=-1)) <= FLAT_RTOL * scale


def subsample_frames(c2, every: int, offset: int = 0) -> np.ndarray:
    """Every ``every``-th frame of (…, N, N) 2TCFs, starting at frame ``offset`` (METHOD §4).

    For slow dynamics (Γ below ~0.01 frames⁻¹ the decay barely shows within 50 frames) the 2TCF of frames
    t = offset, offset + every, … is the 2TCF of a series with ``every`` times the frame time, so its rates in
    the new frames⁻¹ are ``every`` × the old ones: divide fitted Γ by ``every`` to return to the original
    frames. Equivalent to correlating only those frames, but without recomputing the 2TCF.
    """
    c2 = np.asarray(c2)
    every, offset = int(every), int(offset)
    check_square(c2.shape, ndim=None)
    if every < 1 or not 0 <= offset < c2.shape[-1]:
        raise XPCSInputError(f"need every >= 1 and 0 <= offset < N = {c2.shape[-1]}; got every={every}, "
                             f"offset={offset}")
    kept = len(range(offset, c2.shape[-1], every))
    if kept < 2:
        raise XPCSInputError(f"every={every} from frame {offset} keeps {kept} of {c2.shape[-1]} frames; a 2TCF "
                             "needs at least 2 frames to have a lag")
    return c2[..., offset::every, offset::every]


def to_model_units(c2, beta, baseline=1.0) -> np.ndarray:
    """Eq. 4/5/7: ``(C2 − baseline)/β + 1``; ``beta`` and ``baseline`` broadcast over the batch axes."""
    beta = np.asarray(beta, dtype=np.float64)[..., None, None]
    baseline = np.asarray(baseline, dtype=np.float64)[..., None, None]
    return (np.asarray(c2, dtype=np.float64) - baseline) / beta + 1.0


def from_model_units(x, beta, baseline=1.0) -> np.ndarray:
    """Eq. 6: ``(x − 1)·β + baseline``, the inverse of :func:`to_model_units`."""
    beta = np.asarray(beta, dtype=np.float64)[..., None, None]
    baseline = np.asarray(baseline, dtype=np.float64)[..., None, None]
    return (np.asarray(x, dtype=np.float64) - 1.0) * beta + baseline


def diagonal_crops(c2: np.ndarray, size: int = WINDOW, step: int = 25) -> np.ndarray:
    """Square crops centred on the (1,1) diagonal, from the first frame, moving ``step`` frames: (n, size, size)."""
    c2 = np.asarray(c2)
    check_square(c2.shape, ndim=(2,))
    n = c2.shape[-1]
    if n < size:
        raise XPCSInputError(f"2TCF has {n} frames, fewer than the crop size {size}")
    starts = np.arange(0, n - size + 1, int(step))
    idx = starts[:, None] + np.arange(size)[None, :]
    return c2[idx[:, :, None], idx[:, None, :]]


def prepare_two_times(c2s, names, *, betas=None, size: int = WINDOW, step: int = 25, seed: int = 0,
                      every: tuple[int, ...] = (1,)) -> PreparedDataset:
    """Prepare raw 2TCFs for training, as the paper did (METHOD §2).

    Parameters
    ----------
    c2s : sequence of (N, N) arrays
        Raw 2TCFs (one per series and ROI), N ≥ ``size``.
    names : sequence of str
        ``<scan>_<roi>`` per 2TCF.
    betas : sequence of float, optional
        Contrast β* per 2TCF (e.g. from :func:`contrast_xsvs` on the frames); default: the 2TCF's own lag-1
        contrast (:func:`contrast_from_two_time`).
    every : tuple of int
        Frame sub-sampling factors for augmentation; ``(1, 2)`` adds every-second-frame 2TCFs (named with a
        trailing ``2`` on the scan), as the paper did.

    Returns
    -------
    PreparedDataset
        Crops with lag 0 replaced by lag-1 draws, scaled by Eq. 4; the target of each crop is the mean of
        all crops of its 2TCF.
    """
    rng = np.random.default_rng(seed)
    inputs, targets, index, in_names, tg_names = [], [], [], [], []
    for c2, name, k_beta in zip(c2s, names, betas if betas is not None else [None] * len(names), strict=True):
        c2 = np.asarray(c2, dtype=np.float64)
        for k in every:
            sub = c2[::k, ::k]
            if sub.shape[0] < size:
                continue
            beta = k_beta if k_beta is not None else float(contrast_from_two_time(sub))
            if not np.isfinite(beta) or beta <= 0:
                raise XPCSInputError(f"2TCF {name!r}: contrast {beta} is not positive; cannot scale it")
            crops = replace_diagonal(diagonal_crops(sub, size, step), rng)
            crops = to_model_units(crops, beta)
            scan, _, roi = name.rpartition("_")
            tname = f"{scan}{k if k > 1 else ''}_{roi}" if scan else f"{name}{k if k > 1 else ''}"
            index += [len(targets)] * len(crops)
            targets.append(crops.mean(axis=0))
            tg_names.append(tname)
            inputs.extend(crops)
            in_names += [f"{tname}_{i}" for i in range(len(crops))]
    if not inputs:
        raise XPCSInputError(f"no 2TCF has {size} frames or more; nothing to prepare")
    return PreparedDataset(inputs=np.asarray(inputs, np.float32), targets=np.asarray(targets, np.float32),
                           target_index=np.asarray(index, np.int32), input_names=in_names,
                           target_names=tg_names)


def contrast_xsvs(frames, labels, *, beta_grid=None) -> tuple[np.ndarray, np.ndarray]:
    """Speckle contrast β* of each ROI from photon-count statistics (XSVS), as the paper scaled its data.

    For each frame and ROI, the pixels' counts are fitted by maximum likelihood with a negative binomial
    distribution of mean μ (the sample mean) and ``M = 1/β`` modes; β* is the mean over frames.

    Parameters
    ----------
    frames : (T, H, W) or (T, P) photon counts (non-negative integers)
    labels : (H, W) or (P,) ROI labels, 0 = unused, 1..K
    beta_grid : optional grid of β values searched (default 400 log-spaced values in [1e-3, 2]), refined by
        a parabola through the best three.

    Returns
    -------
    beta : (K,) mean contrast over frames; beta_per_frame : (K, T)
    """
    from scipy.special import gammaln

    frames = np.asarray(frames)
    labels = np.asarray(labels)
    t = frames.shape[0]
    flat = frames.reshape(t, -1)
    lab = labels.ravel()
    if lab.size != flat.shape[1]:
        raise XPCSInputError(f"labels have {lab.size} pixels, frames {flat.shape[1]}")
    if np.any(flat < 0) or not np.all(np.isfinite(flat)):
        raise XPCSInputError("XSVS needs non-negative finite photon counts")
    counts_all = np.rint(flat).astype(np.int64)
    grid = np.geomspace(1e-3, 2.0, 400) if beta_grid is None else np.asarray(beta_grid, float)
    m_modes = 1.0 / grid  # (G,)
    n_rois = int(lab.max())
    out = np.full((n_rois, t), np.nan)
    for k in range(1, n_rois + 1):
        c = counts_all[:, lab == k]
        if c.size == 0:
            continue
        kmax = int(c.max())
        hist = np.zeros((t, kmax + 1))
        np.add.at(hist, (np.repeat(np.arange(t), c.shape[1]), c.ravel()), 1.0)
        mu = c.mean(axis=1)  # (T,)
        kk = np.arange(kmax + 1)
        mm = m_modes[None, :, None]
        # Log-likelihood (up to terms free of M) on the grid: (T, G).
        term = (gammaln(kk[None, None, :] + mm) - gammaln(mm)
                + mm * np.log(mm / (mm + mu[:, None, None]))
                + kk[None, None, :] * np.log(np.where(mu > 0, mu, 1)[:, None, None] / (mm + mu[:, None, None])))
        ll = np.einsum("tk,tgk->tg", hist, term)
        best = np.clip(np.argmax(ll, axis=1), 1, len(grid) - 2)
        rows = np.arange(t)
        y0, y1, y2 = ll[rows, best - 1], ll[rows, best], ll[rows, best + 1]
        denom = y0 - 2 * y1 + y2
        shift = np.where(denom < 0, 0.5 * (y0 - y2) / np.where(denom < 0, denom, 1), 0.0)
        lg = np.log(grid)
        step = lg[best + 1] - lg[best]
        out[k - 1] = np.where(mu > 0, np.exp(lg[best] + np.clip(shift, -1, 1) * step), np.nan)
    return np.nanmean(out, axis=1), out
