"""Where is the model out of its depth? Anomaly scores of 2TCF windows from the ensemble (METHOD §5, the
paper's 2022 follow-up): the latent distance to the training set and the reconstruction residual.

Each n×n window along the diagonal (the sliding window's positions) is scaled as for denoising and encoded by
every member. ``latent_distance`` is the Mahalanobis distance of its latent vector from the training crops'
latent distribution (mean and covariance per member, stored in the model card by
``scripts/latent_reference.py``), averaged over members; about √L (L = latent size) for windows like the
training data, much more outside it. ``residual`` is the RMS difference between the scaled window and its
reconstruction (lag 0 left out), in units of the training crops' median residual: noise the model removes
gives ~1, structure it cannot represent gives more.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import XPCSInputError
from ..core.scaling import replace_diagonal, scale_parameters, to_model_units
from ..core.window import check_two_times
from .denoiser import _pretrained

__all__ = ["anomaly_scores", "latent_reference"]


def _encode(den, x):
    """Latents (M, B, L) and reconstructions (B, n, n) of (B, n, n) model-unit windows."""
    import torch

    with torch.no_grad():
        tri = den.model.to_triangle(torch.as_tensor(np.asarray(x, np.float32)))
        z = den.model.encode_tri(tri)
        out = den.model.to_full(den.model.decode_tri(z).mean(dim=0))
    return z.double().numpy(), out.double().numpy()


def _residual(x, out):
    n = x.shape[-1]
    off = ~np.eye(n, dtype=bool)
    return np.sqrt(np.mean((x - out)[:, off] ** 2, axis=-1))


def latent_reference(den, crops, *, chunk: int = 512) -> dict:
    """Latent mean and inverse covariance per member, and the median reconstruction residual, of (B, n, n)
    training crops in model units: the card's ``latent_reference``."""
    zs, res = [], []
    for s in range(0, len(crops), chunk):
        z, out = _encode(den, crops[s:s + chunk])
        zs.append(z)
        res.append(_residual(np.asarray(crops[s:s + chunk], np.float64), out))
    z = np.concatenate(zs, axis=1)  # (M, B, L)
    mean = z.mean(axis=1)
    cov_inv = np.stack([np.linalg.pinv(np.cov(z[m].T)) for m in range(z.shape[0])])
    return {"n_crops": int(z.shape[1]), "mean": mean.tolist(), "cov_inv": cov_inv.tolist(),
            "median_residual": float(np.median(np.concatenate(res)))}


def anomaly_scores(c2, *, model=None, step: int = 5, seed: int = 0) -> dict:
    """Latent distance and reconstruction residual of every window of (N, N) or (B, N, N) raw 2TCFs.

    Returns
    -------
    dict with ``starts`` (W,) first frame of each window, ``latent_distance`` and ``residual`` (B, W) (or (W,)
    for one 2TCF), and ``size`` (the window, frames).
    """
    den = model or _pretrained()
    ref = den.card.get("latent_reference")
    if not ref:
        raise XPCSInputError("this model's card has no latent_reference; run scripts/latent_reference.py on it")
    n = den.size
    x, single = check_two_times(c2, n)
    if int(step) < 1:
        raise XPCSInputError(f"step must be >= 1 frame; got {step}")
    b, base = scale_parameters(x, n if x.shape[-1] == n else 0, partial=True)
    starts = np.arange(0, x.shape[-1] - n + 1, int(step))
    idx = starts[:, None] + np.arange(n)[None, :]
    mean = np.asarray(ref["mean"])
    cov_inv = np.asarray(ref["cov_inv"])
    dist = np.full((x.shape[0], starts.size), np.nan)
    resid = np.full((x.shape[0], starts.size), np.nan)
    for i in np.flatnonzero(np.isfinite(b)):
        w = x[i][idx[:, :, None], idx[:, None, :]]
        w = replace_diagonal(to_model_units(w, b[i], base[i]), seed)
        z, out = _encode(den, w)
        d = z - mean[:, None, :]
        dist[i] = np.sqrt(np.einsum("mbl,mlk,mbk->mb", d, cov_inv, d)).mean(axis=0)
        resid[i] = _residual(w, out) / ref["median_residual"]
    if single:
        dist, resid = dist[0], resid[0]
    return {"starts": starts, "size": n, "latent_distance": dist, "residual": resid}
