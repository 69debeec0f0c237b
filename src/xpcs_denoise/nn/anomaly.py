"""Where is the model out of its depth? Anomaly scores of 2TCF windows from the ensemble (METHOD §5, the
paper's 2022 follow-up): the latent distance to the training set and the reconstruction residual.

Each n×n window along the diagonal (the sliding window's positions) is scaled as for denoising and encoded by
every member. ``latent_distance`` is the Mahalanobis distance of its latent vector from the training crops'
latent distribution (mean and covariance per member, stored in the model card by
``scripts/latent_reference.py``), averaged over members; about √L (L = latent size) for windows like the
training data, much more outside it. ``residual`` is the RMS difference between the scaled window and its
reconstruction (lag 0 left out), in units of the training crops' median residual: noise the model removes
gives ~1, structure it cannot represent gives more.

``score`` combines the two: max(latent_distance / latent_scale, residual / residual_scale), the scales being
the medians of the held-out validation crops (targets the ensemble never saw), divided by what noise alone gives
at the window's noise level (``noise``: the RMS spread of each diagonal about its mean, model units): both terms
grow as photons get scarce, and noisy data the model knows (simulated stationary Eq. 3 2TCFs at that noise level)
score up to the card's ``anomaly_threshold.by_noise`` factor times the threshold. A window is flagged "outside
what the model learned" where its score exceeds the card's threshold (the 99th percentile of the held-out crops'
scores, and by noise level of the simulated ones; ``scripts/anomaly_threshold.py``; never from the user's data).
:func:`~xpcs_denoise.nn.denoiser.anomaly_scores` scores any 2TCF; ``denoise_file`` stores the scores
of the very windows it denoises (one ensemble pass); :func:`anomaly_map`
spreads them over the 2TCF.
"""

from __future__ import annotations

import numpy as np

__all__ = ["anomaly_map", "latent_reference", "anomaly_calibration", "window_scores", "combined_score",
           "flagged_share", "window_noise", "noise_factor", "noise_calibration"]


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


def window_scores(ref: dict, z, x, out) -> tuple[np.ndarray, np.ndarray]:
    """Latent distance (B,) and residual (B,) of windows from their latents and reconstructions.

    Parameters
    ----------
    ref : the card's ``latent_reference`` (member means, inverse covariances, median residual)
    z : (M, B, L) latent vectors of the B windows, one set per member
    x, out : (B, n, n) windows in model units (lag 0 replaced) and the ensemble mean reconstruction
    """
    d = np.asarray(z, np.float64) - np.asarray(ref["mean"])[:, None, :]
    dist = np.sqrt(np.einsum("mbl,mlk,mbk->mb", d, np.asarray(ref["cov_inv"]), d)).mean(axis=0)
    return dist, _residual(np.asarray(x, np.float64), np.asarray(out, np.float64)) / ref["median_residual"]


