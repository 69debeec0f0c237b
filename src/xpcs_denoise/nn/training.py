"""Training of CNN-ED ensembles (METHOD §3): Eq. 8 cost, Adam, per-epoch learning-rate decay, early stopping,
checkpoints with exact resume, member selection by validation MSE(1TCF), and the model card.

All members train at once as one batched model; each member sees its own shuffle of the training crops.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..core.defaults import WINDOW
from ..core.errors import XPCSInputError
from ..core.scaling import (
    PreparedDataset,
    matrix_to_triu,
    replace_diagonal,
    scale_parameters,
    split_by_target,
    to_model_units,
)
from ..core.simulation import simulate_crops
from ..core.validation import check_int, check_seed
from ..io.files import atomic_path
from ..io.prepared import load_prepared
from .config import TrainConfig
from .model import PARAM_NAMES, CNNEDEnsemble, ModelConfig, save_ensemble

__all__ = ["TrainConfig", "train_ensemble", "evaluate_members", "simulated_pairs"]


#: Simulated training dynamics and noise: wider than the range the tool is judged on (Γ 0.003–0.4 frames⁻¹,
#: 0.01–1 photons per pixel per frame, 100–20,000 pixels, β 0.05–0.5, α 0.6–1.8), so that no judged rate sits
#: at the edge of what the members learned (a regression to the mean pulls edge rates inwards).
SIMULATED_RANGES = {"gamma_range": (0.001, 1.0), "beta_range": (0.03, 0.6), "alpha_range": (0.5, 2.0),
                    "count_range": (0.01, 1.5), "pixel_range": (100, 20000), "min_photons": 60.0}


#: Baseline offsets C∞ − 1 of simulated crops, as a share of their contrast: (mean, sd, low, high) of a clipped
#: normal. The simulator is ergodic (C∞ = 1), but the real training targets' Eq. 3 fits have C∞ − 1 ≈ 0.08 β
#: (median; quartiles 0.04–0.17, 5–95 % −0.2–0.5 in Eq. 4 units): without offsets the members learn that every
#: tail ends at 1 and read a real offset as a slower decay.
BASELINE_OFFSET = (0.08, 0.15, -0.3, 0.6)


def rescale_pairs(inputs: np.ndarray, targets: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bring (B, n, n) input crops and their targets (both in Eq. 4 units) to each input's own Eq. 5 scale.

    Returns (inputs, targets, kept): crops whose contrast cannot be estimated are dropped. Lag 0 of the inputs
    is drawn again from their rescaled lag-1 values.
    """
    beta, _ = scale_parameters(inputs, inputs.shape[-1], partial=True)
    ok = np.isfinite(beta)
    x = replace_diagonal(to_model_units(inputs[ok], beta[ok]), seed)
    y = to_model_units(targets[ok], beta[ok])
    return x.astype(np.float32), y.astype(np.float32), ok


