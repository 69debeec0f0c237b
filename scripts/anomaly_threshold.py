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

The ensemble judges the shape of a decay; oscillations and steps within a window escape it. ``--structure-sim N``
(default 1200) artefact-free speckle series (150 frames, Poisson counts of :func:`simulate_speckle`, stationary or
ageing up to 10×, 0.01–3 photons per pixel per frame, 300–20,000 pixels) give the scales of the structure scores
(``anomaly_threshold.structure``, :func:`xpcs_denoise.nn.anomaly.structure_calibration`): a window is also
flagged where one of them exceeds its ``--structure-quantile`` over those clean windows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xpcs_denoise import Denoiser
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.simulation import simulate_speckle
from xpcs_denoise.io.prepared import load_prepared
from xpcs_denoise.nn.anomaly import anomaly_calibration, noise_calibration, noise_windows, structure_calibration


def _clean_series_windows(size, n_series, seed, n_frames=150, step=10):
    """Windows of artefact-free simulated speckle series: Γ 0.002–0.5 frames⁻¹ (log-uniform), β 0.05–0.5, α
    0.6–1.6 (stationary) or Γ changing smoothly by up to 10× over the series (ageing, every third series),
    0.01–3 photons per pixel per frame and 300–20,000 pixels (log-uniform)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_series):
        g0 = 10 ** rng.uniform(np.log10(0.002), np.log10(0.5))
        ageing = i % 3 == 2
        gamma = g0 * 10 ** (rng.uniform(-1, 1) * np.linspace(0, 1, n_frames)) if ageing else g0
        sim = simulate_speckle(n_frames, int(10 ** rng.uniform(np.log10(300), np.log10(20000))), gamma=gamma,
                               beta=rng.uniform(0.05, 0.5), alpha=1.0 if ageing else rng.uniform(0.6, 1.6),
                               mean_count=10 ** rng.uniform(-2, np.log10(3)), seed=int(rng.integers(2**31)))
        try:
            c2 = sim.two_time()[0]
        except XPCSInputError:  # a frame without a photon in the ROI: Eq. 1 is undefined, nothing to judge
            continue
        out.extend(c2[s:s + size, s:s + size] for s in range(0, n_frames - size + 1, step))
    return np.stack(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--noise-sim", type=int, default=3000, help="simulated crops for the noise levels (0: none)")
    p.add_argument("--structure-sim", type=int, default=1200, help="clean series for the structure scales (0: none)")
    p.add_argument("--structure-quantile", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=777)
    a = p.parse_args()
    den = Denoiser.from_directory(a.model)
    ref = den.card["latent_reference"]
    ds = load_prepared(a.data)
    val = set(den.card["split"]["val_target_names"])
    held = ds.subset_targets([i for i, nm in enumerate(ds.target_names) if nm in val])
    cal = anomaly_calibration(den, ref, held.inputs, held.target_index, quantile=a.quantile)
    if a.noise_sim:
        cal["by_noise"] = {**noise_calibration(den, ref, cal, noise_windows(den.size, a.noise_sim, a.seed),
                                               quantile=a.quantile),
                           "source": f"{a.noise_sim} simulated stationary crops (judged ranges, 0.003-3 photons per "
                                     f"pixel per frame), seed {a.seed}"}
    if a.structure_sim:
        cal["structure"] = {**structure_calibration(_clean_series_windows(den.size, a.structure_sim, a.seed),
                                                    quantile=a.structure_quantile),
                            "source": f"{a.structure_sim} artefact-free simulated speckle series (150 frames, "
                                      "stationary or ageing up to 10x, 0.01-3 photons per pixel per frame, "
                                      f"300-20,000 pixels), windows every 10 frames, seed {a.seed}"}
    cal.update({"split": "validation (held-out targets)",
                "data_sha256": ds.source_sha256,
                "command": f"python scripts/anomaly_threshold.py MODEL_DIR --quantile {a.quantile} --noise-sim "
                           f"{a.noise_sim} --structure-sim {a.structure_sim} --structure-quantile "
                           f"{a.structure_quantile} --seed {a.seed}"})
    path = Path(a.model) / "model_card.json"
    card = json.loads(path.read_text())
    card["anomaly_threshold"] = cal
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(path)
    print(json.dumps({k: v for k, v in cal.items() if k != "command"}, indent=1))


if __name__ == "__main__":
    main()
