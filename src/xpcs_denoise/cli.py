"""Command line: ``xpcs-denoise <command>``; ``xpcs-denoise <command> --help`` for each."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import XPCSInputError


def _cmd_demo(a):
    from .workflows import run_demo

    summary = run_demo(a.out, seed=a.seed, progress=not a.quiet)
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"demo report written to {summary['report']}")
        for row in summary["rois"]:
            print(f"  ROI {row['roi']}: q = {row['q']:.4f} 1/A, true Gamma = {row['gamma_true']:.4f}/frame, "
                  f"raw fit {row['gamma_raw']:.4f}, denoised fit {row['gamma_denoised']:.4f}")
    return 0


def _cmd_train(a):
    from .model import ModelConfig
    from .training import TrainConfig, train_ensemble

    cfg = TrainConfig(n_members=a.members, keep=a.keep, batch_size=a.batch_size, lr=a.lr, lr_decay=a.lr_decay,
                      max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, split_seed=a.split_seed,
                      val_fraction=a.val_fraction,
                      split_by=a.split_by, max_hours=a.max_hours, threads=a.threads)
    mcfg = ModelConfig(size=a.size, channels=a.channels, latent=a.latent)
    command = "xpcs-denoise " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("xpcs-denoise") else None
    _, card = train_ensemble(a.data, a.output, cfg, mcfg, resume=not a.restart, progress=not a.quiet,
                             command=command)
    print(json.dumps(card["ensemble_validation"]) if a.json else
          f"kept {len(card['kept_members'])} of {cfg.n_members} members; model in {a.output}")
    return 0


def _cmd_latent_study(a):
    from .training import TrainConfig, latent_study

    cfg = TrainConfig(lr=a.lr, max_epochs=a.max_epochs, patience=a.patience, seed=a.seed, threads=a.threads)
    rows = latent_study(a.data, a.output, [int(v) for v in a.latents.split(",")], members=a.members, config=cfg,
                        progress=not a.quiet)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"latent {r['latent']:4d}: val cost {r['val_cost']:.4f}, MSE(1TCF) {r['mse_1tcf']:.4g}, "
                  f"MRE(Gamma) band {r['mre_gamma_band']:.3f}")
    return 0


def _cmd_evaluate(a):
    from .workflows import evaluate_model

    methods = a.methods.split(",") if a.methods else None
    table = evaluate_model(a.model, a.data, split=a.split, methods=methods, seed=a.seed)
    if a.json:
        print(json.dumps(table, indent=2))
    else:
        from .evaluation import format_table

        print(format_table(table))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xpcs-denoise", description="Denoise XPCS two-time correlation functions "
                                "with CNN encoder-decoder ensembles.")
    p.add_argument("--version", action="version", version=f"xpcs-denoise {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        sp.add_argument("--json", action="store_true", help="machine-readable summary on stdout")

    d = sub.add_parser("demo", help="simulate, correlate, denoise and fit a small experiment; write a report")
    d.add_argument("--out", default="xpcs-denoise-demo", help="report folder (default ./xpcs-denoise-demo)")
    d.add_argument("--seed", type=int, default=0)
    common(d)
    d.set_defaults(func=_cmd_demo)

    from .training import TrainConfig

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
    t.add_argument("--threads", type=int, default=None, help="torch threads")
    t.add_argument("--size", type=int, default=50, help="input size n (n×n crops)")
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
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except XPCSInputError as exc:
        print(f"xpcs-denoise {a.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
