"""A model of another window than the shipped one (30×30) goes through every stage — train, denoise, fit, report
— and the workflows: the window, the lags fitted and the band drawn come from the model, never from a literal 50."""

import json

import numpy as np
import pytest

from xpcs_denoise import (
    Denoiser,
    ageing,
    cut_fits,
    denoise,
    denoise_file,
    fit_file,
    fit_two_time,
    q_dependence,
    report_file,
    simulate_speckle,
    two_time,
    write_c2,
)
from xpcs_denoise.app.demo import evaluate_model
from xpcs_denoise.core.scaling import PreparedDataset
from xpcs_denoise.io.prepared import write_prepared
from xpcs_denoise.nn.model import ModelConfig
from xpcs_denoise.nn.training import TrainConfig, train_ensemble

N = 30  # the window of the model trained here


def _crops(n_targets=10, crops=6, seed=0):
    """Noisy N×N crops of Eq. 3 decays in model units (β = 1, C∞ = 1), one target per series."""
    rng = np.random.default_rng(seed)
    lag = np.abs(np.arange(N)[:, None] - np.arange(N)[None])
    targets, inputs, index = [], [], []
    for k in range(n_targets):
        clean = 1 + np.exp(-2 * rng.uniform(0.03, 0.2) * lag)
        targets.append(clean)
        for _ in range(crops):
            noise = rng.normal(0, 0.3, (N, N))
            inputs.append(clean + (noise + noise.T) / 2)
            index.append(k)
    return PreparedDataset(inputs=np.array(inputs, np.float32), targets=np.array(targets, np.float32),
                           target_index=np.array(index, np.int32),
                           target_names=[f"scan{k}_1" for k in range(n_targets)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m30")
    cfg = TrainConfig(n_members=2, keep=2, batch_size=8, lr=1e-3, max_epochs=2, patience=5, seed=0,
                      val_fraction=0.3)
    model, card = train_ensemble(_crops(), out, cfg, ModelConfig(size=N, latent=4), progress=False)
    assert model.config.size == N and card["architecture"]["size"] == N
    return out


@pytest.fixture(scope="module")
def c2():
    sim = simulate_speckle(120, 2000, gamma=np.array([[0.05], [0.1]]), beta=0.25, mean_count=0.5, n_rois=2,
                           seed=3)
    return two_time(sim.frames, sim.labels)  # (2, 120, 120)


@pytest.mark.slow
def test_denoise_and_fits_use_the_models_window(model_dir, c2):
    den = Denoiser.from_directory(model_dir)
    assert den.size == N
    short = c2[:, :N, :N]
    out = denoise(short, model=den)
    assert out.shape == short.shape and np.all(np.isfinite(out)) and not np.allclose(out, short)
    # A long series: the N-frame window slides; lags ≥ N keep the raw values, lag N − 1 is denoised.
    long = denoise(c2, model=den)
    i = np.arange(120 - N)
    assert np.array_equal(long[:, i, i + N], c2[:, i, i + N])
    assert not np.allclose(long[:, i, i + N - 1], c2[:, i, i + N - 1])
    # The peers work on the model's window too (a 30-frame 2TCF is too short for the shipped one).
    assert denoise(short, "gaussian", model=den).shape == short.shape
    with pytest.raises(ValueError, match="at least 50"):
        denoise(short, "gaussian")
    # Fits of the denoised 2TCF: lags 1..N − 1, never the shipped window's 49.
    r = fit_two_time(short, method="cned", model=den)
    assert r.fit.lags.max() == N - 1 and r.fit.gamma.shape == (2,)
    cuts = cut_fits(c2[0], model=den, n_boot=2)
    assert cuts.fit.lags.max() == N - 1


@pytest.mark.slow
def test_workflows_take_the_models_window(model_dir, c2):
    den = Denoiser.from_directory(model_dir)
    q = q_dependence(c2, methods=("raw", "cned", "median"), model=den)
    assert q.fits["cned"].lags.max() == N - 1  # the first N frames (the model's window): lags 1..N − 1
    assert len(q.table()) == 3 * 2
    age = ageing(c2[0], methods=("raw", "cned"), model=den, width=2)
    assert age.fits["cned"].lags.max() == N - 1 and age.fits["raw"].lags.max() == N - 1


@pytest.mark.slow
def test_files_train_denoise_fit_report(model_dir, c2, tmp_path):
    write_c2(tmp_path / "c2.h5", c2)
    denoise_file(tmp_path / "c2.h5", tmp_path / "den.h5", model=model_dir)
    import h5py

    with h5py.File(tmp_path / "den.h5") as f:
        assert int(f.attrs["window"]) == N
    fit_file(tmp_path / "den.h5", tmp_path / "cuts.csv", cut_width=2)
    rows = json.loads((tmp_path / "cuts.json").read_text())["rows"]
    assert len(rows) > 100 and sum(r["success"] for r in rows) > 0.8 * len(rows)
    s = fit_file(tmp_path / "den.h5", tmp_path / "fit.csv", model=model_dir)
    assert s["fits"] == 2
    rep = report_file(tmp_path / "den.h5", tmp_path / "report", model=model_dir)
    assert rep["methods"] == ["raw", "cned"] and (tmp_path / "report" / "gamma_age.png").is_file()
    assert f"|t₁ − t₂| = {N} frames" in (tmp_path / "report" / "index.html").read_text()  # the band drawn
    # evaluate: the model and its peers on the card's validation split of the prepared data
    write_prepared(tmp_path / "data.h5", _crops())
    table = evaluate_model(model_dir, tmp_path / "data.h5", methods=("cned", "gaussian"))
    assert set(table) == {"raw", "cned", "gaussian"} and np.isfinite(table["cned"]["mse_1tcf"])
