"""Training data of the lag-band model (:mod:`xpcs_denoise.nn.lagnet`), in (lag, age) bands (:mod:`core.band`).

Simulated: speckle series with physical photon statistics (:func:`~xpcs_denoise.core.simulation.simulate_speckle`)
over the ranges of :data:`TRAIN_RANGES`, stationary and ageing (smooth changes up to 10× and steps), with the
noise-free 2TCF as the target. Real: the CHX crops with a leave-one-out target (the mean of the *other* crops of
the same 2TCF), so that the target's noise is independent of the input's.
"""

from __future__ import annotations

import numpy as np

from ..core.band import to_band
from ..core.correlation import two_time
from ..core.errors import XPCSInputError
from ..core.scaling import triu_to_matrix
from ..core.simulation import simulate_speckle, true_two_time

__all__ = ["TRAIN_RANGES", "simulated_bands", "real_bands", "series_of"]

#: Dynamics and photon statistics of the simulated training series (issue 29): Γ frames⁻¹, α, β, C∞ − 1 as a
#: share of β, photons per pixel per frame, pixels per ROI.
TRAIN_RANGES = {"gamma": (1e-3, 1.0), "alpha": (0.3, 2.0), "beta": (0.02, 0.5), "offset": (0.0, 0.4),
                "count": (1e-3, 10.0), "pixels": (1e2, 1e5)}

#: Pixels actually simulated per ROI; the noise of a larger ROI is the simulated noise scaled by the ratio of
#: the two noise levels (:func:`_noise_ratio`), which keeps its correlation over lags and ages.
SIM_PIXELS = 1024
#: Photons per frame per ROI below which a 2TCF is not defined often enough to learn from.
MIN_PHOTONS = 20.0


def _loguniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _noise_ratio(beta, count_target, pix_target, count_sim, pix_sim):
    """Std of Eq. 1's noise for the target ROI over that of the simulated one: per pixel pair the variance
    goes as (β + 1/count)² (speckle and shot noise), averaged over the ROI's pixels."""
    return np.sqrt(((beta + 1 / count_target) ** 2 / pix_target) / ((beta + 1 / count_sim) ** 2 / pix_sim))


def simulated_bands(n: int, n_frames: int, n_lags: int, *, seed: int, ageing: bool = False,
                    clean_share: float = 0.05, group: int = 64, gamma0=(0.005, 0.3), ratio=(0.1, 10.0),
                    pixels=None, count=None, alpha=None, offset_power: float = 1.0) -> dict:
    """``n`` simulated 2TCFs as bands: ``x`` noisy and ``y`` noise-free, (n, K, N) float32, and their parameters.

    Stationary: Γ, counts and pixels log-uniform, α, β and the baseline offset uniform over
    :data:`TRAIN_RANGES`. Ageing (α = 1): Γ(t) = Γ0·r^(t/N) or a step ×r at a random frame, Γ0 log-uniform
    over ``gamma0``, r over ``ratio`` (steps of at least 1.5×). A share ``clean_share`` has no noise (x = y).
    ``pixels``, ``count`` and ``alpha`` (ranges) replace those of :data:`TRAIN_RANGES`. ``offset_power`` p draws
    the offset as lo + (hi − lo)·u^p, u uniform: p = 1 is uniform, p = 2 puts its median at a quarter of the range
    (real CHX baselines, docs/model.md).
    """
    if not (isinstance(offset_power, (int, float)) and np.isfinite(offset_power) and offset_power > 0):
        raise XPCSInputError(f"offset_power must be a finite number > 0; got {offset_power!r}")
    rng = np.random.default_rng(seed)
    r = TRAIN_RANGES
    beta = rng.uniform(*r["beta"], n)
    lo, hi = r["offset"]
    offset = (lo + (hi - lo) * rng.uniform(size=n) ** float(offset_power)) * beta
    pix = _loguniform(rng, *(pixels or r["pixels"]), n)
    count = np.maximum(_loguniform(rng, *(count or r["count"]), n), MIN_PHOTONS / pix)
    pix_sim = np.minimum(np.round(pix), SIM_PIXELS).astype(int)
    count_sim = np.maximum(count, MIN_PHOTONS / pix_sim)
    f = _noise_ratio(beta, count, pix, count_sim, pix_sim)
    f[rng.uniform(size=n) < clean_share] = 0.0
    if ageing:
        alpha = np.ones(n)
        g0 = _loguniform(rng, *gamma0, n)
        ratio = _loguniform(rng, *ratio, n)
        step = rng.uniform(size=n) < 0.4
        small = step & (np.abs(np.log(ratio)) < np.log(1.5))
        ratio[small] = np.where(ratio[small] < 1, 1 / 1.5, 1.5)
        t = np.arange(n_frames)
        at = rng.integers(int(0.25 * n_frames), int(0.75 * n_frames), n)
        gamma = np.where(step[:, None], g0[:, None] * np.where(t[None] >= at[:, None], ratio[:, None], 1.0),
                         g0[:, None] * ratio[:, None] ** (t[None] / n_frames))
        gamma = np.minimum(gamma, 1.0)
    else:
        alpha = rng.uniform(*(alpha or r["alpha"]), n)
        gamma = _loguniform(rng, *r["gamma"], n)
    x = np.empty((n, n_lags, n_frames), np.float32)
    y = np.empty((n, n_lags, n_frames), np.float32)
    for p in np.unique(pix_sim):
        idx = np.flatnonzero(pix_sim == p)
        for s in range(0, idx.size, group):
            j = idx[s:s + group]
            sim = simulate_speckle(n_frames, int(p), gamma=gamma[j], beta=beta[j], alpha=alpha[j],
                                   mean_count=count_sim[j], n_rois=j.size, seed=int(rng.integers(2**32)))
            with np.errstate(invalid="ignore", divide="ignore"):
                meas = two_time(sim.frames, sim.labels)
            for m, i in enumerate(j):
                clean = true_two_time(n_frames, gamma[i], beta[i], alpha[i])
                noisy = np.nan_to_num(meas[m], nan=1.0, posinf=1.0, neginf=1.0)
                y[i] = to_band(clean + offset[i], n_lags)
                x[i] = to_band(clean + offset[i] + f[i] * (noisy - clean), n_lags)
    params = {"gamma": gamma, "beta": beta, "alpha": alpha, "offset": offset, "count": count, "pixels": pix,
              "noise_factor": f}
    return {"x": x, "y": y, **params}


