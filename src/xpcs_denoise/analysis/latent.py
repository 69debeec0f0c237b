"""The paper's Fig. 3: ensembles of a few members trained for each latent size and scored on the same validation
split (cost, MSE(1TCF), MRE(Γ), MSE of β, C∞, α)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..core.scaling import PreparedDataset, split_by_target
from ..io.prepared import load_prepared
from ..nn.config import TrainConfig
from ..nn.model import ModelConfig
from ..nn.training import train_ensemble
from .evaluation import compare_methods

__all__ = ["latent_study"]


def latent_study(data: str | Path | PreparedDataset, out_dir: str | Path, latents=(1, 2, 4, 8, 16, 32), *,
                 members: int = 4, config: TrainConfig | None = None, progress: bool = True) -> list[dict]:
    """The paper's Fig. 3: for each latent size, train ``members`` members and score the ensemble.

    For every latent size the validation split is the same (``config.split_seed``); the metrics are the validation
    cost (Eq. 8, members' mean), MSE(1TCF) of the ensemble mean, and MRE(Γ) (overall and
    0.01 < Γ < 0.15) and the MSE of β, C∞, α from Eq. 3 fits of the ensemble's mean 1TCF against the
    target's fit. Writes ``latent_study.csv``, ``latent_study.json`` and ``latent_study.png`` to ``out_dir``.
    """
    config = config or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, PreparedDataset):
        data = load_prepared(data)
    _, val_t = split_by_target(data, config.val_fraction, config.split_seed, config.split_by)
    va = data.subset_targets(val_t)
    rows = []
    for lat in latents:
        cfg = TrainConfig(**{**asdict(config), "n_members": members, "keep": members})
        model, card = train_ensemble(data, out_dir / f"latent_{lat}", cfg, ModelConfig(latent=int(lat)),
                                     progress=progress)

        def mean_output(x, model=model):
            xt = model.to_triangle(torch.as_tensor(np.asarray(x, np.float32)))
            return model.to_full(model.predict_tri(xt).mean(dim=0)).double().numpy()

        table = compare_methods(va.inputs, va.targets, va.target_index, {"cned": mean_output})["cned"]
        rows.append({"latent": int(lat), "members": members,
                     "val_cost": float(np.mean([m["val_cost"] for m in card["members"]])), **table})
    keys = list(rows[0])
    with open(out_dir / "latent_study.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (out_dir / "latent_study.json").write_text(json.dumps(rows, indent=2) + "\n")
    _plot_latent_study(rows, out_dir / "latent_study.png")
    return rows


def _plot_latent_study(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = [r["latent"] for r in rows]
    panels = [("val_cost", "validation cost (Eq. 8)"), ("mse_1tcf", "MSE(1TCF)"),
              ("mre_gamma_band", "MRE(Γ), 0.01<Γ<0.15"), ("mse_beta", "MSE(β)"), ("mse_baseline", "MSE(C∞)"),
              ("mse_alpha", "MSE(α)")]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), constrained_layout=True)
    for ax, (key, label) in zip(axes.ravel(), panels, strict=False):
        ax.plot(lat, [r[key] for r in rows], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("latent dimension")
        ax.set_ylabel(label)
    fig.savefig(path, dpi=90)
    plt.close(fig)
