"""Calibrate the anomaly threshold of a model on held-out real crops and store it in its model card.

    python scripts/anomaly_threshold.py MODEL_DIR [--data ../shared/data/cned_train.h5] [--quantile 0.99]

Needs the card's ``latent_reference`` (scripts/latent_reference.py, training crops). Uses the crops of the
validation targets the card names (``split.val_target_names``: whole 2TCFs the ensemble was never trained on),
in model units as stored. The scales of ``xpcs_denoise.nn.anomaly.combined_score`` are the medians of their latent
distances and residuals; the threshold is the ``quantile`` of their combined scores, so that share of held-out
real windows is flagged by construction. The user's data never enter it. The weights are not touched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xpcs_denoise import Denoiser
from xpcs_denoise.io.prepared import load_prepared
from xpcs_denoise.nn.anomaly import _encode, combined_score, window_scores


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--quantile", type=float, default=0.99)
    a = p.parse_args()
    den = Denoiser.from_directory(a.model)
    ref = den.card["latent_reference"]
    ds = load_prepared(a.data)
    val = set(den.card["split"]["val_target_names"])
    held = ds.subset_targets([i for i, nm in enumerate(ds.target_names) if nm in val])
    dist, resid = [], []
    for s in range(0, len(held.inputs), 512):
        x = np.asarray(held.inputs[s:s + 512], np.float64)
        z, out = _encode(den, x)
        d, r = window_scores(ref, z, x, out)
        dist.append(d)
        resid.append(r)
    dist, resid = np.concatenate(dist), np.concatenate(resid)
    cal = {"latent_scale": float(np.median(dist)), "residual_scale": float(np.median(resid))}
    score = combined_score(dist, resid, cal)
    thr = float(np.quantile(score, a.quantile))
    per_target = [float(np.mean(score[held.target_index == t] > thr)) for t in np.unique(held.target_index)]
    cal.update({"threshold": thr, "quantile": a.quantile, "n_crops": int(score.size),
                "n_targets": int(len(per_target)), "split": "validation (held-out targets)",
                "held_out_flagged_share": float(np.mean(score > thr)),
                "held_out_targets_with_any_flag": float(np.mean(np.asarray(per_target) > 0)),
                "latent_distance_quantiles": np.quantile(dist, [0.5, 0.9, 0.99]).round(4).tolist(),
                "residual_quantiles": np.quantile(resid, [0.5, 0.9, 0.99]).round(4).tolist(),
                "data_sha256": ds.source_sha256,
                "command": f"python scripts/anomaly_threshold.py MODEL_DIR --quantile {a.quantile}"})
    path = Path(a.model) / "model_card.json"
    card = json.loads(path.read_text())
    card["anomaly_threshold"] = cal
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(path)
    print(json.dumps({k: v for k, v in cal.items() if k != "command"}, indent=1))


if __name__ == "__main__":
    main()