def simulated_pairs(n: int, size: int = WINDOW, seed: int = 0, contrast: str = "estimated",
                    ranges: dict | None = None, offset: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), each (m ≤ n, size, size) float32 in model units, from simulated speckle series.

    ``contrast="true"`` scales both by the simulation's β (Eq. 4, as the real training data, whose β* comes
    from the photon statistics); ``"estimated"`` scales the noisy crop as at inference (Eq. 5: β̂ = mean lag-1
    value − 1) and its noise-free target by the same β̂. Inputs have lag 0 replaced by lag-1 draws, targets
    the noise-free lag-1 value; crops without contrast (β̂ ≤ 0) are dropped. With ``offset`` both get the
    same baseline offset C∞ − 1 (:data:`BASELINE_OFFSET`), as real 2TCFs have.
    """
    if contrast not in ("true", "estimated"):
        raise XPCSInputError(f"contrast must be 'true' or 'estimated'; got {contrast!r}")
    measured, true, prm = simulate_crops(n, size, seed=seed, **(SIMULATED_RANGES if ranges is None else ranges))
    if offset:
        mu, sd, lo, hi = BASELINE_OFFSET
        rel = np.clip(np.random.default_rng([seed, 7]).normal(mu, sd, len(measured)), lo, hi)
        shift = (rel * prm["beta"])[:, None, None]
        measured, true = measured + shift, true + shift
    # the paper's Eq. 5 as it is (C∞ = 1): the simulator is ergodic, and its offsets are part of what is learned
    beta, _ = scale_parameters(measured, size, baseline=1.0, partial=True)
    ok = np.isfinite(beta)
    if contrast == "true":
        beta = prm["beta"]
    x = replace_diagonal(to_model_units(measured[ok], beta[ok]), seed)
    y = to_model_units(true[ok], beta[ok])
    i = np.arange(size)
    y[:, i, i] = y[:, 0, 1][:, None]
    return x.astype(np.float32), y.astype(np.float32)


def _cached_pairs(out_dir: Path, n: int, size: int, seed: int, contrast: str, realistic: bool = False):
    """:func:`simulated_pairs`, kept in ``out_dir`` so that a resumed run does not simulate them again."""
    path = out_dir / f"simulated_{n}_{size}_{seed}_{contrast}{'_real-like' if realistic else ''}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["x"], z["y"]
    x, y = (simulated_pairs(n, size, seed=seed, contrast=contrast) if realistic else
            simulated_pairs(n, size, seed=seed, contrast=contrast, ranges={}, offset=False))
    with atomic_path(path, overwrite=True) as tmp:
        np.savez(tmp, x=x, y=y)
    return x, y


def _member_rng(seed: int, epoch: int, member: int) -> np.random.Generator:
    # Shuffles derive from (seed, epoch, member) alone: a resumed run sees the same batches.
    return np.random.default_rng([seed, epoch, member])


@torch.no_grad()
def evaluate_members(model: CNNEDEnsemble, inputs_tri: torch.Tensor, targets_tri: torch.Tensor,
                     chunk: int = 256) -> dict[str, np.ndarray]:
    """Per-member validation cost (Eq. 8) and MSE(1TCF) on triangles; plus the same for the members' mean."""
    m = model.n_members
    cost = torch.zeros(m, dtype=torch.float64)
    mse1 = torch.zeros(m, dtype=torch.float64)
    n = inputs_tri.shape[0]
    for s in range(0, n, chunk):
        x, t = inputs_tri[s:s + chunk], targets_tri[s:s + chunk]
        out = model.forward_tri(x)
        cost += model.cost_tri(out, t[None].expand_as(out)).double() * x.shape[0]
        g = ((model.one_time_tri(out) - model.one_time_tri(t)[None]) ** 2).mean(dim=-1)
        mse1 += g.sum(dim=1).double()
    return {"val_cost": (cost / n).numpy(), "val_mse_1tcf": (mse1 / n).numpy()}


def _save_checkpoint(path: Path, model, best, opt, state: dict):
    from safetensors.torch import save_file

    tensors = {f"param.{k}": getattr(model, k).detach().contiguous() for k in PARAM_NAMES}
    tensors.update({f"best.{k}": v.contiguous() for k, v in best.items()})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            tensors[f"adam.{i}.exp_avg"] = st["exp_avg"].contiguous()
            tensors[f"adam.{i}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            tensors[f"adam.{i}.step"] = st["step"].reshape(1).contiguous()
    with atomic_path(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})


