"""Self-supervised fine-tuning of an ensemble on the user's own frames (Noise2Noise, METHOD §7).

The pixels of each q-ROI are split at random into two disjoint halves. The 2TCFs of the two halves share the
sample's dynamics and carry independent photon noise, so each is an unbiased noisy target for the other: the
expected squared error against a noisy target is the error against the clean one plus a constant, and a model
trained on such pairs learns the same map as one trained on clean targets (Lehtinen et al., 2018). No clean
target is needed, and the model learns the user's own dynamics, contrast and noise.

Several random splits of the pixels give more pairs, and every-second-frame copies double the range of rates,
as the paper's augmentation. The last ``val_fraction`` of the frames is held out: its crops validate, and a
member keeps its starting weights unless fine-tuning lowers its validation cost (never worse on held-out data).
The learning rate (2·10⁻⁴) was chosen on seeds 0–1 of ``benchmarks/bench_finetune.py`` and measured on seeds 2–4
(README): the gain is out of the shipped model's range of rates; inside it the shipped model is kept about as is.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..core.correlation import two_time
from ..core.defaults import WINDOW
from ..core.errors import XPCSInputError
from ..core.scaling import PreparedDataset, diagonal_crops, replace_diagonal, scale_parameters, to_model_units
from ..core.validation import check_int
from ..io.files import atomic_path
from .anomaly import anomaly_calibration, latent_reference, noise_calibration, noise_windows
from .denoiser import Denoiser, _pretrained
from .training import TrainConfig, train_ensemble

__all__ = ["half_split_two_times", "noise2noise_pairs", "finetune"]


def half_split_two_times(frames, labels, *, n_splits: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2TCFs of two disjoint random halves of every ROI's pixels, for ``n_splits`` random splits.

    Returns (A, B), each (n_splits, K, T, T) float64 (Eq. 1 of each half). A frame without a photon in a half
    gives that half's row and column NaN (instead of an error); :func:`noise2noise_pairs` drops crops across it.
    """
    labels = np.asarray(labels)
    flat = labels.reshape(-1)
    k = int(flat.max()) if flat.size else 0
    if k < 1:
        raise XPCSInputError("labels hold no ROI (all 0)")
    counts = np.bincount(flat[flat > 0], minlength=k + 1)[1:]
    if np.any(counts < 4):
        raise XPCSInputError(f"ROI(s) {(np.flatnonzero(counts < 4) + 1).tolist()} have fewer than 4 pixels: "
                             "too few to split into two halves")
    rng = np.random.default_rng(seed)
    out_a, out_b = [], []
    for _ in range(int(n_splits)):
        half = rng.random(flat.size) < 0.5
        for part, out in ((half, out_a), (~half, out_b)):
            lab = np.where(part, flat, 0)
            out.append(two_time(frames, lab.reshape(labels.shape), exclude=_dark_frames(frames, lab, k)))
    return np.stack(out_a), np.stack(out_b)


def _dark_frames(frames, flat_labels, k):
    """(K, T) mask of the frames without a photon in a part of an ROI (their 2TCF rows are NaN), or None."""
    fr = np.asarray(frames).reshape(np.shape(frames)[0], -1)
    sums = np.stack([fr[:, flat_labels == j].sum(axis=1) for j in range(1, k + 1)])
    dark = sums <= 0
    return dark if dark.any() else None