def series_of(target_name: str) -> str:
    """The series a CHX target belongs to (its scan name)."""
    # A scan name with a trailing "2" is the same series taken every second frame: one series (9-character scans).
    scan = target_name.rsplit("_", 1)[0]
    return scan[:-1] if len(scan) == 10 and scan.endswith("2") else scan


def real_bands(path, *, val_names=None, val_fraction: float = 0.2, split_seed: int = 0) -> dict:
    """The CHX crops as (49, 50) bands: ``x`` inputs, ``y`` leave-one-out targets, ``y_mean`` the file's
    targets, ``series`` keys and a boolean ``val``: whole series held out, never single crops. ``val_names``
    (target names, e.g. a model card's ``split.val_target_names``) holds out their series; else a random
    ``val_fraction`` of the series."""
    import h5py  # defers h5py: simulated data need none

    with h5py.File(path, "r") as f:
        xin = f["inputs_triu"][()]
        tgt = f["targets_triu"][()]
        tidx = f["target_index"][()]
        tnames = [s.decode() for s in f["target_names"][()]]
    counts = np.bincount(tidx, minlength=len(tgt))
    xm = triu_to_matrix(xin, 50)
    tm = triu_to_matrix(tgt, 50)
    ok = counts[tidx] >= 2
    n = counts[tidx][:, None, None].astype(np.float64)
    # Leave-one-out: the other crops' mean. Its noise is independent of this crop's (up to the crops' overlap).
    loo = np.where(n > 1, (n * tm[tidx] - xm) / np.maximum(n - 1, 1), tm[tidx])
    keys = np.array([series_of(tnames[t]) for t in tidx])
    if val_names is not None:
        val_keys = {series_of(nm) for nm in val_names}
    else:
        uniq = np.unique(keys)
        rng = np.random.default_rng(split_seed)
        val_keys = set(rng.choice(uniq, int(round(val_fraction * uniq.size)), replace=False).tolist())
    val = np.array([k in val_keys for k in keys])
    return {"x": to_band(xm[ok], 49).astype(np.float32), "y": to_band(loo[ok], 49).astype(np.float32),
            "y_mean": to_band(tm[tidx][ok], 49).astype(np.float32), "series": keys[ok], "val": val[ok],
            "target_index": tidx[ok], "target_names": np.array(tnames)}
