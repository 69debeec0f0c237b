"""Denoising of 2TCFs with a CNN-ED ensemble (METHOD §4): Eq. 5 scaling, lag-0 replacement, ensemble mean,
Eq. 6 back to physical units."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..nn.config import METHODS
from ..core.errors import XPCSInputError, XPCSNoContrastWarning
from ..nn.model import CNNEDEnsemble, load_ensemble
from ..core.scaling import from_model_units, replace_diagonal, scale_parameters, to_model_units
from ..core.validation import check_int, check_seed, numeric_array

__all__ = ["Denoiser", "DenoiseResult", "pretrained_directory", "sliding_window", "denoise", "METHODS"]


def pretrained_directory() -> Path:
    """Folder of the ensemble shipped with the package."""
    return Path(str(resources.files("xpcs_denoise") / "pretrained"))


def _check_two_times(c2, size: int) -> tuple[np.ndarray, bool]:
    c2 = numeric_array(c2, "2TCF")
    if c2.dtype == np.bool_:
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
    x = (c2[None] if single else c2).astype(np.float64)
    x_t = np.swapaxes(x, -1, -2)
    asym = float(np.max(np.abs(x - x_t)))
    if asym > 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        # Eq. 1 is symmetric in t1, t2; every method works on the symmetric part, so they all see the same input.
        warnings.warn(f"2TCF is not symmetric (max |C - C^T| = {asym:.3g}); denoising its symmetric part "
                      "(C + C^T)/2", stacklevel=3)
        x = 0.5 * (x + x_t)
    return x, single


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
        x, single = _check_two_times(c2, self.size)
        seed = check_seed(seed)
        step = _check_step(step, self.size)

        def model_units(scaled):
            if scaled.shape[-1] == self.size:
                return self.predict_model_units(replace_diagonal(scaled, seed))
            return sliding_window(scaled, self.predict_model_units, self.size, int(step), seed)

        out, spread, b, base = _denoise_scaled(x, single, self.size, beta, baseline, model_units)
        if single:
            return DenoiseResult(out[0], spread[0], b[0], base[0])
        return DenoiseResult(out, spread, b, base)


def sliding_window(x: np.ndarray, predict, n: int = 50, step: int = 5, seed: int = 0):
    """Apply an n×n patch denoiser to (B, N, N) model-unit 2TCFs by the paper's sliding window.

    ``predict`` maps (W, n, n) patches (lag 0 replaced) to (mean, spread) arrays of the same shape. The window
    moves along the diagonal from the first frame with ``step`` and from the last frame backwards; overlapping
    outputs are averaged within each pass and the passes averaged; pixels no window covers keep their input.
    Returns (mean, spread), each (B, N, N).
    """
    step = _check_step(step, n)
    nb, big = x.shape[0], x.shape[-1]
    fwd = np.arange(0, big - n + 1, step)
    bwd = np.arange(big - n, -1, -step)
    starts = np.concatenate([fwd, bwd])
    ar = np.arange(n)
    rows = starts[:, None, None] + ar[None, :, None]  # (W, n, 1)
    cols = starts[:, None, None] + ar[None, None, :]  # (W, 1, n)
    windows = x[:, rows, cols].reshape(-1, n, n)  # (B·W, n, n): every window of every input, one batch
    mean, std = predict(replace_diagonal(windows, seed))
    nw = len(starts)
    mean = mean.reshape(nb, nw, n, n)
    std = std.reshape(nb, nw, n, n)
    flat_idx = (rows * big + cols).reshape(nw, n * n)
    out_m = np.zeros((nb, big * big))
    out_s = np.zeros((nb, big * big))
    n_pass = np.zeros(big * big)
    for passes in (slice(0, len(fwd)), slice(len(fwd), nw)):
        idx = flat_idx[passes].ravel()
        cnt = np.bincount(idx, minlength=big * big)
        cover = cnt > 0
        n_pass += cover
        for i in range(nb):  # loop over inputs only; windows are scattered by one bincount each
            out_m[i, cover] += (np.bincount(idx, mean[i, passes].ravel(), big * big)[cover] / cnt[cover])
            out_s[i, cover] += (np.bincount(idx, std[i, passes].ravel(), big * big)[cover] / cnt[cover])
    # The two passes' averages are averaged; where the step leaves a pixel to one pass only, that one.
    band = (n_pass > 0).reshape(big, big)
    n_pass = np.maximum(n_pass, 1)
    out_m = (out_m / n_pass).reshape(nb, big, big)
    out_s = (out_s / n_pass).reshape(nb, big, big)
    out_m = np.where(band[None], out_m, x)
    out_s = np.where(band[None], out_s, 0.0)
    return out_m, out_s


def _check_step(step, n: int) -> int:
    """Sliding-window step in 1..n − 1 frames: a larger step would leave lag-1 pixels between windows
    undenoised while the 2TCF is reported denoised."""
    return check_int(step, f"sliding-window step (frames, window {n})", 1, n - 1)


def _denoise_scaled(x, single, size, beta, baseline, model_units):
    """Scale (B, N, N) 2TCFs to model units, apply ``model_units`` → (mean, spread or None), scale back.

    In a batch, 2TCFs without contrast (lag-1 mean at or below the baseline) cannot be scaled (Eq. 5 would
    divide by ≤ 0): they are returned unchanged with zero spread and β = NaN, and a warning says which; a
    single such 2TCF, or a batch of only such, is an error (:func:`scale_parameters`).
    """
    b, base = scale_parameters(x, size, beta, baseline, partial=not single)
    ok = np.isfinite(b)
    out, spread = x.copy(), np.zeros_like(x)
    mean, std = model_units(to_model_units(x[ok], b[ok], base[ok]))
    out[ok] = from_model_units(mean, b[ok], base[ok])
    if std is not None:
        spread[ok] = std * b[ok, None, None]
    if not ok.all():
        bad = np.flatnonzero(~ok)
        warnings.warn(f"{bad.size} of {len(b)} 2TCFs have no contrast (mean lag-1 value not significantly above "
                      f"the baseline, or flat), e.g. index {bad[:5].tolist()}: returned unchanged, not denoised",
                      XPCSNoContrastWarning, stacklevel=4)
    return out, spread, b, base


_PRETRAINED: dict = {}


def _pretrained() -> Denoiser:
    if "cned" not in _PRETRAINED:
        _PRETRAINED["cned"] = Denoiser.pretrained()
    return _PRETRAINED["cned"]


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
    from . import baselines

    if method not in METHODS:
        raise XPCSInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    seed = check_seed(seed)
    if method == "cned":
        if isinstance(model, (str, Path)):  # "pretrained" or a model folder
            model = _pretrained() if str(model) == "pretrained" else Denoiser.from_directory(model)
        elif model is not None and not isinstance(model, Denoiser):
            raise XPCSInputError(f"model must be a Denoiser, a model folder or 'pretrained'; got "
                                 f"{type(model).__name__}")
        den = model or _pretrained()
        return den.denoise(c2, return_std=return_std, seed=seed, beta=beta, baseline=baseline, step=step)
    x, single = _check_two_times(c2, 50)
    step = _check_step(step, 50)
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
        out, spread, _, _ = _denoise_scaled(x, single, 50, beta, baseline, model_units)
    if single:
        out, spread = out[0], spread[0]
    return (out, spread) if return_std else out
