import json

import numpy as np
import pytest
import torch

from xpcs_denoise import XPCSInputError
from xpcs_denoise.core.scaling import (
    PreparedDataset,
    diagonal_crops,
    matrix_to_triu,
    prepare_two_times,
    replace_diagonal,
    split_by_target,
    triu_to_matrix,
)
from xpcs_denoise.io.prepared import load_prepared, write_prepared
from xpcs_denoise.nn.denoiser import Denoiser
from xpcs_denoise.nn.model import CNNEDEnsemble, ModelConfig, load_ensemble, save_ensemble, to_reference_modules
from xpcs_denoise.nn.training import TrainConfig, train_ensemble


def _sym(rng, *shape):
    x = rng.normal(size=shape + (50, 50)).astype(np.float32)
    return x + np.swapaxes(x, -1, -2)


def test_batched_members_equal_the_papers_plain_network():
    rng = np.random.default_rng(0)
    ens = CNNEDEnsemble(3, seed=1)
    x = torch.as_tensor(_sym(rng, 4))
    out = ens(x)
    assert out.shape == (3, 4, 50, 50)
    for m, ref in enumerate(to_reference_modules(ens)):
        np.testing.assert_allclose(ref(x[:, None])[:, 0].detach(), out[m].detach(), atol=2e-6)
    fast = ens.predict_tri(ens.to_triangle(x))
    np.testing.assert_allclose(ens.to_full(fast), out.detach(), atol=2e-6)


def test_cost_is_eq8():
    ens = CNNEDEnsemble(1, seed=0)
    rng = np.random.default_rng(1)
    a, b = _sym(rng, 2), _sym(rng, 2)
    got = ens.cost_tri(ens.to_triangle(torch.as_tensor(a))[None], ens.to_triangle(torch.as_tensor(b))[None])
    from xpcs_denoise import one_time_from_two_time

    want = np.mean((a - b) ** 2) + np.mean((one_time_from_two_time(a) - one_time_from_two_time(b)) ** 2)
    assert float(got[0]) == pytest.approx(want, rel=1e-5)


def test_seeded_initialisation_is_reproducible():
    a, b = CNNEDEnsemble(2, seed=5), CNNEDEnsemble(2, seed=5)
    assert torch.equal(a.enc_w, b.enc_w) and not torch.equal(a.enc_w[0], a.enc_w[1])


