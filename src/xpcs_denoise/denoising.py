"""Denoising of 2TCFs with a CNN-ED ensemble (METHOD §4): Eq. 5 scaling, lag-0 replacement, ensemble mean,
Eq. 6 back to physical units."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import XPCSInputError
from .model import CNNEDEnsemble, load_ensemble
from .preprocessing import contrast_from_two_time, from_model_units, replace_diagonal, to_model_units

__all__ = ["Denoiser", "DenoiseResult", "pretrained_directory"]


def pretrained_directory() -> Path:
    """Folder of the ensemble shipped with the package."""
    return Path(str(resources.files("xpcs_denoise") / "pretrained"))


def _check_two_times(c2, size: int) -> tuple[np.ndarray, bool]:
    c2 = np.asarray(c2)
    if not (np.issubdtype(c2.dtype, np.floating) or np.issubdtype(c2.dtype, np.integer)):
        raise XPCSInputError(f"2TCF must be numeric; got dtype {c2.dtype}")
    if c2.ndim not in (2, 3) or c2.shape[-1] != c2.shape[-2]:
        raise XPCSInputError(f"2TCF must be square, shape (N, N) or (B, N, N); got {c2.shape}")
    if c2.shape[-1] < size:
        raise XPCSInputError(
            f"2TCF is {c2.shape[-1]}×{c2.shape[-1]} but the model needs at least {size}×{size} frames; "
            "use a longer series, or a model trained for that size (xpcs-denoise train --size)"
        )
    if not np.all(np.isfinite(c2)):
        raise XPCSInputError("2TCF contains NaN or Inf; fill or crop masked frames before denoising")
    single = c2.ndim == 2
    return (c2[None] if single else c2).astype(np.float64), single


@dataclass
class DenoiseResult:
    """Denoised 2TCFs and the ensemble's spread, in physical units, same shape as the input."""

    c2: np.ndarray
    std: np.ndarray
    beta: np.ndarray
    baseline: np.ndarray


class Denoiser:
    """A CNN-ED ensemble ready to denoise raw 2TCFs.

    >>> den = Denoiser.pretrained()
    >>> clean = den.denoise(c2)          # (50, 50) or (B, 50, 50), physical units in and out
    """

    def __init__(self, model: CNNEDEnsemble, card: dict | None = None, *, batch_size: int = 32):
        self.model = model.eval()
        self.card = card or {}
        # Small chunks keep each member's (C, B·P) activations in cache; 32 patches was fastest on 2 cores.
        self.batch_size = int(batch_size)
        self._weights = model.inference_weights()

    @classmethod
    def pretrained(cls, **kwargs) -> Denoiser:
        """The ensemble shipped in the package (weights checked against the model card's SHA-256)."""
        return cls.from_directory(pretrained_directory(), **kwargs)

    @classmethod
    def from_directory(cls, directory, **kwargs) -> Denoiser:
        """An ensemble saved by training (``model.safetensors`` + ``model_card.json``)."""
        model, card = load_ensemble(directory)
        return cls(model, card, **kwargs)

    @property
    def size(self) -> int:
        return self.model.config.size

    @property
    def n_members(self) -> int:
        return self.model.n_members

    @torch.no_grad()
    def predict_model_units(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and standard deviation of (B, n, n) inputs already in model units (Eq. 4/5)."""
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 2
        x = x[None] if single else x
        mean = np.empty(x.shape, dtype=np.float64)
        std = np.empty(x.shape, dtype=np.float64)
        for s in range(0, x.shape[0], self.batch_size):
            xt = self.model.to_triangle(torch.as_tensor(x[s:s + self.batch_size]))
            out = self.model.predict_tri(xt, self._weights)  # (M, b, P)
            mu = out.mean(dim=0)
            # E[x²] − E[x]² : torch's std over a leading axis is ~40× slower on the CPU.
            var = torch.clamp((out * out).mean(dim=0) - mu * mu, min=0)
            mean[s:s + self.batch_size] = self.model.to_full(mu).double().numpy()
            std[s:s + self.batch_size] = self.model.to_full(var.sqrt()).double().numpy()
        return (mean[0], std[0]) if single else (mean, std)

    def denoise(self, c2, *, return_std: bool = False, seed: int = 0, beta=None):
        """Denoise raw n×n 2TCFs (n = the model size, 50 for the shipped ensemble).

        Parameters
        ----------
        c2 : array_like, shape (n, n) or (B, n, n)
            Raw 2TCFs in physical units (baseline ≈ 1), any contrast.
        return_std : bool
            Also return the ensemble's spread (per-pixel standard deviation across members, physical units).
        seed : int
            Seed of the lag-0 replacement draws (the only randomness).
        beta : float or array of B, optional
            Contrast to scale by; default β̂ = mean lag-1 value − 1 of each input (Eq. 5).

        Returns
        -------
        ndarray, same shape as ``c2`` (and the spread if ``return_std``)
        """
        res = self.denoise_full(c2, seed=seed, beta=beta)
        return (res.c2, res.std) if return_std else res.c2

    def denoise_full(self, c2, *, seed: int = 0, beta=None) -> DenoiseResult:
        """As :meth:`denoise`, returning a :class:`DenoiseResult` with the contrast used."""
        x, single = _check_two_times(c2, self.size)
        if x.shape[-1] != self.size:
            raise XPCSInputError(
                f"this release denoises {self.size}×{self.size} 2TCFs directly; got {x.shape[-1]}×{x.shape[-1]}"
                " (crop it, or use the sliding window once available)"
            )
        b = contrast_from_two_time(x) if beta is None else np.broadcast_to(np.asarray(beta, float), x.shape[:1])
        bad = ~np.isfinite(b) | (b <= 0)
        if np.any(bad):
            raise XPCSInputError(
                f"{int(bad.sum())} 2TCF(s) have zero or negative contrast (lag-1 mean ≤ baseline 1): nothing to "
                "denoise; check the normalisation, or pass beta= explicitly"
            )
        inp = replace_diagonal(to_model_units(x, b), seed)
        mean, std = self.predict_model_units(inp)
        out = from_model_units(mean, b)
        spread = std * b[:, None, None]
        base = np.ones_like(b)
        if single:
            return DenoiseResult(out[0], spread[0], b[0], base[0])
        return DenoiseResult(out, spread, b, base)
