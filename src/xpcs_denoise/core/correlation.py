"""Correlation functions of XPCS: the two-time (Eq. 1) and one-time (Eq. 2) functions and time-resolved cuts.

All times are in frames. Arrays are numpy, float64 unless stated.
"""

from __future__ import annotations

import numpy as np

from .errors import XPCSInputError
from .exclusion import apply_exclusion, exclusion_mask
from .validation import MAX_ROIS, check_int, check_memory, check_square, numeric_array

__all__ = [
    "two_time",
    "one_time_from_two_time",
    "lag_average_matrix",
    "time_resolved_cuts",
    "two_time_memory_bytes",
    "auto_block_pixels",
]


def _validated_labels(labels: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    labels = numeric_array(labels, "ROI label map")
    if labels.shape != tuple(frame_shape):
        raise XPCSInputError(
            f"ROI label map has shape {labels.shape} but frames are {tuple(frame_shape)}; "
            "give one integer label per detector pixel"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(
            labels == np.round(labels)
        ):
            labels = labels.astype(np.int64)
        else:
            raise XPCSInputError("ROI labels must be integers (0 = unused, 1..K = q-ROIs)")
    if labels.size and labels.min() < 0:
        raise XPCSInputError("ROI labels must be >= 0 (0 = unused pixel, 1..K = q-ROIs)")
    n_rois = int(labels.max()) if labels.size else 0
    if n_rois == 0:
        raise XPCSInputError("ROI label map has no labelled pixel; label the q-ROIs 1..K")
    if n_rois > MAX_ROIS:  # before any (max label)-sized array: a mask value of 2**32 - 1 would ask for 32 GiB
        raise XPCSInputError(f"ROI label map holds label {n_rois}, above the {MAX_ROIS} q-ROIs supported; set "
                             "masked or unused pixels to 0 and number the ROIs 1..K")
    present = np.unique(labels)
    present = present[present > 0]
    if present.size != n_rois:
        missing = np.setdiff1d(np.arange(1, n_rois + 1), present)
        raise XPCSInputError(
            f"ROI label(s) {missing[:10].tolist()}{'...' if missing.size > 10 else ''} ({missing.size} in all) "
            "have no pixels; number the ROIs 1..K without gaps"
        )
    return labels.reshape(-1).astype(np.int64, copy=False), n_rois


#: Working memory allowed for one block of pixels (besides the (K, T, T) result), bytes.
BLOCK_BUDGET_BYTES = 128 * 2**20


def auto_block_pixels(n_frames: int, frame_width: int = 1) -> int:
    """Pixels per block so that a block's three (T, n) float64 copies fit in :data:`BLOCK_BUDGET_BYTES`;
    whole detector rows when the frames are 2-D (rows are what an HDF5 chunk or memmap reads fastest)."""
    n = max(1, BLOCK_BUDGET_BYTES // (24 * max(1, int(n_frames))))
    if frame_width > 1:
        n = max(frame_width, (n // frame_width) * frame_width)
    return int(n)


def two_time_memory_bytes(n_frames: int, n_rois: int, block_pixels: int | None = None) -> int:
    """Peak working memory of :func:`two_time` in bytes, besides the frames themselves.

    The (K, T, T) float64 result dominates: ``8 K T²`` (each block's products are added in place, BLAS syrk,
    without a T × T temporary; on a GPU, ``device=``, add one). A block of pixels adds at most ``24 T n`` (the
    block as read, its float64 copy and one ROI's columns), at most :data:`BLOCK_BUDGET_BYTES` with the
    automatic block size; the per-ROI frame sums add ``16 K T``. T = 5,000 frames and K = 20 ROIs: 4.00e9 +
    1.3e8 bytes, 3.85 GiB, whatever the number of pixels. The interpreter and libraries come on top (~250 MB
    with torch loaded).
    """
    block = auto_block_pixels(n_frames) if block_pixels is None else int(block_pixels)
    return 8 * n_rois * n_frames**2 + 24 * n_frames * block + 16 * n_rois * n_frames


def _frames_and_shape(frames):
    """``frames`` (as an array unless it already has a shape: memmaps and h5py datasets stay lazy) and its
    shape, checked to be (T, H, W) or (T, P)."""
    shape = getattr(frames, "shape", None)
    if shape is None or isinstance(frames, np.ma.MaskedArray):
        frames = numeric_array(frames, "frames")
        shape = frames.shape
    if len(shape) not in (2, 3):
        raise XPCSInputError(f"frames must have shape (T, H, W) or (T, P); got {tuple(shape)}")
    return frames, tuple(shape)


def two_time(
    frames,
    labels,
    *,
    block_pixels: int | None = None,
    dtype=np.float64,
    device: str | None = None,
    progress: bool = False,
    exclude=None,
) -> np.ndarray:
    """Two-time correlation functions (Eq. 1) of every q-ROI, all at once.

    ``C2[k, t1, t2] = <I(t1) I(t2)>_k / (<I(t1)>_k <I(t2)>_k)``, averages over the pixels of ROI ``k``.

    Parameters
    ----------
    frames : array_like, shape (T, H, W) or (T, P)
        Photon counts (integer or float) per frame and pixel. A numpy array, ``numpy.memmap`` or
        ``h5py.Dataset``: pixels are read in column blocks, so the stack never has to fit in memory
        as float64.
    labels : array_like of int, shape (H, W) or (P,)
        q-ROI label per pixel: 0 = not used, 1..K = ROI number.
    block_pixels : int, optional
        Pixels per block; default: whole detector rows within a 128 MiB working budget. Peak memory is
        ``8 K T² + 24 T block_pixels`` bytes (:func:`two_time_memory_bytes`): the result plus one block.
    dtype : numpy dtype
        Accumulation type, float64 (default) or float32.
    device : str, optional
        A torch device (e.g. ``"cuda"``) to do the matrix products on; default numpy on the CPU.
    progress : bool
        Show a progress bar over pixel blocks.
    exclude : optional
        Frames to exclude: frame numbers (from 0), text like ``"12,40-45"``, or a boolean mask (T,) or
        (K, T) (see :func:`~xpcs_denoise.badframes.exclusion_mask`). Their rows and columns are set to NaN,
        and an excluded frame may have no photons (a beam dump).

    Returns
    -------
    c2 : ndarray, shape (K, T, T), float64
        Symmetric 2TCFs; ``c2[k-1]`` belongs to label ``k``.

    Notes
    -----
    Each block of pixels costs one matrix product per ROI present in it: the block's columns of ROI k,
    ``X_k`` (T × n), add ``X_k X_kᵀ`` to the numerator (one triangle, in place) and their row sums to
    ``<I(t)>_k``.
    """
    frames, shape = _frames_and_shape(frames)
    n_frames = int(shape[0])
    if n_frames < 2:
        raise XPCSInputError(f"need at least 2 frames to correlate; got {n_frames}")
    frame_shape = tuple(int(s) for s in shape[1:])
    fdtype = np.dtype(getattr(frames, "dtype", np.float64))
    if fdtype.kind not in "biuf":  # timedelta64 is an integer subtype for numpy, but not counts
        raise XPCSInputError(f"frames must hold numbers (integer or float counts); got dtype {fdtype}")
    # float16 (or smaller) accumulation overflows: sums of products of counts need float32 at least.
    dtype = np.result_type(np.dtype(dtype), np.float32)
    if dtype.kind != "f" or dtype.itemsize > 8:
        raise XPCSInputError(f"dtype must be float32 or float64; got {dtype}")
    flat_labels, n_rois = _validated_labels(labels, frame_shape)

    check_memory(two_time_memory_bytes(n_frames, n_rois, block_pixels),
                 f"2TCFs of {n_rois} ROI(s) × {n_frames} frames")
    n_pix = flat_labels.size

    excl = exclusion_mask(exclude, n_frames, n_rois)
    if block_pixels is None:
        block_pixels = auto_block_pixels(n_frames, frame_shape[-1] if len(frame_shape) == 2 else 1)
    block_pixels = max(1, int(block_pixels))

    if device is not None:
        import torch

        tdev = torch.device(device)
        tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        num = torch.zeros((n_rois, n_frames, n_frames), dtype=tdtype, device=tdev)
        sums = torch.zeros((n_rois, n_frames), dtype=tdtype, device=tdev)
    else:
        from scipy.linalg import blas

        num = np.zeros((n_rois, n_frames, n_frames), dtype=dtype)
        sums = np.zeros((n_rois, n_frames), dtype=dtype)
        syrk = blas.dsyrk if num.dtype == np.float64 else blas.ssyrk
    npix_roi = np.bincount(flat_labels, minlength=n_rois + 1)[1:].astype(np.float64)

    # Reading the whole pixel range of a row-major (T, H, W) store in column blocks: for an h5py.Dataset or
    # memmap, a block of whole detector rows is contiguous per frame, so we block over rows where we can.
    scale = None  # float counts near float64's limits are brought to order 1 first: Eq. 1 is scale-free
    starts = range(0, n_pix, block_pixels)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="2TCF", unit="block")
    for start in starts:
        stop = min(start + block_pixels, n_pix)
        lab = flat_labels[start:stop]
        if not np.any(lab):
            continue
        block = _read_pixel_block(frames, frame_shape, start, stop)
        if not np.all(np.isfinite(block)):
            raise XPCSInputError(
                "frames contain NaN or Inf; mask bad pixels by setting their label to 0"
            )
        if scale is None:
            top = float(np.max(np.abs(block[:, lab > 0]))) if block.dtype.kind == "f" else 0.0
            scale = 1.0 / top if top > 0 and not 1e-100 < top < 1e100 else 1.0
        if scale != 1.0:
            block = block * scale
        for k in np.unique(lab[lab > 0]):
            cols = block[:, lab == k].astype(dtype, copy=False)
            if device is not None:
                x = torch.as_tensor(cols, device=tdev, dtype=tdtype)
                num[k - 1] += x @ x.T
                sums[k - 1] += x.sum(dim=1)
            else:
                # num[k-1] += X Xᵀ in place, lower triangle only (BLAS syrk: no T×T temporary, half the work);
                # num[k-1].T is the Fortran-ordered view syrk updates without a copy.
                syrk(1.0, cols.T, beta=1.0, c=num[k - 1].T, trans=1, lower=0, overwrite_c=1)
                sums[k - 1] += cols.sum(axis=1)
    if device is not None:
        num = num.cpu().numpy()
        sums = sums.cpu().numpy()
    else:
        for k in range(n_rois):  # mirror the lower triangle, row by row (no second T×T array)
            m = num[k]
            for i in range(n_frames - 1):
                m[i, i + 1:] = m[i + 1:, i]
    num = num.astype(np.float64, copy=False)
    mean = sums.astype(np.float64) / npix_roi[:, None]
    empty = (mean <= 0) if excl is None else (mean <= 0) & ~excl
    if np.any(empty):
        bad = sorted({int(k) + 1 for k in np.nonzero(empty)[0]})
        raise XPCSInputError(
            f"ROI(s) {bad} have zero mean intensity in at least one frame; the 2TCF is undefined there "
            "(check the ROI map, or exclude such frames: exclude='auto')"
        )
    # num / npix / (mean_t1 mean_t2), in place to keep the (K, T, T) array the only large one.
    num /= npix_roi[:, None, None]
    if excl is not None:
        mean = np.where(excl, np.nan, mean)
    num /= mean[:, :, None]
    num /= mean[:, None, :]
    if not np.all(np.isfinite(num) | np.isnan(mean)[:, :, None] | np.isnan(mean)[:, None, :]):
        raise XPCSInputError("the counts span too wide a range for float64 (products overflow or vanish); "
                             "rescale the frames")
    return num


def _read_pixel_block(frames, frame_shape, start: int, stop: int) -> np.ndarray:
    """Frames[:, pixels start:stop] as a (T, n) array, for numpy arrays, memmaps and h5py datasets."""
    if len(frame_shape) == 1:
        return np.asarray(frames[:, start:stop])
    height, width = frame_shape
    r0, r1 = start // width, (stop - 1) // width + 1
    rows = np.asarray(frames[:, r0:r1, :]).reshape(frames.shape[0], -1)
    off = r0 * width
    return rows[:, start - off : stop - off]


def lag_average_matrix(n: int, max_lag: int | None = None) -> np.ndarray:
    """Matrix ``A`` of shape (max_lag, n·n) with ``A @ c2.ravel()`` = 1TCF of an (n, n) 2TCF, lags 1..max_lag.

    Both triangles are averaged, so a non-symmetric matrix (a model's output) is treated as its symmetric
    part. Used to take the 1TCF of many small 2TCFs with one matrix product.
    """
    max_lag = n - 1 if max_lag is None else int(max_lag)
    i, j = np.indices((n, n))
    lag = np.abs(i - j).ravel()
    a = np.zeros((max_lag, n * n))
    for k in range(1, max_lag + 1):
        a[k - 1, lag == k] = 1.0 / (2 * (n - k))
    return a


_G2_CHUNK = 2**19  # values gathered at once by one_time_from_two_time (a few 4 MB temporaries)


def one_time_from_two_time(c2, *, max_lag: int | None = None, exclude=None, return_err: bool = False):
    """One-time correlation function (Eq. 2): the mean of a 2TCF along its diagonals.

    Parameters
    ----------
    c2 : array_like, shape (T, T) or (B, T, T)
        Two-time correlation function(s).
    max_lag : int, optional
        Largest lag, in frames; default T − 1.
    exclude : optional
        Frames left out of the averages: frame numbers, text like ``"12,40-45"``, or a boolean mask (T,) or
        (B, T) (:func:`~xpcs_denoise.badframes.exclusion_mask`); their rows and columns count as NaN.
    return_err : bool
        Also return the standard error of each 1TCF point, as scikit-beam's
        ``one_time_from_two_time(calc_errors=True)``: the spread of the (symmetrised) values along diagonal k
        over the square root of their number, ``std_t(C2[t, t+k]) / sqrt(n_k)`` with ``n_k`` finite values
        (T − k without masked frames; the two triangles of a symmetric 2TCF are one set of values). NaN where
        fewer than 2 values exist. Use it as ``sigma`` of :func:`~xpcs_denoise.fitting.fit_g2` (through
        :func:`~xpcs_denoise.fitting.sigma_for_fit`, which fills the points it leaves undefined).

    Returns
    -------
    g2 : ndarray, shape (T−1,) or (B, T−1)
        ``g2[..., k-1] = mean_t (C2[t, t+k] + C2[t+k, t]) / 2`` for lags k = 1..max_lag frames. NaN entries of
        ``c2`` (masked frames) are ignored in the averages; a lag with no finite value is NaN.
    g2_err : ndarray, same shape (only with ``return_err``)
        Standard error of each point (same unit as ``c2``).
    """
    c2 = numeric_array(c2, "2TCF").astype(np.float64, copy=False)
    check_square(c2.shape)
    n = c2.shape[-1]
    if n < 2:
        raise XPCSInputError(f"2TCF must be at least 2×2 to have a lag; got {c2.shape}")
    max_lag = n - 1 if max_lag is None else check_int(max_lag, "max_lag (frames)", 1, n - 1)
    single = c2.ndim == 2
    c = c2[None] if single else c2
    if exclude is not None:
        c = apply_exclusion(c, exclude)
    nb = c.shape[0]
    flat = c.reshape(nb, -1)
    g2 = np.empty((nb, max_lag))
    # Diagonal k of both triangles gathered by flat index (no Python loop over lags), in chunks of matrices and
    # lags holding at most ~0.5M values each: a few 4 MB temporaries whatever T.
    per_lag = n
    lag_chunk = int(max(1, min(max_lag, _G2_CHUNK // per_lag)))
    b_chunk = int(max(1, _G2_CHUNK // (per_lag * lag_chunk)))
    t = np.arange(n)[:, None]
    err = np.full((nb, max_lag), np.nan) if return_err else None
    for k0 in range(0, max_lag, lag_chunk):
        k = np.arange(k0 + 1, min(max_lag, k0 + lag_chunk) + 1)[None, :]
        col = t + k
        valid = col < n
        colv = np.where(valid, col, 0)
        upper, lower = (t * n + colv).ravel(), (colv * n + t).ravel()
        for b0 in range(0, nb, b_chunk):
            part = flat[b0:b0 + b_chunk]
            vals = 0.5 * (part[:, upper] + part[:, lower]).reshape(-1, n, k.shape[1])
            vals = np.where(valid[None], vals, np.nan)
            with np.errstate(invalid="ignore"):
                counts = np.sum(np.isfinite(vals), axis=1)
                out = np.nansum(vals, axis=1) / np.where(counts > 0, counts, 1)
            out[counts == 0] = np.nan
            g2[b0:b0 + b_chunk, k0:k0 + k.shape[1]] = out
            if return_err:
                with np.errstate(invalid="ignore", divide="ignore"):
                    dev = np.where(np.isfinite(vals), vals - out[:, None, :], 0.0)
                    var = np.sum(dev * dev, axis=1) / np.where(counts > 1, counts - 1, 1)
                    e = np.sqrt(var / np.where(counts > 0, counts, 1))
                e[counts < 2] = np.nan
                err[b0:b0 + b_chunk, k0:k0 + k.shape[1]] = e
    if not return_err:
        return g2[0] if single else g2
    return (g2[0], err[0]) if single else (g2, err)


def time_resolved_cuts(c2, width: int = 1, *, max_lag: int | None = None, step: int = 1, exclude=None):
    """1TCFs at each age along the diagonal: cuts perpendicular to the (1,1) diagonal of width ``width``.

    The cut at age ``t_a`` averages, for each lag ``k = t2 − t1``, the pixels with
    ``2 t_a − w ≤ t1 + t2 ≤ 2 t_a + w − 1``: exactly ``w`` pixels per lag (one per frame of age along the
    diagonal), so that a 1-frame cut has one value at every lag, odd or even. Ages run over 0..T−1 frames
    in steps of ``step``.

    Parameters
    ----------
    c2 : array_like, shape (T, T)
        A two-time correlation function.
    width : int
        Cut width w in frames (≥ 1). The paper uses 1 for noisy data and 10 for targets.
    max_lag : int, optional
        Largest lag in frames (default T − 1).
    step : int
        Spacing of the ages in frames.
    exclude : optional
        Frames left out of the cuts: frame numbers, text like ``"12,40-45"`` or a boolean mask (T,)
        (:func:`~xpcs_denoise.badframes.exclusion_mask`); their rows and columns count as NaN.

    Returns
    -------
    ages : ndarray, shape (n_ages,)
        Ages t_a in frames.
    lags : ndarray, shape (max_lag,)
        Lags 1..max_lag in frames.
    g2 : ndarray, shape (n_ages, max_lag)
        The 1TCF of each age; NaN where that lag does not exist at that age (the cut leaves the matrix).
    """
    c2 = numeric_array(c2, "2TCF").astype(np.float64, copy=False)
    check_square(c2.shape, "time_resolved_cuts: the 2TCF", ndim=(2,))

    n = c2.shape[0]
    width = check_int(width, "cut width (frames)", 1, n)
    step = check_int(step, "age step (frames)", 1, n)
    max_lag = n - 1 if max_lag is None else check_int(max_lag, "max_lag", 1, n - 1)
    # about five (ages, lags, 2·width) float64/int64 arrays at once
    check_memory(5 * 8 * len(range(0, n, step)) * max_lag * 2 * width,
                 f"cuts of width {width} at {len(range(0, n, step))} ages × {max_lag} lags")
    if exclude is not None:
        c2 = apply_exclusion(c2, exclude)
    sym = 0.5 * (c2 + c2.T)
    ages = np.arange(0, n, int(step))
    lags = np.arange(1, max_lag + 1)
    # Pixel (t1, t2) with t1 + t2 = s = 2a + e and t2 - t1 = k: t1 = (s - k)/2 is an integer only when s and k
    # have the same parity, so 2w consecutive sums give exactly w pixels per lag.
    e = np.arange(-width, width)
    s = 2 * ages[:, None, None] + e[None, None, :]  # (A, 1, E)
    kk = lags[None, :, None]
    t1 = (s - kk) / 2.0
    t2 = t1 + kk
    ok = (t1 == np.floor(t1)) & (t1 >= 0) & (t2 <= n - 1)
    t1i = np.where(ok, t1, 0).astype(np.int64)
    t2i = np.where(ok, t2, 0).astype(np.int64)
    vals = np.where(ok, sym[t1i, t2i], np.nan)
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(vals), axis=2)
        g2 = np.nansum(vals, axis=2) / np.where(counts > 0, counts, 1)
    g2[counts == 0] = np.nan
    return ages, lags, g2