def test_save_load_round_trip_and_tamper_detection(tmp_path):
    ens = CNNEDEnsemble(2, ModelConfig(latent=4), seed=3)
    save_ensemble(ens, tmp_path, {"note": "test"})
    loaded, card = load_ensemble(tmp_path)
    assert card["note"] == "test" and card["architecture"]["latent"] == 4
    assert torch.equal(loaded.dec_w, ens.dec_w)
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(XPCSInputError, match="SHA-256"):
        load_ensemble(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(XPCSInputError, match="missing"):
        load_ensemble(tmp_path)


def test_triangle_round_trip_and_prepared_file(tmp_path):
    rng = np.random.default_rng(2)
    m = _sym(rng, 3)
    np.testing.assert_array_equal(triu_to_matrix(matrix_to_triu(m)), m)
    data = PreparedDataset(inputs=m, targets=m[:2], target_index=np.array([0, 1, 1], np.int32),
                           input_names=["a_0_0", "b_1_0", "b_1_1"], target_names=["a_0", "b_1"])
    write_prepared(tmp_path / "d.h5", data)
    back = load_prepared(tmp_path / "d.h5")
    np.testing.assert_allclose(back.inputs, m)
    assert back.target_names == ["a_0", "b_1"] and back.source_sha256


def test_split_is_by_series_never_by_crop():
    names = [f"scan{i // 3}_{i % 3}" for i in range(30)] + [f"scan{i // 3}2_{i % 3}" for i in range(30)]
    idx = np.repeat(np.arange(60), 4).astype(np.int32)
    z = np.zeros((240, 50, 50), np.float32)
    data = PreparedDataset(inputs=z, targets=z[:60], target_index=idx, target_names=names)
    tr, va = split_by_target(data, 0.25, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == 60
    series = lambda ids: {names[i].split("_")[0].rstrip("2") for i in ids}  # noqa: E731
    assert series(tr).isdisjoint(series(va))


def test_crops_targets_and_diagonal_replacement():
    t = np.arange(150)
    c2 = 1 + 0.3 * np.exp(-0.1 * np.abs(t[:, None] - t[None]))
    c2[t, t] = 5.0
    crops = diagonal_crops(c2, 50, 25)
    assert crops.shape == (5, 50, 50)
    rep = replace_diagonal(crops, seed=0)
    lag1 = 1 + 0.3 * np.exp(-0.1)
    np.testing.assert_allclose(np.diagonal(rep, axis1=1, axis2=2), lag1)
    data = prepare_two_times([c2], ["s_1"], every=(1, 2))
    assert data.target_names == ["s_1", "s2_1"] and data.inputs.shape[1:] == (50, 50)
    np.testing.assert_allclose(data.inputs[0, 0, 1], 2.0, rtol=1e-6)  # Eq. 4: lag 1 → 2


def _synthetic_prepared(n_targets=12, crops=6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(50)
    lag = np.abs(t[:, None] - t[None])
    targets, inputs, idx, names = [], [], [], []
    for k in range(n_targets):
        g = rng.uniform(0.02, 0.2)
        clean = 1 + np.exp(-2 * g * lag)
        targets.append(clean)
        for _ in range(crops):
            noise = rng.normal(0, 0.3, (50, 50))
            inputs.append(clean + (noise + noise.T) / 2)
            idx.append(k)
        names.append(f"scan{k}_1")
    return PreparedDataset(inputs=np.array(inputs, np.float32), targets=np.array(targets, np.float32),
                           target_index=np.array(idx, np.int32), target_names=names)


@pytest.mark.slow
def test_training_learns_resumes_identically_and_selects(tmp_path):
    data = _synthetic_prepared()
    cfg = TrainConfig(n_members=3, keep=2, batch_size=8, lr=1e-3, max_epochs=4, patience=10, seed=1,
                      val_fraction=0.25)
    model, card = train_ensemble(data, tmp_path / "a", cfg, progress=False)
    assert model.n_members == 2 and len(card["members"]) == 3
    log = (tmp_path / "a" / "training_log.csv").read_text().splitlines()
    first = [float(r.split(",")[3]) for r in log[1:4]]
    last = [float(r.split(",")[3]) for r in log[-3:]]
    assert np.mean(last) < np.mean(first)  # validation cost falls
    # Interrupt after 2 epochs, resume to 4: same weights as the uninterrupted run.
    train_ensemble(data, tmp_path / "b", TrainConfig(**{**cfg.__dict__, "max_epochs": 2}), progress=False)
    resumed, _ = train_ensemble(data, tmp_path / "b", cfg, progress=False)
    assert torch.allclose(resumed.enc_w, model.enc_w, atol=1e-6)
    assert json.loads((tmp_path / "a" / "model_card.json").read_text())["weights_sha256"]


@pytest.mark.slow
def test_pruning_keeps_the_best_members_and_leaves_their_training_unchanged(tmp_path):
    data = _synthetic_prepared(n_targets=8, crops=4)
    base = dict(n_members=4, keep=2, batch_size=8, lr=1e-3, max_epochs=3, patience=10, seed=3, val_fraction=0.25)
    full, full_card = train_ensemble(data, tmp_path / "full", TrainConfig(**base), progress=False)
    pruned_cfg = TrainConfig(**base, prune_after=1, prune_to=3)
    pruned, card = train_ensemble(data, tmp_path / "p", pruned_cfg, progress=False)
    log = [r.split(",") for r in (tmp_path / "full" / "training_log.csv").read_text().splitlines()[1:]]
    after_one = {int(r[1]): float(r[3]) for r in log if r[0] == "1"}
    survivors = sorted(sorted(after_one, key=after_one.get)[:3])
    assert card["pruned"] == {"after_epoch": 1, "screened": 4, "survivors": survivors}
    assert len(card["members"]) == 3 and set(card["kept_members"]) <= set(survivors)
    # Members train independently (own batches, own Adam moments): a survivor ends as in the unpruned run.
    for j in survivors:
        assert card["members"][survivors.index(j)]["val_cost"] == pytest.approx(
            full_card["members"][j]["val_cost"], rel=1e-5)
    # Interrupted after pruning and resumed: the same result.
    train_ensemble(data, tmp_path / "q", TrainConfig(**{**base, "max_epochs": 2}, prune_after=1, prune_to=3),
                   progress=False)
    resumed, _ = train_ensemble(data, tmp_path / "q", pruned_cfg, progress=False)
    assert torch.allclose(resumed.enc_w, pruned.enc_w, atol=1e-6)
    with pytest.raises(XPCSInputError, match="prune_to"):
        train_ensemble(data, tmp_path / "r", TrainConfig(**base, prune_after=1, prune_to=1), progress=False)
    with pytest.raises(XPCSInputError, match="fine-tuning"):
        train_ensemble(data, tmp_path / "s", pruned_cfg, progress=False, init_model=full)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()  # refused before any folder


def test_denoiser_shapes_scaling_and_errors(tmp_path):
    ens = CNNEDEnsemble(2, seed=0)
    den = Denoiser(ens)
    t = np.arange(50)
    c2 = 1 + 0.2 * np.exp(-0.1 * np.abs(t[:, None] - t[None]))
    out, std = den.denoise(c2, return_std=True)
    assert out.shape == (50, 50) and std.shape == (50, 50) and np.all(std >= 0)
    batch = den.denoise(np.stack([c2, c2]))
    np.testing.assert_allclose(batch[0], out)
    # Eq. 5/6: scaling the contrast of the input scales the output's deviation from 1 alike.
    c2b = 1 + 2.0 * (c2 - 1)
    np.testing.assert_allclose(den.denoise(c2b) - 1, 2.0 * (out - 1), rtol=1e-5, atol=1e-6)
    with pytest.raises(XPCSInputError, match="at least 50"):
        den.denoise(np.ones((30, 30)))
    with pytest.raises(XPCSInputError, match="contrast"):
        den.denoise(np.ones((50, 50)))
    bad = c2.copy()
    bad[3, 4] = np.nan
    with pytest.raises(XPCSInputError, match="NaN"):
        den.denoise(bad)


def test_sliding_window_covers_the_band_and_keeps_the_rest():
    ens = CNNEDEnsemble(2, seed=0)
    den = Denoiser(ens)
    t = np.arange(123)  # (123 - 50) is not a multiple of the step: both passes needed to cover the ends
    c2 = 1 + 0.2 * np.exp(-0.1 * np.abs(t[:, None] - t[None]))
    out, std = den.denoise(c2, return_std=True)
    assert out.shape == c2.shape and np.all(np.isfinite(out))
    far = np.abs(t[:, None] - t[None]) >= 50
    np.testing.assert_allclose(out[far], c2[far], rtol=1e-12)
    np.testing.assert_allclose(out, out.T, atol=1e-12)
    # Every pixel within 45 lags, the ends of the diagonal included, comes from the model (no gap left by
    # the step); the band holds 1TCF lags 1..45 entirely denoised.
    near = np.abs(t[:, None] - t[None]) <= 45
    assert np.all(out[near] != c2[near]) and np.all(std[near] > 0)
    batch = den.denoise(np.stack([c2, c2]))
    np.testing.assert_allclose(batch[1], out)


@pytest.mark.slow
def test_latent_study_writes_table_and_plot(tmp_path):
    from xpcs_denoise.analysis.latent import latent_study

    data = _synthetic_prepared(n_targets=8, crops=4)
    cfg = TrainConfig(max_epochs=1, lr=1e-3, val_fraction=0.25, seed=2)
    rows = latent_study(data, tmp_path, latents=(2, 4), members=2, config=cfg, progress=False)
    assert [r["latent"] for r in rows] == [2, 4]
    assert all(np.isfinite(r["val_cost"]) and "mre_gamma_band" in r for r in rows)
    assert (tmp_path / "latent_study.png").stat().st_size > 0 and (tmp_path / "latent_study.csv").exists()


def test_simulated_pairs_are_scaled_as_at_inference():
    from xpcs_denoise.core.scaling import contrast_from_two_time, lag1_values, trimmed_mean
    from xpcs_denoise.core.simulation import simulate_crops
    from xpcs_denoise.nn.training import SIMULATED_RANGES, simulated_pairs

    x, y = simulated_pairs(64, seed=4, contrast="estimated", offset=False)
    measured, true, _ = simulate_crops(64, seed=4, **SIMULATED_RANGES)
    b, floored = contrast_from_two_time(measured, return_floored=True)
    keep = np.isfinite(b)
    assert x.shape == y.shape and x.dtype == np.float32 and len(x) == keep.sum() >= 60
    # Eq. 5 with the robust contrast: where it is above its noise floor, each input's trimmed mean lag-1 value
    # is 2, and below 2 where floored; its target shares its β̂.
    t = trimmed_mean(lag1_values(x))
    np.testing.assert_allclose(t[~floored[keep]], 2.0, atol=1e-4)
    assert np.all(t[floored[keep]] < 2.0)
    np.testing.assert_allclose((y[:, 0, 5] - 1) * b[keep] + 1, true[keep, 0, 5], rtol=1e-5)
    i = np.arange(50)
    np.testing.assert_array_equal(y[:, i, i], np.repeat(y[:, 0, 1][:, None], 50, axis=1))


@pytest.mark.slow
def test_damaged_or_nan_checkpoints_are_refused(tmp_path):
    """A checkpoint with non-finite weights is not resumed (no card with a bare NaN), and a damaged checkpoint
    or its metadata gives one line, not a traceback."""
    from safetensors.torch import load_file, save_file

    data = _synthetic_prepared()
    cfg = TrainConfig(n_members=2, keep=1, batch_size=8, lr=1e-3, max_epochs=1, patience=10, seed=1,
                      val_fraction=0.25)
    train_ensemble(data, tmp_path / "a", cfg, progress=False)
    ckpt = next((tmp_path / "a").glob("*checkpoint*"))
    more = TrainConfig(**{**cfg.__dict__, "max_epochs": 2})
    tensors = load_file(str(ckpt))
    from safetensors import safe_open

    with safe_open(str(ckpt), framework="pt") as f:
        meta = f.metadata()
    bad = {k: (v.float().fill_(float("nan")) if k.startswith("param.") else v) for k, v in tensors.items()}
    save_file(bad, str(ckpt), metadata=meta)
    with pytest.raises(XPCSInputError, match="non-finite"):
        train_ensemble(data, tmp_path / "a", more, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(XPCSInputError, match="damaged"):
        train_ensemble(data, tmp_path / "a", more, progress=False)
