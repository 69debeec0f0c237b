"""Classical denoisers of 2TCFs, the CNN-ED's peers (METHOD §5). Each maps (…, n, n) arrays in model units
(baseline 1, contrast 1) to arrays of the same shape; the denoising module applies the Eq. 5/6 scaling.

Default widths (Gaussian σ = 1.5 frames, median 5×5) are the best MRE(Γ) for 0.01 < Γ < 0.15 on the training
split of the CHX data (σ in {0.5, 1, 1.5, 2, 3, 4}, median 3 or 5), so the peers are compared at their best."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import XPCSInputError

__all__ = ["gaussian_denoise", "median_denoise", "BASELINES"]


def _batched(x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise XPCSInputError(f"need (…, n, n) 2TCFs; got shape {x.shape}")
    return x


def gaussian_denoise(x, sigma: float = 1.5) -> np.ndarray:
    """Gaussian filter of width ``sigma`` frames along both time axes of each 2TCF (edges: nearest value)."""
    x = _batched(x)
    s = [0.0] * (x.ndim - 2) + [float(sigma)] * 2
    return ndimage.gaussian_filter(x, sigma=s, mode="nearest")


def median_denoise(x, size: int = 5) -> np.ndarray:
    """Median filter over ``size × size`` pixels of each 2TCF."""
    x = _batched(x)
    return ndimage.median_filter(x, size=[1] * (x.ndim - 2) + [int(size)] * 2, mode="nearest")


BASELINES = {"gaussian": gaussian_denoise, "median": median_denoise}