def noise2noise_pairs(c2_a, c2_b, size: int = WINDOW, *, step: int = 10, every=(1, 2), seed: int = 0,
                      frames: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) in model units from pairs of half-pixel 2TCFs, both directions (A→B and B→A).

    Crops of ``size`` frames along the diagonal every ``step`` frames, of the 2TCFs of every ``every``-th frame,
    within ``frames`` (a slice of the series). Each input is scaled by its own Eq. 5 contrast and its target by
    the same; lag 0 of both is replaced by lag-1 draws. Crops without contrast are dropped.
    """
    a = np.asarray(c2_a, dtype=np.float64).reshape(-1, *np.shape(c2_a)[-2:])
    b = np.asarray(c2_b, dtype=np.float64).reshape(-1, *np.shape(c2_b)[-2:])
    if frames is not None:
        a, b = a[:, frames, frames], b[:, frames, frames]
    xs, ys = [], []
    rng = np.random.default_rng(seed)
    for ev in every:
        sa, sb = a[:, ::ev, ::ev], b[:, ::ev, ::ev]
        if sa.shape[-1] < size:
            continue
        for src, tgt in ((sa, sb), (sb, sa)):
            for i in range(src.shape[0]):
                xs.append(diagonal_crops(src[i], size, step))
                ys.append(diagonal_crops(tgt[i], size, step))
    if not xs:
        raise XPCSInputError(f"the series is shorter than the model's window ({size} frames)")
    x, y = np.concatenate(xs), np.concatenate(ys)
    beta, _ = scale_parameters(x, size, partial=True) if len(x) else (np.zeros(0), None)
    # crops across a frame without photons in a part (NaN rows) are dropped
    ok = np.isfinite(beta) & np.isfinite(x).all(axis=(1, 2)) & np.isfinite(y).all(axis=(1, 2))
    if not ok.any():
        raise XPCSInputError("no crop of the series shows contrast: nothing to fine-tune on")
    x = replace_diagonal(to_model_units(x[ok], beta[ok]), rng)
    y = replace_diagonal(to_model_units(y[ok], beta[ok]), rng)
    return x.astype(np.float32), y.astype(np.float32)


def _dataset(x, y, name):
    return PreparedDataset(inputs=x, targets=y, target_index=np.arange(len(x), dtype=np.int32),
                           input_names=[f"{name}_{i}" for i in range(len(x))],
                           target_names=[f"{name}_{i}" for i in range(len(x))])


def finetune(frames, labels, out_dir, *, model=None, epochs: int = 10, lr: float = 2e-4, batch_size: int = 16,
             n_splits: int = 4, val_fraction: float = 0.25, seed: int = 0, threads: int | None = None,
             progress: bool = True):
    """Fine-tune an ensemble on a user's series by Noise2Noise over random pixel halves; save it to ``out_dir``.

    Parameters
    ----------
    frames : array_like (T, H, W) or (T, P)
        Photon counts of the series.
    labels : array_like (H, W) or (P,)
        ROI labels 1..K (0 unused).
    model : Denoiser, path or None
        The ensemble to start from (default: the shipped one).
    epochs, lr, batch_size : training settings (Adam, the Eq. 8 cost against the other half's 2TCF).
    n_splits : int
        Random pixel splits (pairs of half-ROI 2TCFs per ROI).
    val_fraction : float
        Last share of the frames held out for validation.

    Returns
    -------
    (Denoiser, card) : the fine-tuned ensemble and its model card (base model hash, data hash, seeds,
    validation cost before and after).
    """
    if model is None:
        base = _pretrained()
    elif isinstance(model, Denoiser):
        base = model
    else:
        base = Denoiser.from_directory(model)
    size = base.size
    if not 0 < val_fraction < 1:
        raise XPCSInputError(f"val_fraction must be in (0, 1); got {val_fraction}")
    check_int(epochs, "epochs", 1)  # before any work: int(2.5) or 0 epochs would train silently otherwise
    if not (np.isfinite(lr) and lr > 0):
        raise XPCSInputError(f"lr must be a finite number > 0; got {lr}")
    t0 = time.time()
    a, b = half_split_two_times(frames, labels, n_splits=n_splits, seed=seed)
    n_frames = a.shape[-1]
    n_val = int(round(val_fraction * n_frames))
    if n_frames - n_val < size or n_val < size:
        raise XPCSInputError(f"{n_frames} frames are too few to fine-tune: need {size} frames for training and "
                             f"{size} held out (val_fraction {val_fraction}); use a longer series")
    cut = n_frames - n_val
    x_tr, y_tr = noise2noise_pairs(a, b, size, step=max(1, size // 5), seed=seed, frames=slice(0, cut))
    x_va, y_va = noise2noise_pairs(a, b, size, step=max(1, size // 5), seed=seed + 1,
                                   frames=slice(cut, n_frames), every=(1,))
    digest = hashlib.sha256(np.ascontiguousarray(a, np.float32).tobytes()).hexdigest()
    config = TrainConfig(n_members=base.n_members, keep=base.n_members, batch_size=batch_size, lr=lr,
                         lr_decay=1.0, max_epochs=int(epochs), patience=max(2, int(epochs)), seed=seed,
                         threads=threads, simulated=0, rescale_real=False, min_active_fraction=0.0)
    tuned, card = train_ensemble(_dataset(x_tr, y_tr, "train"), out_dir, config, init_model=base.model,
                                 val_data=_dataset(x_va, y_va, "val"), progress=progress, resume=False,
                                 command="xpcs-denoise finetune FRAMES --rois LABELS -o MODEL_DIR")
    base_card = base.card or {}
    card["name"] = "xpcs-denoise CNN-ED ensemble, fine-tuned on the user's frames (Noise2Noise)"
    card["finetune"] = {
        "base_model_sha256": base_card.get("weights_sha256"),
        "base_model_name": base_card.get("name"),
        "data_sha256": digest,
        "frames": int(n_frames), "rois": int(a.shape[1]), "held_out_frames": [int(cut), int(n_frames)],
        "n_splits": int(n_splits), "seed": int(seed), "epochs": int(epochs), "lr": float(lr),
        "train_pairs": int(len(x_tr)), "val_pairs": int(len(x_va)),
        "val_cost_before": card["training"].get("initial_val_cost"),
        "val_cost_after": [m["val_cost"] for m in card["members"]],
        "seconds": round(time.time() - t0, 1),
    }
    card["training_data"] = {"file": None, "sha256": digest, "n_inputs": int(len(x_tr)), "n_targets": int(len(x_tr))}
    # the base card's evaluation of bias and calibration is kept for reference: it was measured on the base (the
    # fine-tuned model's own calibration is measured again: app.pipeline.finetune_file, uncertainty.recalibrate)
    for key in ("uncertainty", "validation_metrics", "bias", "calibration"):
        if key in base_card:
            card[f"base_{key}"] = base_card[key]
    if "uncertainty" in base_card:
        card["uncertainty"] = base_card["uncertainty"]  # the cuts' bootstrap scale (cut_fits)
    # Fine-tuning moves the latent space, so the base card's reference no longer applies: "what the model has
    # learned" is now the user's training stretch, and its held-out last frames calibrate the threshold.
    tuned_den = Denoiser(tuned, card)
    card["latent_reference"] = {**latent_reference(tuned_den, x_tr), "source": "fine-tuning crops (user's frames)"}
    # Every held-out window position (step 1), not only the validation crops: a short held-out stretch gives
    # few crops, and the 99th percentile of few is about their maximum.
    x_cal, _ = noise2noise_pairs(a, b, size, step=1, seed=seed + 2, frames=slice(cut, n_frames), every=(1,))
    card["anomaly_threshold"] = {
        **anomaly_calibration(tuned_den, card["latent_reference"], x_cal, quantile=0.99),
        "split": f"held-out frames {cut}-{n_frames} of the fine-tuning series",
        "source": f"held-out crops of the fine-tuning series (frames {cut}-{n_frames}, every window position, "
                  "not trained on)"}
    # What noise alone scores with the tuned weights, per noise level (as scripts/anomaly_threshold.py does for the
    # shipped model): without it, few-photon windows of the user's own kind of data would be flagged.
    cal = card["anomaly_threshold"]
    cal["by_noise"] = {**noise_calibration(tuned_den, card["latent_reference"], cal,
                                           noise_windows(size, 1000, seed + 3), quantile=0.99),
                       "source": f"1000 simulated stationary crops (judged ranges, 0.003-3 photons per pixel per "
                                 f"frame), seed {seed + 3}"}
    # The structure scores use no network: the base card's scales (artefact-free simulated series) still hold.
    if "structure" in base_card.get("anomaly_threshold", {}):
        card["anomaly_threshold"]["structure"] = base_card["anomaly_threshold"]["structure"]
    path = Path(out_dir) / "model_card.json"
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    for f in Path(out_dir).glob("checkpoint.safetensors"):
        f.unlink()
    return Denoiser.from_directory(out_dir), card
