"""Figures of the workflows (matplotlib).

Every function returns the :class:`matplotlib.figure.Figure` and, given ``path``, saves it there.
"""

from __future__ import annotations

import numpy as np

from ..core.correlation import one_time_from_two_time

__all__ = ["plot_parameters", "plot_ageing", "plot_comparison", "plot_cut_gammas", "log_ticks"]

_LABELS = {"gamma": "Γ (frames⁻¹)", "beta": "β", "baseline": "C∞", "alpha": "α"}
_STYLE = {"raw": dict(color="0.55", marker="o", mfc="none"), "target": dict(color="k", marker="s"),
          "cned": dict(color="C0", marker="o")}


def _pyplot():
    # matplotlib falls back to the Agg backend by itself where there is no display.
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def _style(name: str, i: int) -> dict:
    return _STYLE.get(name, dict(color=f"C{i + 1}", marker="^"))


def log_ticks(ax, which: str = "both", max_labels: int = 5):
    """Readable ticks on log axes: labels only at round values (10ⁿ, else 1, 2, 5 × 10ⁿ, else finer) that lie
    in the axis range, at most ``max_labels`` of them, plain numbers, no labels on minor ticks, so that labels
    never pile up, whatever the range (a fraction of a decade or many)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    def fmt(v, _pos=None):
        return f"{v:g}" if 1e-4 <= abs(v) < 1e5 else f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")

    for a in {"both": ("x", "y"), "x": ("x",), "y": ("y",)}[which]:
        axis = ax.xaxis if a == "x" else ax.yaxis
        if (ax.get_xscale() if a == "x" else ax.get_yscale()) != "log":
            continue
        lo, hi = sorted(ax.get_xlim() if a == "x" else ax.get_ylim())
        if not (lo > 0 and np.isfinite(hi) and hi > lo):
            continue
        ticks = []
        for subs in ((1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8), tuple(range(1, 10))):
            exps = np.arange(np.floor(np.log10(lo)) - 1, np.ceil(np.log10(hi)) + 1)
            cand = np.array(sorted(m * 10.0 ** e for e in exps for m in subs))
            ticks = cand[(cand >= lo * (1 - 1e-9)) & (cand <= hi * (1 + 1e-9))]
            if ticks.size >= 3:
                break
        if ticks.size > max_labels:  # thin evenly, keeping round values
            ticks = ticks[:: int(np.ceil(ticks.size / max_labels))]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(fmt))
        axis.set_minor_formatter(NullFormatter())


def plot_cut_gammas(ax, ages, fit, *, color="C0", label=None, param: str = "gamma", legend_marks: bool = False):
    """Γ(t_a) (or another parameter) of time-resolved cuts on ``ax``: trusted fits filled, fits that do not
    resolve their decay (``fit.trusted`` False) open, failed fits as × on the bottom edge (no value to show)."""
    ages = np.asarray(ages, dtype=float)
    ok = np.asarray(fit.success, bool)
    trusted = np.asarray(fit.trusted, bool) if getattr(fit, "trusted", None) is not None else ok
    val = np.asarray(getattr(fit, param), dtype=float)
    ax.plot(ages[ok & trusted], val[ok & trusted], "o", ms=3, color=color, label=label)
    ax.plot(ages[ok & ~trusted], val[ok & ~trusted], "o", ms=3, mfc="none", color=color, alpha=0.7,
            label="not resolved" if legend_marks else None)
    if (~ok).any():
        ax.plot(ages[~ok], np.full(int((~ok).sum()), 0.02), "x", ms=3, color=color,
                transform=ax.get_xaxis_transform(), clip_on=False, label="failed" if legend_marks else None)


def plot_parameters(x, fits: dict, *, xlabel: str = "q (Å⁻¹)", truth: dict | None = None, log: bool = True,
                    title: str = "", path=None, diffusion: dict | None = None):
    """Γ, β, C∞, α with one-sigma error bars against ``x`` for each method's :class:`FitResult`.

    Converged fits are drawn filled, fits with a parameter at its bound open; failed fits are left out (they
    have no value). ``truth`` maps parameter names to arrays drawn as a dashed line; ``diffusion`` maps method
    names to :class:`~xpcs_denoise.fitting.DiffusionFit` drawn as lines Γ = D qⁿ on the Γ panel. ``x`` may be a
    dict of name → x when the methods' points sit at different x (e.g. one entry per φ bin).
    """
    plt = _pyplot()
    xs = {name: np.asarray(x[name] if isinstance(x, dict) else x, dtype=float) for name in fits}
    x = np.concatenate(list(xs.values())) if isinstance(x, dict) else np.asarray(x, dtype=float)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), constrained_layout=True)
    g_unit = "1/frame"
    for i, (name, fit) in enumerate(fits.items()):
        g_unit = getattr(fit, "gamma_unit", g_unit)
        ok = np.asarray(fit.success, bool)
        bound = np.asarray(fit.at_bound, bool) if getattr(fit, "at_bound", None) is not None else np.zeros_like(ok)
        for ax, p in zip(axes, _LABELS, strict=True):
            if p in fit.fixed:
                continue
            st = _style(name, i)
            for sel, extra in ((ok & ~bound, {}), (ok & bound, {"mfc": "none"})):
                if sel.any():
                    ax.errorbar(xs[name][sel], np.asarray(getattr(fit, p))[sel],
                                yerr=np.asarray(getattr(fit, p + "_err"))[sel], ls="none", ms=4, capsize=2,
                                label=name if not extra else f"{name} (at a bound)", **{**st, **extra})
        if diffusion and name in diffusion:
            d = diffusion[name]
            line = np.geomspace(np.nanmin(x[x > 0]), np.nanmax(x), 50) if np.any(x > 0) else x
            axes[0].plot(line, d.model(line), "-", lw=1, color=_style(name, i)["color"],
                         label=f"{name}: D = {d.D:.3g} {d.D_unit}")
    for ax, p in zip(axes, _LABELS, strict=True):
        if truth and p in truth:
            ax.plot(x, truth[p], "k--", lw=1, label="truth")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_LABELS[p] if p != "gamma" else f"Γ ({g_unit})")
    if log:
        axes[0].set_xscale("log")
        axes[0].set_yscale("log")
        log_ticks(axes[0], max_labels=4)
    axes[0].legend(fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return _finish(fig, path)


def plot_ageing(result, *, path=None):
    """Top: the 2TCF of each method (raw first). Bottom: Γ(t_a), C∞(t_a), α(t_a) from the cuts."""
    plt = _pyplot()
    names = list(result.c2)
    ncol = max(len(names), 3)
    fig, axes = plt.subplots(2, ncol, figsize=(3.6 * ncol, 7), constrained_layout=True)
    ref = result.c2[names[0]]
    off = ref[~np.eye(ref.shape[0], dtype=bool)]
    vmin, vmax = np.percentile(off, [1, 99.5])
    for j in range(ncol):
        ax = axes[0, j]
        if j >= len(names):
            ax.axis("off")
            continue
        im = ax.imshow(result.c2[names[j]], origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(names[j], fontsize=9)
        ax.set_xlabel("t₁ (frames)")
        ax.set_ylabel("t₂ (frames)")
    fig.colorbar(im, ax=axes[0, :], shrink=0.7, label="C₂")
    g_unit = "1/frame"
    for i, (name, fit) in enumerate(result.fits.items()):
        g_unit = getattr(fit, "gamma_unit", g_unit)
        for ax, p in zip(axes[1][:3], ("gamma", "baseline", "alpha"), strict=True):
            plot_cut_gammas(ax, result.ages, fit, color=_style(name, i)["color"], label=name, param=p,
                            legend_marks=(i == 0 and p == "gamma"))
    if result.gamma_true is not None:
        axes[1, 0].plot(np.arange(len(result.gamma_true)), result.gamma_true, "k-", lw=1, label="truth")
    for ax, p in zip(axes[1][:3], ("gamma", "baseline", "alpha"), strict=True):
        ax.set_xlabel("age t_a (frames)")
        ax.set_ylabel(_LABELS[p] if p != "gamma" else f"Γ ({g_unit})")
    axes[1, 0].set_yscale("log")
    log_ticks(axes[1, 0], "y")
    axes[1, 0].legend(fontsize=8)
    for ax in axes[1, 3:]:
        ax.axis("off")
    fig.suptitle(f"cuts of width {result.width} frame(s), β fixed to {result.beta:.4g}", fontsize=10)
    return _finish(fig, path)


def plot_comparison(raw, outputs: dict, *, target=None, path=None):
    """The paper's Fig. 7-like panel for one crop: the 2TCF of every method, their 1TCFs with the target's,
    and the residuals (1TCF − target 1TCF)."""
    plt = _pyplot()
    panels = {"raw": np.asarray(raw, float), **({"target": np.asarray(target, float)} if target is not None
                                                 else {}), **outputs}
    n = len(panels)
    fig = plt.figure(figsize=(max(2.6 * n, 8), 6.4), constrained_layout=True)
    grid = fig.add_gridspec(2, n)
    off = panels["raw"][~np.eye(panels["raw"].shape[0], dtype=bool)]
    vmin, vmax = np.percentile(off, [1, 99.5])
    for j, (name, c2) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(c2, origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax_g = fig.add_subplot(grid[1, : max(1, n // 2)])
    ax_r = fig.add_subplot(grid[1, max(1, n // 2):]) if n > 1 else None
    g_target = one_time_from_two_time(panels["target"]) if "target" in panels else None
    for i, (name, c2) in enumerate(panels.items()):
        g = one_time_from_two_time(c2)
        lags = np.arange(1, len(g) + 1)
        st = _style(name, i)
        ax_g.plot(lags, g, ls="-" if name == "target" else "none", ms=3, label=name, **st)
        if g_target is not None and name != "target" and ax_r is not None:
            ax_r.plot(lags, g - g_target, ls="none", ms=3, label=name, **st)
    ax_g.set_xscale("log")
    ax_g.set_xlabel("lag (frames)")
    ax_g.set_ylabel("C₁ (1TCF)")
    ax_g.legend(fontsize=7)
    if ax_r is not None:
        ax_r.axhline(0, color="k", lw=0.8)
        ax_r.set_xscale("log")
        ax_r.set_xlabel("lag (frames)")
        ax_r.set_ylabel("1TCF − target")
    return _finish(fig, path)
