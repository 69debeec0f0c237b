"""(lag, age) coordinates of a 2TCF (METHOD §8): off-diagonal k of an N×N matrix is one lag at every age, so a
stationary 2TCF is constant along each row of its band, and work over lags 1…K costs N × K, not N².

The band of ``c2`` is ``band[..., k - 1, i] = c2[..., i, i + k]`` for lags k = 1…K and start frames i < N − k;
start frames i ≥ N − k lie beyond the matrix and repeat the diagonal's last value (the "nearest" mode of a filter
along age), flagged by :func:`band_mask`.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .errors import XPCSInputError
from .validation import numeric_array

__all__ = ["check_two_time_any", "band_lags", "band_indices", "band_mask", "band_mean", "to_band", "from_band",
           "age_smooth"]


def band_lags(n_frames: int, max_lag: int | None) -> int:
    """Number of lags K of the band: ``max_lag`` (default all, N − 1), at most N − 1, at least 1."""
    n_frames = int(n_frames)
    if n_frames < 2:
        raise XPCSInputError(f"a 2TCF needs at least 2 frames; got {n_frames}")
    if max_lag is None:
        return n_frames - 1
    if isinstance(max_lag, bool) or not float(max_lag).is_integer() or int(max_lag) < 1:
        raise XPCSInputError(f"max_lag must be a whole number of frames >= 1; got {max_lag!r}")
    return min(int(max_lag), n_frames - 1)


def band_indices(n_frames: int, n_lags: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (K, N) of the band's cells in the upper triangle, with the cells beyond the
    matrix pointing at the diagonal's last cell."""
    k = np.arange(1, n_lags + 1)[:, None]
    i = np.minimum(np.arange(n_frames)[None, :], n_frames - 1 - k)
    return i, i + k


def band_mask(n_frames: int, n_lags: int) -> np.ndarray:
    """(K, N) boolean: True where the band's cell lies inside the matrix (i < N − k)."""
    k = np.arange(1, n_lags + 1)[:, None]
    return np.arange(n_frames)[None, :] < (n_frames - k)


def band_mean(band, mask):
    """Mean over the ages inside the matrix of each lag of a band (…, K, N): the band's 1TCF (…, K). ``mask``
    (K, N) as :func:`band_mask`; numpy arrays or torch tensors alike (the mask of the band's own kind).

    Examples
    --------
    >>> import numpy as np
    >>> c2 = 1 + 0.2 * np.exp(-0.1 * np.abs(np.subtract.outer(np.arange(6), np.arange(6))))
    >>> bool(np.allclose(band_mean(to_band(c2, 2), band_mask(6, 2)), c2[0, 1:3]))
    True
    """
    m = mask * 1.0
    return (band * m).sum(-1) / m.sum(-1)


def to_band(c2, max_lag: int | None = None, *, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Band (…, K, stop − start) of (…, N, N) 2TCFs over lags 1…K, start frames ``start``…``stop`` − 1.

    Examples
    --------
    >>> import numpy as np
    >>> c2 = 1 + 0.2 * np.exp(-0.1 * np.abs(np.subtract.outer(np.arange(6), np.arange(6))))
    >>> b = to_band(c2, 2)
    >>> b.shape, bool(np.allclose(b[0], c2[0, 1]))
    ((2, 6), True)
    """
    c2 = np.asarray(c2)
    n = c2.shape[-1]
    rows, cols = band_indices(n, band_lags(n, max_lag))
    sl = slice(start, stop)
    return c2[..., rows[:, sl], cols[:, sl]]


def from_band(c2, band, *, out=None) -> np.ndarray:
    """Copy of ``c2`` (or ``out``, written in place) with the band's cells written to both triangles (the
    output is symmetric where the band reaches); the diagonal and lags beyond the band keep their values."""
    c2 = np.asarray(c2)
    band = np.asarray(band)
    n, n_lags = c2.shape[-1], band.shape[-2]
    if band.shape[-1] != n or n_lags > n - 1:
        raise XPCSInputError(f"band of shape {band.shape} does not fit a {n}×{n} 2TCF")
    res = np.array(c2, copy=True) if out is None else out
    valid = band_mask(n, n_lags)
    rows, cols = band_indices(n, n_lags)
    r, c = rows[valid], cols[valid]
    vals = band[..., valid]
    res[..., r, c] = vals
    res[..., c, r] = vals
    return res


def age_smooth(c2, width: float = 8.0, max_lag: int | None = None) -> np.ndarray:
    """The age-axis smoother (METHOD §8): each off-diagonal smoothed along its length by a Gaussian of
    ``width`` frames (mode "nearest"), written back symmetrically; the diagonal is kept.

    Parameters
    ----------
    c2 : array_like, shape (N, N) or (B, N, N)
    width : float
        Standard deviation of the Gaussian along age, frames (> 0).
    max_lag : int, optional
        Smooth lags 1…max_lag only (default: all).

    Examples
    --------
    >>> import numpy as np
    >>> c2 = 1 + 0.2 * np.exp(-0.1 * np.abs(np.subtract.outer(np.arange(30), np.arange(30))))
    >>> bool(np.allclose(age_smooth(c2, 5.0), c2))   # a stationary 2TCF is constant along age
    True
    """
    width = float(width)
    if not np.isfinite(width) or width <= 0:
        raise XPCSInputError(f"width must be a finite number of frames > 0; got {width!r}")
    c2 = np.asarray(c2, dtype=np.float64)
    n = c2.shape[-1]
    n_lags = band_lags(n, max_lag)
    band = to_band(c2, n_lags)
    valid = band_mask(n, n_lags)
    out = np.empty_like(band)
    # Each diagonal is filtered over its own length: the cells beyond the matrix are not data.
    for k in range(n_lags):
        m = int(valid[k].sum())
        out[..., k, :m] = gaussian_filter1d(band[..., k, :m], width, axis=-1, mode="nearest")
        out[..., k, m:] = out[..., k, m - 1:m]
    return from_band(c2, out)


def check_two_time_any(c2):
    """(B, N, N) float view of the input (float32 stays float32), and whether it was one matrix."""
    arr = numeric_array(c2, "2TCF")
    if arr.dtype == np.bool_ or arr.ndim not in (2, 3) or arr.shape[-1] != arr.shape[-2]:
        raise XPCSInputError(f"2TCF must be a numeric (N, N) or (B, N, N) array; got shape {arr.shape}, "
                             f"dtype {arr.dtype}")
    if arr.shape[-1] < 3:
        raise XPCSInputError(f"2TCF is {arr.shape[-1]}×{arr.shape[-1]}: need at least 3 frames")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    single = arr.ndim == 2
    return (arr[None] if single else arr), single
