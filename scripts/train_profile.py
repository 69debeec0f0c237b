"""Train the profile stage (nn.lagnet.ProfileNet) on a trained lag-band model and write the model with it.

    python scripts/train_profile.py --data ../shared/data/cned_train.h5 --init src/xpcs_denoise/pretrained/lagnet \
        --out runs/profile1 --steps 2000 --seed 1

The base model's outputs are computed once and cached in ``--out`` (``inputs_*.npz``; about 15 minutes on one
thread): the real CHX crops (the base card's held-out series excluded), and simulated stationary series
(``nn.lag_data.simulated_bands``) of 50 frames (12,000) and, with ``--long``, 100 frames (2,000) and 200 frames
(1,000). Training then takes about 10 minutes per 2,000 steps on one thread (25 with ``--long``; a run with them
read worse on real crops and on fast simulated decays, docs/model.md, so the shipped stage has none).
The output folder holds the model (base weights unchanged, the profile stage added) and its card, with this
run's settings under ``profile_stage``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from xpcs_denoise.core.band import band_mask, band_mean
from xpcs_denoise.nn.config import pretrained_directory
from xpcs_denoise.nn.lag_data import real_bands, simulated_bands
from xpcs_denoise.nn.lagnet import LagDenoiser, LagNet, LagNetConfig, save_lagnet
from xpcs_denoise.nn.profile_training import ProfileTrainConfig, profile_inputs, profile_theta, train_profile

#: Simulated sources: (seed, frames, count) — stationary series over nn.lag_data.TRAIN_RANGES.
SIM_SOURCES = ((1, 50, 4000), (4, 50, 4000), (5, 50, 4000), (7, 100, 2000), (8, 200, 1000))


def _mean_1tcf(bands, n_frames):
    return band_mean(bands, band_mask(n_frames, bands.shape[1]))


def sources(den: LagDenoiser, data: str, cache: Path, val_names, long: bool = False) -> list[dict]:
    out = []
    path = cache / "inputs_real.npz"
    if not path.is_file():
        r = real_bands(data, val_names=val_names)
        tr = ~r["val"]
        res = profile_inputs(den, r["x"][tr], 50)
        res["g_y"] = _mean_1tcf(r["y"][tr], 50)
        # The fit cost's truth: the fit of the file's target (the mean of all the target's crops).
        res["theta"] = profile_theta(_mean_1tcf(r["y_mean"][tr], 50))
        np.savez(path, **res)
    out.append({**np.load(path), "n_frames": 50, "kind": "real"})
    sims = {}
    for seed, frames, n in SIM_SOURCES:
        if frames > 50 and not long:
            continue
        path = cache / f"inputs_sim{seed}_{frames}.npz"
        if not path.is_file():
            s = simulated_bands(n, frames, frames - 1, seed=seed)
            res = profile_inputs(den, s["x"], frames)
            res["g_y"] = _mean_1tcf(s["y"], frames)
            res["theta"] = profile_theta(res["g_y"])
            np.savez(path, **res)
        sims.setdefault(frames, []).append(dict(np.load(path)))
    for frames, parts in sims.items():  # one source per length
        out.append({**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, "n_frames": frames,
                    "kind": "sim" if frames == 50 else "long"})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--init", required=True, help="the trained lag-band model folder (its weights stay as they are)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-fit", type=float, default=1.0)
    ap.add_argument("--weight-fit-bias", type=float, default=0.0)
    ap.add_argument("--bias-kinds", default="sim", help="sources the bias term applies to: real,sim,long")
    ap.add_argument("--batch-sim", type=int, default=96)
    ap.add_argument("--weight-mean", type=float, default=0.0)
    ap.add_argument("--weight-fit-held", type=float, default=0.0,
                    help="fit cost of a fit with α held at the target's, beside the free fit's")
    ap.add_argument("--weight-unbiased", type=float, default=0.0,
                    help="cost on the mean output-less-input 1TCF per Γ octave and lag (ProfileTrainConfig)")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--bound", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--long", action="store_true", help="also 100- and 200-frame simulated series")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    den = LagDenoiser.from_directory(a.init)
    card = dict(den.card)
    cfg = ProfileTrainConfig(steps=a.steps, lr=a.lr, weight_fit=a.weight_fit, seed=a.seed, max_minutes=a.minutes,
                             weight_fit_bias=a.weight_fit_bias, bias_kinds=tuple(a.bias_kinds.split(",")),
                             batch_sim=a.batch_sim, weight_mean=a.weight_mean,
                             weight_unbiased=a.weight_unbiased, weight_fit_held=a.weight_fit_held)
    mcfg = LagNetConfig(**{**asdict(den.config), "profile_channels": a.channels, "profile_bound": a.bound})
    torch.manual_seed(a.seed)
    model = LagNet(mcfg)
    model.load_state_dict({**den.model.state_dict(),
                           **{f"profile.{k}": v for k, v in model.profile.state_dict().items()}})
    # The same held-out series as the base model's training (the paper model's card split).
    split = json.loads((pretrained_directory() / "model_card.json").read_text())["split"]["val_target_names"]
    srcs = sources(den, a.data, out, split, long=a.long)
    log = open(out / "train.log", "a")

    def write(row):
        print(row, flush=True)
        log.write(json.dumps(row) + "\n")
        log.flush()

    def checkpoint(step):
        torch.save({k: v for k, v in model.profile.state_dict().items()}, out / "profile_last.pt")
        if step % 500 == 0:
            torch.save({k: v for k, v in model.profile.state_dict().items()}, out / f"profile_{step}.pt")

    logs = train_profile(model.profile, mcfg.profile_bound, srcs, cfg, log=write, checkpoint=checkpoint)
    card = {k: v for k, v in card.items() if k not in ("benchmark", "calibration")}
    card["profile_stage"] = {"training": asdict(cfg), "sources": [list(s) for s in SIM_SOURCES],
                             "base_weights_sha256": den.card.get("weights_sha256"),
                             "real_sha256": hashlib.sha256(Path(a.data).read_bytes()).hexdigest(),
                             "log": logs[-5:], "command": " ".join(sys.argv)}
    save_lagnet(model, out / "model", card)
    print("saved", out / "model")


if __name__ == "__main__":
    main()
