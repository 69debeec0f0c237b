"""The CNN-ED ensemble as a denoiser of raw 2TCFs (METHOD §4): Eq. 5/7 scaling, lag-0 replacement, the members'
mean and spread, Eq. 6 back to physical units; the window size is the model's (``Denoiser.size``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import XPCSInputError
from ..core.scaling import replace_diagonal, scale_parameters, to_model_units
from ..core.validation import check_int, check_seed
from ..core.window import check_step, check_two_times, denoise_scaled, sliding_window, window_starts
from .anomaly import STRUCTURE, _encode, finish_scores, merge_windows, window_noise, window_scores, window_structure
from .config import pretrained_directory
from .model import CNNEDEnsemble, load_ensemble

__all__ = ["Denoiser", "DenoiseResult", "anomaly_scores", "pretrained_directory"]


@dataclass
class DenoiseResult:
    """Denoised 2TCFs and the ensemble's spread, in physical units, same shape as the input."""

    c2: np.ndarray
    std: np.ndarray
    beta: np.ndarray
    baseline: np.ndarray
    #: Anomaly scores of the windows denoised (``denoise_full(anomaly=True)``), else None; see
    #: :func:`xpcs_denoise.nn.anomaly.finish_scores`.
    anomaly: dict | None = None


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
        self.directory: Path | None = None

    @classmethod
    def pretrained(cls, **kwargs) -> Denoiser:
        """The ensemble shipped in the package (weights checked against the model card's SHA-256)."""
        return cls.from_directory(pretrained_directory(), **kwargs)

    @classmethod
    def from_directory(cls, directory, **kwargs) -> Denoiser:
        """An ensemble saved by training (``model.safetensors`` + ``model_card.json``)."""
        model, card = load_ensemble(directory)
        den = cls(model, card, **kwargs)
        den.directory = Path(directory)  # recorded in the files it denoises
        return den

    @property
    def size(self) -> int:
        return self.model.config.size

    @property
    def n_members(self) -> int:
        return self.model.n_members

    @torch.no_grad()
    def predict_model_units(self, x: np.ndarray, *, latent: bool = False):
        """Ensemble mean and standard deviation of (B, n, n) inputs already in model units (Eq. 4/5), and with
        ``latent`` the members' latent vectors (M, B, L) of the same pass (for the anomaly scores)."""
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 2
        x = x[None] if single else x
        mean = np.empty(x.shape, dtype=np.float64)
        std = np.empty(x.shape, dtype=np.float64)
        zs = np.empty((self.n_members, x.shape[0], self.model.config.latent), np.float64) if latent else None
        for s in range(0, x.shape[0], self.batch_size):
            xt = self.model.to_triangle(torch.as_tensor(x[s:s + self.batch_size]))
            out = self.model.predict_tri(xt, self._weights, return_latent=latent)  # (M, b, P)
            if latent:
                out, z = out
                zs[:, s:s + self.batch_size] = z.double().numpy()
            mu = out.mean(dim=0)
            # Two-pass variance by hand: torch's std over a leading axis is ~40× slower on the CPU.
            dev = out - mu
            var = (dev * dev).mean(dim=0)
            mean[s:s + self.batch_size] = self.model.to_full(mu).double().numpy()
            std[s:s + self.batch_size] = self.model.to_full(var.sqrt()).double().numpy()
        if latent:
            return (mean[0], std[0], zs[:, 0]) if single else (mean, std, zs)
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

    def denoise_full(self, c2, *, seed: int = 0, beta=None, baseline=None, step: int = 5,
                     anomaly: bool = False) -> DenoiseResult:
        """As :meth:`denoise`, returning a :class:`DenoiseResult` with the contrast and baseline used.

        With ``anomaly``, also the anomaly scores of every window denoised, from the same ensemble pass
        (``result.anomaly``, see :func:`xpcs_denoise.nn.anomaly.finish_scores`; NaN for a 2TCF not denoised).
        The model card must hold a ``latent_reference``.
        """
        x, single = check_two_times(c2, self.size)
        seed = check_seed(seed)
        step = check_step(step, self.size)
        ref = self.card.get("latent_reference") if anomaly else None
        if anomaly and not ref:
            raise XPCSInputError("this model's card has no latent_reference; run scripts/latent_reference.py on it")
        scores = []

        def predict(w):
            if not anomaly:
                return self.predict_model_units(w)
            mean, std, z = self.predict_model_units(w, latent=True)
            scores.append((*window_scores(ref, z, w, mean), window_noise(w), window_structure(w)))
            return mean, std

        def model_units(scaled):
            if scaled.shape[-1] == self.size:
                return predict(replace_diagonal(scaled, seed))
            return sliding_window(scaled, predict, self.size, int(step), seed)

        out, spread, b, base = denoise_scaled(x, single, self.size, beta, baseline, model_units)
        table = None
        if anomaly:
            starts = window_starts(x.shape[-1], self.size, step)[0]
            ok = np.isfinite(b)
            dist, resid, noise = (np.full((x.shape[0], starts.size), np.nan) for _ in range(3))
            struct = np.full((x.shape[0], starts.size, len(STRUCTURE)), np.nan)
            dist[ok] = scores[0][0].reshape(-1, starts.size)
            resid[ok] = scores[0][1].reshape(-1, starts.size)
            noise[ok] = scores[0][2].reshape(-1, starts.size)
            struct[ok] = scores[0][3].reshape(-1, starts.size, len(STRUCTURE))
            starts, dist, resid, noise, *cols = merge_windows(starts, dist, resid, noise,
                                                              *np.moveaxis(struct, -1, 0))
            struct = np.stack(cols, axis=-1)
            table = finish_scores(starts, dist[0] if single else dist, resid[0] if single else resid, self.card,
                                  self.size, step, noise[0] if single else noise, struct[0] if single else struct)
        if single:
            return DenoiseResult(out[0], spread[0], b[0], base[0], table)
        return DenoiseResult(out, spread, b, base, table)


