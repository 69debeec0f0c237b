"""One entry point for every denoising method of 2TCFs (METHOD §4–5): the CNN-ED ensemble and its classical
peers, on the same contrast-normalised scale (Eq. 5/7 in, lag-0 replacement, Eq. 6 out), arrays in and out."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.band import check_two_time_any
from ..core.errors import XPCSInputError
from ..core.scaling import replace_diagonal
from ..core.validation import check_seed
from ..core.window import check_step, check_two_times, denoise_scaled, sliding_window
from ..nn.config import METHOD_ALIASES, METHODS, WINDOW
from . import baselines

if TYPE_CHECKING:
    pass

__all__ = ["denoise", "resolve_method", "model_family", "METHODS", "REGISTRY", "Method", "available_methods"]


@dataclass(frozen=True)
class Method:
    """One denoising method of the registry.

    ``kind``: ``"ensemble"`` (a :class:`~xpcs_denoise.nn.denoiser.Denoiser`, sliding window for N > n),
    ``"patch"`` (an n×n filter with the same sliding window: PCA), ``"image"`` (a filter of the whole matrix in
    model units, ``apply(x, **options)``) or ``"identity"``. ``package``: an optional package it needs."""

    name: str
    kind: str
    apply: Callable | None = None
    package: str | None = None

    def available(self) -> bool:
        """Whether it can run here (its optional package is importable)."""
        if self.package is None:
            return True
        try:
            importlib.import_module(self.package)
        except ImportError:
            return False
        return True


#: Every method of :func:`denoise`, in the order of :data:`METHODS` (the same names, importable without torch).
REGISTRY = {m.name: m for m in (
    Method("lagnet", "lagnet"),
    Method("cned", "ensemble"),
    Method("gaussian", "image", baselines.gaussian_denoise),
    Method("median", "image", baselines.median_denoise),
    Method("tv", "image", baselines.tv_denoise),
    Method("age", "band", baselines.age_denoise),
    Method("adaptive", "band", baselines.adaptive_denoise),
    Method("pca", "patch"),
    Method("bm3d", "image", baselines.bm3d_denoise, package="bm3d"),
    Method("none", "identity"),
)}
if tuple(REGISTRY) != METHODS:  # pragma: no cover - a method added in one place only
    raise ImportError(f"the method registry {tuple(REGISTRY)} and nn.config.METHODS {METHODS} disagree")


def available_methods() -> tuple[str, ...]:
    """Every method that denoises and can run here: all but ``"none"``, and ``"bm3d"`` only with its package."""
    return tuple(name for name, m in REGISTRY.items() if m.kind != "identity" and m.available())


def _lag_model(model):
    """The lag-band model: ``model`` (a LagDenoiser or its folder) or the shipped one."""
    from ..nn.lagnet import LagDenoiser  # defers torch: the peers need none

    if model is None or (isinstance(model, (str, Path)) and str(model) == "pretrained"):
        if "lagnet" not in _LAG:
            _LAG["lagnet"] = LagDenoiser.pretrained()
        return _LAG["lagnet"]
    if isinstance(model, (str, Path)):
        return LagDenoiser.from_directory(model)
    if not isinstance(model, LagDenoiser):
        raise XPCSInputError(f"method 'lagnet' needs a lag-band model (LagDenoiser or its folder); got "
                             f"{type(model).__name__}")
    return model


_LAG: dict = {}


def model_family(model) -> str | None:
    """``"lagnet"`` or ``"cned"``: the family of a model object or folder; None for no model, ``"pretrained"`` or a
    folder holding neither model's card."""
    if model is None or (isinstance(model, (str, Path)) and str(model) == "pretrained"):
        return None
    if isinstance(model, (str, Path)):
        # A folder with neither card belongs to no family: the loader of the method asked for says what is missing.
        if (Path(model) / "lagnet_card.json").is_file():
            return "lagnet"
        return "cned" if (Path(model) / "model_card.json").is_file() else None
    return "lagnet" if type(model).__name__ == "LagDenoiser" else "cned"


def resolve_method(method: str | None, model=None) -> str:
    """The method to run: ``method`` (aliases resolved), or without one the family of ``model``, else
    ``"lagnet"``. A model of the other family than the method asked for is an error."""
    fam = model_family(model)
    if method is None:
        return fam or "lagnet"
    method = METHOD_ALIASES.get(method, method)
    if fam is not None and method in ("lagnet", "cned") and fam != method:
        raise XPCSInputError(f"the model {model if isinstance(model, (str, Path)) else type(model).__name__} is a "
                             f"{fam} model, not {method}: use method {fam!r}, or a {method} model")
    return method


