"""Training configuration: one dataclass behind the CLI, training and the model card, importable without torch
(the CLI builds its ``train`` options from it at start-up); the names of the denoising methods; where the shipped
model lives."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..core.defaults import WINDOW  # noqa: F401  (re-exported: the peers' window without a model)

__all__ = ["TrainConfig", "METHODS", "METHOD_ALIASES", "SHIPPED_MODELS", "WINDOW", "pretrained_directory",
           "shipped_model"]

#: Every denoising method of :func:`xpcs_denoise.denoise` (the registry's names, importable without torch).
METHODS = ("lagnet", "cned", "gaussian", "median", "tv", "age", "adaptive", "pca", "bm3d", "none")

#: Other names of methods: the paper's network by its year.
METHOD_ALIASES = {"paper-2021": "cned"}



#: The shipped models by name (``--model NAME``): their folders under :func:`pretrained_directory`.
SHIPPED_MODELS = {"lagnet": "lagnet", "lagnet_ageing": "lagnet_ageing", "paper-2021": ".", "cned": "."}


def pretrained_directory() -> Path:
    """Folder of the ensemble (and the PCA filter) shipped with the package."""
    return Path(str(resources.files("xpcs_denoise") / "pretrained"))


def shipped_model(name) -> Path | None:
    """The folder of the shipped model called ``name`` (:data:`SHIPPED_MODELS`), or None for any other text (a
    folder of that name in the working directory is still a folder, not a name)."""
    if not isinstance(name, str) or name not in SHIPPED_MODELS or Path(name).exists():
        return None
    return (pretrained_directory() / SHIPPED_MODELS[name]).resolve()


@dataclass
class TrainConfig:
    """Training hyper-parameters. Paper values: batch 8, lr 2.5e-6–4e-5, decay 0.9995/epoch, 100 members,
    keep 10. Our default learning rate is higher (1e-4) so that training converges within a 2-core CPU budget;
    early stopping on the validation cost still decides when each member stops."""

    n_members: int = 20
    keep: int = 10
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 0.9995
    max_epochs: int = 60
    patience: int = 6
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    split_by: str = "series"
    max_hours: float | None = None
    threads: int | None = None
    #: Simulated crops (:func:`simulated_pairs`) added to the training split, and a fifth as many (another
    #: seed) to the validation split, so that members learn Eq. 3 shapes beyond the real data's and are
    #: selected on both.
    simulated: int = 0
    #: How simulated crops are brought to model units: "true" β (Eq. 4) or "estimated" from the crop (Eq. 5).
    simulated_contrast: str = "true"
    #: Re-scale the real crops (given in Eq. 4 units) by their own Eq. 5 contrast estimate, inputs and targets
    #: alike, so that training sees exactly what inference sees.
    rescale_real: bool = False
    #: Simulated crops over :data:`SIMULATED_RANGES` with real-like baseline offsets (:data:`BASELINE_OFFSET`)
    #: instead of :func:`simulate_crops`' defaults. Measured this round (see the README): less bias on simulated
    #: data in some Γ bins, but a higher MRE(Γ) on the real validation series than the shipped ensemble, so
    #: not the default.
    simulated_realistic: bool = False
    #: End the run once fewer than this share of the members are still improving: the stragglers are slow
    #: starters that rarely reach the kept set, and every member costs the same batched compute.
    min_active_fraction: float = 0.25
    #: Successive halving: after this many epochs keep only the ``prune_to`` members with the lowest
    #: validation cost and train those on (0: never). Screening many members briefly and finishing few makes
    #: the paper's 100-candidate protocol affordable on a CPU; the final ``keep`` are chosen as without it.
    prune_after: int = 0
    prune_to: int = 0
