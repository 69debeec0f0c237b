"""Command line: ``xpcs-denoise <command>``; ``xpcs-denoise <command> --help`` for each."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys

from .. import __version__
from ..core.defaults import WINDOW
from ..core.errors import XPCSInputError

#: The library's errors name its Python parameters ("pass overwrite=True"); on the command line they name the
#: flags instead: (pattern in the library's message, what the CLI prints), applied in order by :func:`_as_flags`.
_FLAGS = (
    (r"overwrite=True", "--overwrite"),
    (r"allow_external=True", "--allow-external"),
    (r"uncertainty=True", "--uncertainty"),
    (r"resume=False", "--restart"),
    (r"dataset='([^']*)'", r"--dataset \1"),
    (r"output_format='([^']*)'", r"--format \1"),
    (r"exclude='([^']*)'", r"--exclude-frames \1"),
    (r"split='([^']*)'", r"--split \1"),
    (r"model=DIR", "--model DIR"),
    (r"model=(\S+) applies", r"--model \1 applies"),
    (r"cut_width=", "--cut-width "),
    (r"cut_width", "--cut-width"),
    (r"max_lag", "--max-lag"),
    (r"workers(?= must)", "--workers"),
    (r"scheduler(?= must)", "--scheduler"),
    (r"in compare;", "in --compare;"),
    (r"TrainConfig\.n_members and ModelConfig \(size, channels, latent\)", "--members/--size/--channels/--latent"),
    (r"TrainConfig\.n_members", "--members"),
    (r"TrainConfig\.prune_after", "--prune-after"),
    (r"prune_to", "--prune-to"),
    (r"TrainConfig\.batch_size", "--batch-size"),
    (r"TrainConfig\.split_seed", "--split-seed"),
    (r"TrainConfig\.seed", "--seed"),
    (r"TrainConfig\.lr_decay", "--lr-decay"),
    (r"TrainConfig\.max_hours", "--max-hours"),
    (r"TrainConfig\.max_epochs", "--max-epochs"),
    (r"TrainConfig\.lr", "--lr"),
    (r"TrainConfig\.simulated", "--simulated"),
    (r"ModelConfig\.size", "xpcs-denoise train --size"),
    # the CLI has no --beta: the lag-band model needs no contrast at all
    (r"or pass beta= explicitly", "or denoise with --method lagnet, which needs no contrast"),
)


def _as_flags(message: str) -> str:
    """A library error message with its parameter names replaced by the CLI's flags (:data:`_FLAGS`)."""
    for pattern, flag in _FLAGS:
        whole = r"(?!\w)" if pattern[-1].isalnum() or pattern[-1] == "_" else ""  # whole names only
        message = re.sub(r"(?<![\w.-])" + pattern + whole, flag, message)
    return message


def _cmd_demo(a):
    from .demo import run_demo

    summary = run_demo(a.out, seed=a.seed, progress=not a.quiet, overwrite=a.overwrite)
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"demo report written to {summary['report']}")
        for row in summary["rois"]:
            print(f"  ROI {row['roi']}: q = {row['q']:.4f} 1/A, true Gamma = {row['gamma_true']:.4f}/frame, "
                  f"raw {row['gamma_raw']:.4f} ± {row['gamma_raw_err']:.4f}, denoised {row['gamma_denoised']:.4f} "
                  f"± {row['gamma_denoised_err']:.4f} (z = {row['z_denoised']:+.1f}, {row['path']})")
    return 0


def _cmd_train(a):
    from ..nn.model import ModelConfig
    from ..nn.training import TrainConfig, train_ensemble

    cfg = TrainConfig(n_members=a.members, keep=a.keep, batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay,
                      max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, split_seed=a.split_seed,
                      val_fraction=a.val_fraction,
                      split_by=a.split_by, max_hours=a.max_hours, threads=a.threads,
                      simulated=a.simulated, simulated_contrast=a.simulated_contrast,
                      simulated_realistic=a.realistic_simulation, rescale_real=a.rescale_real,
                      prune_after=a.prune_after, prune_to=a.prune_to)
    mcfg = ModelConfig(size=a.size, channels=a.channels, latent=a.latent)
    command = "xpcs-denoise " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("xpcs-denoise") else None
    _, card = train_ensemble(a.data, a.output, cfg, mcfg, resume=not a.restart, progress=not a.quiet,
                             command=command)
    print(json.dumps(card["ensemble_validation"]) if a.json else
          f"kept {len(card['kept_members'])} of {cfg.n_members} members; model in {a.output}")
    return 0


