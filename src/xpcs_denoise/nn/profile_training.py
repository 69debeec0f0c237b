"""Training of the lag-band model's profile stage (:class:`~nn.lagnet.ProfileNet`), on a trained base model.

The base model's output is computed once per 2TCF (:func:`profile_inputs`): its 1TCF, the input's, the mean σ̂
of each lag and the affine map (lo, s). The stage is then trained alone, which is fast (one 1-D pass per 2TCF):
the cost per 2TCF is the squared error of the corrected 1TCF relative to the input's (every lag weighs alike, as in
plain fits) plus ``weight_fit`` times |log Γ̂ − log Γ| of a plain Eq. 3 fit of it (users' start, then
differentiable steps), on 2TCFs whose base output's fit is within ``fit_informative`` of the truth in log Γ.
The squared error alone draws fast decays' fits toward slow ones (docs/model.md); the fit cost stops that.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.adaptive import adaptive_age_band
from ..core.band import band_mask, band_mean
from ..core.errors import XPCSInputError
from .lag_training import N_OCTAVES, _user_start, fit_log_gamma, fit_targets_1tcf, gamma_octave
from .lagnet import LagDenoiser, ProfileNet, band_features, one_time_noise, profile_correction

__all__ = ["ProfileTrainConfig", "profile_inputs", "profile_theta", "profile_loss", "train_profile"]


@dataclass(frozen=True)
class ProfileTrainConfig:
    """Hyper-parameters of a profile-stage run (stored in the card)."""

    steps: int = 2000
    lr: float = 2e-3
    batch_real: int = 96
    batch_sim: int = 96
    batch_long: int = 32
    weight_fit: float = 1.0
    fit_informative: float = 2.0
    #: Weight of a term against bias per Γ octave (each 2TCF's signed error of log Γ̂ pushed against its batch's
    #: mean error in its octave), on the sources of the kinds in ``bias_kinds`` only.
    weight_fit_bias: float = 0.0
    bias_kinds: tuple = ("sim",)
    #: Weight of the squared batch mean of the correction at each lag, in units of the 1TCF's noise level. The raw
    #: 1TCF is unbiased at every lag, so over many 2TCFs a denoiser's correction should average to nothing there;
    #: without this the fit cost learned to lower lag 1 by 2.5 % of the contrast everywhere, which steers plain fits
    #: away from gross minima on real crops and biases fast simulated decays by −20 % (docs/model.md).
    weight_mean: float = 0.0
    #: Weight of the squared batch mean, per Γ octave of the target and per lag, of the output's 1TCF less the
    #: input's, in units of the 1TCF's noise level. The input's 1TCF is unbiased whatever Γ, so a denoiser's
    #: output should be too: unlike ``weight_mean`` this lets the stage remove the base model's own biases (its
    #: tail on slow decays) but neither shift every 2TCF (fit steering) nor draw each Γ toward the typical one.
    weight_unbiased: float = 0.0
    #: Weight of the fit cost of a fit with α held at the target's (``fit --fix-alpha``), beside the free fit's:
    #: a stage trained on free fits only read slow decays slow when α is held (docs/model.md, run T).
    weight_fit_held: float = 0.0
    seed: int = 0
    max_minutes: float = 40.0

    def __post_init__(self):
        for name in ("steps", "batch_real", "batch_sim", "batch_long"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise XPCSInputError(f"{name} must be a whole number >= 1; got {v!r}")
        for name in ("lr", "max_minutes", "fit_informative"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise XPCSInputError(f"{name} must be a finite number > 0; got {v!r}")
        for name in ("weight_fit", "weight_fit_bias", "weight_mean", "weight_unbiased", "weight_fit_held"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise XPCSInputError(f"{name} must be a finite number >= 0; got {v!r}")
        object.__setattr__(self, "bias_kinds", tuple(self.bias_kinds))
        if not set(self.bias_kinds) <= {"real", "sim", "long"}:
            raise XPCSInputError(f"bias_kinds must name 'real', 'sim' or 'long'; got {self.bias_kinds!r}")


@torch.no_grad()
def profile_inputs(den: LagDenoiser, x: np.ndarray, n_frames: int, chunk: int = 256) -> dict:
    """The profile stage's inputs for bands ``x`` (B, K, N) through the base model ``den`` (network and age stage,
    as :meth:`LagDenoiser.denoise` applies them): ``g_raw``, ``g_out`` (B, K) 1TCFs, ``sbar`` (B, K), ``lo``,
    ``s`` (B,)."""
    k = x.shape[1]
    mask = band_mask(n_frames, k)
    mt = torch.as_tensor(mask)
    out = {key: [] for key in ("g_raw", "g_out", "sbar", "lo", "s")}
    for a in range(0, len(x), chunk):
        b = torch.as_tensor(np.ascontiguousarray(x[a:a + chunk], dtype=np.float64))
        feats, xn, S, lo, s = band_features(b, mt, den.config)
        y, _ = den.model.correct(feats, xn, S)
        yb = (y * s[:, None, None] + lo[:, None, None]).numpy()
        bb = b.numpy()
        if den.age_stage is not None:
            for i in range(len(bb)):
                yb[i], _, _ = adaptive_age_band(bb[i], mask, den.age_stage, apply_to=yb[i])
        out["g_raw"].append(band_mean(bb, mask))
        out["g_out"].append(band_mean(yb, mask))
        out["sbar"].append(band_mean(S.numpy(), mask))
        out["lo"].append(lo.numpy())
        out["s"].append(s.numpy())
    return {key: np.concatenate(v) for key, v in out.items()}


def profile_theta(g: np.ndarray) -> np.ndarray:
    """Plain Eq. 3 fits (B, 4: log Γ, β, C∞, log α) of target 1TCFs ``g`` (B, K); NaN rows where the fit is not a
    usable reference (:func:`~nn.lag_training.fit_targets_1tcf`, warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_targets_1tcf(g)


def profile_loss(net: ProfileNet, bound: float, batch: dict, n_frames: int, weight_fit: float = 1.0,
                 fit_informative: float = 2.0, weight_fit_bias: float = 0.0,
                 weight_mean: float = 0.0, weight_unbiased: float = 0.0,
                 weight_fit_held: float = 0.0) -> tuple[torch.Tensor, dict]:
    """The cost of one batch (tensors ``g_raw``, ``g_out``, ``sbar``, ``lo``, ``s``, ``g_y`` the target 1TCF and
    ``theta`` its fit, :func:`profile_theta`) and its parts: ``g`` the mean ratio of the corrected 1TCF's squared
    error to the input's, ``fit`` the mean fit cost where it applies."""
    lo, s = batch["lo"], batch["s"]
    corr = profile_correction(net, bound, batch["g_out"], batch["g_raw"], batch["sbar"], lo, s, n_frames)
    g = batch["g_out"] + corr
    yn = (g - lo[:, None]) / s[:, None]
    tn = (batch["g_y"] - lo[:, None]) / s[:, None]
    rn = (batch["g_raw"] - lo[:, None]) / s[:, None]
    l_g = ((yn - tn) ** 2).sum(-1) / (((rn - tn) ** 2).sum(-1) + 1e-6 * yn.shape[-1])
    loss = l_g.mean()
    parts = {"g": float(l_g.mean().detach())}
    lag = torch.arange(1, corr.shape[-1] + 1, dtype=corr.dtype)
    sig = (one_time_noise(batch["sbar"], float(n_frames), lag) * s[:, None]).clamp_min(1e-12)
    if weight_mean > 0:
        l_mean = ((corr / sig).mean(0) ** 2).mean()
        loss = loss + weight_mean * l_mean
        parts["mean"] = float(l_mean.detach())
    th = batch["theta"]
    ok = torch.isfinite(th).all(-1)
    if weight_unbiased > 0 and bool(ok.any()):
        octave = gamma_octave(th[ok])
        dev = ((g - batch["g_raw"]) / sig)[ok]
        sums = torch.zeros(N_OCTAVES, dev.shape[-1], dtype=dev.dtype).index_add(0, octave, dev)
        cnt = torch.zeros(N_OCTAVES, dtype=dev.dtype).index_add_(0, octave, torch.ones_like(octave, dtype=dev.dtype))
        used = cnt > 0
        l_unb = ((sums[used] / cnt[used, None]) ** 2 * cnt[used, None]).sum() / (cnt.sum() * dev.shape[-1])
        loss = loss + weight_unbiased * l_unb
        parts["unbiased"] = float(l_unb.detach())
    if weight_fit > 0 and bool(ok.any()):
        thn = torch.stack([th[ok, 0], th[ok, 1] / s[ok], (th[ok, 2] - lo[ok]) / s[ok], th[ok, 3]], -1)
        with torch.no_grad():
            base = (batch["g_out"][ok] - lo[ok, None]) / s[ok, None]
            use = ((fit_log_gamma(base, thn) - thn[:, 0]).abs() < fit_informative).to(yn.dtype)
        yo = yn[ok]
        p = fit_log_gamma(yo, _user_start(yo.detach(), thn), steps=4, full=True)
        l_fit = F.smooth_l1_loss(p[:, 0], thn[:, 0], beta=0.05, reduction="none") * use
        loss = loss + weight_fit * l_fit.sum() / len(th)
        if weight_fit_bias > 0:
            d = p[:, 0] - thn[:, 0]
            octave = gamma_octave(thn)
            dd = (d * use).detach()
            mean = (torch.zeros(N_OCTAVES, dtype=dd.dtype).index_add_(0, octave, dd)
                    / torch.zeros(N_OCTAVES, dtype=dd.dtype).index_add_(0, octave, use).clamp_min(1))
            loss = loss + weight_fit_bias * (mean[octave] * d * use).sum() / len(th)
        parts["fit"] = float(l_fit.sum().detach() / use.sum().clamp_min(1))
        if weight_fit_held > 0:
            ph = fit_log_gamma(yo, thn, steps=8, hold_alpha=True)
            l_held = F.smooth_l1_loss(ph, thn[:, 0], beta=0.05, reduction="none") * use
            loss = loss + weight_fit_held * l_held.sum() / len(th)
            parts["fit_held"] = float(l_held.sum().detach() / use.sum().clamp_min(1))
    return loss, parts


def train_profile(net: ProfileNet, bound: float, sources: list[dict], config: ProfileTrainConfig,
                  log=print, checkpoint=None) -> list[dict]:
    """Train ``net`` in place on ``sources``: dicts of numpy arrays (as :func:`profile_inputs`, plus ``g_y`` and
    ``theta``), an ``n_frames`` and a ``kind`` ("real", "sim" or "long"). Each step draws a batch of every real and
    50-frame simulated source and of one longer one in turn. ``checkpoint(step)`` is called every 100 steps.
    Returns the mean parts per 100 steps."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    keys = ("g_raw", "g_out", "sbar", "lo", "s", "g_y", "theta")
    tens = [{**{k: torch.as_tensor(np.asarray(src[k], np.float64)) for k in keys}, "n_frames": int(src["n_frames"]),
             "kind": src["kind"]} for src in sources]
    longs = [t for t in tens if t["kind"] == "long"]
    sizes = {"real": config.batch_real, "sim": config.batch_sim, "long": config.batch_long}
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.steps,
                                                pct_start=max(0.05, 2 / config.steps))
    t0, hist, logs = time.time(), [], []
    for step in range(config.steps):
        batch_sources = [t for t in tens if t["kind"] != "long"] + ([longs[step % len(longs)]] if longs else [])
        loss, parts = 0.0, {}
        for t in batch_sources:
            idx = torch.as_tensor(rng.integers(0, len(t["lo"]), sizes[t["kind"]]))
            l, p = profile_loss(net, bound, {k: t[k][idx] for k in keys}, t["n_frames"], config.weight_fit,
                                config.fit_informative,
                                config.weight_fit_bias if t["kind"] in config.bias_kinds else 0.0,
                                config.weight_mean, config.weight_unbiased, config.weight_fit_held)
            loss = loss + l
            for k, v in p.items():
                parts.setdefault(f"{t['kind']}_{k}", []).append(v)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append({k: float(np.mean(v)) for k, v in parts.items()})
        if (step + 1) % 100 == 0 or step == config.steps - 1:
            row = {"step": step + 1, "seconds": round(time.time() - t0, 1),
                   **{k: round(float(np.mean([h[k] for h in hist[-100:] if k in h])), 4) for k in hist[-1]}}
            logs.append(row)
            log(row)
            if checkpoint is not None:
                checkpoint(step + 1)
        if time.time() - t0 > 60 * config.max_minutes:
            log(f"stopped at step {step + 1}: {config.max_minutes} minutes")
            break
    return logs

