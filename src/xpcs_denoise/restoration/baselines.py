"""Classical denoisers of 2TCFs, the CNN-ED's peers (METHOD §5). Each maps (…, n, n) arrays in model units
(baseline 1, contrast 1) to arrays of the same shape; the denoising module applies the Eq. 5/6 scaling.

Default widths are the best MRE(Γ) for 0.01 < Γ < 0.15 on the CHX training data, never its validation split
(``scripts/tune_peers.py``: the ensemble's training targets split again by series; PCA fitted on the inner
training part, every setting scored on 823 inner-validation crops), so the peers are compared at their best:
Gaussian σ = 1.5 frames (of 0.5, 1, 1.5, 2), median 5×5, TV weight 0.7 (of 0.05–3), BM3D σ = 0.2
(of 0.1–0.5), PCA 12 components (of 4–24)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.adaptive import adaptive_age_smooth
from ..core.band import age_smooth
from ..core.errors import XPCSInputError
from ..core.scaling import matrix_to_triu, triu_to_matrix
from ..nn.config import pretrained_directory

__all__ = ["gaussian_denoise", "median_denoise", "tv_denoise", "bm3d_denoise", "adaptive_denoise", "PCAFilter"]


def _batched(x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise XPCSInputError(f"need (…, n, n) 2TCFs; got shape {x.shape}")
    return x


def _positive(value, name: str) -> float:
    """A filter parameter as a finite float > 0: NaN, ±inf, zero or a negative value would filter nothing or
    give NaN silently."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (np.isfinite(v) and v > 0):
        raise XPCSInputError(f"{name} must be a finite number > 0; got {value!r}")
    return v


def gaussian_denoise(x, sigma: float = 1.5) -> np.ndarray:
    """Gaussian filter of width ``sigma`` frames along both time axes of each 2TCF (edges: nearest value)."""
    sigma = _positive(sigma, "gaussian sigma (frames)")
    x = _batched(x)
    s = [0.0] * (x.ndim - 2) + [sigma] * 2
    return ndimage.gaussian_filter(x, sigma=s, mode="nearest")


def median_denoise(x, size: int = 5) -> np.ndarray:
    """Median filter over ``size × size`` pixels of each 2TCF."""
    if not float(_positive(size, "median size (pixels)")).is_integer():
        raise XPCSInputError(f"median size (pixels) must be a whole number; got {size!r}")
    x = _batched(x)
    return ndimage.median_filter(x, size=[1] * (x.ndim - 2) + [int(size)] * 2, mode="nearest")


def age_denoise(x, width: float = 8.0) -> np.ndarray:
    """The age-axis smoother (METHOD §8): each lag smoothed along age by a Gaussian of ``width`` frames."""
    return age_smooth(x, width)


def adaptive_denoise(x, max_lag: int | None = None) -> np.ndarray:
    """The adaptive age stage alone (:func:`xpcs_denoise.core.adaptive.adaptive_age_smooth`): each lag smoothed
    along age by local lines of data-chosen width that do not cross steps (the default model applies it after its
    network)."""
    return adaptive_age_smooth(x, max_lag=max_lag)


def tv_denoise(x, weight: float = 0.7) -> np.ndarray:
    """Total-variation denoising (Chambolle's algorithm, scikit-image) of each 2TCF separately."""
    from skimage.restoration import denoise_tv_chambolle

    weight = _positive(weight, "tv weight")
    x = _batched(x)
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.stack([denoise_tv_chambolle(im, weight=weight) for im in flat])
    return out.reshape(x.shape)


def bm3d_denoise(x, sigma_psd: float = 0.2) -> np.ndarray:
    """BM3D of each 2TCF (needs the optional ``bm3d`` package: ``pip install bm3d``)."""
    try:
        import bm3d
    except ImportError as exc:
        raise XPCSInputError("method 'bm3d' needs the bm3d package: pip install bm3d") from exc
    sigma_psd = _positive(sigma_psd, "bm3d sigma_psd")
    x = _batched(x)
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.stack([np.asarray(bm3d.bm3d(im, sigma_psd=sigma_psd)) for im in flat])
    # BM3D's block matching is not symmetric under transposition; a 2TCF is (Eq. 1), so keep its symmetric part.
    out = 0.5 * (out + np.swapaxes(out, -1, -2))
    return out.reshape(x.shape)


class PCAFilter:
    """Linear PCA denoiser: project each n×n crop (upper triangle) on the first k principal components of the
    training targets, the linear counterpart of the CNN-ED fitted on the same data (METHOD §5)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, size: int, meta: dict | None = None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)  # (k, n(n+1)/2), orthonormal rows
        self.size = int(size)
        self.meta = dict(meta or {})

    @classmethod
    def fit(cls, targets: np.ndarray, n_components: int = 8, meta: dict | None = None) -> PCAFilter:
        """Principal components of (T, n, n) targets in model units."""
        tri = matrix_to_triu(np.asarray(targets, dtype=np.float64))
        mean = tri.mean(axis=0)
        _, _, vt = np.linalg.svd(tri - mean, full_matrices=False)
        return cls(mean, vt[:n_components], targets.shape[-1], meta)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Reconstruction of (…, n, n) crops from their first k components."""
        x = _batched(x)
        if x.shape[-1] != self.size:
            raise XPCSInputError(f"PCA filter was fitted on {self.size}×{self.size} crops; got {x.shape[-2:]}")
        tri = matrix_to_triu(x) - self.mean
        rec = (tri @ self.components.T) @ self.components + self.mean
        return triu_to_matrix(rec, self.size)

    def save(self, path) -> None:
        import json

        from safetensors.numpy import save_file

        save_file({"mean": self.mean, "components": self.components}, str(path),
                  metadata={"size": str(self.size), "meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path) -> PCAFilter:
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata()
            return cls(f.get_tensor("mean"), f.get_tensor("components"), int(md["size"]), json.loads(md["meta"]))

    @classmethod
    def pretrained(cls) -> PCAFilter:
        """The PCA filter fitted on the training split of the shipped ensemble."""
        return cls.load(pretrained_directory() / "pca.safetensors")