def _cmd_latent_study(a):
    from ..analysis.latent import latent_study
    from ..nn.config import TrainConfig

    try:
        latents = [int(v) for v in a.latents.split(",")]
    except ValueError:
        raise XPCSInputError(f"--latents must be comma-separated whole numbers, e.g. 1,2,4,8; got {a.latents!r}") \
            from None
    if any(v < 1 for v in latents):
        raise XPCSInputError(f"--latents must be >= 1; got {a.latents!r}")
    from ..core.validation import check_int, check_seed

    check_seed(a.seed, "--seed")
    check_int(a.members, "--members", 1)
    cfg = TrainConfig(lr=a.lr, max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, threads=a.threads)
    rows = latent_study(a.data, a.output, latents, members=a.members, config=cfg, progress=not a.quiet)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"latent {r['latent']:4d}: val cost {r['val_cost']:.4f}, MSE(1TCF) {r['mse_1tcf']:.4g}, "
                  f"MRE(Gamma) band {r['mre_gamma_band']:.3f}")
    return 0


def _cmd_evaluate(a):
    from ..core.validation import check_seed
    from .demo import evaluate_model

    check_seed(a.seed, "--seed")
    methods = a.methods.split(",") if a.methods else None
    table = evaluate_model(a.model, a.data, split=a.split, methods=methods, seed=a.seed)
    if a.json:
        print(json.dumps(table, indent=2))
    else:
        from ..analysis.evaluation import format_table

        print(format_table(table))
    return 0


def _print_summary(a, summary: dict, line: str):
    print(json.dumps(summary, indent=2, default=str) if a.json else line)


def _parse_q(text):
    if text is None:
        return None
    import numpy as np

    from ..core.validation import check_regular_input

    if text.endswith(".npy"):
        check_regular_input(text)
        try:
            q = np.load(text, allow_pickle=False)  # never unpickle a file given on the command line
        except (ValueError, OSError, EOFError) as exc:
            raise XPCSInputError(f"--q file {text} is not a .npy of numbers ({' '.join(str(exc).split())[:100]}); "
                                 "save the q values with numpy.save") from None
    else:
        try:
            q = np.array([float(v) for v in text.split(",")])
        except ValueError as exc:
            raise XPCSInputError(f"--q must be comma-separated numbers (Å⁻¹) or a .npy file; got {text!r}") from exc
    if q.dtype.kind not in "iuf" or not q.size or not np.all(np.isfinite(q)) or np.any(q <= 0):
        raise XPCSInputError(f"--q values must be finite numbers > 0 (Å⁻¹), one per ROI; got {text!r}")
    return q.astype(np.float64).ravel()


