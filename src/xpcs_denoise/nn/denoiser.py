"""The CNN-ED ensemble as a denoiser of raw 2TCFs (METHOD §4): Eq. 5/7 scaling, lag-0 replacement, the members'
mean and spread, Eq. 6 back to physical units; the window size is the model's (``Denoiser.size``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.scaling import replace_diagonal
from ..core.validation import check_int, check_seed
from ..core.window import check_step, check_two_times, denoise_scaled, sliding_window
from .config import pretrained_directory
from .model import CNNEDEnsemble, load_ensemble

__all__ = ["Denoiser", "DenoiseResult", "pretrained_directory"]


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
        self.batch_size = check_int(batch_size, "batch_size", 1)
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
            # Two-pass variance by hand: torch's std over a leading axis is ~40× slower on the CPU.
            dev = out - mu
            var = (dev * dev).mean(dim=0)
            mean[s:s + self.batch_size] = self.model.to_full(mu).double().numpy()
            std[s:s + self.batch_size] = self.model.to_full(var.sqrt()).double().numpy()
        return (mean[0], std[0]) if single else (mean, std)

    def denoise(self, c2, *, return_std: bool = False, seed: int = 0, beta=None, baseline=None,
                step: int = 5):
        """Denoise raw 2TCFs of any size N ≥ n (n = 50 for the shipped ensemble).

        Parameters
        ----------
        c2 : array_like, shape (N, N) or (B, N, N)
            Raw 2TCFs in physical units, any contrast.
        return_std : bool
            Also return the ensemble's spread (per-pixel standard deviation across members, physical units).
        seed : int
            Seed of the lag-0 replacement draws (the only randomness).
        beta : float or array of B, optional
            Contrast to scale by. Default: N = n, β̂ = mean lag-1 value − 1 (Eq. 5); N > n, β*(lag = 1) =
            mean lag-1 value − C∞* (Eq. 7).
        baseline : float or array of B, optional
            Baseline C∞*. Default: 1 for N = n (Eq. 5); for N > n the mean of the 1TCF over the longest
            quarter of the lags (Eq. 7).
        step : int
            Sliding-window step in frames (N > n).

        Returns
        -------
        ndarray, same shape as ``c2`` (and the spread if ``return_std``)

        Notes
        -----
        For N > n the n×n window slides along the diagonal from the first frame with ``step``, and again from
        the last frame backwards; overlapping outputs are averaged within each pass and the two passes are
        averaged (METHOD §4). Pixels that no window covers (lags ≥ n, and some lags near n − 1 between window
        positions) keep their input values.
        All windows of all inputs run as one batched computation.
        In a batch, a 2TCF without contrast (mean lag-1 value at or below the baseline) is returned unchanged
        with a warning; a single one is an error.
        """
        res = self.denoise_full(c2, seed=seed, beta=beta, baseline=baseline, step=step)
        return (res.c2, res.std) if return_std else res.c2

    def denoise_full(self, c2, *, seed: int = 0, beta=None, baseline=None, step: int = 5) -> DenoiseResult:
        """As :meth:`denoise`, returning a :class:`DenoiseResult` with the contrast and baseline used."""
        x, single = check_two_times(c2, self.size)
        seed = check_seed(seed)
        step = check_step(step, self.size)

        def model_units(scaled):
            if scaled.shape[-1] == self.size:
                return self.predict_model_units(replace_diagonal(scaled, seed))
            return sliding_window(scaled, self.predict_model_units, self.size, int(step), seed)

        out, spread, b, base = denoise_scaled(x, single, self.size, beta, baseline, model_units)
        if single:
            return DenoiseResult(out[0], spread[0], b[0], base[0])
        return DenoiseResult(out, spread, b, base)


_PRETRAINED: dict = {}


def _pretrained() -> Denoiser:
    if "cned" not in _PRETRAINED:
        _PRETRAINED["cned"] = Denoiser.pretrained()
    return _PRETRAINED["cned"]
