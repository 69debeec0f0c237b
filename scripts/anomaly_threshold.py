"""Calibrate the anomaly threshold of a model on held-out real crops and store it in its model card.

    python scripts/anomaly_threshold.py MODEL_DIR [--data ../shared/data/cned_train.h5] [--quantile 0.99]

Needs the card's ``latent_reference`` (scripts/latent_reference.py, training crops). Uses the crops of the
validation targets the card names (``split.val_target_names``: whole 2TCFs the ensemble was never trained on),
in model units as stored. The scales of ``xpcs_denoise.nn.anomaly.combined_score`` are the medians of their latent
distances and residuals; the threshold is the ``quantile`` of their combined scores, so that share of held-out
real windows is flagged by construction. The user's data never enter it. The weights are not touched.

Both terms of the score grow as photons get scarce, so noisy data the model knows would be flagged: ``--noise-sim
N`` (default 3000) simulated stationary 50-frame 2TCFs over the judged ranges but 0.003–3 photons per pixel per
frame give, per noise level, what noise alone scores (``anomaly_threshold.by_noise``,
:func:`xpcs_denoise.nn.anomaly.noise_calibration`); scores are divided by it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xpcs_denoise import Denoiser
from xpcs_denoise.core.scaling import replace_diagonal, scale_parameters, to_model_units
from xpcs_denoise.core.simulation import JUDGED_RANGES, simulate_crops
from xpcs_denoise.io.prepared import load_prepared
from xpcs_denoise.nn.anomaly import anomaly_calibration, noise_calibration


def _simulated_windows(size, n, seed):
    """Stationary simulated crops in model units (Eq. 5 from each crop, lag 0 replaced), from few to many
    photons; crops without a measurable contrast are left out."""
    c2, _, _ = simulate_crops(n, size, seed=seed, **{**JUDGED_RANGES, "count_range": (0.003, 3.0)})
    b, base = scale_parameters(c2, size, partial=True)
    ok = np.isfinite(b)
    return replace_diagonal(to_model_units(c2[ok], b[ok], base[ok]), seed)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--noise-sim", type=int, default=3000, help="simulated crops for the noise levels (0: none)")
    p.add_argument("--seed", type=int, default=777)
    a = p.parse_args()
    den = Denoiser.from_directory(a.model)
    ref = den.card["latent_reference"]
    ds = load_prepared(a.data)
    val = set(den.card["split"]["val_target_names"])
    held = ds.subset_targets([i for i, nm in enumerate(ds.target_names) if nm in val])
    cal = anomaly_calibration(den, ref, held.inputs, held.target_index, quantile=a.quantile)
    if a.noise_sim:
        cal["by_noise"] = {**noise_calibration(den, ref, cal, _simulated_windows(den.size, a.noise_sim, a.seed),
                                               quantile=a.quantile),
                           "source": f"{a.noise_sim} simulated stationary crops (judged ranges, 0.003-3 photons per "
                                     f"pixel per frame), seed {a.seed}"}
    cal.update({"split": "validation (held-out targets)",
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