def _exclude_arg(text):
    """--exclude-frames: 'auto' or a frame list like 12,40-45 (checked here, before any file is read)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    from ..core.badframes import parse_frame_list

    return parse_frame_list(text)


def _excluded_note(s) -> str:
    from ..core.badframes import describe_exclusion

    lists = s.get("excluded_frames") or []
    if not any(lists):
        return ""
    import numpy as np

    mask = np.zeros((len(lists), s.get("n_frames", max(max(x) for x in lists if x) + 1)), bool)
    for r, frames in enumerate(lists):
        mask[r, frames] = True
    return "; " + describe_exclusion(mask)


def _cmd_correlate(a):
    from .pipeline import correlate_file

    s = correlate_file(a.frames, a.rois, a.output, frames_dataset=a.dataset, labels_dataset=a.rois_dataset,
                       q=_parse_q(a.q), overwrite=a.overwrite, progress=not a.quiet,
                       exclude=_exclude_arg(a.exclude_frames), bad_frame_threshold=a.bad_frame_threshold,
                       allow_external=a.allow_external)
    _print_summary(a, s, f"{s['n_rois']} ROI(s) × {s['n_frames']} frames correlated → {s['output']}"
                         f"{_excluded_note(s)}")
    return 0


def _cmd_denoise(a):
    from .pipeline import denoise_file

    s = denoise_file(a.input, a.output, method=a.method, model=a.model, dataset=a.dataset,
                     uncertainty=a.uncertainty, seed=a.seed, step=a.step, keep_raw=not a.no_raw,
                     frame_time=a.frame_time, overwrite=a.overwrite, output_format=a.format,
                     progress=not a.quiet, exclude=_exclude_arg(a.exclude_frames),
                     bad_frame_threshold=a.bad_frame_threshold, allow_external=a.allow_external,
                     anomaly=not a.no_anomaly)
    skipped = s["not_denoised_rois"]
    note = f" (ROI {skipped} without contrast kept unchanged)" if skipped else ""
    flagged = [lb for lb, v in zip(s["roi_labels"], s.get("anomalous_share") or [], strict=False) if v]
    if flagged:
        note += (f"; ROI {flagged[:10]} have windows outside what the model learned (anomaly scores stored; "
                 "see the report)")
    _print_summary(a, s, f"{s['n_rois'] - len(skipped)} ROI(s) denoised with {s['method']}{note} → {s['output']}"
                         f"{_excluded_note(s)}")
    return 0


def _cmd_fit(a):
    from .pipeline import fit_file

    s = fit_file(a.input, a.output, dataset=a.dataset, fix_alpha=a.fix_alpha, fix_beta=a.fix_beta,
                 cut_width=a.cut_width, max_lag=a.max_lag, frame_time=a.frame_time, weighted=not a.unweighted,
                 overwrite=a.overwrite, progress=not a.quiet, exclude=_exclude_arg(a.exclude_frames),
                 bad_frame_threshold=a.bad_frame_threshold, allow_external=a.allow_external, model=a.model)
    c = s["status_counts"]
    other = ", ".join(f"{v} {k}" for k, v in c.items() if k != "ok" and v)
    line = (f"{c['ok']} of {s['fits']} fits ok{f' ({other})' if other else ''} (Γ in {s['gamma_unit']}) → "
            f"{s['output']}, {s['json']}{_excluded_note(s)}")
    d = s.get("diffusion")
    if d and "D" in d:
        line += (f"\nΓ = D q^{d['power']:g}: D = {d['D']:.4g} ± {d['D_err']:.2g} {d['D_unit']} "
                 f"({d['n_points']} ROIs, reduced χ² {d['redchi']:.3g})")
    elif d:
        line += f"\nno Γ(q) fit: {d['error']}"
    _print_summary(a, s, line)
    return 0


def _cmd_report(a):
    from .pipeline import report_file

    compare = tuple(m for m in (a.compare or "").split(",") if m)
    s = report_file(a.input, a.output, compare=compare, method=a.method, model=a.model, dataset=a.dataset,
                    seed=a.seed, cut_width=a.cut_width, fix_alpha=a.fix_alpha, frame_time=a.frame_time,
                    weighted=not a.unweighted, overwrite=a.overwrite, progress=not a.quiet,
                    allow_external=a.allow_external)
    _print_summary(a, s, f"report ({', '.join(s['methods'])}) → {s['report']}")
    return 0


def _cmd_batch(a):
    from .pipeline import batch_denoise

    rows = batch_denoise(a.inputs, a.output, workers=a.workers, scheduler=a.scheduler, progress=not a.quiet,
                         method=a.method, model=a.model, dataset=a.dataset, uncertainty=a.uncertainty,
                         seed=a.seed, overwrite=a.overwrite, skip_existing=a.skip_existing,
                         allow_external=a.allow_external)
    failed = [r for r in rows if r["status"] == "failed"]
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['status']:6s} {r['input']} → {r['output'] or r['error']} ({r['seconds']} s)")
        skipped = sum(r["status"] == "skipped" for r in rows)
        note = f" ({skipped} skipped: output exists)" if skipped else ""
        print(f"{len(rows) - len(failed) - skipped} of {len(rows)} file(s) denoised{note}; summary in "
              f"{a.output}/batch_summary.csv")
    return 1 if failed else 0


def _cmd_finetune(a):
    from .pipeline import finetune_file

    s = finetune_file(a.frames, a.rois, a.output, frames_dataset=a.dataset, labels_dataset=a.rois_dataset,
                      model=a.model, epochs=a.epochs, seed=a.seed, overwrite=a.overwrite, progress=not a.quiet)
    _print_summary(a, s, f"fine-tuned on {s['frames']} frames × {s['rois']} ROI(s) in {s['seconds']} s: held-out "
                   f"Noise2Noise cost {s['val_cost_before']:.4g} → {s['val_cost_after']:.4g}; model in {s['output']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, as every other error of the CLI (the usage is one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xpcs-denoise", description="Denoise XPCS two-time correlation functions "
                                "with CNN encoder-decoder ensembles.")
    p.add_argument("--version", action="version", version=f"xpcs-denoise {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--json", action="store_true", help="machine-readable summary on stdout")

    d = sub.add_parser("demo", help="simulate, correlate, denoise and fit a small experiment; write a report")
    d.add_argument("--out", default="xpcs-denoise-demo", help="report folder (default ./xpcs-denoise-demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="write into an existing folder (the demo's files only)")
    common(d)
    d.set_defaults(func=_cmd_demo)

    from ..nn.config import TrainConfig

    t = sub.add_parser("train", help="train a CNN-ED ensemble on a prepared dataset (cned_train.h5 layout)")
    t.add_argument("data", help="prepared dataset (HDF5)")
    t.add_argument("-o", "--output", required=True, help="model folder (checkpoints, weights, model card)")
    dflt = TrainConfig()
    t.add_argument("--members", type=int, default=dflt.n_members, help="members to train")
    t.add_argument("--keep", type=int, default=dflt.keep, help="members kept, best validation MSE(1TCF)")
    t.add_argument("--batch-size", type=int, default=dflt.batch_size)
    t.add_argument("--lr", type=float, default=dflt.lr)
    t.add_argument("--lr-decay", type=float, default=dflt.lr_decay, help="factor per epoch")
    t.add_argument("--max-epochs", type=int, default=dflt.max_epochs)
    t.add_argument("--patience", type=int, default=dflt.patience, help="early-stopping patience (epochs)")
    t.add_argument("--seed", type=int, default=dflt.seed, help="seed of initialisation and shuffling")
    t.add_argument("--split-seed", type=int, default=dflt.split_seed, help="seed of the validation split")
    t.add_argument("--val-fraction", type=float, default=dflt.val_fraction)
    t.add_argument("--split-by", choices=["series", "target"], default=dflt.split_by)
    t.add_argument("--max-hours", type=float, default=None, help="stop training after this much time")
    t.add_argument("--simulated", type=int, default=dflt.simulated, metavar="N",
                   help="add N simulated crops of known dynamics to training (and N/5 to validation)")
    t.add_argument("--simulated-contrast", choices=["true", "estimated"], default=dflt.simulated_contrast,
                   help="scale simulated crops by their true contrast (Eq. 4) or as at inference (Eq. 5)")
    t.add_argument("--realistic-simulation", action="store_true",
                   help="simulate over the judged ranges (0.01-1 photons/pixel/frame, 100-20,000 pixels, Γ 0.001-1) "
                        "with real-like baseline offsets")
    t.add_argument("--rescale-real", action="store_true",
                   help="scale each real crop and its target by the crop's own Eq. 5 contrast, as at inference")
    t.add_argument("--prune-after", type=int, default=dflt.prune_after, metavar="EPOCHS",
                   help="successive halving: after this many epochs train on only the --prune-to members with "
                        "the lowest validation cost (0: never)")
    t.add_argument("--prune-to", type=int, default=dflt.prune_to, metavar="N", help="members kept at pruning")
    t.add_argument("--threads", type=int, default=None, help="torch threads")
    t.add_argument("--size", type=int, default=WINDOW, help=f"input size n (n×n crops; default {WINDOW})")
    t.add_argument("--channels", type=int, default=10)
    t.add_argument("--latent", type=int, default=8)
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    common(t)
    t.set_defaults(func=_cmd_train)

    ls = sub.add_parser("latent-study", help="the paper's Fig. 3: metrics against the latent dimension")
    ls.add_argument("data", help="prepared dataset (HDF5)")
    ls.add_argument("-o", "--output", required=True, help="folder for models, table and plot")
    ls.add_argument("--latents", default="1,2,4,8,16,32", help="comma-separated latent sizes")
    ls.add_argument("--members", type=int, default=4, help="members per latent size")
    ls.add_argument("--lr", type=float, default=dflt.lr)
    ls.add_argument("--max-epochs", type=int, default=dflt.max_epochs)
    ls.add_argument("--patience", type=int, default=dflt.patience)
    ls.add_argument("--seed", type=int, default=dflt.seed)
    ls.add_argument("--threads", type=int, default=None)
    common(ls)
    ls.set_defaults(func=_cmd_latent_study)

    e = sub.add_parser("evaluate", help="metrics of a model and the classical filters on prepared data")
    e.add_argument("model", help="model folder, or 'pretrained'")
    e.add_argument("data", help="prepared dataset (HDF5)")
    e.add_argument("--split", choices=["validation", "all"], default="validation",
                   help="'validation': the model card's held-out targets; 'all': every crop (your own data)")
    e.add_argument("--methods", default=None,
                   help="comma-separated methods (default: cned and every available peer: gaussian, median, tv, "
                        "pca, and bm3d if installed)")
    e.add_argument("--seed", type=int, default=0, help="seed of the lag-0 replacement draws")
    common(e)
    e.set_defaults(func=_cmd_evaluate)

    from ..nn.config import METHOD_ALIASES, METHODS

    def method_opts(sp):
        sp.add_argument("--method", choices=METHODS + tuple(METHOD_ALIASES), default=None,
                        help="denoiser (default: the family of --model, else lagnet, our lag-band model; "
                             "paper-2021 = cned, the paper's ensemble; age = the age-axis smoother)")
        sp.add_argument("--model", default=None,
                        help="model folder for --method lagnet or cned, or a shipped model by name: lagnet, "
                             "lagnet_ageing, paper-2021 (default: the shipped lagnet)")
        sp.add_argument("--seed", type=int, default=0, help="seed of the lag-0 replacement draws")

    def time_opts(sp, fits=True):
        sp.add_argument("--frame-time", type=float, default=None, metavar="SECONDS",
                        help="seconds per frame: Γ in 1/s and lags in s (default: the file's frame time, e.g. "
                             "APS 8-ID-I; else frames)")
        if fits:
            sp.add_argument("--unweighted", action="store_true",
                            help="fit 1TCFs unweighted (default: each point weighted by its standard error)")

    def exclude_opts(sp):
        sp.add_argument("--exclude-frames", default=None, metavar="auto|LIST",
                        help="leave frames out of averages and fits: 'auto' (bad frames found in the 2TCF"
                             + (" and the frames" if sp.prog.endswith("correlate") else "")
                             + ", listed per ROI in the output) or a list like 12,40-45 (from 0)")
        sp.add_argument("--bad-frame-threshold", type=float, default=None, metavar="Z",
                        help="robust z-score above which 'auto' flags a frame (default 5)")

    def input_opts(sp):
        sp.add_argument("--dataset", default=None,
                        help="HDF5 dataset path, for files in none of the known layouts")
        sp.add_argument("--overwrite", action="store_true",
                        help="replace an existing output (only a file, or a report folder, that xpcs-denoise wrote)")
        sp.add_argument("--allow-external", action="store_true",
                        help="follow HDF5 external links, external storage and virtual datasets (refused by default)")

    c = sub.add_parser("correlate", help="2TCFs and 1TCFs of every q-ROI of a frame stack")
    c.add_argument("frames", help="frame stack: HDF5, .npy, or a folder of TIFFs")
    c.add_argument("--rois", required=True, help="ROI label map (.npy or HDF5): 0 unused, 1..K q-ROIs")
    c.add_argument("--rois-dataset", default=None, help="dataset of the label map in an HDF5 file")
    c.add_argument("-o", "--output", required=True, help="output HDF5 (xpcs-denoise format)")
    c.add_argument("--q", default=None, help="q of each ROI in 1/Å: comma-separated, or a .npy file")
    exclude_opts(c)
    input_opts(c)
    common(c)
    c.set_defaults(func=_cmd_correlate)

    dn = sub.add_parser("denoise", help="denoise every ROI of a 2TCF file")
    dn.add_argument("input", help=".npy, xpcs-denoise HDF5, APS 8-ID-I HDF5, or any HDF5 with --dataset")
    dn.add_argument("-o", "--output", required=True,
                    help="output file: an APS 8-ID-I result file for an APS input (opens in xpcs-viewer), our HDF5 "
                         "format otherwise, a .npy array for a .npy name")
    dn.add_argument("--format", choices=["aps", "ours", "npy"], default=None,
                    help="output format (default: aps for an APS 8-ID-I input, npy for a .npy name, else ours)")
    method_opts(dn)
    dn.add_argument("--uncertainty", action="store_true",
                    help="store the model's per-pixel spread (c2_std; our format)")
    dn.add_argument("--step", type=int, default=5, help="sliding-window step in frames (N above the model's window)")
    dn.add_argument("--no-raw", action="store_true", help="do not store the raw 2TCFs in the output")
    dn.add_argument("--no-anomaly", action="store_true",
                    help="do not store the per-window anomaly scores (cned; stored by default, not with npy)")
    time_opts(dn, fits=False)
    exclude_opts(dn)
    input_opts(dn)
    common(dn)
    dn.set_defaults(func=_cmd_denoise)

    f = sub.add_parser("fit", help="Eq. 3 fits of each 1TCF or of time-resolved cuts (CSV + JSON)")
    f.add_argument("input", help="2TCF file (any format `denoise` reads)")
    f.add_argument("-o", "--output", required=True, help="output CSV (a JSON is written beside it)")
    f.add_argument("--fix-alpha", action="store_true", help="hold α = 1")
    f.add_argument("--fix-beta", action="store_true",
                   help="hold β at the data's β*(lag=1) (Eq. 7; biased low on series under 100 frames: warned)")
    f.add_argument("--cut-width", type=int, default=None, help="fit cuts of this width (frames) at every age")
    f.add_argument("--max-lag", type=int, default=None, help="largest lag fitted (frames)")
    f.add_argument("--model", default=None,
                   help="the model folder that denoised the file, or a shipped model by name (default: the one "
                        "the file records, else the shipped one)")
    time_opts(f)
    exclude_opts(f)
    input_opts(f)
    common(f)
    f.set_defaults(func=_cmd_fit)

    r = sub.add_parser("report", help="figures and an offline HTML page for a 2TCF file")
    r.add_argument("input", help="2TCF file; one written by `denoise` is reported as is")
    r.add_argument("-o", "--output", required=True, help="report folder")
    r.add_argument("--compare", default=None, help="comma-separated peers to add, e.g. gaussian,median")
    method_opts(r)
    r.add_argument("--cut-width", type=int, default=1, help="cut width (frames) of the Γ(t_a) figure")
    r.add_argument("--fix-alpha", action="store_true", help="fit with α = 1")
    time_opts(r)
    input_opts(r)
    common(r)
    r.set_defaults(func=_cmd_report)

    b = sub.add_parser("batch", help="denoise many files through Dask; bad files are reported and skipped")
    b.add_argument("inputs", nargs="+", help="2TCF files")
    b.add_argument("-o", "--output", required=True, help="output folder")
    b.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    b.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    method_opts(b)
    b.add_argument("--uncertainty", action="store_true",
                   help="store the model's per-pixel spread in each output (c2_std; our format)")
    b.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (resume an interrupted batch)")
    input_opts(b)
    common(b)
    b.set_defaults(func=_cmd_batch)

    ft = sub.add_parser("finetune", help="fine-tune the ensemble on your own frames (self-supervised, Noise2Noise "
                        "over random pixel halves); use the result with denoise --model")
    ft.add_argument("frames", help="frame stack: HDF5, .npy or a folder of TIFFs (T, H, W photon counts)")
    ft.add_argument("--rois", required=True, help="ROI label map (.npy or HDF5): 0 unused, 1..K")
    ft.add_argument("-o", "--output", required=True, help="model folder to write")
    ft.add_argument("--model", default=None, help="model folder to start from (default: shipped ensemble)")
    ft.add_argument("--epochs", type=int, default=10)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--dataset", default=None, help="HDF5 dataset of the frames")
    ft.add_argument("--rois-dataset", default=None, help="HDF5 dataset of the labels")
    ft.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    common(ft)
    ft.set_defaults(func=_cmd_finetune)
    return p


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit), raised like Ctrl-C so that temporary files are removed."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:  # the start-up handler of __init__
            signal.signal(signal.SIGINT, signal.default_int_handler)
    hook, excepthook = sys.unraisablehook, sys.excepthook
    sys.unraisablehook = _quiet_disk_full(hook)
    # Cython prints such errors through sys.excepthook first (a traceback without "Exception ignored")
    sys.excepthook = lambda t, v, tb: None if _disk_full(v) else excepthook(t, v, tb)
    try:
        try:
            parser = build_parser()  # imports torch: Ctrl-C here gets one line too
            a = parser.parse_args(argv)
            from ..nn.config import shipped_model

            if shipped_model(getattr(a, "model", None)) is not None:  # --model paper-2021: a shipped model by name
                a.model = str(shipped_model(a.model))
        except KeyboardInterrupt as exc:
            print("xpcs-denoise: " + ("terminated" if isinstance(exc, _Terminated) else "interrupted"),
                  file=sys.stderr)
            return 143 if isinstance(exc, _Terminated) else 130
        code = _run(a)
        if code == _DISK_FULL and argv is None:
            # HDF5 can crash the interpreter at exit while it frees a file whose writes failed (SIGSEGV, SIGBUS):
            # the temporary file is gone and the message printed, so the process ends here, finalizers skipped.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2 if code == _DISK_FULL else code
    finally:
        sys.unraisablehook, sys.excepthook = hook, excepthook
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: _run's code for a full disk (the process exits with 2).
_DISK_FULL = -28


def _disk_full(exc) -> bool:
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def _quiet_disk_full(default):
    """An unraisable-exception hook that drops HDF5's complaints, while objects of a file whose writes failed for a
    full disk are freed (dozens of traceback lines after the one-line error); anything else goes to ``default``."""
    def hook(unraisable):
        if not _disk_full(unraisable.exc_value):
            default(unraisable)
    return hook


def _run(a) -> int:
    try:
        return int(a.func(a) or 0)
    except XPCSInputError as exc:
        print(f"xpcs-denoise {a.command}: error: {_as_flags(str(exc))}", file=sys.stderr)
        return 2
    except _Terminated:
        print(f"xpcs-denoise {a.command}: terminated (SIGTERM); temporary files removed, no output written",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"xpcs-denoise {a.command}: interrupted; temporary files removed, no output written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"xpcs-denoise {a.command}: error: out of memory; use a smaller input or set "
              "XPCS_DENOISE_MAX_MEMORY_GB lower so that it is refused up front", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, disk full, a path that vanished: the system's reason, one line
        if _disk_full(exc):
            print(f"xpcs-denoise {a.command}: error: no space left on device while writing the output; nothing was "
                  "written (temporary files removed): free disk space or choose another folder", file=sys.stderr)
            return _DISK_FULL
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"xpcs-denoise {a.command}: error: {exc.strerror or exc}{where}; check the path, its permissions "
              "and free disk space", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 — never a traceback for users; XPCS_DENOISE_DEBUG=1 shows it
        import os

        if os.environ.get("XPCS_DENOISE_DEBUG"):
            raise
        msg = " ".join(str(exc).split())[:300]
        print(f"xpcs-denoise {a.command}: unexpected error: {type(exc).__name__}: {msg}; re-run with "
              "XPCS_DENOISE_DEBUG=1 to see the traceback, and please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
