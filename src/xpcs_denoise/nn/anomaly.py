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

from ..core.scaling import replace_diagonal, scale_parameters, to_model_units

__all__ = ["noise_windows", "anomaly_map", "latent_reference", "anomaly_calibration", "window_scores", "combined_score",
           "flagged_share", "window_noise", "noise_factor", "noise_calibration", "window_structure", "STRUCTURE",
           "structure_calibration"]


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


#: The structure scores of :func:`window_structure`, in its columns' order.
STRUCTURE = ("age_spread", "age_step", "lag_rise")


def window_structure(x) -> np.ndarray:
    """Structure that no stationary or slowly ageing Eq. 3 2TCF has, in units of each (B, n, n) window's own
    noise: (B, 3) scores, columns :data:`STRUCTURE`. The ensemble's latent distance and residual judge the shape
    of a decay; an oscillation, a step or a decay that rises again within a window escapes them at every photon
    level, while these are about 1 for noise alone, whatever the count rate.

    - ``age_spread`` and ``age_step``: the age profile m(a) is the mean over lags 1…n/4 of each diagonal's
      deviation from its own mean, at ages a = 0…n − n/4 − 1, less its straight-line trend (slow ageing within a
      window); its noise s comes from its successive differences (MAD), which structure on the scale of many
      frames leaves alone. ``age_spread`` = std(m)/s (an oscillation along age raises it); ``age_step`` = the
      largest two-sample t of m before and after any split point (a jump of the level within the window: a change
      of contrast, of the beam or of the sample).
    - ``lag_rise``: the 1TCF over lags 1…n/2 less its best non-increasing fit (isotonic regression), RMS in units
      of each lag's noise (from successive differences along age): Eq. 3 only decays, so an oscillation in lag
      (vibration, heterodyne beats) stands out.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tau = np.abs(np.subtract.outer(np.arange(50), np.arange(50)))
    >>> c2 = 1 + 0.2 * np.exp(-0.2 * tau) + 0.01 * rng.standard_normal((50, 50))
    >>> odd = c2 + 0.4 * np.cos(2 * np.pi * tau / 6)
    >>> (window_structure(np.stack([c2, odd])) > 5).tolist()   # noise alone scores about 1
    [[False, False, False], [False, False, True]]
    """
    from scipy.optimize import isotonic_regression

    x = np.asarray(x, np.float64)
    x = x[None] if x.ndim == 2 else x
    n = x.shape[-1]
    out = np.zeros((x.shape[0], len(STRUCTURE)))
    k = max(1, n // 4)
    a = n - k
    if a >= 8:
        v = np.stack([np.diagonal(x, j, axis1=-2, axis2=-1)[..., :a] for j in range(1, k + 1)], axis=-2)
        m = (v - v.mean(axis=-1, keepdims=True)).mean(axis=-2)  # (B, a)
        u = np.arange(a) - (a - 1) / 2
        m = m - np.outer(m @ u / (u @ u), u).reshape(m.shape)
        d = np.diff(m, axis=-1)
        s = np.median(np.abs(d - np.median(d, axis=-1, keepdims=True)), axis=-1) / 0.6745 / np.sqrt(2)
        s = np.maximum(s, 1e-12 * np.maximum(np.abs(m).max(axis=-1), 1e-300))
        out[:, 0] = m.std(axis=-1) / s
        cut = np.arange(3, a - 2)  # split points with at least 3 ages on either side
        c = np.cumsum(m, axis=-1)
        left = c[..., cut - 1] / cut
        right = (c[..., -1:] - c[..., cut - 1]) / (a - cut)
        out[:, 1] = (np.abs(left - right) / (s[..., None] * np.sqrt(1.0 / cut + 1.0 / (a - cut)))).max(axis=-1)
    kl = max(2, n // 2)
    if n - kl >= 3:
        diags = [np.diagonal(x, j, axis1=-2, axis2=-1) for j in range(1, kl + 1)]
        g = np.stack([dg.mean(axis=-1) for dg in diags], axis=-1)  # (B, kl)
        # standard deviation of differences: a count-starved 2TCF has too few distinct values for a MAD
        sg = np.stack([np.sqrt(np.mean(np.diff(dg, axis=-1) ** 2, axis=-1) / 2 / dg.shape[-1]) for dg in diags],
                      axis=-1)
        sg = np.maximum(sg, 1e-12 * np.maximum(np.abs(g).max(axis=-1, keepdims=True), 1e-300))
        for i in range(x.shape[0]):
            iso = isotonic_regression(g[i], weights=sg[i] ** -2, increasing=False).x
            out[i, 2] = np.sqrt(np.mean(((g[i] - iso) / sg[i]) ** 2))
    return out


def noise_factor(noise, calibration: dict) -> np.ndarray:
    """How much higher than the threshold noise alone scores at ``noise`` (≥ 1): the card's
    ``anomaly_threshold.by_noise`` interpolated in log noise (1 without it, or below its first level); infinite
    beyond the noisiest window it was measured on (``max_log10_noise``), where the ensemble's scores say nothing
    (the structure scores, normalised by each window's own noise, still judge such windows)."""
    by = calibration.get("by_noise")
    noise = np.asarray(noise, np.float64)
    if not by or noise.size == 0:
        return np.ones_like(noise)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log10(np.maximum(noise, 1e-12))
        f = np.interp(lg, by["log10_noise"], by["factor"])
        f = np.where(lg > by.get("max_log10_noise", by["log10_noise"][-1]), np.inf, f)
    return np.where(np.isfinite(noise), np.maximum(f, 1.0), 1.0)


def combined_score(latent_distance, residual, calibration: dict, noise=None, structure=None) -> np.ndarray:
    """max(latent_distance / latent_scale, residual / residual_scale) (dimensionless), with the scales of the
    card's ``anomaly_threshold`` (medians of the held-out validation crops), divided by :func:`noise_factor` of
    the windows' ``noise`` where given; with ``structure`` (…, 3, :func:`window_structure`) and the card's
    ``structure`` scales, at least threshold × max(structure / scale), so that a window is flagged where either the
    ensemble or a structure score says so; NaN stays NaN."""
    base = np.fmax(np.asarray(latent_distance) / calibration["latent_scale"],
                   np.asarray(residual) / calibration["residual_scale"])
    if noise is not None:
        base = base / noise_factor(noise, calibration)
    cal = calibration.get("structure")
    if structure is not None and cal:
        st = np.asarray(structure, np.float64) / np.asarray(cal["scale"], np.float64)
        with np.errstate(invalid="ignore"):
            base = np.fmax(base, np.max(st, axis=-1) * calibration["threshold"])
    return base


def merge_windows(starts, *values):
    """Unique window starts (U,) and each of ``values`` (..., W) averaged over the windows that share a start
    (the sliding window's two passes, or neighbouring diagonal blocks, meet on the same positions)."""
    starts = np.asarray(starts, np.int64)
    u, inv = np.unique(starts, return_inverse=True)
    avg = np.zeros((starts.size, u.size))
    avg[np.arange(starts.size), inv] = 1.0
    avg /= avg.sum(axis=0)
    return (u, *(np.asarray(v, np.float64) @ avg for v in values))


def finish_scores(starts, latent_distance, residual, card: dict, size: int, step: int, noise=None,
                  structure=None) -> dict:
    """The anomaly table of windows: ``starts`` (W,) first frames, ``latent_distance``, ``residual`` and
    ``noise`` ((W,) or (B, W)), ``structure`` (…, 3), ``size`` and ``step`` (frames); with the card's
    ``anomaly_threshold`` also
    ``score`` (:func:`combined_score`), ``flagged`` (score > threshold; False where the score is NaN) and
    ``threshold``."""
    out = {"starts": np.asarray(starts, np.int64), "size": int(size), "step": int(step),
           "latent_distance": latent_distance, "residual": residual}
    if noise is not None:
        out["noise"] = noise
    if structure is not None:
        out["structure"] = structure
    cal = card.get("anomaly_threshold")
    if cal:
        score = combined_score(latent_distance, residual, cal, noise, structure)
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


def noise_windows(size: int, n: int, seed: int) -> np.ndarray:
    """Stationary simulated crops (``simulate_crops`` over the judged ranges, 0.003–3 photons per pixel per frame)
    in model units (Eq. 5 from each crop, lag 0 replaced): data the model knows at every noise level, for
    :func:`noise_calibration`. Crops without a measurable contrast are left out."""
    from ..core.simulation import JUDGED_RANGES, simulate_crops  # defers the simulator: scoring needs none

    c2, _, _ = simulate_crops(n, size, seed=seed, **{**JUDGED_RANGES, "count_range": (0.003, 3.0)})
    b, base = scale_parameters(c2, size, partial=True)
    ok = np.isfinite(b)
    return replace_diagonal(to_model_units(c2[ok], b[ok], base[ok]), seed)


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
            "max_log10_noise": round(float(lg.max()), 4), "quantile": float(quantile), "n_windows": int(score.size)}


def structure_calibration(windows, *, quantile: float = 0.999) -> dict:
    """The card's ``anomaly_threshold.structure`` from (B, n, n) windows of artefact-free data (simulated speckle
    series, stationary and slowly ageing, from few to many photons): per score of :func:`window_structure`, its
    ``quantile`` over the windows (the scale it is divided by), so that each flags 1 − ``quantile`` of clean
    windows by construction."""
    st = window_structure(windows)
    ok = np.all(np.isfinite(st), axis=-1)
    scale = np.quantile(st[ok], quantile, axis=0)
    return {"names": list(STRUCTURE), "scale": np.round(scale, 4).tolist(), "quantile": float(quantile),
            "median": np.round(np.median(st[ok], axis=0), 4).tolist(), "n_windows": int(ok.sum())}