_PRETRAINED: dict = {}


def _pretrained() -> Denoiser:
    if "cned" not in _PRETRAINED:
        _PRETRAINED["cned"] = Denoiser.pretrained()
    return _PRETRAINED["cned"]


def anomaly_scores(c2, *, model=None, step: int = 5, seed: int = 0) -> dict:
    """Latent distance and reconstruction residual of every window of (N, N) or (B, N, N) raw 2TCFs.

    Returns
    -------
    dict with ``starts`` (W,) first frame of each window, ``latent_distance`` and ``residual`` (B, W) (or (W,)
    for one 2TCF), ``size`` (the window, frames), ``step``; and where the card holds the calibrated
    ``anomaly_threshold``: ``score`` (:func:`~xpcs_denoise.nn.anomaly.combined_score`), ``flagged`` and ``threshold``.
    Forward windows only, with their own lag-0 draws; ``denoise_file`` stores the scores of the very windows it
    denoises (both passes of the sliding window), which differ a little.
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
    dist, resid, noise = (np.full((x.shape[0], starts.size), np.nan) for _ in range(3))
    struct = np.full((x.shape[0], starts.size, len(STRUCTURE)), np.nan)
    for i in np.flatnonzero(np.isfinite(b)):
        w = x[i][idx[:, :, None], idx[:, None, :]]
        w = replace_diagonal(to_model_units(w, b[i], base[i]), seed)
        z, out = _encode(den, w)
        dist[i], resid[i] = window_scores(ref, z, w, out)
        noise[i] = window_noise(w)
        struct[i] = window_structure(w)
    if single:
        dist, resid, noise, struct = dist[0], resid[0], noise[0], struct[0]
    return finish_scores(starts, dist, resid, den.card, n, step, noise, struct)