def window_noise(x) -> np.ndarray:
    """Noise level (B,) of (B, n, n) windows in model units: the RMS spread of each diagonal (lag ≥ 1) about its
    own mean. Noise alone for a stationary 2TCF (its diagonals are constant), more for one that ages."""
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    ss = np.zeros(x.shape[0])
    count = 0
    for k in range(1, n):
        d = np.diagonal(x, k, axis1=-2, axis2=-1)
        ss += np.sum((d - d.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        count += d.shape[-1]
    return np.sqrt(ss / max(count, 1))


def noise_factor(noise, calibration: dict) -> np.ndarray:
    """How much higher than the threshold noise alone scores at ``noise`` (≥ 1): the card's
    ``anomaly_threshold.by_noise`` interpolated in log noise (1 without it, or below its first level)."""
    by = calibration.get("by_noise")
    noise = np.asarray(noise, np.float64)
    if not by or noise.size == 0:
        return np.ones_like(noise)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.interp(np.log10(np.maximum(noise, 1e-12)), by["log10_noise"], by["factor"])
    return np.where(np.isfinite(noise), np.maximum(f, 1.0), 1.0)


def combined_score(latent_distance, residual, calibration: dict, noise=None) -> np.ndarray:
    """max(latent_distance / latent_scale, residual / residual_scale) (dimensionless), with the scales of the
    card's ``anomaly_threshold`` (medians of the held-out validation crops), divided by :func:`noise_factor` of
    the windows' ``noise`` where given; NaN stays NaN."""
    base = np.fmax(np.asarray(latent_distance) / calibration["latent_scale"],
                   np.asarray(residual) / calibration["residual_scale"])
    return base if noise is None else base / noise_factor(noise, calibration)


def merge_windows(starts, *values):
    """Unique window starts (U,) and each of ``values`` (..., W) averaged over the windows that share a start
    (the sliding window's two passes, or neighbouring diagonal blocks, meet on the same positions)."""
    starts = np.asarray(starts, np.int64)
    u, inv = np.unique(starts, return_inverse=True)
    avg = np.zeros((starts.size, u.size))
    avg[np.arange(starts.size), inv] = 1.0
    avg /= avg.sum(axis=0)
    return (u, *(np.asarray(v, np.float64) @ avg for v in values))


def finish_scores(starts, latent_distance, residual, card: dict, size: int, step: int, noise=None) -> dict:
    """The anomaly table of windows: ``starts`` (W,) first frames, ``latent_distance``, ``residual`` and
    ``noise`` ((W,) or (B, W)), ``size`` and ``step`` (frames); with the card's ``anomaly_threshold`` also
    ``score`` (:func:`combined_score`), ``flagged`` (score > threshold; False where the score is NaN) and
    ``threshold``."""
    out = {"starts": np.asarray(starts, np.int64), "size": int(size), "step": int(step),
           "latent_distance": latent_distance, "residual": residual}
    if noise is not None:
        out["noise"] = noise
    cal = card.get("anomaly_threshold")
    if cal:
        score = combined_score(latent_distance, residual, cal, noise)
        with np.errstate(invalid="ignore"):
            out.update(score=score, flagged=score > cal["threshold"], threshold=float(cal["threshold"]))
    return out


def flagged_share(flagged, score) -> np.ndarray:
    """Share of each ROI's windows flagged, (K,) from (K, W) (or () from (W,)); NaN for a ROI without scores
    (not denoised)."""
    flagged, score = np.asarray(flagged, bool), np.asarray(score, np.float64)
    scored = np.isfinite(score).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scored > 0, (flagged & np.isfinite(score)).sum(axis=-1) / scored, np.nan)


def anomaly_map(starts, window: int, score, n_frames: int) -> np.ndarray:
    """Per-pixel map (N, N) of window scores in 2TCF coordinates: each pixel gets the largest score of the
    windows [s, s + window)² that cover it; NaN where no window does (lags ≥ window, or no score).

    ``score`` is (W,) for the W window start frames ``starts`` (NaN scores are ignored).
    """
    out = np.full((int(n_frames), int(n_frames)), np.nan)
    for s, v in zip(np.asarray(starts, np.int64), np.asarray(score, np.float64), strict=True):
        if np.isfinite(v):
            blk = out[s:s + window, s:s + window]
            np.fmax(blk, v, out=blk)
    return out


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


def _score_crops(den, ref: dict, crops, chunk: int):
    """Latent distances, residuals and noise levels (B,) each of (B, n, n) model-unit crops, ``chunk`` at a time."""
    parts = []
    for s in range(0, len(crops), chunk):
        x = np.asarray(crops[s:s + chunk], np.float64)
        z, out = _encode(den, x)
        parts.append((*window_scores(ref, z, x, out), window_noise(x)))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def anomaly_calibration(den, ref: dict, crops, target_index=None, *, quantile: float = 0.99,
                        chunk: int = 512) -> dict:
    """Scales and threshold of :func:`combined_score` from held-out (B, n, n) crops in model units: the card's
    ``anomaly_threshold`` (without its provenance keys). ``ref`` is the card's ``latent_reference`` (from
    *training* crops); the scales are the held-out crops' median latent distance and residual, the threshold
    the ``quantile`` of their combined scores, so that share of held-out windows is flagged by construction.
    ``target_index`` (B,) groups crops by 2TCF for the share of 2TCFs with any flagged crop."""
    dist, resid, _ = _score_crops(den, ref, crops, chunk)
    cal = {"latent_scale": float(np.median(dist)), "residual_scale": float(np.median(resid))}
    score = combined_score(dist, resid, cal)
    thr = float(np.quantile(score, quantile))
    groups = np.zeros(score.size, np.int64) if target_index is None else np.asarray(target_index)
    per_group = [float(np.mean(score[groups == t] > thr)) for t in np.unique(groups)]
    cal.update({"threshold": thr, "quantile": float(quantile), "n_crops": int(score.size),
                "n_targets": int(len(per_group)),
                "held_out_flagged_share": float(np.mean(score > thr)),
                "held_out_targets_with_any_flag": float(np.mean(np.asarray(per_group) > 0)),
                "latent_distance_quantiles": np.quantile(dist, [0.5, 0.9, 0.99]).round(4).tolist(),
                "residual_quantiles": np.quantile(resid, [0.5, 0.9, 0.99]).round(4).tolist()})
    return cal


def noise_calibration(den, ref: dict, cal: dict, crops, *, quantile: float = 0.99, n_bins: int = 12,
                      chunk: int = 512) -> dict:
    """The card's ``anomaly_threshold.by_noise`` from (B, n, n) windows in model units of data the model knows at
    every noise level (simulated stationary Eq. 3 2TCFs from few to many photons): per bin of log noise (equal
    counts), the ``quantile`` of their scores over the threshold, made non-decreasing in noise and at least 1."""
    dist, resid, noise = _score_crops(den, ref, crops, chunk)
    score = combined_score(dist, resid, cal)
    lg = np.log10(np.maximum(noise, 1e-12))
    ok = np.isfinite(score) & np.isfinite(lg)
    score, lg = score[ok], lg[ok]
    order = np.argsort(lg)
    parts = np.array_split(order, int(n_bins))
    centre = [float(np.median(lg[p])) for p in parts]
    factor = np.maximum.accumulate([max(1.0, float(np.quantile(score[p], quantile)) / cal["threshold"])
                                    for p in parts])
    return {"log10_noise": np.round(centre, 4).tolist(), "factor": np.round(factor, 4).tolist(),
            "quantile": float(quantile), "n_windows": int(score.size)}