def denoise(c2, method: str | None = None, *, model=None, return_std: bool = False, seed: int = 0,
            beta=None, baseline=None, step: int = 5, **options):
    """Denoise raw 2TCFs with the lag-band model, the paper's CNN-ED ensemble or a classical peer.

    Parameters
    ----------
    c2 : array_like, shape (N, N) or (B, N, N)
        Raw 2TCFs in physical units. ``"lagnet"``: any N ≥ 3; the others N ≥ n (the ensemble's window, 50).
    method : str, optional
        Default: the family of ``model``, else ``"lagnet"``. ``"lagnet"`` (our lag-band model, faithful on
        noise-free data, any size; option ``max_lag``,
        the band of lags it denoises, default 256), ``"cned"`` or ``"paper-2021"`` (the paper's ensemble;
        ``model`` or the shipped one), ``"gaussian"`` (σ frames, default 1.5), ``"median"`` (``size``,
        default 5), ``"tv"`` (Chambolle total variation, ``weight``), ``"age"`` (the age-axis smoother,
        ``width`` frames, default 8), ``"adaptive"`` (the adaptive age stage alone,
        :mod:`xpcs_denoise.core.adaptive`: widths chosen from the data, no smoothing across steps), ``"pca"``
        (linear PCA fitted on the same training data), ``"bm3d"`` (``sigma_psd``; needs the ``bm3d`` package), or
        ``"none"`` (:data:`REGISTRY`). With a CNN-ED ``model``, the peers use its window n too.
    options
        Passed to the peer filter (see :mod:`xpcs_denoise.restoration.baselines`).

    Returns
    -------
    ndarray of the input's shape (and a per-pixel spread if ``return_std``: the ensemble's standard deviation
    for ``"cned"``, zeros for the deterministic peers).

    Notes
    -----
    ``lagnet``, ``age`` and ``adaptive`` work on the 2TCF as given (all three are affine-invariant: any baseline
    and contrast), any N ≥ 3, lag 0 kept. The ensemble and the image filters see the same input: Eq. 5 (N = n) or
    Eq. 7 (N > n) scaling to contrast 1 and baseline 1, lag 0 replaced by lag-1 draws, and the inverse scaling
    after (Eq. 6). Image filters act on the whole matrix; the patch methods (cned, pca) use the sliding window for
    N > n.
    """
    method = resolve_method(method, model)
    if method not in REGISTRY:
        raise XPCSInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    kind = REGISTRY[method].kind
    seed = check_seed(seed)
    if kind == "lagnet":
        # Affine-invariant: no contrast or baseline to scale by, no lag-0 draws, no window to slide.
        unknown = set(options) - {"max_lag"}
        if unknown:
            raise XPCSInputError(f"unknown option(s) {sorted(unknown)} for method 'lagnet'")
        return _lag_model(model).denoise(c2, max_lag=options.get("max_lag"), return_std=return_std)
    if kind == "band":
        # Along the age axis only: affine maps commute with it, so no scaling, no lag-0 draws, any size.
        x, single = check_two_time_any(c2)
        if not np.all(np.isfinite(x)):
            raise XPCSInputError("2TCF contains NaN or Inf; fill or crop masked frames before denoising")
        try:
            out = REGISTRY[method].apply(x, **options)
        except TypeError as exc:
            raise XPCSInputError(f"bad option for method {method!r}: {exc}") from exc
        out = out[0] if single else out
        return (out, np.zeros_like(out)) if return_std else out
    if model is not None and type(model).__name__ == "LagDenoiser":
        model = None  # a lag-band model has no window: the peers use the default one
    if kind == "ensemble" or model is not None:
        from ..nn.denoiser import Denoiser, _pretrained  # defers torch: the peers need none

        if isinstance(model, (str, Path)):  # "pretrained" or a model folder
            model = _pretrained() if str(model) == "pretrained" else Denoiser.from_directory(model)
        elif model is not None and not isinstance(model, Denoiser):
            raise XPCSInputError(f"model must be a Denoiser, a model folder or 'pretrained'; got "
                                 f"{type(model).__name__}")
    if kind == "ensemble":
        den = model or _pretrained()
        return den.denoise(c2, return_std=return_std, seed=seed, beta=beta, baseline=baseline, step=step)
    # The peers work on the model's window (the shipped one's without a model): the same Eq. 5/7 choice, the
    # same sliding window for the patch filter, so that every method sees what the ensemble sees.
    size = model.size if model is not None else WINDOW
    if kind == "patch":
        pca = options.pop("pca", None) or baselines.PCAFilter.pretrained()
        if options:
            raise XPCSInputError(f"unknown option(s) {sorted(options)} for method {method!r}")
        size = pca.size
    x, single = check_two_times(c2, size)
    step = check_step(step, size)
    if kind == "identity":
        out, spread = x.copy(), np.zeros_like(x)
    else:
        if kind == "patch":
            def model_units(scaled):
                if scaled.shape[-1] == pca.size:
                    return pca.predict(replace_diagonal(scaled, seed)), None
                return sliding_window(scaled, lambda w: (pca.predict(w), np.zeros_like(w)), pca.size, step,
                                      seed)[0], None
        else:
            def model_units(scaled):
                try:
                    return REGISTRY[method].apply(replace_diagonal(scaled, seed), **options), None
                except (TypeError, ValueError, RuntimeError) as exc:  # e.g. median size=0, sigma < 0
                    raise XPCSInputError(f"bad option for method {method!r}: {exc}") from exc
        out, spread, _, _ = denoise_scaled(x, single, size, beta, baseline, model_units)
    if single:
        out, spread = out[0], spread[0]
    return (out, spread) if return_std else out
