"""Training of the lag-band model (:mod:`xpcs_denoise.nn.lagnet`): one validated configuration behind the run and
the card, checkpoints every few minutes and resume, a wall-clock budget.

Cost per 2TCF, in the network's normalised units, with the input's own (lo, s): the squared error of the band
relative to the input's own squared error (so that a nearly clean 2TCF weighs as much as a noisy one, and
the correction has to shrink with the noise), plus the same for the 1TCF over the band (what users fit), plus
a small Gaussian likelihood term for the spread head; optionally (``weight_pooled``) the 1TCF's cost pooled over
the batch, where the noisiest 2TCFs weigh most; optionally (``weight_cut``) the same for the cuts: at each
age, the error along lags projected on how an Eq. 3 decay changes with Γ (what a time-resolved cut's fit sees);
optionally (``weight_fit``) the error of Γ itself from a plain Eq. 3 fit of the output's 1TCF (stationary sources):
a few damped Gauss–Newton steps from the target's own fit, differentiable, so the cost is what users' fits see.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.band import band_mask, band_mean
from ..core.errors import XPCSInputError
from ..core.fitting import fit_g2
from .lagnet import LagNet, LagNetConfig, band_features, expand_lagnet, load_lagnet, save_lagnet

__all__ = ["LagTrainConfig", "lag_loss", "train_lagnet", "fit_targets", "fit_targets_1tcf", "fit_log_gamma", "SOURCES"]

#: Training sources: real CHX crops, simulated stationary and ageing series, long (320-frame) ones of both, and
#: 400-frame ageing series at the photon levels of issue 29's ageing bar (``age400``), and stationary 50-frame
#: crops (``stat50``, the length of the real crops and of issue 29's bars).
SOURCES = ("real", "stat", "age", "long", "longage", "age400", "stat50")
#: Sources whose targets are stationary: one Eq. 3 fit describes them (the fit cost uses only these).
STATIONARY = ("real", "stat", "long", "stat50")
#: Γ octaves from 10⁻³ frames⁻¹ over which the fit cost's bias term keeps its running means.
N_OCTAVES = 10


@dataclass(frozen=True)
class LagTrainConfig:
    """Hyper-parameters of a lag-band training run (stored in the card)."""

    steps: int = 20000
    lr: float = 2e-3
    #: The context branch's learning rate, as a multiple of ``lr``: a branch added to a trained model starts at
    #: zero and has further to go than the rest.
    lr_context: float = 1.0
    batch_real: int = 16
    batch_sim: int = 12
    batch_ageing: int = 8
    #: Series of 320 frames (stationary and slowly ageing): the context of wide smoothing along age.
    batch_long: int = 4
    #: Of every 5 steps: this many on real crops, the rest on simulated stationary, then ageing series.
    schedule: tuple = ("real", "real", "stat", "stat", "age")
    #: Weight of the band's squared-error cost. Its optimum is the posterior mean, which averages decays over the
    #: Γ still uncertain in the input and so rounds a compressed decay (lower α, lower Γ̂); below 1 the fit
    #: costs weigh relatively more.
    weight_pixel: float = 1.0
    weight_1tcf: float = 1.0
    #: The norm of the band's and the 1TCF's costs: ``"l2"`` (squared errors; optimum the posterior mean, which
    #: averages decays over the input's uncertain Γ and rounds compressed ones) or ``"l1"`` (absolute errors;
    #: optimum the posterior median of each value, which for decays that fall monotonically with Γ at every lag is
    #: the decay of the median Γ). Alone it did not keep α at a run's end (run 28, docs/model.md).
    loss_norm: str = "l2"
    weight_spread: float = 0.05
    #: Weight of a lag of the 1TCF cost where the decay is over, against 1 + this where it starts.
    weight_tail: float = 1.0
    #: Weight of the cuts' cost: at each age, the error of the output along lags projected on how the 2TCF
    #: there changes with Γ (a linearised cut fit), relative to the input's. Errors correlated across lags at one
    #: age move a cut's Γ; the pixel cost hardly sees them.
    weight_cut: float = 0.0
    #: Weight of the 1TCF cost pooled over the batch (Σ out² / Σ in²): the mean of per-2TCF ratios weighs a very
    #: noisy 2TCF like a clean one; pooled, the noisiest ones (where plain fits go grossly wrong) count most.
    weight_pooled: float = 0.0
    #: Weight of the far lags' level: the error of the output's 1TCF averaged over lags ≥ 0.4 K, squared and pooled
    #: over the batch, relative to the input's. A 50-frame crop's far lags, which few ages average, are what plain
    #: fits read as C∞; their level's error is a small part of the 1TCF cost, whose near lags fill the same sum.
    weight_far: float = 0.0
    #: Where the far lags begin, as a share of the band's lags K.
    far_from: float = 0.4
    #: Weight of the fit cost: |log Γ̂ − log Γ| (smoothed near 0) of a plain Eq. 3 fit of the output's 1TCF, Γ
    #: from the same fit of the target, on stationary sources: the error and bias users' fits see.
    weight_fit: float = 0.0
    #: Weight of the fit cost's bias term: each 2TCF's signed error of log Γ̂ is pushed against the running mean
    #: error of its source and Γ octave (the gradient of that bias squared). Without it, the fit cost alone
    #: draws Γ̂ toward the typical Γ (regression to the prior), a bias per Γ bin users cannot undo.
    weight_fit_bias: float = 0.0
    #: The fit cost uses 2TCFs whose input's own fit is within this of the truth in log Γ: from noise that
    #: hides the decay a network can only learn the prior.
    fit_informative: float = 1.0
    #: Where the fit cost's fit of the output starts: ``"truth"`` (the target's own fit; a local minimum near it)
    #: or ``"user"`` (:func:`~core.fitting.fit_g2`'s grid start, as users' and the benchmarks' plain fits do, then
    #: a few differentiable steps). A slow decay's fit has several minima; from the truth the cost sees only the
    #: nearest one, so a network can read well there and still mislead the fits users make.
    fit_start: str = "truth"
    #: Weight of the fit cost's shape term: |log α̂ − log α| of the same fit (smoothed near 0). Real CHX decays
    #: are compressed (α ≈ 1.9 at 0.01–0.06 frames⁻¹) and the network rounds them (fitted α ≈ 1.45, Γ̂ low).
    #: Runs 21–24 (docs/model.md): the term lifts α early in a run, but not at its end; off by default.
    weight_fit_alpha: float = 0.0
    #: The shape term applies where the target's decay spans at least this many decay times over the lags
    #: (Γ·K): a slow decay's α is not determined within the window, and holding it there biases Γ̂ up.
    fit_alpha_resolved: float = 0.0
    #: The learning rate over a run: ``"onecycle"`` (a 5 % warm-up to ``lr``, then annealed toward 0) or
    #: ``"constant"`` (``lr`` throughout): runs 21–24 lost what the shape term gained as the rate annealed (run 29
    #: held it with a constant rate and ``loss_norm="l1"``). Runs of fewer than 3 steps keep ``lr``.
    lr_schedule: str = "onecycle"
    seed: int = 0
    threads: int = 1
    max_minutes: float = 60.0
    eval_every: int = 250

    def __post_init__(self):
        for name in ("steps", "batch_real", "batch_sim", "batch_ageing", "batch_long", "threads", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise XPCSInputError(f"{name} must be a whole number >= 1; got {v!r}")
        for name in ("lr", "max_minutes", "lr_context"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise XPCSInputError(f"{name} must be a finite number > 0; got {v!r}")
        for name in ("weight_pixel", "weight_1tcf", "weight_spread", "weight_tail", "weight_cut", "weight_pooled",
                     "weight_far", "weight_fit", "weight_fit_bias", "weight_fit_alpha", "fit_alpha_resolved"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise XPCSInputError(f"{name} must be a finite number >= 0; got {v!r}")
        if not (isinstance(self.fit_informative, (int, float)) and np.isfinite(self.fit_informative)
                and self.fit_informative > 0):
            raise XPCSInputError(f"fit_informative must be a finite number > 0 (log Γ); got {self.fit_informative!r}")
        if not (isinstance(self.far_from, (int, float)) and 0 < self.far_from < 1):
            raise XPCSInputError(f"far_from must be a share of the lags between 0 and 1; got {self.far_from!r}")
        if self.loss_norm not in ("l2", "l1"):
            raise XPCSInputError(f"loss_norm must be 'l2' or 'l1'; got {self.loss_norm!r}")
        if self.lr_schedule not in ("onecycle", "constant"):
            raise XPCSInputError(f"lr_schedule must be 'onecycle' or 'constant'; got {self.lr_schedule!r}")
        if self.fit_start not in ("truth", "user"):
            raise XPCSInputError(f"fit_start must be 'truth' or 'user'; got {self.fit_start!r}")
        if not set(self.schedule) <= set(SOURCES) or not self.schedule:
            raise XPCSInputError(f"schedule must name sources among {', '.join(SOURCES)}; got {self.schedule}")


def lag_loss(model: LagNet, band: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
             weight_1tcf: float = 1.0, weight_spread: float = 0.05, weight_tail: float = 1.0,
             weight_cut: float = 0.0, weight_pooled: float = 0.0, weight_fit: float = 0.0,
             theta: torch.Tensor | None = None, fit_bias: torch.Tensor | None = None,
             weight_fit_bias: float = 0.0, fit_informative: float = 1.0,
             collect: dict | None = None, fit_start: str = "truth",
             weight_fit_alpha: float = 0.0, fit_alpha_resolved: float = 0.0,
             weight_pixel: float = 1.0, loss_norm: str = "l2", weight_far: float = 0.0,
             far_from: float = 0.4) -> tuple[torch.Tensor, dict]:
    """The training cost of one batch (see the module's docstring) and its parts (floats). ``theta`` (B, 4):
    the targets' fits (:func:`fit_targets`, NaN where the fit cost does not apply), needed for ``weight_fit``;
    ``fit_bias`` (B,): the running mean error of log Γ̂ of each 2TCF's source and Γ octave (``weight_fit_bias``).
    ``collect``, a dict, receives ``d`` (B,): the signed error of log Γ̂ where the fit cost applied, else NaN.
    ``fit_start``, ``weight_fit_alpha``, ``fit_alpha_resolved``, ``weight_pixel``, ``loss_norm``: see
    :class:`LagTrainConfig`."""
    with torch.no_grad():
        feats, x, S, lo, s = band_features(band, mask, model.config)
        y = (target - lo[:, None, None]) / s[:, None, None]
    xo, spread = model.correct(feats, x, S)
    m = mask.to(x.dtype).expand_as(x)
    # The floor of the input's error per value (1e-3, squared for "l2"): a noise-free input's cost stays finite.
    err, eps = ((lambda v: v ** 2), 1e-6) if loss_norm == "l2" else (torch.abs, 1e-3)
    e_in = (err(x - y) * m).sum((1, 2))
    e_out = (err(xo - y) * m).sum((1, 2))
    l_pix = e_out / (e_in + eps * m.sum((1, 2)))
    e_g_out, e_g_in = _tcf_errors(xo, x, y, m, weight_tail, err)
    k = x.shape[1]
    l_g = e_g_out / (e_g_in + eps * k)
    r = (xo - y).detach()
    use = m * (S > 1e-6)
    sp = spread.clamp_min(1e-9)
    nll = ((torch.log(sp) + 0.5 * (r / sp) ** 2) * use).sum() / use.sum().clamp_min(1)
    loss = (weight_pixel * l_pix + weight_1tcf * l_g).mean() + weight_spread * nll
    parts = {"pix": float(l_pix.mean().detach()), "g": float(l_g.mean().detach()), "nll": float(nll.detach())}
    if weight_pooled > 0:
        l_pool = e_g_out.sum() / (e_g_in.sum() + eps * k)
        loss = loss + weight_pooled * l_pool
        parts["pooled"] = float(l_pool.detach())
    if weight_far > 0:
        l_far = _far_cost(xo, x, y, m, far_from)
        loss = loss + weight_far * l_far
        parts["far"] = float(l_far.detach())
    if weight_cut > 0:
        l_cut = _cut_cost(xo, x, y, m)
        loss = loss + weight_cut * l_cut.mean()
        parts["cut"] = float(l_cut.mean().detach())
    if weight_fit > 0 and theta is not None:
        ok = torch.isfinite(theta).all(-1)
        if bool(ok.any()):
            th = theta[ok].to(x.dtype)
            # The targets' fits in the network's units: C∞ and β map with (lo, s); Γ and α do not.
            th = torch.stack([th[:, 0], th[:, 1] / s[ok], (th[:, 2] - lo[ok]) / s[ok], th[:, 3]], -1)
            cnt = m[ok].sum(-1).clamp_min(1)
            with torch.no_grad():
                u_in = fit_log_gamma((x[ok] * m[ok]).sum(-1) / cnt, th)
                use_fit = ((u_in - th[:, 0]).abs() < fit_informative).to(x.dtype)
            g_out = (xo[ok] * m[ok]).sum(-1) / cnt
            p_out = (fit_log_gamma(g_out, _user_start(g_out.detach(), th), steps=4, full=True)
                     if fit_start == "user" else fit_log_gamma(g_out, th, full=True))
            u_out = p_out[:, 0]
            d = u_out - th[:, 0]
            l_fit = torch.nn.functional.smooth_l1_loss(u_out, th[:, 0], beta=0.05, reduction="none") * use_fit
            loss = loss + weight_fit * l_fit.sum() / len(theta)
            if weight_fit_alpha > 0:
                use_a = use_fit * (th[:, 0].exp() * k >= fit_alpha_resolved).to(x.dtype)
                l_a = torch.nn.functional.smooth_l1_loss(p_out[:, 3], th[:, 3], beta=0.05, reduction="none") * use_a
                loss = loss + weight_fit_alpha * l_a.sum() / len(theta)
                parts["fit_alpha"] = float(l_a.sum().detach() / use_a.sum().clamp_min(1))
            if weight_fit_bias > 0 and fit_bias is not None:
                loss = loss + weight_fit_bias * (fit_bias[ok].to(x.dtype) * d * use_fit).sum() / len(theta)
            if collect is not None:
                full = torch.full((len(theta),), float("nan"), dtype=x.dtype)
                full[ok] = torch.where(use_fit > 0, d.detach(), torch.nan)
                collect["d"] = full
            n_use = use_fit.sum().clamp_min(1)
            parts["fit"] = float(l_fit.sum().detach() / n_use)
            parts["fit_in"] = float((torch.nn.functional.smooth_l1_loss(u_in, th[:, 0], beta=0.05, reduction="none")
                                     * use_fit).sum() / n_use)
    return loss, parts


def fit_log_gamma(g: torch.Tensor, theta0: torch.Tensor, steps: int = 15, full: bool = False,
                  hold_alpha: bool = False) -> torch.Tensor:
    """log Γ of a plain Eq. 3 fit of the 1TCFs ``g`` (B, K) at lags 1…K: ``steps`` Levenberg–Marquardt steps from
    ``theta0`` (B, 4: log Γ, β, C∞, log α), α held within [0.2, 3] as :func:`~core.fitting.fit_g2` holds it;
    differentiable in ``g``. From the target's own fit it reaches the minimum that ``fit_g2`` finds for all but
    the grossly wrong fits (where both are far from the truth). ``full``: all four parameters (B, 4), as
    ``theta0``. ``hold_alpha``: α stays at ``theta0``'s (``fit_g2(..., fix={"alpha": ...})``)."""
    k = g.shape[-1]
    free = torch.tensor([1.0, 1.0, 1.0, 0.0 if hold_alpha else 1.0], dtype=g.dtype)
    lk = torch.log(torch.arange(1, k + 1, dtype=g.dtype))[None]
    eye = torch.eye(4, dtype=g.dtype)
    lo = torch.tensor([math.log(1e-3 / k), -math.inf, -math.inf, math.log(0.2)], dtype=g.dtype)
    hi = torch.tensor([math.log(10.0), math.inf, math.inf, math.log(3.0)], dtype=g.dtype)

    def model(p):
        a = p[:, 3:4].exp()
        t = p[:, 0:1] + lk
        z = torch.exp(a * t)  # (Γ k)^α
        e = torch.exp(-2 * z)
        f = p[:, 2:3] + p[:, 1:2] * e
        dz = -2 * p[:, 1:2] * e * z * a
        jac = torch.stack([dz, e, torch.ones_like(e), dz * t], -1) * free  # d f / d (log Γ, β, C∞, log α)
        return f, jac, ((g - f) ** 2).sum(-1, keepdim=True)

    p = theta0
    f, jac, cost = model(p)
    lam = torch.full_like(cost, 0.01)
    for _ in range(steps):
        jt = jac.transpose(1, 2)
        h = jt @ jac
        h = h + lam[..., None] * torch.diag_embed(h.diagonal(dim1=1, dim2=2)) + 1e-12 * eye
        step = torch.linalg.solve(h, jt @ (g - f)[..., None])[..., 0]
        pn = torch.maximum(torch.minimum(p + step, hi), lo)
        fn, jn, cn = model(pn)
        acc = cn < cost  # a step that lowers the cost is taken and the damping relaxed; else damped harder
        p, f, cost = torch.where(acc, pn, p), torch.where(acc, fn, f), torch.where(acc, cn, cost)
        jac = torch.where(acc[..., None], jn, jac)
        lam = torch.where(acc, lam / 3, lam * 4)
    return p if full else p[:, 0]


def _user_start(g: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(B, 4) log Γ, β, C∞, log α of :func:`~core.fitting.fit_g2` fits of the 1TCFs ``g`` (B, K) from its own
    grid start, as a user's plain fit finds them; ``fallback`` rows where a fit fails."""
    fit = fit_g2(g.double().numpy())
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.stack([np.log(fit.gamma), fit.beta, fit.baseline, np.log(fit.alpha)], -1)
    p = torch.as_tensor(p, dtype=g.dtype)
    good = torch.as_tensor(fit.success)[:, None] & torch.isfinite(p).all(-1, keepdim=True)
    return torch.where(good, p, fallback)


def fit_targets(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Plain Eq. 3 fits of the 1TCFs of target bands ``y`` (n, K, N): (n, 4) of log Γ, β, C∞, log α, NaN where
    the fit is not a usable reference (:func:`fit_targets_1tcf`)."""
    m = np.asarray(mask, float)
    return fit_targets_1tcf((y * m).sum(-1) / m.sum(-1)).astype(np.float32)


def fit_targets_1tcf(g: np.ndarray) -> np.ndarray:
    """Plain Eq. 3 fits (n, 4: log Γ, β, C∞, log α) of target 1TCFs ``g`` (n, K), NaN rows where the fit is not a
    usable reference (failed; the decay barely starts or is over within the lags; α outside 0.3–2.5; no
    contrast)."""
    fit = fit_g2(g)
    k = g.shape[-1]
    ok = (fit.success & (fit.gamma * k > 0.2) & (fit.gamma < 0.5) & (fit.alpha > 0.3) & (fit.alpha < 2.5)
          & (fit.beta > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.stack([np.log(fit.gamma), fit.beta, fit.baseline, np.log(fit.alpha)], -1)
    return np.where(ok[:, None], theta, np.nan)


def _tcf_errors(xo, x, y, m, weight_tail, err=lambda v: v ** 2):
    """Per 2TCF: the weighted error (``err`` of the difference; squared by default) of the output's and of the
    input's 1TCF (B,), (B,)."""
    g_o, g_x, g_y = (band_mean(v, m) for v in (xo, x, y))
    # Lags weighted by how much of the decay is left there (plus a floor for the tail): a fast decay's few
    # informative lags are not drowned by its flat tail, which is what plain fits of Γ need.
    k = g_y.shape[-1]
    tail = g_y[:, -max(1, k // 4):].mean(-1, keepdim=True)
    w = ((g_y - tail) / (g_y[:, :1] - tail).abs().clamp_min(1e-6)).clamp(0, 1) + weight_tail
    return (w * err(g_o - g_y)).sum(-1), (w * err(g_x - g_y)).sum(-1)


def _far_cost(xo, x, y, m, far_from=0.4, eps=1e-6):
    """Over a batch: Σ e_out² / Σ e_in², e the error of the 1TCF averaged over lags ≥ ``far_from`` · K (the far
    lags' level, which plain fits of a short crop read as C∞)."""
    k = y.shape[1]
    g_o, g_x, g_y = (band_mean(v, m) for v in (xo, x, y))
    far = slice(int(math.ceil(far_from * k)) - 1, k)
    e_o, e_x = ((g - g_y)[:, far].mean(-1) for g in (g_o, g_x))
    return (e_o ** 2).sum() / ((e_x ** 2).sum() + eps * len(e_x))


def _cut_cost(xo, x, y, m, eps=1e-6):
    """Per 2TCF: Σ_a δ_out(a)² / Σ_a δ_in(a)², δ(a) = Σ_k J e / Σ_k J² the Gauss–Newton step in Γ of a cut at age a
    for the error e along lags, J = k (y − y∞) the sensitivity of an Eq. 3 decay (α = 1) to Γ at lag k."""
    k = y.shape[1]
    lag = torch.arange(1, k + 1, dtype=y.dtype)[None, :, None]
    tail = slice(k - max(1, k // 4), k)
    y_inf = (y[:, tail] * m[:, tail]).sum(1, keepdim=True) / m[:, tail].sum(1, keepdim=True).clamp_min(1)
    jac = lag * (y - y_inf) * m
    norm = (jac * jac).sum(1).clamp_min(eps)  # (B, W)
    d_out = (jac * (xo - y)).sum(1) / norm
    d_in = (jac * (x - y)).sum(1) / norm
    use = (m.sum(1) >= 3).to(y.dtype)  # ages with a few lags inside the matrix
    return (d_out ** 2 * use).sum(-1) / ((d_in ** 2 * use).sum(-1) + eps * use.sum(-1).clamp_min(1))


def gamma_octave(theta: torch.Tensor) -> torch.Tensor:
    """The Γ octave (0…9 from 10⁻³ frames⁻¹) of each target fit (B, 4) that the fit cost's bias term pools over."""
    u = torch.nan_to_num(theta[:, 0], nan=0.0)
    return ((u - math.log(1e-3)) / math.log(2)).floor().clamp(0, N_OCTAVES - 1).long()


def _octave_bias(d: torch.Tensor, theta: torch.Tensor, min_count: int = 10) -> float:
    """Mean over Γ octaves (with ``min_count`` fits) of |median signed error of log Γ̂|."""
    ok = torch.isfinite(d)
    oct_ = gamma_octave(theta)[ok]
    vals = [d[ok][oct_ == o].median().abs() for o in range(N_OCTAVES) if int((oct_ == o).sum()) >= min_count]
    return float(torch.stack(vals).mean()) if vals else 0.0


def _evaluate(model, sets, cfg) -> dict:
    out = {}
    with torch.no_grad():
        for name, (xb, yb, mask, th) in sets.items():
            parts, ds = [], []
            for i in range(0, len(xb), 64):
                got = {}
                parts.append(lag_loss(model, xb[i:i + 64], yb[i:i + 64], mask, cfg.weight_1tcf, 0.0,
                                      cfg.weight_tail, cfg.weight_cut, cfg.weight_pooled, cfg.weight_fit,
                                      None if th is None else th[i:i + 64], fit_informative=cfg.fit_informative,
                                      collect=got, fit_start=cfg.fit_start,
                                      weight_fit_alpha=cfg.weight_fit_alpha,
                                      fit_alpha_resolved=cfg.fit_alpha_resolved, loss_norm=cfg.loss_norm,
                                      weight_far=cfg.weight_far, far_from=cfg.far_from)[1])
                ds.append(got.get("d"))
            keys = sorted(set().union(*parts) - {"nll"})
            out[name] = {k: float(np.mean([p[k] for p in parts if k in p])) for k in keys}
            if th is not None and all(d is not None for d in ds):
                out[name]["fit_bias"] = _octave_bias(torch.cat(ds), th)
    out["score"] = float(np.mean([cfg.weight_pixel * v["pix"] + cfg.weight_1tcf * v["g"]
                                  + cfg.weight_cut * v.get("cut", 0.0) + cfg.weight_pooled * v.get("pooled", 0.0)
                                  + cfg.weight_far * v.get("far", 0.0)
                                  + cfg.weight_fit * v.get("fit", 0.0)
                                  + cfg.weight_fit_bias * v.get("fit_bias", 0.0)
                                  + cfg.weight_fit_alpha * v.get("fit_alpha", 0.0) for v in out.values()]))
    return out


def train_lagnet(data: dict, out_dir, config: LagTrainConfig | None = None,
                 model_config: LagNetConfig | None = None, card_extra: dict | None = None, log=print,
                 init: Path | None = None) -> Path:
    """Train a lag-band model on ``data`` and save the best one (lowest validation score) to ``out_dir``.

    ``data`` maps sources of :data:`SOURCES` (training) and the same names with ``_val`` (validation) to (x, y)
    float32 band arrays (n, K, N). A run resumes from ``out_dir/checkpoint.pt`` if it exists (same data, same
    configuration); else it starts from the weights of the model folder ``init`` if given (fine-tuning; ``model_config``
    may add smooth widths and layers to its architecture, :func:`~xpcs_denoise.nn.lagnet.expand_lagnet`).
    """
    cfg = config or LagTrainConfig()
    mcfg = model_config or LagNetConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = LagNet(mcfg)
    ctx_ids = {id(p) for p in model.context.parameters()} if model.context is not None else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in ctx_ids], "lr": cfg.lr}]
    if ctx_ids:
        groups.append({"params": list(model.context.parameters()), "lr": cfg.lr * cfg.lr_context})
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.lr_schedule == "onecycle" and cfg.steps >= 3:
        # A warm-up of 5 %, at least two steps (OneCycleLR divides by the warm-up's length less one: 20 steps failed).
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps,
                                                    pct_start=max(0.05, 2 / cfg.steps))
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)

    def tensors(key):
        x, y = data[key]
        mask = band_mask(x.shape[-1], x.shape[-2])
        th = (torch.as_tensor(fit_targets(y, mask)) if cfg.weight_fit > 0 and key.split("_")[0] in STATIONARY
              else None)
        return torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(mask), th

    train = {k: tensors(k) for k in SOURCES if k in data}
    val = {f"{k}_val": tensors(f"{k}_val") for k in SOURCES if f"{k}_val" in data}
    batch = {"real": cfg.batch_real, "stat": cfg.batch_sim, "age": cfg.batch_ageing, "long": cfg.batch_long,
             "longage": cfg.batch_long, "age400": cfg.batch_long, "stat50": cfg.batch_real}
    ckpt = out_dir / "checkpoint.pt"
    state = {"step": 0, "best": float("inf"), "history": [], "config": asdict(cfg),
             "fit_bias": np.zeros((len(SOURCES), N_OCTAVES)).tolist()}
    if ckpt.is_file():
        saved = torch.load(ckpt, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = json.loads(saved["state"])
        # Resume only the same run: its schedule, data order and costs depend on these (not on time or threads).
        same = {k: v for k, v in asdict(cfg).items() if k not in ("max_minutes", "threads", "eval_every")}
        # Keys added since a checkpoint was written take their defaults.
        was = json.loads(json.dumps({k: state.get("config", same).get(k, getattr(LagTrainConfig, k, None))
                                     for k in same}))
        if json.loads(json.dumps(same)) != was:
            diff = sorted(k for k in same if json.loads(json.dumps(same[k])) != was.get(k))
            raise XPCSInputError(f"{ckpt} is a checkpoint of another configuration ({', '.join(diff)} differ); "
                                 "use a new output folder")
        log(f"resumed at step {state['step']}")
    elif init is not None:
        start, _ = load_lagnet(init)
        # A larger architecture starts from the same function (new inputs and layers at zero weight).
        model.load_state_dict((start if start.config == mcfg else expand_lagnet(start, mcfg)).state_dict())
        state["init"] = str(init)
        log(f"starting from {init}")
    best_path = out_dir / "best"
    t0 = time.time()
    rng = np.random.default_rng([cfg.seed, state["step"]])
    while state["step"] < cfg.steps and (time.time() - t0) / 60 < cfg.max_minutes:
        step = state["step"]
        src = cfg.schedule[step % len(cfg.schedule)]
        if src not in train:
            state["step"] += 1
            continue
        x, y, mask, th = train[src]
        idx = torch.as_tensor(rng.integers(0, len(x), batch[src]))
        model.train()
        got, bias, octs = {}, None, None
        if th is not None:
            octs = gamma_octave(th[idx])
            bias = torch.as_tensor(np.asarray(state["fit_bias"])[SOURCES.index(src)])[octs]
        loss, parts = lag_loss(model, x[idx], y[idx], mask, cfg.weight_1tcf, cfg.weight_spread, cfg.weight_tail,
                               cfg.weight_cut, cfg.weight_pooled, cfg.weight_fit, None if th is None else th[idx],
                               bias, cfg.weight_fit_bias, cfg.fit_informative, got, cfg.fit_start,
                               cfg.weight_fit_alpha, cfg.fit_alpha_resolved, cfg.weight_pixel, cfg.loss_norm,
                               cfg.weight_far, cfg.far_from)
        if "d" in got:  # running means of the signed error per source and octave (errors clipped at a factor e)
            row = state["fit_bias"][SOURCES.index(src)]
            for o, d in zip(octs.tolist(), got["d"].clamp(-1, 1).tolist(), strict=True):
                if d == d:
                    row[o] = 0.97 * row[o] + 0.03 * d
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        state["step"] += 1
        if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.steps:
            model.eval()
            ev = _evaluate(model, val, cfg)
            ev.update(step=state["step"], minutes=round((time.time() - t0) / 60, 2), train=parts)
            state["history"].append(ev)
            log(json.dumps(ev))
            if ev["score"] < state["best"]:
                state["best"] = ev["score"]
                save_lagnet(model, best_path, {"training": asdict(cfg), "validation": ev, **(card_extra or {})})
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "state": json.dumps(state)}, ckpt)
    return best_path
