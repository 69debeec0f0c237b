"""Ground-truth speckle simulator: photon-count series with known Γ, β, α (and ageing, and q-rings).

Physics. Each pixel sees a circular complex Gaussian field ``E(t)`` with ``<|E|²> = 1`` and field correlation
``g1(τ) = exp(−(Γτ)^α)``. A partially coherent intensity ``I = I₀ ((1 − √β) + √β |E|²)`` — coherent speckle on
an incoherent background — has ``<I(t) I(t+τ)>/<I>² = 1 + β exp(−2 (Γτ)^α)``: Eq. 3 with contrast β and
C∞ = 1, for any β in (0, 1]. Detector counts are Poisson with mean ``I``; the lag-0 value of the 2TCF is
then ``1 + β + 1/I₀``.

Stationary fields are drawn by circulant embedding (FFT) of the covariance, exact for α ≤ 1 and accurate to
the clipped negative eigenvalues (tiny) for 1 < α ≤ 2. Ageing uses an AR(1) field with a time-dependent step
``ρ(t) = exp(−Γ(t))`` (α = 1), for which ``g1(t1, t2) = exp(−Σ_{t1<t≤t2} Γ(t))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .correlation import two_time
from .defaults import WINDOW
from .errors import XPCSInputError

__all__ = ["SpeckleSeries", "simulate_speckle", "simulate_q_rings", "simulate_crops", "true_two_time", "JUDGED_RANGES"]

#: :func:`simulate_crops` keywords for realistic noise, the ranges accuracy and uncertainty are judged on
#: (benchmarks/bench_models.py, scripts/calibrate_fits.py): Γ 0.003–0.4 frames⁻¹, β 0.05–0.5, α 0.6–1.8, 0.01–1
#: photons per pixel per frame, 100–20,000 pixels.
JUDGED_RANGES = {"gamma_range": (0.003, 0.4), "beta_range": (0.05, 0.5), "alpha_range": (0.6, 1.8),
                 "count_range": (0.01, 1.0), "pixel_range": (100, 20000), "min_photons": 60.0}


@dataclass
class SpeckleSeries:
    """A simulated experiment.

    Attributes
    ----------
    frames : ndarray, shape (T, H, W), uint16/int32 photon counts
    labels : ndarray, shape (H, W), int — ROI labels 1..K (0 unused)
    gamma : ndarray, shape (K,) or (K, T) — true rate per ROI in frames⁻¹ (per frame for ageing series)
    beta, alpha, mean_count : ndarray, shape (K,)
    q : ndarray, shape (K,) — momentum transfer in Å⁻¹ (q-ring simulations; NaN otherwise)
    seed : int
    """

    frames: np.ndarray
    labels: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray
    mean_count: np.ndarray
    q: np.ndarray
    seed: int
    meta: dict = field(default_factory=dict)

    @property
    def n_rois(self) -> int:
        return int(self.labels.max())

    def two_time(self, **kwargs) -> np.ndarray:
        """Measured 2TCFs (K, T, T) of the simulated frames (Eq. 1)."""
        return two_time(self.frames, self.labels, **kwargs)

    def true_two_time(self) -> np.ndarray:
        """Noise-free 2TCFs (K, T, T) from the true parameters, with lag 0 = 1 + β + 1/mean_count."""
        t = self.frames.shape[0]
        return np.stack([true_two_time(t, self.gamma[k], self.beta[k], self.alpha[k], self.mean_count[k])
                         for k in range(self.n_rois)])


def true_two_time(n_frames: int, gamma, beta: float, alpha: float = 1.0, mean_count: float | None = None):
    """The noise-free 2TCF of the simulator's model (T, T).

    ``gamma`` is a rate in frames⁻¹ or, for ageing, an array of T per-frame rates (α must be 1).
    """
    t = np.arange(n_frames)
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.ndim == 0:
        tau = np.abs(t[:, None] - t[None, :])
        c2 = 1 + beta * np.exp(-2 * (gamma * tau) ** alpha)
    else:
        cum = np.concatenate([[0.0], np.cumsum(gamma[1:])])  # Σ_{0<s≤t} Γ(s)
        c2 = 1 + beta * np.exp(-2 * np.abs(cum[:, None] - cum[None, :]))
    if mean_count is not None:
        c2[t, t] += 1.0 / mean_count
    return c2


def _stationary_fields(n_frames, n_pix, gamma, alpha, rng, block=4096):
    """Complex fields (T, n_pix), unit mean intensity, g1(τ) = exp(−(Γτ)^α), by circulant embedding."""
    n2 = 2 * n_frames
    k = np.arange(n2)
    tau = np.minimum(k, n2 - k).astype(np.float64)
    cov = np.exp(-((gamma * tau) ** alpha))
    lam = np.clip(np.fft.fft(cov).real, 0, None)
    amp = np.sqrt(lam / n2)
    out = np.empty((n_frames, n_pix), dtype=np.complex64)
    for s in range(0, n_pix, block):
        e = min(s + block, n_pix)
        xi = rng.standard_normal((e - s, n2)) + 1j * rng.standard_normal((e - s, n2))
        z = np.fft.fft(amp[None, :] * xi, axis=1)[:, :n_frames] / np.sqrt(2.0)
        out[:, s:e] = z.T
    return out


def _ageing_fields(gamma_t, n_pix, rng):
    """AR(1) complex fields with a per-frame rate Γ(t) (α = 1)."""
    n_frames = gamma_t.size
    out = np.empty((n_frames, n_pix), dtype=np.complex64)
    e = (rng.standard_normal(n_pix) + 1j * rng.standard_normal(n_pix)) / np.sqrt(2)
    out[0] = e
    for t in range(1, n_frames):
        rho = np.exp(-gamma_t[t])
        xi = (rng.standard_normal(n_pix) + 1j * rng.standard_normal(n_pix)) / np.sqrt(2)
        e = rho * e + np.sqrt(1 - rho**2) * xi
        out[t] = e
    return out


def _per_roi(value, n_rois, name):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n_rois, float(arr))
    if arr.shape[0] != n_rois:
        raise XPCSInputError(f"{name} has {arr.shape[0]} entries for {n_rois} ROIs")
    return arr


def simulate_speckle(n_frames: int = 200, n_pixels: int = 4096, *, gamma=0.05, beta=0.2, alpha=1.0,
                     mean_count=1.0, n_rois: int = 1, seed: int = 0, q=None,
                     n_modes: int | None = None) -> SpeckleSeries:
    """Simulate a speckle photon-count series with known dynamics.

    Parameters
    ----------
    n_frames : int
        Number of frames T.
    n_pixels : int
        Pixels per ROI (one speckle per pixel). The detector is laid out as ``n_rois`` rows of
        ``n_pixels`` pixels, so ``frames`` has shape (T, n_rois, n_pixels) and ``labels[k] = k + 1``.
    gamma : float, array of K, or array (K, T) / (T,)
        Rate Γ in frames⁻¹ per ROI; a length-T array (or (K, T)) gives an ageing series with Γ(t) (α = 1).
    beta : float or array of K
        Speckle contrast β in (0, 1].
    alpha : float or array of K
        Stretching (α < 1) or compression (α > 1) exponent, 0 < α ≤ 2.
    mean_count : float or array of K
        Mean photons per pixel per frame.
    n_rois : int
        Number of ROIs K.
    seed : int
        Seed of the random generator (recorded in the result).
    n_modes : int, optional
        Sum ``n_modes`` independent coherent modes per pixel instead (β = 1/n_modes exactly, ``beta`` is then
        ignored): gamma-distributed intensities, whose counts follow the negative binomial of XSVS.

    Returns
    -------
    SpeckleSeries
    """
    n_frames, n_pixels, n_rois = int(n_frames), int(n_pixels), int(n_rois)
    if n_frames < 2 or n_pixels < 1 or n_rois < 1:
        raise XPCSInputError("need n_frames >= 2, n_pixels >= 1 and n_rois >= 1")
    gamma = np.asarray(gamma, dtype=np.float64)
    ageing = gamma.ndim == 2 or (gamma.ndim == 1 and gamma.shape[0] == n_frames and n_rois != n_frames)
    if ageing:
        gamma = np.broadcast_to(gamma, (n_rois, n_frames)).copy()
    else:
        gamma = _per_roi(gamma, n_rois, "gamma")
    if n_modes is not None:
        if int(n_modes) < 1:
            raise XPCSInputError("n_modes must be >= 1")
        beta = 1.0 / int(n_modes)
    beta, alpha = _per_roi(beta, n_rois, "beta"), _per_roi(alpha, n_rois, "alpha")
    mean_count = _per_roi(mean_count, n_rois, "mean_count")
    if np.any(gamma < 0) or not np.all(np.isfinite(gamma)):
        raise XPCSInputError("gamma must be finite and >= 0 (frames⁻¹)")
    if np.any((beta <= 0) | (beta > 1)):
        raise XPCSInputError("beta must be in (0, 1]")
    if np.any((alpha <= 0) | (alpha > 2)):
        raise XPCSInputError("alpha must be in (0, 2]")
    if ageing and np.any(alpha != 1):
        raise XPCSInputError("ageing series (time-dependent gamma) are simulated with alpha = 1 only")
    if np.any(mean_count <= 0):
        raise XPCSInputError("mean_count must be > 0 photons per pixel per frame")
    rng = np.random.default_rng(seed)
    frames = np.empty((n_frames, n_rois, n_pixels), dtype=np.int32)
    for k in range(n_rois):
        if n_modes is not None:
            intensity = np.zeros((n_frames, n_pixels))
            for _ in range(int(n_modes)):
                e = (_ageing_fields(gamma[k], n_pixels, rng) if ageing
                     else _stationary_fields(n_frames, n_pixels, gamma[k], alpha[k], rng))
                intensity += e.real.astype(np.float64) ** 2 + e.imag**2
            intensity *= mean_count[k] / int(n_modes)
        else:
            if ageing:
                e = _ageing_fields(gamma[k], n_pixels, rng)
            else:
                e = _stationary_fields(n_frames, n_pixels, gamma[k], alpha[k], rng)
            sb = np.sqrt(beta[k])
            intensity = mean_count[k] * ((1 - sb) + sb * (e.real.astype(np.float64) ** 2 + e.imag**2))
        frames[:, k, :] = rng.poisson(intensity)
    labels = np.repeat(np.arange(1, n_rois + 1)[:, None], n_pixels, axis=1)
    q = np.full(n_rois, np.nan) if q is None else _per_roi(q, n_rois, "q")
    return SpeckleSeries(frames=frames, labels=labels, gamma=gamma, beta=beta, alpha=alpha,
                         mean_count=mean_count, q=q, seed=seed, meta={"ageing": bool(ageing)})


def simulate_q_rings(n_frames: int = 200, n_rois: int = 10, *, q_min: float = 0.002, q_max: float = 0.01,
                     diffusion: float = 500.0, beta: float = 0.2, alpha: float = 1.0, pixels_at_qmin: int = 2000,
                     count_at_qmin: float = 2.0, intensity_exponent: float = 2.0, seed: int = 0) -> SpeckleSeries:
    """A q-ring experiment: K concentric ROIs with diffusive Γ = D q² and intensity falling with q.

    Parameters
    ----------
    q_min, q_max : float
        ROI centres, Å⁻¹, evenly spaced.
    diffusion : float
        D in Å² per frame: Γ(q) = D q² frames⁻¹ (the default gives Γ from 2e-3 to 5e-2 frames⁻¹).
    pixels_at_qmin : int
        Pixels of the first ring; rings grow ∝ q (annuli of equal width).
    count_at_qmin : float
        Mean photons per pixel per frame at q_min; falls as (q/q_min)^−intensity_exponent, so SNR falls with q.
    """
    q = np.linspace(q_min, q_max, int(n_rois))
    gamma = diffusion * q**2
    counts = count_at_qmin * (q / q_min) ** (-intensity_exponent)
    npix = np.maximum(1, np.round(pixels_at_qmin * q / q_min)).astype(int)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31, size=len(q))
    parts = [simulate_speckle(n_frames, int(npix[k]), gamma=gamma[k], beta=beta, alpha=alpha,
                              mean_count=counts[k], seed=int(seeds[k])) for k in range(len(q))]
    frames = np.concatenate([p.frames[:, 0, :] for p in parts], axis=1)
    labels = np.concatenate([np.full(int(npix[k]), k + 1) for k in range(len(q))])
    return SpeckleSeries(frames=frames, labels=labels, gamma=gamma, beta=np.full(len(q), float(beta)),
                         alpha=np.full(len(q), float(alpha)), mean_count=counts, q=q, seed=seed,
                         meta={"ageing": False, "diffusion_A2_per_frame": diffusion})


def simulate_crops(n: int, size: int = WINDOW, *, seed: int = 0, gamma_range=(0.003, 0.5), beta_range=(0.05, 0.5),
                   alpha_range=(0.5, 2.0), count_range=(0.05, 2.0), pixels=(500, 1000, 3000),
                   pixel_range: tuple[int, int] | None = None, min_photons: float = 60.0,
                   group: int = 64) -> tuple[np.ndarray, np.ndarray, dict]:
    """Many measured 2TCFs of random stationary dynamics, with their noise-free counterparts.

    Γ and the mean count are drawn log-uniformly, β and α uniformly, the ROI size from ``pixels`` or, with
    ``pixel_range=(lo, hi)``, log-uniformly (rounded to 16 log-spaced sizes so that ROIs of one size are
    simulated together); at least ``min_photons`` photons per frame per ROI (the mean count is raised where
    needed), so that every 2TCF is defined. ROIs are simulated ``group`` at a time.

    Returns
    -------
    measured : (n, size, size) float64, Eq. 1 of the simulated counts
    true : (n, size, size) float64, ``1 + β exp(−2 (Γτ)^α)`` (lag 0 included, without the shot-noise term)
    params : dict of arrays of n: ``gamma`` (frames⁻¹), ``beta``, ``alpha``, ``mean_count``, ``pixels``
    """
    rng = np.random.default_rng(seed)
    n, size = int(n), int(size)
    gamma = np.exp(rng.uniform(*np.log(gamma_range), n))
    beta = rng.uniform(*beta_range, n)
    alpha = rng.uniform(*alpha_range, n)
    if pixel_range is None:
        npix = rng.choice(np.asarray(pixels), n)
    else:
        levels = np.unique(np.round(np.geomspace(pixel_range[0], pixel_range[1], 16)).astype(np.int64))
        npix = rng.choice(levels, n)
    count = np.maximum(np.exp(rng.uniform(*np.log(count_range), n)), float(min_photons) / npix)
    measured = np.empty((n, size, size))
    for p in np.unique(npix):
        idx = np.flatnonzero(npix == p)
        for s in range(0, idx.size, group):
            j = idx[s:s + group]
            sim = simulate_speckle(size, int(p), gamma=gamma[j], beta=beta[j], alpha=alpha[j],
                                   mean_count=count[j], n_rois=j.size, seed=int(rng.integers(2**32)))
            measured[j] = two_time(sim.frames, sim.labels)
    tau = np.abs(np.arange(size)[:, None] - np.arange(size)[None, :])
    true = 1 + beta[:, None, None] * np.exp(-2 * (gamma[:, None, None] * tau) ** alpha[:, None, None])
    params = {"gamma": gamma, "beta": beta, "alpha": alpha, "mean_count": count, "pixels": npix}
    return measured, true, params
