"""One entry point for every denoising method of 2TCFs (METHOD §4–5): the CNN-ED ensemble and its classical
peers, on the same contrast-normalised scale (Eq. 5/7 in, lag-0 replacement, Eq. 6 out), arrays in and out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import XPCSInputError
from ..core.scaling import replace_diagonal
from ..core.validation import check_seed
from ..core.window import check_step, check_two_times, denoise_scaled, sliding_window
from ..nn.config import METHODS
from . import baselines

if TYPE_CHECKING:
    from ..nn.denoiser import Denoiser

__all__ = ["denoise", "METHODS"]


def denoise(c2, method: str = "cned", *, model: Denoiser | None = None, return_std: bool = False, seed: int = 0,
            beta=None, baseline=None, step: int = 5, **options):
    """Denoise raw 2TCFs with the CNN-ED ensemble or one of its classical peers, on the same footing.

    Parameters
    ----------
    c2 : array_like, shape (N, N) or (B, N, N), N ≥ 50
        Raw 2TCFs in physical units.
    method : str
        ``"cned"`` (the ensemble; ``model`` or the shipped one), ``"gaussian"`` (σ frames, default 1.5),
        ``"median"`` (``size``, default 5), ``"tv"`` (Chambolle total variation, ``weight``), ``"pca"``
        (linear PCA fitted on the same training data), ``"bm3d"`` (``sigma_psd``; needs the ``bm3d`` package),
        or ``"none"``.
    options
        Passed to the peer filter (see :mod:`xpcs_denoise.baselines`).

    Returns
    -------
    ndarray of the input's shape (and a per-pixel spread if ``return_std``: the ensemble's standard deviation
    for ``"cned"``, zeros for the deterministic peers).

    Notes
    -----
    Every method sees the same input: Eq. 5 (N = 50) or Eq. 7 (N > 50) scaling to contrast 1 and baseline 1,
    lag 0 replaced by lag-1 draws, and the inverse scaling after (Eq. 6). Image filters act on the whole
    matrix; the patch methods (cned, pca) use the sliding window for N > 50.
    """
    if method not in METHODS:
        raise XPCSInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    seed = check_seed(seed)
    if method == "cned":
        from ..nn.denoiser import Denoiser, _pretrained  # defers torch: the peers need none

        if isinstance(model, (str, Path)):  # "pretrained" or a model folder
            model = _pretrained() if str(model) == "pretrained" else Denoiser.from_directory(model)
        elif model is not None and not isinstance(model, Denoiser):
            raise XPCSInputError(f"model must be a Denoiser, a model folder or 'pretrained'; got "
                                 f"{type(model).__name__}")
        den = model or _pretrained()
        return den.denoise(c2, return_std=return_std, seed=seed, beta=beta, baseline=baseline, step=step)
    x, single = check_two_times(c2, 50)
    step = check_step(step, 50)
    if method == "none":
        out, spread = x.copy(), np.zeros_like(x)
    else:
        if method == "pca":
            pca = options.pop("pca", None) or baselines.PCAFilter.pretrained()
            if options:
                raise XPCSInputError(f"unknown option(s) {sorted(options)} for method 'pca'")

            def model_units(scaled):
                if scaled.shape[-1] == pca.size:
                    return pca.predict(replace_diagonal(scaled, seed)), None
                return sliding_window(scaled, lambda w: (pca.predict(w), np.zeros_like(w)), pca.size, step,
                                      seed)[0], None
        else:
            def model_units(scaled):
                try:
                    return baselines.BASELINES[method](replace_diagonal(scaled, seed), **options), None
                except (TypeError, ValueError, RuntimeError) as exc:  # e.g. median size=0, sigma < 0
                    raise XPCSInputError(f"bad option for method {method!r}: {exc}") from exc
        out, spread, _, _ = denoise_scaled(x, single, 50, beta, baseline, model_units)
    if single:
        out, spread = out[0], spread[0]
    return (out, spread) if return_std else out
