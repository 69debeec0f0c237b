"""Write the validation table of a trained ensemble into its model card (``validation_metrics``).

    python scripts/card_metrics.py MODEL_DIR [--data ../shared/data/cned_train.h5] [--n-sim 1000]

Real: METHOD §6 metrics of the ensemble and every available peer on the held-out validation series named in
the card (inputs in model units, β = 1), plus MRE(Γ) in 0.01 < Γ < 0.15 on the crops where every method's fit
succeeds. Simulated: the same metrics on simulated crops of known Γ, β, α (raw physical units, Eq. 5 from
each crop), MSE(1TCF) against the noise-free 1TCF. The weights are not touched, so their SHA-256 still holds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xpcs_denoise import Denoiser, denoise, fit_g2, one_time_from_two_time
from xpcs_denoise.analysis.evaluation import GAMMA_BAND, available_methods, fit_metrics, truth_from_targets
from xpcs_denoise.core.scaling import card_split
from xpcs_denoise.core.simulation import simulate_crops
from xpcs_denoise.io.prepared import load_prepared

PARAMS = ("gamma", "beta", "baseline", "alpha")


def _table(inputs, truth, g2_true, methods, den, model_units):
    scale = {"beta": 1.0, "baseline": 1.0} if model_units else {}
    outs = {"raw": inputs}
    for m in methods:
        outs[m] = denoise(inputs, m, model=den, **scale)
    table, success = {}, {}
    for m, out in outs.items():
        table[m] = {k: round(v, 5) if isinstance(v, float) else v for k, v in
                    fit_metrics(out, truth, g2_true).items()}
        success[m] = fit_g2(one_time_from_two_time(out)).success
    return table, success, outs


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--n-sim", type=int, default=1000)
    p.add_argument("--sim-seed", type=int, default=11)
    p.add_argument("--bm3d-from", default=None, metavar="CARD",
                   help="copy BM3D's real-validation row from this card (same split; it does not depend on the "
                        "model) instead of recomputing it (~0.5 s per crop); BM3D is then left out of the "
                        "simulated table")
    a = p.parse_args()
    card_path = Path(a.model) / "model_card.json"
    den = Denoiser.from_directory(a.model)
    methods = ["cned", *[m for m in available_methods() if m != "cned"]]
    if a.bm3d_from:
        methods = [m for m in methods if m != "bm3d"]
        old = json.loads(Path(a.bm3d_from).read_text())["validation_metrics"]["table"]
    ds = load_prepared(a.data)
    val = card_split(ds, den.card)
    fit_t = truth_from_targets(val.targets)
    truth = {k: np.asarray(getattr(fit_t, k))[val.target_index] for k in PARAMS}
    g2t = one_time_from_two_time(val.targets)[val.target_index]
    # Eq. 5 from each crop, as a user's data is scaled (the crops are stored in Eq. 4 units)
    real, success, outs = _table(val.inputs, truth, g2t, methods, den, False)
    if a.bm3d_from:
        real["bm3d"] = old["bm3d"]
    band = np.isfinite(truth["gamma"]) & (truth["gamma"] > GAMMA_BAND[0]) & (truth["gamma"] < GAMMA_BAND[1])
    common = band & np.logical_and.reduce([s for m, s in success.items() if m != "bm3d"])
    common_mre = {}
    for m, out in outs.items():
        if m == "bm3d":
            continue
        f = fit_g2(one_time_from_two_time(out[common]))
        common_mre[m] = round(float(np.mean(np.abs(f.gamma - truth["gamma"][common]) / truth["gamma"][common])), 4)

    measured, true, prm = simulate_crops(a.n_sim, seed=a.sim_seed)
    sim_truth = {"gamma": prm["gamma"], "beta": prm["beta"], "baseline": np.ones(a.n_sim), "alpha": prm["alpha"]}
    sim, _, _ = _table(measured, sim_truth, one_time_from_two_time(true), methods, den, False)

    card = json.loads(card_path.read_text())
    card["validation_metrics"] = {
        "description": (f"METHOD §6 metrics on the held-out validation series ({real['raw']['n']} real CHX crops "
                        "with a converged target fit; truth = Eq. 3 fit, 4 free parameters, of each target "
                        "1TCF); every method sees each crop scaled by its own Eq. 5 contrast, as a user's data; "
                        "each method scored on its own successful fits; peers at the widths chosen on an "
                        "inner split of the training targets (scripts/tune_peers.py)"),
        "command": "python scripts/card_metrics.py MODEL_DIR",
        "table": real,
        "common_subset": {
            "description": (f"MRE(Gamma) for 0.01<Gamma<0.15 on the {int(common.sum())} crops where every "
                            "denoiser's fit succeeds (bm3d excluded)"),
            "mre_gamma_band": common_mre,
        },
        "simulated": {
            "description": (f"{a.n_sim} simulated 50-frame crops (scripts: simulate_crops seed {a.sim_seed}: Γ "
                            "0.003-0.5 log-uniform, β 0.05-0.5, α 0.5-2, 0.05-2 photons/pixel/frame, 500-3000 "
                            "pixels), raw physical units with Eq. 5 from each crop; truth = simulation "
                            "parameters; MSE(1TCF) against the noise-free 1TCF"),
            "table": sim,
        },
    }
    card_path.write_text(json.dumps(card, indent=1))
    for title, tab in (("real", real), ("simulated", sim)):
        print(title)
        for m, row in tab.items():
            print(f"  {m:9s} " + " ".join(f"{k}={row[k]}" for k in ("mre_gamma_band", "mse_1tcf", "failed")))
    print("common subset", common_mre)


if __name__ == "__main__":
    main()
