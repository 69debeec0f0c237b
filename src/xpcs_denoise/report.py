"""Reports a user looks at: raw and denoised 2TCFs on one colour scale, 1TCFs with Eq. 3 fits and residuals,
Γ(q) and Γ(t_a), as PNG figures and one self-contained HTML page (no network, no CDN), with CSV/JSON tables.

The report folder is written atomically: built in a temporary folder beside it, then renamed into place. It holds
a manifest (:data:`MANIFEST`) of the files the report wrote; ``overwrite`` replaces only a folder with a manifest,
and in it only those files: a user's folder (``-o .``) or files of their own are never deleted.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .correlation import one_time_from_two_time
from .errors import XPCSInputError
from .fitting import fit_rows
from .io import write_csv

__all__ = ["fit_table", "write_report", "default_max_lag"]

_MAX_ROIS_SHOWN = 6
#: The report's list of its own files, written last into the report folder.
MANIFEST = ".xpcs-denoise-report.json"


def _own_files(out: Path) -> list[str]:
    """Names of the files that an earlier report wrote into ``out`` (its manifest); refuses any other folder."""
    if not out.is_dir():
        raise XPCSInputError(f"{out} exists and is not a folder; choose another report folder")
    try:
        names = json.loads((out / MANIFEST).read_text())["files"]
        if not all(isinstance(n, str) and n == Path(n).name and not n.startswith(".") for n in names):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise XPCSInputError(f"{out} is not a report folder written by xpcs-denoise (no valid {MANIFEST}); "
                             "--overwrite replaces only those: choose a new folder") from None
    return names


def _publish_report(tmp: Path, out: Path) -> None:
    """Move the finished report ``tmp`` into ``out``: a rename when ``out`` is new, else file by file over the
    files of the earlier report (listed in its manifest), whose other files are removed; nothing else is touched."""
    if not out.exists():
        os.rename(tmp, out)  # fails, rather than merges, if a non-empty folder appeared meanwhile
        return
    old = _own_files(out)
    new = json.loads((tmp / MANIFEST).read_text())["files"]
    for name in new:
        if (out / name).exists() and not (out / name).is_file():
            raise XPCSInputError(f"{out / name} is not a regular file; the report will not replace it")
    for name in new + [MANIFEST]:
        os.replace(tmp / name, out / name)
    for name in set(old) - set(new):
        if (out / name).is_file():
            (out / name).unlink()
    tmp.rmdir()


def default_max_lag(n_frames: int) -> int:
    """Lags fitted by default (frames): all of them up to 100 frames, else the first half (longer lags rest
    on few frame pairs)."""
    return n_frames - 1 if n_frames <= 100 else n_frames // 2


def fit_table(c2s: dict, q=None, *, max_lag: int | None = None, fix: dict | None = None,
              frame_time: float | None = None, weighted: bool = True, model=None) -> tuple[list, dict]:
    """Eq. 3 fits of the 1TCF of every ROI for each method.

    Parameters
    ----------
    c2s : dict of name → (K, N, N) 2TCFs
    q : (K,) q values in Å⁻¹, optional
    max_lag : lags fitted (frames); default :func:`default_max_lag`
    fix : parameters held fixed, e.g. ``{"alpha": 1.0}``
    frame_time : seconds per frame: Γ in s⁻¹ (else frames⁻¹)
    weighted : weight each 1TCF point by its standard error from the 2TCF
    model : the ensemble behind a ``"cned"`` entry (default: the shipped one)

    The ``"raw"`` entry and, with a ``"raw"`` entry beside it, the ``"cned"`` one are fitted by
    :func:`~xpcs_denoise.uncertainty.fit_two_time`: errors that include the noise and the model, and the path
    taken per ROI (a ``path`` column); other methods carry the fit's own errors.

    Returns
    -------
    rows : list of dict, one per (method, ROI): values, standard errors, ``gamma_unit``, reduced χ², status
    fits : dict of name → :class:`~xpcs_denoise.fitting.FitResult`
    """
    from .workflows import fit_one_times

    rows, fits = [], {}
    import warnings

    from .uncertainty import fit_two_time

    for name, c2 in c2s.items():
        c2 = np.asarray(c2, dtype=np.float64)
        lag_max = max_lag or default_max_lag(c2.shape[-1])
        k_rois = c2.shape[0]
        paths = np.full(k_rois, "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if name == "raw" and np.all(np.isfinite(c2)):
                fit = fit_two_time(c2, method="none", max_lag=lag_max, fix=fix, frame_time=frame_time).fit
                paths = np.full(k_rois, "raw")
            elif name == "cned" and "raw" in c2s and np.all(np.isfinite(c2s["raw"])):
                tf = fit_two_time(np.asarray(c2s["raw"], dtype=np.float64), method="cned", model=model,
                                  max_lag=min(lag_max, 49), fix=fix, frame_time=frame_time)
                fit, paths = tf.fit, np.atleast_1d(tf.path)
            else:
                fit = fit_one_times(c2, max_lag=lag_max, fix=fix, frame_time=frame_time, weighted=weighted)
        fits[name] = fit
        q_col = np.asarray(q, dtype=float) if q is not None else np.full(k_rois, np.nan)
        rows += [{"method": name, **r} for r in fit_rows(fit, np.arange(1, k_rois + 1), index_name="roi",
                                                          columns={"q": q_col, "path": paths})]
    return rows, fits


def _clim(c2: np.ndarray) -> tuple[float, float]:
    off = c2[~np.eye(c2.shape[-1], dtype=bool)]
    off = off[np.isfinite(off)]
    if off.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(off, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1e-12)


def _fig_maps(path, c2s, rois, q):
    import matplotlib.pyplot as plt

    names = list(c2s)
    fig, axes = plt.subplots(len(rois), len(names), figsize=(3.3 * len(names) + 1, 3.0 * len(rois)),
                             constrained_layout=True, squeeze=False)
    for i, k in enumerate(rois):
        vmin, vmax = _clim(c2s[names[0]][k])  # one colour scale per ROI, set by the raw 2TCF
        for j, name in enumerate(names):
            ax = axes[i, j]
            im = ax.imshow(c2s[name][k], origin="lower", vmin=vmin, vmax=vmax, cmap="viridis")
            qs = f", q = {q[k]:.4g} Å⁻¹" if q is not None else ""
            ax.set_title(f"ROI {k + 1}{qs}: {name}", fontsize=8)
            ax.set_xlabel("t₁ (frames)")
            ax.set_ylabel("t₂ (frames)")
        fig.colorbar(im, ax=axes[i, :], shrink=0.8, label="C₂(t₁, t₂)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fig_g2(path, c2s, fits, rois, q):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(rois), figsize=(3.4 * len(rois) + 0.5, 5.6), constrained_layout=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1.3]}, sharex="col")
    for j, k in enumerate(rois):
        for i, (name, fit) in enumerate(fits.items()):
            lags = fit.lags
            g = one_time_from_two_time(c2s[name][k], max_lag=len(lags))
            color = "0.55" if i == 0 else f"C{i - 1}"
            axes[0, j].plot(lags, g, ".", ms=3, color=color, label=name)
            if fit.success[k]:
                model = fit.model()[k]
                axes[0, j].plot(lags, model, "-", lw=1.2, color=color)
                axes[1, j].plot(lags, g - model, ".", ms=3, color=color)
        axes[0, j].set_xscale("log")
        axes[0, j].set_title(f"ROI {k + 1}" + (f", q = {q[k]:.4g} Å⁻¹" if q is not None else ""), fontsize=8)
        axes[1, j].axhline(0, color="k", lw=0.7)
        axes[1, j].set_xlabel(f"lag ({fit.lag_unit})")
    axes[0, 0].set_ylabel("C₁ (1TCF), lines: Eq. 3 fits")
    axes[1, 0].set_ylabel("1TCF − fit")
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fig_ageing(path, c2s, rois, width, frame_time=None):
    import matplotlib.pyplot as plt

    from .plotting import log_ticks, plot_cut_gammas
    from .workflows import ageing_analysis

    fig, axes = plt.subplots(1, len(rois), figsize=(3.4 * len(rois) + 0.5, 3.4), constrained_layout=True,
                             squeeze=False)
    unit = "1/frame"
    for j, k in enumerate(rois):
        ax = axes[0, j]
        beta = None
        for i, (name, c2) in enumerate(c2s.items()):
            n = c2.shape[-1]
            r = ageing_analysis(c2[k], width=width, max_lag=min(49, n - 1), beta=beta, frame_time=frame_time)
            beta = r["beta"] if beta is None else beta  # every method's cuts are fitted with the raw β*
            unit = r["fit"].gamma_unit
            plot_cut_gammas(ax, r["ages"], r["fit"], color="0.55" if i == 0 else f"C{i - 1}", label=name,
                            legend_marks=(j == 0 and i == 0))
        ax.set_yscale("log")
        log_ticks(ax, "y", max_labels=4)
        ax.set_xlabel("age t_a (frames)")
        ax.set_title(f"ROI {k + 1}: Γ(t_a), cuts of {width} frame(s)", fontsize=8)
    axes[0, 0].set_ylabel(f"Γ ({unit})")
    axes[0, 0].legend(fontsize=6)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _html_table(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"<td>{v:.4g}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir, c2s: dict, *, q=None, title: str = "xpcs-denoise report", notes: str = "",
                 max_lag: int | None = None, fix: dict | None = None, cut_width: int = 1,
                 provenance: dict | None = None, frame_time: float | None = None, weighted: bool = True,
                 overwrite: bool = False, model=None) -> Path:
    """Write a report folder: ``c2_maps.png``, ``g2_fits.png``, ``gamma_q.png`` (several ROIs with q),
    ``gamma_age.png`` (N > 50), ``fits.csv``, ``summary.json`` and ``index.html``.

    Parameters
    ----------
    out_dir : path of the report folder (must not exist unless ``overwrite``)
    c2s : dict of name → (K, N, N) 2TCFs, raw first (it sets each ROI's colour scale), e.g.
        ``{"raw": c2, "cned": denoised, "gaussian": ...}``
    q : (K,) q values in Å⁻¹, optional
    max_lag, fix : passed to :func:`fit_table`; with denoised entries the default is at most 49 frames, the
        lags the 50-frame window denoises (longer lags keep the raw values)
    cut_width : cut width (frames) of the Γ(t_a) figure
    provenance : recorded in ``summary.json`` and shown on the page (method, model hash, seed, …)
    frame_time : seconds per frame: Γ in s⁻¹ and lags in s (else frames)
    weighted : weight 1TCF points by their standard errors from the 2TCF

    Returns
    -------
    Path of ``index.html``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise XPCSInputError(f"report folder {out} exists; choose another or pass --overwrite")
    if out.exists():
        _own_files(out)  # --overwrite: only a report folder, before any work
    c2s = {k: np.asarray(v, dtype=np.float64).reshape((-1,) + np.shape(v)[-2:]) for k, v in c2s.items()}
    shapes = {v.shape for v in c2s.values()}
    if len(shapes) != 1:
        raise XPCSInputError(f"all 2TCFs of a report must have one shape; got {sorted(shapes)}")
    k_rois, n = next(iter(shapes))[:2]
    q = None if q is None else np.asarray(q, dtype=float).ravel()
    if q is not None and q.size != k_rois:
        raise XPCSInputError(f"{q.size} q values for {k_rois} ROIs")
    rois = list(np.linspace(0, k_rois - 1, min(k_rois, _MAX_ROIS_SHOWN)).round().astype(int))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report is an ordinary folder
    try:
        if max_lag is None and len(c2s) > 1:
            max_lag = min(default_max_lag(n), 49)
        rows, fits = fit_table(c2s, q, max_lag=max_lag, fix=fix, frame_time=frame_time, weighted=weighted,
                               model=model)
        g_unit = next(iter(fits.values())).gamma_unit
        lag_unit = next(iter(fits.values())).lag_unit
        diffusion = {}
        figures = [("Two-time correlation functions (one colour scale per ROI, set by the raw 2TCF)",
                    "c2_maps.png")]
        _fig_maps(tmp / "c2_maps.png", c2s, rois, q)
        figures.append(("1TCFs with Eq. 3 fits (top) and residuals (bottom)", "g2_fits.png"))
        _fig_g2(tmp / "g2_fits.png", c2s, fits, rois, q)
        if k_rois > 1 and q is not None and np.all(q > 0):
            from .fitting import fit_diffusion
            from .plotting import plot_parameters

            for name, fit in fits.items():
                ok = fit.success & ~fit.at_bound
                try:
                    diffusion[name] = fit_diffusion(q, np.where(ok, fit.gamma, np.nan),
                                                    np.where(ok, fit.gamma_err, np.nan), gamma_unit=g_unit)
                except XPCSInputError:
                    pass
            fig = plot_parameters(q, fits, title="Eq. 3 parameters against q (1σ error bars; lines: Γ = D q²)",
                                  diffusion=diffusion)
            fig.savefig(tmp / "gamma_q.png", dpi=90)
            import matplotlib.pyplot as plt

            plt.close(fig)
            figures.append(("Γ(q), β(q), C∞(q), α(q)", "gamma_q.png"))
        if n > 50:
            _fig_ageing(tmp / "gamma_age.png", c2s, rois, cut_width, frame_time)
            figures.append((f"Γ(t_a) from time-resolved cuts of width {cut_width} frame(s), β fixed; open "
                            "markers: the cut does not resolve its decay (fewer than 5 lags before half decay "
                            "or lags shorter than 2 half-decay times), ×: failed fits", "gamma_age.png"))
        write_csv(tmp / "fits.csv", rows)
        summary = {"title": title, "n_rois": int(k_rois), "n_frames": int(n), "methods": list(c2s),
                   "gamma_unit": g_unit, "lag_unit": lag_unit, "q_unit": "1/Å", "frame_time_s": frame_time,
                   "weighted": bool(weighted), "provenance": provenance or {}, "fits": rows,
                   "diffusion": {m: d.to_dict() for m, d in diffusion.items()},
                   "figures": [f for _, f in figures]}
        from .safety import json_safe

        summary = json.loads(json.dumps(summary, default=str))  # Paths, numpy values → text/numbers
        (tmp / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
        cols = ["method", "roi", "q", "gamma", "gamma_err", "gamma_unit", "beta", "beta_err", "baseline",
                "baseline_err", "alpha", "alpha_err", "redchi", "success", "at_bound", "message"]
        diff_html = "".join(f"<li>{html.escape(m)}: D = {d.D:.4g} ± {d.D_err:.2g} {html.escape(d.D_unit)} "
                            f"(Γ = D q², {d.n_points} ROIs, reduced χ² {d.redchi:.3g})</li>"
                            for m, d in diffusion.items())
        diff_html = f"<h2>Γ(q) = D q²</h2><ul>{diff_html}</ul>" if diff_html else ""
        prov = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
                       for k, v in (provenance or {}).items())
        figs = "".join(f"<h2>{html.escape(t)}</h2><img src='{f}' alt='{html.escape(t)}'>" for t, f in figures)
        (tmp / "index.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1400px;margin:auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #aaa;padding:2px 6px;"
            "text-align:right}img{max-width:100%}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>"
            f"<p>{k_rois} ROI(s), {n} frames"
            + (f" of {frame_time:.6g} s" if frame_time is not None else "")
            + f". Γ in {html.escape(g_unit)}, q in Å⁻¹, lags in {html.escape(lag_unit)}. "
            "Fits: Eq. 3, C₁ = C∞ + β exp(−2 (Γt)^α), one-sigma standard errors"
            + (", 1TCF points weighted by their standard errors from the 2TCF" if weighted else "")
            + f".</p><ul>{prov}</ul>{_html_table(rows, cols)}{diff_html}{figs}</body></html>\n")
        files = sorted(p.name for p in tmp.iterdir())
        (tmp / MANIFEST).write_text(json.dumps({"files": files}) + "\n")
        _publish_report(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"
