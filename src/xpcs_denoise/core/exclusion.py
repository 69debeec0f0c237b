"""Frames left out: exclusion lists (``"12,40-45"``), (K, N) masks, and 2TCFs with those frames' rows and columns
set to NaN. Used by the correlation (``two_time(..., exclude=)``) and by :mod:`~xpcs_denoise.core.badframes`."""

from __future__ import annotations

import numpy as np

from .errors import XPCSInputError

__all__ = ["parse_frame_list", "exclusion_mask", "apply_exclusion"]



def parse_frame_list(text: str) -> list[int]:
    """Frame numbers from text like ``"12,40-45"`` (ranges inclusive, numbered from 0).

    Raises
    ------
    XPCSInputError
        For anything but comma-separated non-negative integers and ``a-b`` ranges with a ≤ b.
    """
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                a, b = int(a), int(b)
                if a < 0 or b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                a = int(part)
                if a < 0:
                    raise ValueError
                out.append(a)
        except ValueError:
            raise XPCSInputError(
                f"frame list {text!r}: use comma-separated frame numbers (from 0) and ranges, e.g. 12,40-45"
            ) from None
    if not out:
        raise XPCSInputError(f"frame list {text!r} names no frame; e.g. 12,40-45, or 'auto'")
    return sorted(set(out))


def exclusion_mask(exclude, n_frames: int, n_rois: int | None = None) -> np.ndarray | None:
    """Normalise an exclusion to a boolean mask.

    Parameters
    ----------
    exclude : None, boolean array (N,) or (K, N), sequence of frame numbers, or text like ``"12,40-45"``
    n_frames : int
        N, frames of the 2TCF.
    n_rois : int, optional
        K. Given: the result is (K, N) (an (N,) exclusion applies to every ROI); otherwise (N,) or (K, N)
        as given.

    Returns
    -------
    mask : ndarray of bool, or None when ``exclude`` is None or excludes nothing.
    """
    if exclude is None:
        return None
    if isinstance(exclude, str):
        exclude = parse_frame_list(exclude)
    arr = np.asarray(exclude)
    if arr.dtype == np.bool_:
        if arr.shape[-1:] != (n_frames,) or arr.ndim not in (1, 2):
            raise XPCSInputError(
                f"exclude mask has shape {arr.shape}; give (N,) or (K, N) booleans with N = {n_frames} frames"
            )
        mask = arr.copy()
    else:
        if arr.size == 0:
            return None
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer)
                                 or (np.issubdtype(arr.dtype, np.floating)
                                     and np.all(arr == np.round(arr)))):
            raise XPCSInputError("exclude must be frame numbers (integers), a boolean mask or text like '12,40-45'")
        idx = arr.astype(np.int64)
        if idx.min() < 0 or idx.max() >= n_frames:
            raise XPCSInputError(
                f"excluded frame(s) {idx[(idx < 0) | (idx >= n_frames)][:5].tolist()} outside 0..{n_frames - 1}"
            )
        mask = np.zeros(n_frames, dtype=bool)
        mask[idx] = True
    if n_rois is not None:
        if mask.ndim == 2 and mask.shape[0] != n_rois:
            raise XPCSInputError(f"exclude mask has {mask.shape[0]} rows for {n_rois} ROIs")
        mask = np.broadcast_to(mask, (n_rois, n_frames)).copy()
    if not mask.any():
        return None
    if np.any(mask.sum(axis=-1) > n_frames - 2):
        raise XPCSInputError("exclusion leaves fewer than 2 frames in a ROI; nothing to correlate")
    return mask


def apply_exclusion(c2, exclude, *, copy: bool = True) -> np.ndarray:
    """(N, N) or (K, N, N) 2TCFs with the rows and columns of excluded frames set to NaN.

    ``exclude`` as in :func:`exclusion_mask`; a (N,) exclusion applies to every ROI. ``copy=False`` works in
    place on a float64 array (no second (K, N, N) array).
    """
    c2 = np.array(c2, dtype=np.float64) if copy else np.asarray(c2)
    if not copy and c2.dtype != np.float64:
        raise XPCSInputError("apply_exclusion(copy=False) needs a float64 array")
    single = c2.ndim == 2
    c = c2[None] if single else c2
    mask = exclusion_mask(exclude, c.shape[-1], c.shape[0])
    if mask is not None:
        for r in range(c.shape[0]):
            c[r, mask[r], :] = np.nan
            c[r, :, mask[r]] = np.nan
    return c[0] if single else c