def _load_checkpoint(path: Path, model, best, opt) -> dict:
    try:
        return _read_checkpoint(path, model, best, opt)
    except XPCSInputError:
        raise
    except Exception as exc:  # safetensors' own errors, a missing key, bad JSON: one line, not a traceback
        raise XPCSInputError(f"checkpoint {path} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                             "; delete it or pass resume=False to start again") from exc


def _read_checkpoint(path: Path, model, best, opt) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        state = json.loads(f.metadata()["state"])
        if not isinstance(state, dict):
            raise XPCSInputError(f"checkpoint {path} holds no training state; pass resume=False to start again")
        for k in PARAM_NAMES:  # a run with other --members/--size/--channels/--latent: say so, before copying
            shape = tuple(f.get_slice(f"param.{k}").get_shape()) if f"param.{k}" in f.keys() else None
            if shape != tuple(getattr(model, k).shape):
                raise XPCSInputError(
                    f"checkpoint {path} was written by a run with other settings ({k}: {shape} here "
                    f"{tuple(getattr(model, k).shape)}); use that run's TrainConfig.n_members and ModelConfig (size, "
                    "channels, latent), or pass resume=False to start again")
        with torch.no_grad():
            for k in PARAM_NAMES:
                p, b = f.get_tensor(f"param.{k}"), f.get_tensor(f"best.{k}")
                if not (torch.isfinite(p).all() and torch.isfinite(b).all()):
                    raise XPCSInputError(f"checkpoint {path} holds non-finite weights ({k}); it cannot be resumed: "
                                         "pass resume=False to start again")
                getattr(model, k).copy_(p)
                best[k].copy_(b)
        for i, p in enumerate(opt.param_groups[0]["params"]):
            if f"adam.{i}.exp_avg" in f.keys():
                opt.state[p] = {"step": f.get_tensor(f"adam.{i}.step").reshape(()),
                                "exp_avg": f.get_tensor(f"adam.{i}.exp_avg"),
                                "exp_avg_sq": f.get_tensor(f"adam.{i}.exp_avg_sq")}
    return state


def _checkpoint_state(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads(f.metadata()["state"])
    except Exception as exc:  # a damaged file or metadata: one line, not a traceback
        raise XPCSInputError(f"checkpoint {path} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                             "; delete it or pass resume=False to start again") from exc
    if not isinstance(state, dict):
        raise XPCSInputError(f"checkpoint {path} holds no training state; pass resume=False to start again")
    return state


def _adam(model: CNNEDEnsemble, lr: float) -> torch.optim.Optimizer:
    params = [getattr(model, k) for k in PARAM_NAMES]
    try:  # the fused CPU kernel saves ~10 % of a step; same algorithm
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def _prune(model: CNNEDEnsemble, best: dict, opt, state: dict, keep: int):
    """Keep the ``keep`` members with the lowest best validation cost: model, best weights, Adam moments and
    the per-member state sliced alike, so training goes on exactly as if only they had been trained."""
    order = sorted(np.argsort(state["best_val"], kind="stable")[:keep].tolist())
    idx = torch.as_tensor(order, dtype=torch.long)
    new = model.select(order)
    new_opt = _adam(new, opt.param_groups[0]["lr"])
    for p_old, p_new in zip(opt.param_groups[0]["params"], new_opt.param_groups[0]["params"], strict=True):
        st = opt.state.get(p_old)
        if st:
            new_opt.state[p_new] = {"step": st["step"].clone(), "exp_avg": st["exp_avg"][idx].clone(),
                                    "exp_avg_sq": st["exp_avg_sq"][idx].clone()}
    for key in ("best_val", "best_epoch", "bad_epochs", "member_ids", "initial_val"):
        if key in state:
            state[key] = [state[key][j] for j in order]
    return new, {k: v[idx].clone() for k, v in best.items()}, new_opt


def train_ensemble(data: str | Path | PreparedDataset, out_dir: str | Path, config: TrainConfig | None = None,
                   model_config: ModelConfig | None = None, *, resume: bool = True, progress: bool = True,
                   command: str | None = None, init_model: CNNEDEnsemble | None = None,
                   val_data: PreparedDataset | None = None) -> tuple[CNNEDEnsemble, dict]:
    """Train ``config.n_members`` CNN-ED members, keep the best ``config.keep`` and save them to ``out_dir``.

    Parameters
    ----------
    data : path or PreparedDataset
        Prepared dataset (``cned_train.h5`` layout). It is split into training and validation by series /
        target (``config.split_by``), never by crop.
    out_dir : path
        Receives ``checkpoint.safetensors`` (every epoch), ``training_log.csv``, and at the end
        ``model.safetensors`` and ``model_card.json``.
    resume : bool
        Continue from ``out_dir/checkpoint.safetensors`` if present (same result as an uninterrupted run).
    init_model : CNNEDEnsemble, optional
        Start from these weights (fine-tuning) instead of Xavier draws; its member count is used.
    val_data : PreparedDataset, optional
        Validation crops; then all of ``data`` is training data (no split by series).

    Returns
    -------
    model, card : the selected ensemble (eval mode) and its model card.
    """
    config = config or TrainConfig()
    model_config = model_config or ModelConfig()
    check_int(config.n_members, "TrainConfig.n_members", 1)
    check_int(config.batch_size, "TrainConfig.batch_size", 1)
    check_seed(config.seed, "TrainConfig.seed")
    check_seed(config.split_seed, "TrainConfig.split_seed")
    if not (np.isfinite(config.lr) and config.lr > 0):
        raise XPCSInputError(f"learning rate (TrainConfig.lr) must be a finite number > 0; got {config.lr}")
    if not (np.isfinite(config.lr_decay) and 0 < config.lr_decay <= 1):
        raise XPCSInputError(f"learning-rate decay (TrainConfig.lr_decay) must be in (0, 1] per epoch; got "
                             f"{config.lr_decay}")
    if config.max_hours is not None and not (np.isfinite(config.max_hours) and config.max_hours > 0):
        raise XPCSInputError(f"max_hours (TrainConfig.max_hours) must be a finite number > 0; got {config.max_hours}")
    check_int(config.max_epochs, "TrainConfig.max_epochs", 1)
    if config.keep > config.n_members or config.keep < 1:
        raise XPCSInputError(f"keep ({config.keep}) must be between 1 and n_members ({config.n_members})")
    check_int(config.prune_after, "TrainConfig.prune_after", 0)
    if config.prune_after and init_model is not None:
        raise XPCSInputError("pruning (prune_after) screens freshly initialised members; it does not apply when "
                             "fine-tuning an existing ensemble (init_model)")
    if config.prune_after and not config.keep <= config.prune_to <= config.n_members:
        raise XPCSInputError(f"prune_to ({config.prune_to}) must be between keep ({config.keep}) and n_members "
                             f"({config.n_members})")
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out_dir = Path(out_dir)
    data_path = None
    if not isinstance(data, PreparedDataset):
        data_path = Path(data)
        data = load_prepared(data_path)
    if data.size != model_config.size:
        raise XPCSInputError(f"dataset crops are {data.size}×{data.size} but the model expects "
                             f"{model_config.size}×{model_config.size}")
    if init_model is not None:
        model_config = init_model.config
        config = TrainConfig(**{**asdict(config), "n_members": init_model.n_members,
                                "keep": min(config.keep, init_model.n_members)})
    if val_data is None:
        train_t, val_t = split_by_target(data, config.val_fraction, config.split_seed, config.split_by)
        tr, va = data.subset_targets(train_t), data.subset_targets(val_t)
    else:
        train_t, val_t = np.arange(len(data.targets)), np.arange(len(val_data.targets))
        tr, va = data, val_data
    out_dir.mkdir(parents=True, exist_ok=True)  # after the checks: a refused run leaves no folder
    if config.rescale_real:
        # Per-crop targets: each input and its target are scaled by that input's own contrast estimate.
        xr, yr, _ = rescale_pairs(tr.inputs, tr.targets[tr.target_index], seed=config.seed)
        xvr, yvr, _ = rescale_pairs(va.inputs, va.targets[va.target_index], seed=config.seed + 3)
        x_tr, y_tr = torch.as_tensor(matrix_to_triu(xr)), torch.as_tensor(matrix_to_triu(yr))
        i_tr = torch.arange(len(xr))
        x_va, y_va = torch.as_tensor(matrix_to_triu(xvr)), torch.as_tensor(matrix_to_triu(yvr))
    else:
        x_tr = torch.as_tensor(matrix_to_triu(tr.inputs), dtype=torch.float32)
        y_tr = torch.as_tensor(matrix_to_triu(tr.targets), dtype=torch.float32)
        i_tr = torch.as_tensor(tr.target_index, dtype=torch.long)
        x_va = torch.as_tensor(matrix_to_triu(va.inputs), dtype=torch.float32)
        y_va = torch.as_tensor(matrix_to_triu(va.targets), dtype=torch.float32)[
            torch.as_tensor(va.target_index, dtype=torch.long)]
    if config.simulated:
        real_like = config.simulated_realistic
        xs, ys = _cached_pairs(out_dir, config.simulated, model_config.size, config.seed + 1,
                               config.simulated_contrast, real_like)
        xv, yv = _cached_pairs(out_dir, max(1, config.simulated // 5), model_config.size, config.seed + 2,
                               config.simulated_contrast, real_like)
        i_tr = torch.cat([i_tr, torch.arange(len(ys)) + y_tr.shape[0]])
        x_tr = torch.cat([x_tr, torch.as_tensor(matrix_to_triu(xs))])
        y_tr = torch.cat([y_tr, torch.as_tensor(matrix_to_triu(ys))])
        x_va = torch.cat([x_va, torch.as_tensor(matrix_to_triu(xv))])
        y_va = torch.cat([y_va, torch.as_tensor(matrix_to_triu(yv))])

    torch.manual_seed(config.seed)
    ckpt = out_dir / "checkpoint.safetensors"
    log_path = out_dir / "training_log.csv"
    model = CNNEDEnsemble(config.n_members, model_config, seed=config.seed)
    resumed = _checkpoint_state(ckpt) if resume and ckpt.is_file() else None
    if (resumed and config.prune_after and resumed["epoch"] >= config.prune_after
            and len(resumed.get("member_ids", [])) == config.prune_to):
        model = model.select(range(config.prune_to))  # a pruned run: its survivors' shapes
    if init_model is not None:
        with torch.no_grad():
            for k in PARAM_NAMES:
                getattr(model, k).copy_(getattr(init_model, k))
    best = {k: getattr(model, k).detach().clone() for k in PARAM_NAMES}
    opt = _adam(model, config.lr)
    m = model.n_members
    state = {"epoch": 0, "best_val": [float("inf")] * m, "best_epoch": [0] * m, "bad_epochs": [0] * m,
             "train_seconds": 0.0, "member_ids": list(range(m))}
    if init_model is not None:
        # Fine-tuning keeps a member's starting weights unless an epoch beats them on validation: never worse.
        model.eval()
        state["best_val"] = [float(v) for v in evaluate_members(model, x_va, y_va)["val_cost"]]
        state["initial_val"] = list(state["best_val"])
    if resumed:
        state = _load_checkpoint(ckpt, model, best, opt)
        state.setdefault("member_ids", list(range(m)))  # checkpoints written before pruning existed
    elif log_path.exists():
        log_path.unlink()

    n_train = x_tr.shape[0]
    bs = config.batch_size
    n_steps = (n_train + bs - 1) // bs
    start_wall = time.time()
    epoch = state["epoch"]
    while epoch < config.max_epochs:
        if config.prune_after and epoch >= config.prune_after and m > config.prune_to:
            model, best, opt = _prune(model, best, opt, state, config.prune_to)
            m = model.n_members
        ids = state["member_ids"]
        active = [state["bad_epochs"][j] < config.patience for j in range(m)]
        if not any(active) or sum(active) < config.min_active_fraction * m:
            break
        if config.max_hours and (state["train_seconds"] + 0) / 3600 >= config.max_hours:
            break
        for g in opt.param_groups:
            g["lr"] = config.lr * config.lr_decay**epoch
        perms = torch.as_tensor(np.stack([_member_rng(config.seed, epoch, ids[j]).permutation(n_train)
                                          for j in range(m)]))
        t0 = time.time()
        model.train()
        run_cost = torch.zeros(m, dtype=torch.float64)
        steps = range(n_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.max_epochs}", unit="batch", leave=False,
                         mininterval=2.0)
        for s in steps:
            idx = perms[:, s * bs:(s + 1) * bs]
            x = x_tr[idx]
            y = y_tr[i_tr[idx]]
            cost = model.cost_tri(model.forward_tri(x), y)
            opt.zero_grad(set_to_none=True)
            cost.sum().backward()
            opt.step()
            run_cost += cost.detach().double() * idx.shape[1]
        model.eval()
        ev = evaluate_members(model, x_va, y_va)
        dt = time.time() - t0
        state["train_seconds"] += dt
        epoch += 1
        with torch.no_grad():
            for j in range(m):
                v = float(ev["val_cost"][j])
                if not active[j]:
                    continue
                if v < state["best_val"][j]:
                    state["best_val"][j], state["best_epoch"][j], state["bad_epochs"][j] = v, epoch, 0
                    for k in PARAM_NAMES:
                        best[k][j] = getattr(model, k)[j]
                else:
                    state["bad_epochs"][j] += 1
        state["epoch"] = epoch
        new_log = not log_path.exists()
        with open(log_path, "a", newline="") as fh:
            w = csv.writer(fh)
            if new_log:
                w.writerow(["epoch", "member", "train_cost", "val_cost", "val_mse_1tcf", "lr", "seconds",
                            "active"])
            for j in range(m):
                w.writerow([epoch, ids[j], f"{run_cost[j] / n_train:.6g}", f"{ev['val_cost'][j]:.6g}",
                            f"{ev['val_mse_1tcf'][j]:.6g}", f"{opt.param_groups[0]['lr']:.4g}", f"{dt:.1f}",
                            int(active[j])])
        _save_checkpoint(ckpt, model, best, opt, state)
        if progress:
            print(f"epoch {epoch}: {dt:.0f}s, val cost median {np.median(ev['val_cost']):.4f} "
                  f"(best {np.min(state['best_val']):.4f}), active {sum(active)}/{m}", file=sys.stderr,
                  flush=True)

    # Best state of every member, then keep the `keep` best by validation MSE(1TCF) (as the paper).
    final = CNNEDEnsemble(m, model_config, seed=None)
    with torch.no_grad():
        for k in PARAM_NAMES:
            getattr(final, k).copy_(best[k])
    final.eval()
    ev = evaluate_members(final, x_va, y_va)
    order = np.argsort(ev["val_mse_1tcf"])[: config.keep]
    chosen = final.select(order.tolist())
    chosen.eval()
    ens_out = evaluate_members(_MeanOf(chosen), x_va, y_va)
    card = {
        "name": "xpcs-denoise CNN-ED ensemble",
        "created_unix": int(time.time()),
        "training_data": {
            "file": str(data_path.name) if data_path else None,
            "sha256": data.source_sha256,
            "n_inputs": int(len(data.inputs)), "n_targets": int(len(data.targets)),
        },
        "split": {"by": config.split_by, "val_fraction": config.val_fraction, "seed": config.split_seed,
                  "train_targets": int(len(train_t)), "val_targets": int(len(val_t)),
                  "train_inputs": int(n_train), "val_inputs": int(x_va.shape[0]),
                  "val_target_names": (list(va.target_names) if val_data is not None else
                                       [data.target_names[i] for i in val_t] if data.target_names else [])},
        "training": {**asdict(config), "epochs_run": int(state["epoch"]),
                     "train_seconds": round(state["train_seconds"], 1),
                     "seconds_per_epoch": round(state["train_seconds"] / max(1, state["epoch"]), 1),
                     "torch": torch.__version__, "python": platform.python_version(),
                     "threads": torch.get_num_threads(),
                     **({"initial_val_cost": state["initial_val"]} if "initial_val" in state else {})},
        "members": [
            {"index": int(state["member_ids"][j]), "best_epoch": int(state["best_epoch"][j]),
             "val_cost": float(ev["val_cost"][j]), "val_mse_1tcf": float(ev["val_mse_1tcf"][j]),
             "kept": bool(j in set(order.tolist()))}
            for j in range(m)
        ],
        "kept_members": [int(state["member_ids"][j]) for j in order],
        **({"pruned": {"after_epoch": config.prune_after, "screened": config.n_members,
                       "survivors": [int(j) for j in state["member_ids"]]}} if m < config.n_members else {}),
        "ensemble_validation": {"val_cost": float(ens_out["val_cost"][0]),
                                "val_mse_1tcf": float(ens_out["val_mse_1tcf"][0])},
        "retrain_command": command or "xpcs-denoise train DATA.h5 -o MODEL_DIR",
    }
    save_ensemble(chosen, out_dir, card)
    (out_dir / "wall_seconds.txt").write_text(f"{time.time() - start_wall:.1f}\n")
    return chosen, json.loads((out_dir / "model_card.json").read_text())


class _MeanOf(torch.nn.Module):
    """Wraps an ensemble so that it looks like a one-member model whose output is the members' mean."""

    def __init__(self, ens: CNNEDEnsemble):
        super().__init__()
        self.ens = ens
        self.n_members = 1

    def forward_tri(self, x):
        return self.ens.forward_tri(x).mean(dim=0, keepdim=True)

    def cost_tri(self, out, target):
        return self.ens.cost_tri(out, target)

    def one_time_tri(self, tri):
        return self.ens.one_time_tri(tri)
