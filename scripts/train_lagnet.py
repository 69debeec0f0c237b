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
from xpcs_denoise.nn.lag_data import real_bands, simulated_bands
from xpcs_denoise.nn.lag_training import LagTrainConfig, train_lagnet

SIM = {"stat": (8000, 100, False, 1), "age": (2400, 160, True, 2), "stat_val": (600, 100, False, 11),
       "age_val": (200, 160, True, 12)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=250)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {}
    for name, (n, nf, ageing, seed) in SIM.items():
        path = out / f"{name}.npz"
        if not path.is_file():
            np.savez(path, **simulated_bands(n, nf, 64, seed=seed, ageing=ageing))
        with np.load(path) as z:
            data[name] = (z["x"], z["y"])
    card = json.loads((pretrained_directory() / "model_card.json").read_text())
    real = real_bands(a.data, val_names=card["split"]["val_target_names"])
    v = real["val"]
    data["real"] = (real["x"][~v], real["y"][~v])
    # Validation during training on a fixed subset (the full held-out set is for the benchmark).
    pick = np.random.default_rng(5).permutation(np.flatnonzero(v))[:800]
    data["real_val"] = (real["x"][pick], real["y"][pick])
    data["stat_val"] = tuple(a[:300] for a in data["stat_val"])
    data["age_val"] = tuple(a[:100] for a in data["age_val"])
    sha = hashlib.sha256(Path(a.data).read_bytes()).hexdigest()
    extra = {"name": "lagnet-2026", "training_data": {"real": Path(a.data).name, "real_sha256": sha,
             "real_train_crops": int((~v).sum()), "real_val_crops": int(v.sum()),
             "split": "series of the paper model's card split.val_target_names held out (every-2nd-frame copies too)",
             "simulated": {k: {"n": n, "frames": nf, "ageing": ag, "seed": s} for k, (n, nf, ag, s) in SIM.items()}}}
    cfg = LagTrainConfig(steps=a.steps, max_minutes=a.minutes, threads=a.threads, seed=a.seed,
                         eval_every=a.eval_every)
    train_lagnet(data, out, cfg, card_extra=extra)


if __name__ == "__main__":
    main()
