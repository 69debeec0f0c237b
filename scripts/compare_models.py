"""Compare ensembles (and the peers) on the real validation split and on simulated crops.

    python scripts/compare_models.py pretrained runs/new [--data ../shared/data/cned_train.h5] [--n-sim 1000]

Prints, per model: real validation metrics with the card's β = 1 (inputs already in model units) and with
Eq. 5 estimated from each crop as a user's raw data would be; METHOD §6 metrics on simulated crops of known
dynamics (independent seed); and the bias of Γ on noise-free exponentials.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from xpcs_denoise import Denoiser, fit_g2, one_time_from_two_time
from xpcs_denoise.analysis.evaluation import compare_denoisers, format_table
from xpcs_denoise.core.scaling import card_split
from xpcs_denoise.core.simulation import simulate_crops
from xpcs_denoise.io.prepared import load_prepared


def load(name):
    return Denoiser.pretrained() if name == "pretrained" else Denoiser.from_directory(name)


def noise_free_bias(den, gammas=(0.01, 0.02, 0.03, 0.05, 0.08, 0.12), alphas=(1.0, 1.5)):
    tau = np.abs(np.arange(50)[:, None] - np.arange(50)[None, :])
    rows = {}
    for a in alphas:
        c2 = np.stack([1 + 0.2 * np.exp(-2 * (g * tau) ** a) for g in gammas])
        out = den.denoise(c2)
        f = fit_g2(one_time_from_two_time(out))
        rows[f"alpha={a}"] = (f.gamma / np.asarray(gammas) - 1).round(3).tolist()
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="../shared/data/cned_train.h5")
    p.add_argument("--n-sim", type=int, default=1000)
    p.add_argument("--sim-seed", type=int, default=11)
    p.add_argument("--peers", default="gaussian,tv,pca")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    ds = load_prepared(a.data)
    dens = {m: load(m) for m in a.models}
    first = next(iter(dens.values()))
    val = card_split(ds, first.card)
    measured, true, prm = simulate_crops(a.n_sim, seed=a.sim_seed)
    g2_true = one_time_from_two_time(true)
    truth = {"gamma": prm["gamma"], "beta": prm["beta"], "baseline": np.ones(a.n_sim), "alpha": prm["alpha"]}
    peers = [m for m in a.peers.split(",") if m]
    out = {}
    for label, units in (("real validation, beta=1", True), ("real validation, Eq. 5", False)):
        tab = compare_denoisers(val.inputs, targets=val.targets, target_index=val.target_index, methods=peers,
                                model_units=units)
        for m, den in dens.items():
            tab[f"cned:{m}"] = compare_denoisers(val.inputs, targets=val.targets, target_index=val.target_index,
                                                 methods=["cned"], model=den, model_units=units)["cned"]
        print(f"== {label}\n{format_table(tab)}")
        out[label] = tab
    tab = compare_denoisers(measured, truth=truth, methods=peers, model_units=False)
    tab["raw"]["mse_1tcf"] = float(np.mean((one_time_from_two_time(measured) - g2_true) ** 2))
    for m, den in dens.items():
        tab[f"cned:{m}"] = compare_denoisers(measured, truth=truth, methods=["cned"], model=den,
                                             model_units=False)["cned"]
        tab[f"cned:{m}"]["mse_1tcf"] = float(np.mean((one_time_from_two_time(den.denoise(measured)) - g2_true)
                                                     ** 2))
    print(f"== simulated ({a.n_sim} crops, seed {a.sim_seed})\n{format_table(tab)}")
    out["simulated"] = tab
    for m, den in dens.items():
        out[f"bias:{m}"] = noise_free_bias(den)
        print(f"== noise-free Γ bias, {m}: {out[f'bias:{m}']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
