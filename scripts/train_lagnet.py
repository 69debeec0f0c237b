"""Train the lag-band model (issue 29): simulated bands (made here and cached in the run folder) and the real
CHX crops, held out by series as the paper model's card holds them out, so that both are judged on the same
unseen series.

    python scripts/train_lagnet.py --data ../shared/data/cned_train.h5 --out runs/lagnet --minutes 60
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from xpcs_denoise.nn.config import pretrained_directory
from xpcs_denoise.nn.lag_data import TRAIN_RANGES, real_bands, simulated_bands
from xpcs_denoise.nn.lag_training import LagTrainConfig, train_lagnet
from xpcs_denoise.nn.lagnet import LagNetConfig

# name: (series, frames, ageing, seed); the long ones age slowly (Γ0 0.003–0.2, at most 6× over the series)
SIM = {"stat": (8000, 100, False, 1), "age": (2400, 160, True, 2), "stat_val": (600, 100, False, 11),
       "age_val": (200, 160, True, 12), "long": (1500, 320, False, 3), "longage": (1500, 320, True, 4),
       "long_val": (100, 320, False, 21), "longage_val": (100, 320, True, 22),
       "age400": (600, 400, True, 5), "age400_val": (48, 400, True, 25),
       "stat50": (6000, 50, False, 7), "stat50_val": (400, 50, False, 17)}
SLOW = {"gamma0": (0.003, 0.2), "ratio": (1 / 6, 6.0)}
#: The regime of issue 29's ageing bar, broadened: 400 frames, Γ0 0.01–0.2 changing 2–10× up or down (smoothly
#: or in a step), 5,000–50,000 pixels at 0.05–1 photons per pixel per frame.
AGE400 = {"gamma0": (0.01, 0.2), "ratio": (0.1, 10.0), "pixels": (5e3, 5e4), "count": (0.05, 1.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--init", default=None, help="model folder to start from (fine-tuning)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-1tcf", type=float, default=1.0)
    ap.add_argument("--weight-tail", type=float, default=1.0)
    ap.add_argument("--weight-cut", type=float, default=0.0, help="weight of the cuts' cost (lag_training._cut_cost)")
    ap.add_argument("--weight-pooled", type=float, default=0.0,
                    help="weight of the 1TCF cost pooled over the batch (lag_training.LagTrainConfig.weight_pooled)")
    ap.add_argument("--weight-far", type=float, default=0.0,
                    help="weight of the far lags' level cost (lag_training.LagTrainConfig.weight_far)")
    ap.add_argument("--weight-fit", type=float, default=0.0,
                    help="weight of the plain-fit cost on Γ (lag_training.LagTrainConfig.weight_fit)")
    ap.add_argument("--weight-fit-bias", type=float, default=0.0,
                    help="weight of the fit cost's bias term (lag_training.LagTrainConfig.weight_fit_bias)")
    ap.add_argument("--fit-informative", type=float, default=1.0,
                    help="the fit cost uses 2TCFs whose input fit is within this of the truth in log Γ")
    ap.add_argument("--fit-start", default="truth", choices=("truth", "user"),
                    help="where the fit cost's fit of the output starts (lag_training.LagTrainConfig.fit_start)")
    ap.add_argument("--weight-pixel", type=float, default=1.0,
                    help="weight of the band's squared-error cost (lag_training.LagTrainConfig.weight_pixel)")
    ap.add_argument("--fit-alpha-resolved", type=float, default=0.0,
                    help="the shape term's least Γ·K of the target (lag_training.LagTrainConfig.fit_alpha_resolved)")
    ap.add_argument("--weight-fit-alpha", type=float, default=0.0,
                    help="weight of the fit cost's shape term (lag_training.LagTrainConfig.weight_fit_alpha)")
    ap.add_argument("--loss-norm", default="l2", choices=("l2", "l1"),
                    help="norm of the band's and the 1TCF's costs (lag_training.LagTrainConfig.loss_norm)")
    ap.add_argument("--lr-schedule", default="onecycle", choices=("onecycle", "constant"),
                    help="the learning rate over the run (lag_training.LagTrainConfig.lr_schedule)")
    ap.add_argument("--smooth-widths", default=None, help="e.g. 2,6,16,40 (default: the architecture's)")
    ap.add_argument("--dilations", default=None, help="e.g. 1x1,1x2,2x4,2x8,4x16,1x32,1x1 (lag x age)")
    ap.add_argument("--mix", action="store_true", help="add the head that mixes each cell with its smooths along age")
    ap.add_argument("--level", action="store_true",
                    help="add the level input (lagnet.LagNetConfig.level_feature: where 1 lies in the network's units)")
    ap.add_argument("--context", type=int, default=0,
                    help="channels of the context branch (lagnet.LagNetConfig.context_channels; 0: none)")
    ap.add_argument("--lr-context", type=float, default=1.0,
                    help="the context branch's learning rate as a multiple of --lr")
    ap.add_argument("--offset-power", type=float, default=1.0,
                    help="draw simulated baselines' offsets as 0.4 β u^p (lag_data.simulated_bands; 1: uniform)")
    ap.add_argument("--schedule", default="real,real,stat,stat,age", help="sources of successive steps")
    ap.add_argument("--alpha", default=None,
                    help="low,high: α of the simulated stationary series (default: lag_data.TRAIN_RANGES; the "
                         "simulator takes α <= 2, where Eq. 3's field correlation is valid)")
    a = ap.parse_args()
    alpha = None
    if a.alpha:
        try:
            alpha = tuple(float(v) for v in a.alpha.split(","))
        except ValueError:
            alpha = ()
        if len(alpha) != 2 or not 0 < alpha[0] < alpha[1] <= 2:
            ap.error(f"--alpha must be low,high with 0 < low < high <= 2; got {a.alpha!r}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {}
    schedule = tuple(a.schedule.split(","))
    for name, (n, nf, ageing, seed) in SIM.items():
        if name.split("_")[0] not in schedule:  # only the sources this run trains on
            continue
        path = out / f"{name}.npz"
        if not path.is_file():
            extra = dict(SLOW if name.startswith("long") else AGE400 if name.startswith("age400") else {})
            if alpha and not ageing:
                extra["alpha"] = alpha
            np.savez(path, **simulated_bands(n, nf, min(64, nf - 1), seed=seed, ageing=ageing,
                                             offset_power=a.offset_power, **extra))
        with np.load(path) as z:
            data[name] = (z["x"], z["y"])
    card = json.loads((pretrained_directory() / "model_card.json").read_text())
    real = real_bands(a.data, val_names=card["split"]["val_target_names"])
    v = real["val"]
    data["real"] = (real["x"][~v], real["y"][~v])
    # Validation during training on a fixed subset (the full held-out set is for the benchmark).
    pick = np.random.default_rng(5).permutation(np.flatnonzero(v))[:800]
    data["real_val"] = (real["x"][pick], real["y"][pick])
    for name, keep in (("stat_val", 300), ("age_val", 100), ("stat50_val", 300)):
        if name in data:
            data[name] = tuple(a[:keep] for a in data[name])
    for name in [k for k in data if k.split("_")[0] not in schedule]:
        del data[name]
    sha = hashlib.sha256(Path(a.data).read_bytes()).hexdigest()
    extra = {"name": "lagnet-2026", "training_data": {"real": Path(a.data).name, "real_sha256": sha,
             "real_train_crops": int((~v).sum()), "real_val_crops": int(v.sum()),
             "split": "series of the paper model's card split.val_target_names held out (every-2nd-frame copies too)",
             "simulated": {k: {"n": n, "frames": nf, "ageing": ag, "seed": s} for k, (n, nf, ag, s) in SIM.items()
                           if k.split("_")[0] in schedule},
             "simulated_alpha": list(alpha) if alpha else list(TRAIN_RANGES["alpha"]),
             "simulated_offset_power": a.offset_power}}
    cfg = LagTrainConfig(steps=a.steps, max_minutes=a.minutes, threads=a.threads, seed=a.seed,
                         eval_every=a.eval_every, lr=a.lr, lr_context=a.lr_context, schedule=schedule,
                         weight_1tcf=a.weight_1tcf, weight_tail=a.weight_tail, weight_cut=a.weight_cut,
                         weight_pooled=a.weight_pooled, weight_far=a.weight_far, weight_fit=a.weight_fit,
                         weight_fit_bias=a.weight_fit_bias, fit_informative=a.fit_informative, fit_start=a.fit_start,
                         weight_fit_alpha=a.weight_fit_alpha, fit_alpha_resolved=a.fit_alpha_resolved,
                         weight_pixel=a.weight_pixel, lr_schedule=a.lr_schedule,
                         loss_norm=a.loss_norm)
    if a.init:
        extra["fine_tuned_from"] = json.loads((Path(a.init) / "lagnet_card.json").read_text()).get("training")
    arch = {}
    if a.init:  # the starting model's architecture, to which the options below may add
        arch = json.loads((Path(a.init) / "lagnet_card.json").read_text())["architecture"]
        arch.pop("family", None)
    if a.smooth_widths:
        arch["smooth_widths"] = tuple(float(w) for w in a.smooth_widths.split(","))
    if a.dilations:
        arch["dilations"] = tuple(tuple(int(v) for v in d.split("x")) for d in a.dilations.split(","))
    if a.mix:
        arch["mix"] = True
    if a.level:
        arch["level_feature"] = True
    if a.context:
        arch["context_channels"] = a.context
    train_lagnet(data, out, cfg, model_config=LagNetConfig(**arch), card_extra=extra,
                 init=Path(a.init) if a.init else None)


if __name__ == "__main__":
    main()
