"""The sliding window of the paper (Eq. 7) and the scaling around any n×n patch denoiser (Eq. 5/7 in, Eq. 6 out):
numpy only, shared by the CNN-ED ensemble (:mod:`xpcs_denoise.nn.denoiser`) and the PCA filter."""

from __future__ import annotations

import warnings

import numpy as np

from .defaults import WINDOW
from .errors import XPCSInputError, XPCSNoContrastWarning
from .scaling import from_model_units, replace_diagonal, scale_parameters, to_model_units
from .validation import check_int, check_square, numeric_array

__all__ = ["check_two_times", "check_step", "sliding_window", "window_starts", "denoise_scaled"]


def check_two_times(c2, size: int) -> tuple[np.ndarray, bool]:
    """A batch of square 2TCFs, (N, N) or (B, N, N) with N ≥ ``size``, finite, as float64 (B, N, N), and whether
    the input was a single matrix. An asymmetric input is replaced by its symmetric part (C + Cᵀ)/2, with a
    warning: Eq. 1 is symmetric in t1, t2, and every method then sees the same input."""
    c2 = numeric_array(c2, "2TCF")
    if c2.dtype == np.bool_:
        raise XPCSInputError(f"2TCF must be numeric; got dtype {c2.dtype}")
    check_square(c2.shape)
    if c2.shape[-1] < size:
        raise XPCSInputError(
            f"2TCF is {c2.shape[-1]}×{c2.shape[-1]} but the model needs at least {size}×{size} frames; "
            "use a longer series, or a model trained for that size (ModelConfig.size)"
        )
    if not np.all(np.isfinite(c2)):
        raise XPCSInputError("2TCF contains NaN or Inf; fill or crop masked frames before denoising")
    single = c2.ndim == 2
    x = (c2[None] if single else c2).astype(np.float64)
    x_t = np.swapaxes(x, -1, -2)
    asym = float(np.max(np.abs(x - x_t)))
    if asym > 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        # Eq. 1 is symmetric in t1, t2; every method works on the symmetric part, so they all see the same input.
        warnings.warn(f"2TCF is not symmetric (max |C - C^T| = {asym:.3g}); denoising its symmetric part "
                      "(C + C^T)/2", stacklevel=3)
        x = 0.5 * (x + x_t)
    return x, single



def sliding_window(x: np.ndarray, predict, n: int = WINDOW, step: int = 5, seed: int = 0):
    """Apply an n×n patch denoiser to (B, N, N) model-unit 2TCFs by the paper's sliding window.

    ``predict`` maps (W, n, n) patches (lag 0 replaced) to (mean, spread) arrays of the same shape. The window
    moves along the diagonal from the first frame with ``step`` and from the last frame backwards; overlapping
    outputs are averaged within each pass and the passes averaged; pixels no window covers keep their input.
    Returns (mean, spread), each (B, N, N).
    """
    step = check_step(step, n)
    nb, big = x.shape[0], x.shape[-1]
    starts, n_fwd = window_starts(big, n, step)
    ar = np.arange(n)
    rows = starts[:, None, None] + ar[None, :, None]  # (W, n, 1)
    cols = starts[:, None, None] + ar[None, None, :]  # (W, 1, n)
    windows = x[:, rows, cols].reshape(-1, n, n)  # (B·W, n, n): every window of every input, one batch
    mean, std = predict(replace_diagonal(windows, seed))
    nw = len(starts)
    mean = mean.reshape(nb, nw, n, n)
    std = std.reshape(nb, nw, n, n)
    flat_idx = (rows * big + cols).reshape(nw, n * n)
    out_m = np.zeros((nb, big * big))
    out_s = np.zeros((nb, big * big))
    n_pass = np.zeros(big * big)
    for passes in (slice(0, n_fwd), slice(n_fwd, nw)):
        idx = flat_idx[passes].ravel()
        cnt = np.bincount(idx, minlength=big * big)
        cover = cnt > 0
        n_pass += cover
        for i in range(nb):  # loop over inputs only; windows are scattered by one bincount each
            out_m[i, cover] += (np.bincount(idx, mean[i, passes].ravel(), big * big)[cover] / cnt[cover])
            out_s[i, cover] += (np.bincount(idx, std[i, passes].ravel(), big * big)[cover] / cnt[cover])
    # The two passes' averages are averaged; where the step leaves a pixel to one pass only, that one.
    band = (n_pass > 0).reshape(big, big)
    n_pass = np.maximum(n_pass, 1)
    out_m = (out_m / n_pass).reshape(nb, big, big)
    out_s = (out_s / n_pass).reshape(nb, big, big)
    out_m = np.where(band[None], out_m, x)
    out_s = np.where(band[None], out_s, 0.0)
    return out_m, out_s


def window_starts(big: int, n: int, step: int) -> tuple[np.ndarray, int]:
    """First frames of the sliding window's positions on a ``big``-frame 2TCF: the forward pass (0, step, ...)
    then the backward pass (big − n, big − n − step, ...); and the number of forward positions. A 2TCF of the
    window's size has one position, 0."""
    if big == n:
        return np.zeros(1, np.int64), 1
    fwd = np.arange(0, big - n + 1, step)
    return np.concatenate([fwd, np.arange(big - n, -1, -step)]), len(fwd)


def check_step(step, n: int) -> int:
    """Sliding-window step in 1..n − 1 frames: a larger step would leave lag-1 pixels between windows
    undenoised while the 2TCF is reported denoised."""
    return check_int(step, f"sliding-window step (frames, window {n})", 1, n - 1)


def denoise_scaled(x, single, size, beta, baseline, model_units):
    """Scale (B, N, N) 2TCFs to model units, apply ``model_units`` → (mean, spread or None), scale back.

    In a batch, 2TCFs without contrast (lag-1 mean at or below the baseline) cannot be scaled (Eq. 5 would
    divide by ≤ 0): they are returned unchanged with zero spread and β = NaN, and a warning says which; a
    single such 2TCF, or a batch of only such, is an error (:func:`scale_parameters`).
    """
    b, base = scale_parameters(x, size, beta, baseline, partial=not single)
    ok = np.isfinite(b)
    out, spread = x.copy(), np.zeros_like(x)
    mean, std = model_units(to_model_units(x[ok], b[ok], base[ok]))
    out[ok] = from_model_units(mean, b[ok], base[ok])
    if std is not None:
        spread[ok] = std * b[ok, None, None]
    if not ok.all():
        bad = np.flatnonzero(~ok)
        warnings.warn(f"{bad.size} of {len(b)} 2TCFs have no contrast (mean lag-1 value not significantly above "
                      f"the baseline, or flat), e.g. index {bad[:5].tolist()}: returned unchanged, not denoised",
                      XPCSNoContrastWarning, stacklevel=4)
    return out, spread, b, base
