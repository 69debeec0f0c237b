"""The lag-band denoiser ("lagnet"): our own fully convolutional model of 2TCFs in (lag, age) coordinates.

Why it is faithful by construction (METHOD §8): it works on the band of lags 1…K (:mod:`xpcs_denoise.core.band`),
where a stationary 2TCF is constant along age, and its output is the input plus a correction in units of the
*local noise level* σ̂: the spread of each cell's neighbourhood about its own running mean along age. A noise-free
stationary 2TCF has σ̂ = 0 exactly, so it passes unchanged whatever the weights; as the data get better, σ̂ and
with it the largest possible correction shrink. The correction is bounded (``bound`` σ̂), the output is written
to both triangles (symmetric), and the lag-0 diagonal and lags beyond the band keep their values.

Inputs of the network, per cell (all affine-invariant: the 2TCF is first mapped by (C − lo)/s with lo the band's
tail and s its contrast, so a baseline ≠ 1 or any contrast gives the same output up to the same map):
the value; its Gaussian smooths along age (widths ``smooth_widths``) minus the value, so the network can do at
least what the age-axis smoother does, at a width it picks per cell; log σ̂; the inside-the-matrix mask; the lag.
A second output is the expected size of the remaining error (a spread, in σ̂ units), trained by its likelihood.

Cost grows with N × K; long series are processed in tiles along age with a halo of the receptive field, as long as
keeps the convolutions' working memory within :attr:`LagDenoiser.TILE_BYTES` (CPU dilated convolutions unfold
their input 9 times).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.adaptive import AgeStage, adaptive_age_band
from ..core.band import band_lags, band_mask, band_mean, check_two_time_any, from_band, to_band
from ..core.correlation import one_time_from_two_time
from ..core.defaults import WINDOW
from ..core.errors import XPCSInputError
from ..core.scaling import scale_parameters
from ..core.validation import check_memory
from ..io.files import atomic_path, file_sha256
from .config import pretrained_directory
from .denoiser import _pretrained as _paper_ensemble

__all__ = ["LagNetConfig", "LagNet", "LagDenoiser", "ProfileNet", "save_lagnet", "load_lagnet", "band_features",
           "expand_lagnet", "profile_correction", "one_time_noise", "context_features"]

WEIGHTS = "lagnet.safetensors"
CARD = "lagnet_card.json"


@dataclass(frozen=True)
class LagNetConfig:
    """Architecture of the lag-band model (stored in its card)."""

    channels: int = 24
    #: (lag, age) dilation of each 3×3 residual layer: wide along age, where a 2TCF changes slowly.
    dilations: tuple = ((1, 1), (1, 2), (2, 4), (2, 8), (4, 16), (1, 1))
    #: Widths (frames) of the Gaussian smooths along age given as inputs.
    smooth_widths: tuple = (2.0, 6.0, 16.0)
    #: Running mean along age (frames) that σ̂ is measured about, and the (lags, ages) it is pooled over.
    noise_window: tuple = (15, 5, 31)
    #: Largest correction, in units of σ̂.
    bound: float = 10.0
    #: The lag feature saturates here (lags beyond look like this one).
    lag_scale: int = 64
    #: Default band at inference: lags 1…max_lag.
    max_lag: int = 256
    #: Also mix each cell with its smooths along age, by weights the network predicts per cell (a softmax over
    #: "keep" and each smooth width): an adaptive age-axis smoother, which leaves a stationary 2TCF unchanged.
    mix: bool = False
    #: The profile stage (0: none): a 1-D network along lag, with the whole band's 1TCF in view (a mean over lags
    #: at every layer), that corrects the 1TCF of the output, each lag within ``profile_bound`` times that
    #: 1TCF's own noise level (σ̂ over the square root of the cells at that lag). It relates a crop's far lags,
    #: where few ages average, to its whole decay; the correction is added at every age of the lag.
    profile_channels: int = 0
    profile_dilations: tuple = (1, 2, 4, 8, 16, 1)
    profile_bound: float = 10.0
    #: The far-lag prior (0: none). In a short series (N from the 2021 ensemble's window, 50 frames, up to 2.5
    #: windows), lags k ≥ ``prior_from`` · N below the window, which few ages average and plain fits read as C∞,
    #: move by ``prior_weight`` of the way to the 2021 ensemble's 1TCF there, by at most ``prior_bound`` times
    #: that 1TCF's own noise level σ̂/√(N − k), the same at every age (0 where σ̂ is: a clean 2TCF is unchanged).
    #: The two models err differently (ours keeps what the data show, the ensemble draws a typical decay), and
    #: their mean at the far lags is better than either on real and simulated crops (docs/model.md).
    prior_weight: float = 0.0
    prior_from: float = 0.4
    prior_bound: float = 1.0
    #: Also feed the network where 1 lies in its units, (1 − lo)/s (clipped to ±3; 0 where |lo − 1| ≥ 0.5, a
    #: 2TCF not normalised to a baseline near 1). A normalised 2TCF's baseline is 1 or a little above it
    #: (C∞ − 1 ≥ 0), which a crop's few far ages cannot show; the other inputs are invariant to the baseline.
    level_feature: bool = False
    #: The context branch (0: none): a 1-D network along lag, fed the whole band's 1TCF and noise per lag (the
    #: profile stage's view), whose output is added inside every residual layer, the same at every age. A crop's
    #: far lags, which few ages average, can so be related to its whole decay (as the 2021 ensemble's bottleneck
    #: does), which the 2-D layers' reach along lag does not allow. Its last layer starts at zero (no effect).
    context_channels: int = 0
    context_dilations: tuple = (1, 2, 4, 8, 16, 1)

    def __post_init__(self):
        try:
            object.__setattr__(self, "dilations", tuple(tuple(int(v) for v in d) for d in self.dilations))
            object.__setattr__(self, "smooth_widths", tuple(float(w) for w in self.smooth_widths))
            object.__setattr__(self, "noise_window", tuple(int(w) for w in self.noise_window))
            object.__setattr__(self, "profile_dilations", tuple(int(d) for d in self.profile_dilations))
            object.__setattr__(self, "context_dilations", tuple(int(d) for d in self.context_dilations))
        except (TypeError, ValueError):
            raise XPCSInputError(f"invalid lagnet configuration: dilations {self.dilations!r}, smooth_widths "
                                 f"{self.smooth_widths!r} and noise_window {self.noise_window!r} must be lists of "
                                 "numbers") from None
        if (self.channels < 1 or not self.dilations or any(min(d) < 1 or len(d) != 2 for d in self.dilations)
                or not all(math.isfinite(w) and w > 0 for w in self.smooth_widths) or min(self.noise_window) < 2
                or not (math.isfinite(self.bound) and self.bound > 0) or self.lag_scale < 2 or self.max_lag < 1
                or not isinstance(self.mix, bool) or not isinstance(self.level_feature, bool)
                or self.profile_channels < 0
                or any(d < 1 for d in self.profile_dilations)
                or not isinstance(self.context_channels, int) or isinstance(self.context_channels, bool)
                or self.context_channels < 0 or not self.context_dilations
                or any(d < 1 for d in self.context_dilations)
                or not (math.isfinite(self.profile_bound) and self.profile_bound > 0)
                or not (0 <= self.prior_weight <= 1) or not (0 < self.prior_from < 1)
                or not (math.isfinite(self.prior_bound) and self.prior_bound > 0)):
            raise XPCSInputError(f"invalid lagnet configuration {self}")

    @property
    def n_features(self) -> int:
        return 4 + len(self.smooth_widths) + int(self.level_feature)

    @property
    def n_outputs(self) -> int:
        """Head maps: the correction, the log spread and, with ``mix``, one logit per smooth and for "keep"."""
        return 2 + (1 + len(self.smooth_widths) if self.mix else 0)

    @property
    def halo(self) -> int:
        """Receptive field along age beyond a cell (frames), including the input features' reach."""
        conv = 1 + sum(d[1] for d in self.dilations)
        feats = max(int(3 * max(self.smooth_widths)), self.noise_window[0] // 2 + self.noise_window[2] // 2)
        return conv + feats


def _smooth_age(x: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian of ``width`` frames along the last axis, "nearest" edges, kernel cut at 3 widths (scipy's, which
    needs no unfolded copy of the input: a torch convolution with a 97-tap kernel would make one)."""
    from scipy.ndimage import gaussian_filter1d

    return torch.as_tensor(gaussian_filter1d(x.numpy(), float(width), axis=-1, mode="nearest", truncate=3.0))


def _box_age(x: torch.Tensor, width: int) -> torch.Tensor:
    """Running mean over ``width`` (odd) frames along the last axis, "nearest" edges."""
    from scipy.ndimage import uniform_filter1d

    return torch.as_tensor(uniform_filter1d(x.numpy(), int(width), axis=-1, mode="nearest"))


def _box2d(x: torch.Tensor, nk: int, na: int) -> torch.Tensor:
    """Sum of (B, K, W) over a centred nk × na window, zeros outside."""
    return F.avg_pool2d(x[:, None], (nk | 1, na | 1), stride=1, padding=((nk | 1) // 2, (na | 1) // 2),
                        count_include_pad=True)[:, 0] * ((nk | 1) * (na | 1))


def band_noise(band: torch.Tensor, mask: torch.Tensor, window=(15, 5, 31)) -> torch.Tensor:
    """Local noise level σ̂ (B, K, W): RMS of each cell's neighbourhood about its running mean along age,
    over the cells inside the matrix. Exactly 0 where the 2TCF is constant along age (noise-free, stationary)."""
    b, k, w = band.shape
    width, nk, na = window
    resid = band - _box_age(band, width | 1)
    m = mask.to(band.dtype).expand(b, k, w)
    num = _box2d(resid * resid * m, nk, na)
    den = _box2d(m.contiguous(), nk, na).clamp_min(1.0)
    return torch.sqrt(num / den * ((width | 1) / ((width | 1) - 1)))


def band_scale(band: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor):
    """Affine map (lo, s) of each 2TCF, (B,) each: lo = median 1TCF over the band's longest quarter of lags,
    s = |median lag-1 value − lo|, at least 3 × the median σ̂ (and a rounding floor)."""
    m = mask.to(band.dtype)
    g = (band * m).sum(-1) / m.sum(-1).clamp_min(1)  # (B, K) 1TCF over the band
    k = band.shape[1]
    lo = g[:, -max(1, k // 4):].median(dim=1).values
    n_lag1 = int(mask[0].sum())
    hi = band[:, 0, :n_lag1].median(dim=1).values
    sig = noise.masked_select(mask.expand_as(noise)).view(band.shape[0], -1).median(dim=1).values
    s = torch.maximum((hi - lo).abs(), 3 * sig)
    s = torch.maximum(s, 1e-12 * torch.clamp(hi.abs(), min=1.0))
    return lo, s


def band_features(band: torch.Tensor, mask: torch.Tensor, config: LagNetConfig, lo=None, s=None):
    """Network inputs (B, F, K, W), the normalised band x and noise S = σ̂/s (B, K, W), and (lo, s)."""
    b, k, w = band.shape
    noise = band_noise(band, mask, config.noise_window)
    if lo is None:
        lo, s = band_scale(band, mask, noise)
    x = (band - lo[:, None, None]) / s[:, None, None]
    big = 20.0
    xc = x.clamp(-big, big)
    feats = [xc]
    for width in config.smooth_widths:
        feats.append((_smooth_age(x, width) - x).clamp(-big, big))
    S = noise / s[:, None, None]
    feats.append(torch.log(S + 1e-3) / 3.0)
    feats.append(mask.to(x.dtype).expand(b, k, w))
    lag = torch.arange(1, k + 1, dtype=x.dtype).clamp(max=config.lag_scale)
    feats.append((torch.log(lag) / math.log(config.lag_scale))[None, :, None].expand(b, k, w))
    if config.level_feature:
        level = ((1.0 - lo) / s).clamp(-3.0, 3.0) * ((lo - 1.0).abs() < 0.5).to(x.dtype)
        feats.append(level[:, None, None].expand(b, k, w))
    return torch.stack(feats, 1), x, S, lo, s


class LagNet(nn.Module):
    """The fully convolutional network: a 3×3 stem, dilated 3×3 residual layers, a 1×1 head of two maps
    (the correction before its bound, and the log spread) and, with ``config.mix``, the logits of the mixing weights
    of the cell and its smooths along age."""

    #: Initial logit of "keep the cell" in the mixing head (the smooths start at 0): a new head starts close to
    #: the model without one (weights 1/(e³ + m) per smooth).
    KEEP_LOGIT = 3.0

    def __init__(self, config: LagNetConfig | None = None):
        super().__init__()
        self.config = config or LagNetConfig()
        c = self.config.channels
        self.stem = nn.Conv2d(self.config.n_features, c, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in self.config.dilations)
        self.head = nn.Conv2d(c, self.config.n_outputs, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        pc = self.config.profile_channels
        self.profile = ProfileNet(pc, self.config.profile_dilations) if pc else None
        cc = self.config.context_channels
        self.context = (ProfileNet(cc, self.config.context_dilations,
                                   n_in=CONTEXT_FEATURES + int(self.config.level_feature),
                                   n_out=c * len(self.config.dilations)) if cc else None)
        if self.config.mix:
            with torch.no_grad():
                self.head.bias[2] = self.KEEP_LOGIT

    def forward(self, feats: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Head maps (B, outputs, K, W) of the features; ``ctx`` (B, C × layers, K): the context branch's output
        (:meth:`context_of`), added inside each residual layer at every age."""
        h = F.relu(self.stem(feats))
        c = self.config.channels
        for i, conv in enumerate(self.body):
            z = conv(h)
            if ctx is not None:
                z = z + ctx[:, i * c:(i + 1) * c, :, None]
            h = h + F.relu(z)
        return self.head(h)

    def context_of(self, feats: torch.Tensor, x: torch.Tensor, S: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor | None:
        """The context branch's output (B, C × layers, K) from the whole band's features ``feats``, normalised
        band ``x`` and its σ̂/s ``S`` (B, K, W) with ``mask`` (K, W); None without the branch. At inference it is
        computed once over the whole band and shared by every tile along age. With ``level_feature`` the branch is
        also told where 1 lies."""
        if self.context is None:
            return None
        cf = context_features(x, S, mask)
        if self.config.level_feature:
            cf = torch.cat([cf, feats[:, -1:, :, 0].to(cf.dtype)], 1)
        return self.context(cf.float())

    def correct(self, feats, x, S, ctx=None):
        """Denoised normalised band and its spread: x + S·bound·tanh(r/bound) (+ Σ w_k (smooth_k − x) with
        ``mix``), S·exp(h), in the dtype of x (float64 at inference, so that a cell with S = 0 keeps its value to
        the last bit, and a stationary one up to rounding: its smooths along age equal it). ``ctx``: the context
        branch's output over the whole band; computed here from ``x`` when the branch exists and none is given."""
        if ctx is None and self.context is not None:
            mask = feats[0, len(self.config.smooth_widths) + 2] > 0.5  # the inside-the-matrix input
            ctx = self.context_of(feats, x, S, mask)
        out = self.forward(feats.float().contiguous(memory_format=torch.channels_last), ctx).to(x.dtype)
        bound = self.config.bound
        y = x + S * (bound * torch.tanh(out[:, 0] / bound))
        if self.config.mix:
            m = len(self.config.smooth_widths)
            w = torch.softmax(out[:, 2:3 + m], dim=1)[:, 1:]
            y = y + (w * feats[:, 1:1 + m].to(x.dtype)).sum(1)  # features 1…m are smooth_k − x
        spread = S * torch.exp(out[:, 1].clamp(-6.0, 4.0))
        return y, spread


class ProfileNet(nn.Module):
    """The profile stage's network (and the context branch's): 1-D convolutions along lag (any number of lags),
    each layer also fed the mean of its input over all lags (the whole decay in view), and a 1×1 head of ``n_out``
    maps, zero at the start (no correction)."""

    N_FEATURES = 6

    def __init__(self, channels: int, dilations: tuple, n_in: int = N_FEATURES, n_out: int = 1):
        super().__init__()
        self.stem = nn.Conv1d(n_in, channels, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.glob = nn.ModuleList(nn.Linear(channels, channels) for _ in dilations)
        self.head = nn.Conv1d(channels, n_out, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, n_out, K), or (B, K) for one output."""
        h = F.relu(self.stem(feats))
        for conv, lin in zip(self.body, self.glob, strict=True):
            h = h + F.relu(conv(h) + lin(h.mean(-1))[..., None])
        out = self.head(h)
        return out[:, 0] if out.shape[1] == 1 else out


#: Inputs of the context branch per lag: the band's 1TCF, log of its mean σ̂/s, log of its noise level, the lag,
#: the number of ages that average it, and the band's length in lags.
CONTEXT_FEATURES = 6


def context_features(x: torch.Tensor, S: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inputs (B, 6, K) of the context branch from the normalised band ``x``, its σ̂/s ``S`` (B, K, W) and the
    ``mask`` (K, W) of cells inside the matrix. A noise-free stationary band has S = 0, so whatever the branch
    makes of it, the correction it feeds (bounded by S) is 0."""
    count = mask.to(x.dtype).sum(-1)  # ages per lag
    g, sbar = band_mean(x, mask), band_mean(S, mask)
    k = x.shape[1]
    lag = torch.arange(1, k + 1, dtype=x.dtype).clamp(max=64)
    sig = one_time_noise(sbar, x.shape[-1], torch.arange(1, k + 1, dtype=x.dtype))  # the band is the whole series
    feats = [g.clamp(-20, 20), torch.log(sbar + 1e-3) / 3.0, torch.log(sig + 1e-4) / 3.0,
             (torch.log(lag) / math.log(64))[None].expand_as(g), (torch.log(count) / math.log(256))[None].expand_as(g),
             torch.full_like(g, math.log(k) / math.log(256))]
    return torch.stack(feats, 1)


def one_time_noise(sbar, n_frames: int, lag):
    """The noise level of a 1TCF at each lag (numpy or torch): the lag's mean σ̂ ``sbar`` over the square root of
    its cells, N − k. What the profile stage and the far-lag prior bound their corrections by."""
    return sbar / (n_frames - lag) ** 0.5


def profile_correction(net: ProfileNet, bound: float, g_out, g_raw, sbar, lo, s, n_frames: int) -> torch.Tensor:
    """The profile stage's correction (B, K) of the output's 1TCF ``g_out`` (B, K), input units: at most ``bound``
    times the 1TCF's noise level σ̂/√(N − k) at lag k. ``g_raw`` the input's 1TCF, ``sbar`` (B, K) the mean σ̂ of
    each lag in the network's units (σ̂/s), (``lo``, ``s``) (B,) that affine map. Exactly 0 where σ̂ is 0."""
    k = g_out.shape[-1]
    lo, s = lo[:, None], s[:, None]
    xo = (g_out - lo) / s
    xr = (g_raw - lo) / s
    lag = torch.arange(1, k + 1, dtype=g_out.dtype)
    sig = one_time_noise(sbar, float(n_frames), lag)
    feats = torch.stack([xo.clamp(-20, 20), (xr - xo).clamp(-20, 20), torch.log(sbar + 1e-3) / 3.0,
                         (torch.log(lag.clamp(max=64)) / math.log(64))[None].expand_as(xo),
                         torch.full_like(xo, math.log(k) / math.log(256)), torch.log(sig + 1e-4) / 3.0], 1)
    r = net(feats.float()).to(g_out.dtype)
    return sig * bound * torch.tanh(r / bound) * s


def expand_lagnet(model: LagNet, config: LagNetConfig) -> LagNet:
    """A larger model that computes what ``model`` does: ``config`` may add smooth widths (new input channels,
    zero weights), residual layers (zero weights, so each is the identity), the mixing head (``mix``; it starts
    near "keep", :attr:`LagNet.KEEP_LOGIT`), the level input (``level_feature``, zero weights) and the context
    branch (``context_channels``, its last layer zero; a model that has one keeps its layers and inputs), nothing
    else. Training then starts from the smaller model's function instead of from scratch."""
    old = model.config
    grown = ("smooth_widths", "dilations", "mix", "level_feature", "context_channels", "context_dilations")
    same = {k: v for k, v in asdict(old).items() if k not in grown}
    new = {k: v for k, v in asdict(config).items() if k not in grown}
    if (same != new or not set(old.smooth_widths) <= set(config.smooth_widths) or (old.mix and not config.mix)
            or (old.level_feature and not config.level_feature)
            or (old.context_channels and (old.context_channels, old.context_dilations)
                != (config.context_channels, config.context_dilations))
            or (old.context_channels and (old.dilations, old.level_feature)
                != (config.dilations, config.level_feature))):
        raise XPCSInputError(f"cannot expand {old} into {config}: only smooth widths, layers, the mixing head, "
                             "the level input and the context branch may be added")
    layers, i = [], 0
    for d in config.dilations:  # old layers matched in order; the others are new
        if i < len(old.dilations) and d == old.dilations[i]:
            layers.append(i)
            i += 1
        else:
            layers.append(None)
    if i != len(old.dilations):
        raise XPCSInputError(f"cannot expand {old} into {config}: its layers are not kept in order")
    big = LagNet(config)
    names_old = ["x", *old.smooth_widths, "logS", "mask", "lag"] + ["level"] * old.level_feature
    names_new = ["x", *config.smooth_widths, "logS", "mask", "lag"] + ["level"] * config.level_feature
    with torch.no_grad():
        big.stem.weight.zero_()
        for j, name in enumerate(names_new):
            if name in names_old:
                big.stem.weight[:, j] = model.stem.weight[:, names_old.index(name)]
        big.stem.bias.copy_(model.stem.bias)
        for conv, src in zip(big.body, layers, strict=True):
            if src is None:
                conv.weight.zero_()
                conv.bias.zero_()
            else:
                conv.load_state_dict(model.body[src].state_dict())
        big.head.weight[:2] = model.head.weight[:2]  # correction and spread
        big.head.bias[:2] = model.head.bias[:2]
        if model.profile is not None:
            big.profile.load_state_dict(model.profile.state_dict())
        if model.context is not None:
            big.context.load_state_dict(model.context.state_dict())
        if old.mix:  # "keep" and the old smooths' logits carried over; a new smooth's starts at −30 (weight ~0)
            rows = [2] + [3 + config.smooth_widths.index(w) for w in old.smooth_widths]
            big.head.weight[3:] = 0.0
            big.head.bias[3:] = -30.0
            big.head.weight[rows] = model.head.weight[2:]
            big.head.bias[rows] = model.head.bias[2:]
    return big


class LagDenoiser:
    """The lag-band model ready to denoise 2TCFs of any size (N ≥ 3), arrays in and out.

    Examples
    --------
    >>> import numpy as np
    >>> from xpcs_denoise.nn.lagnet import LagDenoiser
    >>> den = LagDenoiser.pretrained()
    >>> tau = np.abs(np.subtract.outer(np.arange(40), np.arange(40)))
    >>> clean = 1.02 + 0.2 * np.exp(-2 * 0.05 * tau)
    >>> bool(np.allclose(den.denoise(clean), clean, rtol=0, atol=1e-9))   # noise-free in, unchanged out
    True
    """

    name = "lagnet"

    #: Working memory of one tile's convolutions (bytes): the tile along age is as long as this allows.
    TILE_BYTES = 256 * 2**20

    def __init__(self, model: LagNet, card: dict | None = None, *, tile: int | None = None):
        self.model = model.eval()
        self.config = model.config
        self.card = card or {}
        self.tile = None if tile is None else int(tile)
        self.directory = None
        # The adaptive age stage (core.adaptive), when the card names one: applied to the network's output, with
        # its widths and steps chosen from the input.
        stage = self.card.get("age_stage")
        self.age_stage = None if stage is None else AgeStage.from_dict(stage)

    @classmethod
    def pretrained(cls, **kwargs) -> LagDenoiser:
        return cls.from_directory(pretrained_directory() / "lagnet", **kwargs)

    @classmethod
    def from_directory(cls, directory, **kwargs) -> LagDenoiser:
        model, card = load_lagnet(directory)
        den = cls(model, card, **kwargs)
        den.directory = Path(directory)
        return den

    @torch.no_grad()
    def denoise_band(self, band: np.ndarray, n_frames: int, aux: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Denoised band and spread of one (K, N) band (raw units), float64. ``aux``, a dict, receives what the
        profile stage needs: ``sbar`` (K,) the mean σ̂ per lag in the network's units, ``lo`` and ``s``."""
        k = band.shape[0]
        mask = torch.as_tensor(band_mask(n_frames, k))
        bt = torch.as_tensor(np.ascontiguousarray(band, dtype=np.float64))[None]
        feats, x, S, lo, s = band_features(bt, mask, self.config)
        ctx = self.model.context_of(feats, x, S, mask)  # over the whole band, shared by every tile
        halo = self.config.halo
        # CPU dilated convolutions unfold their input 9×: a tile's length along age keeps that within TILE_BYTES
        auto = self.TILE_BYTES // (k * self.config.channels * 9 * 4)
        tile = max(self.tile or max(512, auto), 1)
        y = torch.empty_like(x)
        spread = torch.empty_like(x)
        for a in range(0, n_frames, tile):
            e = min(n_frames, a + tile)
            a0, e0 = max(0, a - halo), min(n_frames, e + halo)
            yt, st = self.model.correct(feats[..., a0:e0], x[..., a0:e0], S[..., a0:e0], ctx)
            y[..., a:e] = yt[..., a - a0:a - a0 + (e - a)]
            spread[..., a:e] = st[..., a - a0:a - a0 + (e - a)]
        if aux is not None:
            aux.update(sbar=band_mean(S[0], mask), lo=lo, s=s)
        s = float(s[0])
        # Back to the input's units as a correction: a noise-free cell (S = 0) is returned bit for bit.
        corr = (y[0] - x[0]).numpy() * s
        return band.astype(np.float64) + corr, spread[0].numpy() * s

    @torch.no_grad()
    def profile_step(self, band: np.ndarray, den: np.ndarray, n_frames: int, aux: dict) -> np.ndarray:
        """The profile stage's correction (K,) of the denoised band ``den``'s 1TCF, added at every age."""
        m = band_mask(n_frames, band.shape[0])
        g_raw, g_out = (torch.as_tensor(band_mean(v, m))[None] for v in (band, den))
        corr = profile_correction(self.model.profile, self.config.profile_bound, g_out, g_raw, aux["sbar"][None],
                                  aux["lo"], aux["s"], n_frames)
        return corr[0].numpy()

    def prior_1tcf(self, x: np.ndarray, k: int) -> np.ndarray | None:
        """The far-lag prior's 1TCF (B, K): the 2021 ensemble's output's at lags 1…K (NaN from its window on), of
        (B, N, N) 2TCFs ``x``; None where the prior does not apply (off, N outside its range, no lag in it)."""
        n = x.shape[-1]
        top = min(k, WINDOW - 1)
        if self.config.prior_weight <= 0 or n < WINDOW or math.ceil(self.config.prior_from * n) > top:
            return None
        out = np.full((x.shape[0], k), np.nan)
        ens = _paper_ensemble()
        x64 = np.asarray(x, dtype=np.float64)
        # A 2TCF the ensemble cannot scale (no contrast, a baseline ≤ 0: ours is affine-invariant, it is not) takes no
        # prior; its scaling's notes concern its own output, used here only within the noise bound.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # its scaling (Eq. 5/7) for all 2TCFs in one batched fit
                beta, base = scale_parameters(x64, ens.size, partial=True)
            except XPCSInputError:
                return out
            for i in np.flatnonzero(np.isfinite(beta)):
                try:  # one at a time: its lag-0 draws then do not depend on the other 2TCFs of the batch
                    p = ens.denoise(x64[i], beta=beta[i], baseline=base[i])
                except XPCSInputError:
                    continue
                out[i, :top] = one_time_from_two_time(p, max_lag=top)
        return out

    def prior_step(self, den: np.ndarray, n_frames: int, aux: dict, g_prior: np.ndarray) -> np.ndarray:
        """The far-lag prior's correction (K,) of the denoised band ``den``'s 1TCF, added at every age."""
        g_out = band_mean(den, band_mask(n_frames, den.shape[0]))
        lag = np.arange(1, g_out.size + 1)
        bound = self.config.prior_bound * one_time_noise(np.asarray(aux["sbar"]), n_frames, lag) * float(aux["s"][0])
        use = (lag >= self.config.prior_from * n_frames) & np.isfinite(g_prior)
        step = self.config.prior_weight * (np.where(use, g_prior, g_out) - g_out)
        return np.clip(step, -bound, bound)

    def denoise(self, c2, *, max_lag: int | None = None, return_std: bool = False):
        """Denoise 2TCFs of any size.

        Parameters
        ----------
        c2 : array_like, shape (N, N) or (B, N, N), N ≥ 3
            2TCFs in any units (any contrast and baseline), finite. float32 stays float32.
        max_lag : int, optional
            Denoise lags 1…max_lag (default: the card's, 256 frames, at most N − 1). Lag 0 and longer lags keep
            their values.
        return_std : bool
            Also return the model's spread: the expected size of the remaining error per cell (0 off the band).

        Returns
        -------
        ndarray of the input's shape (and the spread).
        """
        x, single = check_two_time_any(c2)
        n = x.shape[-1]
        k = band_lags(n, self.config.max_lag if max_lag is None else max_lag)
        if not np.all(np.isfinite(to_band(x, k))):
            raise XPCSInputError("2TCF contains NaN or Inf within the band; fill or crop masked frames first")
        out = np.array(x, copy=True)
        std = np.zeros(x.shape, np.float32 if x.dtype == np.float32 else np.float64) if return_std else None
        prior = self.prior_1tcf(x, k)
        for i in range(x.shape[0]):
            # Eq. 1 is symmetric: the band is read from both triangles and their mean is denoised.
            band = 0.5 * (to_band(x[i], k).astype(np.float64) + to_band(np.swapaxes(x[i], 0, 1), k))
            aux = {}
            den, spread = self.denoise_band(band, n, aux)
            if self.age_stage is not None:
                den, _, _ = adaptive_age_band(band, band_mask(n, k), self.age_stage, apply_to=den)
            if self.model.profile is not None:
                den = den + self.profile_step(band, den, n, aux)[:, None]
            if prior is not None:
                den = den + self.prior_step(den, n, aux, prior[i])[:, None]
            from_band(out[i], den.astype(out.dtype, copy=False), out=out[i])
            if return_std:
                from_band(std[i], spread.astype(std.dtype, copy=False), out=std[i])
        if single:
            out = out[0]
            std = std[0] if return_std else None
        return (out, std) if return_std else out


def save_lagnet(model: LagNet, directory, card: dict) -> Path:
    """Write ``lagnet.safetensors`` and ``lagnet_card.json`` (config, SHA-256 of the weights) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wpath = directory / WEIGHTS
    with atomic_path(wpath, overwrite=True) as tmp:
        save_file({k: v.detach().contiguous().float() for k, v in model.state_dict().items()}, str(tmp))
    card = dict(card)
    card["architecture"] = {"family": "lagnet", **asdict(model.config)}
    card["weights_file"] = WEIGHTS
    card["weights_sha256"] = file_sha256(wpath)
    with atomic_path(directory / CARD, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=1, default=_json_default))
    return directory


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v))


def load_lagnet(directory) -> tuple[LagNet, dict]:
    """A lag-band model and its card from ``directory``, weights checked against the card's SHA-256, no pickle."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cpath = directory / CARD
    if not cpath.is_file():
        raise XPCSInputError(f"{directory} holds no lag-band model ({CARD} missing)")
    try:
        card = json.loads(cpath.read_text())
        arch = dict(card["architecture"])
    except (ValueError, KeyError, TypeError) as exc:
        raise XPCSInputError(f"{cpath} is not a valid model card: {exc}") from exc
    if arch.pop("family", None) != "lagnet":
        raise XPCSInputError(f"{cpath} does not describe a lag-band model")
    try:
        config = LagNetConfig(**arch)
    except TypeError as exc:
        raise XPCSInputError(f"{cpath}: unknown architecture fields ({exc})") from exc
    name = card.get("weights_file", WEIGHTS)
    wpath = directory / str(name)
    if not isinstance(name, str) or directory.resolve() not in wpath.resolve().parents:
        raise XPCSInputError(f"{cpath}: weights_file {name!r} points outside the model folder; refused (copy the "
                             "weights into the folder)")
    if not wpath.is_file():
        raise XPCSInputError(f"{wpath} is missing")
    if card.get("weights_sha256") and file_sha256(wpath) != card["weights_sha256"]:
        raise XPCSInputError(f"{wpath} does not match the SHA-256 in its card (damaged or replaced)")
    c = int(config.channels)  # float32 weights of the 3×3 layers, before allocating them
    check_memory(3 * 4 * 9 * c * (c * len(config.dilations) + config.n_features + 2),
                 f"the lag-band model in {directory} ({c} channels)")
    model = LagNet(config)
    try:
        state = load_file(str(wpath))
        model.load_state_dict(state)
    except Exception as exc:  # safetensors raises its own types on a damaged file
        raise XPCSInputError(f"{wpath} cannot be loaded as lag-band weights (another architecture than its card "
                             f"says, or damaged): {' '.join(str(exc).split())[:200]}") from exc
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise XPCSInputError(f"{wpath} holds non-finite weights")
    return model, card
