"""The shipped ensemble on data it never saw: simulated speckle series with known Γ, β."""

import json

import numpy as np
import pytest

from xpcs_denoise import Denoiser, fit_g2, one_time_from_two_time, simulate_speckle
from xpcs_denoise.nn.denoiser import pretrained_directory


@pytest.fixture(scope="module")
def noisy_crops():
    rng = np.random.default_rng(0)
    n = 40
    gamma = np.exp(rng.uniform(np.log(0.01), np.log(0.15), n))
    counts = rng.uniform(0.05, 0.3, n)
    c2 = np.array([simulate_speckle(50, 500, gamma=gamma[i], beta=0.2, mean_count=counts[i],
                                    seed=100 + i).two_time()[0] for i in range(n)])
    return c2, gamma


def test_model_card_and_weights_are_consistent():
    card = json.loads((pretrained_directory() / "model_card.json").read_text())
    den = Denoiser.pretrained()
    assert den.n_members == card["architecture"]["n_members"] == len(card["kept_members"]) == 10
    assert card["training_data"]["sha256"] and card["split"]["val_target_names"]
    assert (pretrained_directory() / "model.safetensors").stat().st_size < 20e6
    t = card["validation_metrics"]["table"]
    # The acceptance of the model issue, on the held-out real series recorded in the card.
    assert t["cned"]["mre_gamma_band"] <= 0.5 * t["raw"]["mre_gamma_band"]
    for key in ("mre_gamma_band", "mre_gamma", "mse_beta", "mse_baseline", "mse_alpha", "mse_1tcf", "failed"):
        assert t["cned"][key] < t["gaussian"][key], key
    # The denoising issue's acceptance: the ensemble beats every peer on MRE(Γ) in the band and MSE(1TCF).
    for peer in ("gaussian", "median", "tv", "pca", "bm3d"):
        for key in ("mre_gamma_band", "mse_1tcf"):
            assert t["cned"][key] < t[peer][key], (peer, key)


def test_pretrained_improves_gamma_on_simulated_crops(noisy_crops):
    c2, gamma = noisy_crops
    den = Denoiser.pretrained()
    out, spread = den.denoise(c2, return_std=True)
    assert out.shape == c2.shape and np.all(np.isfinite(out)) and np.all(spread >= 0)
    raw = fit_g2(one_time_from_two_time(c2), fix={"alpha": 1.0})
    cln = fit_g2(one_time_from_two_time(out), fix={"alpha": 1.0})
    mre = lambda r: np.mean(np.abs(r.gamma - gamma)[r.success] / gamma[r.success])  # noqa: E731
    assert mre(cln) < 0.5 * mre(raw)
    assert cln.success.mean() >= raw.success.mean()
    # The denoised 1TCF is closer to the true one.
    lags = np.arange(1, 50)
    true = 1 + 0.2 * np.exp(-2 * gamma[:, None] * lags)
    err = lambda x: np.mean((one_time_from_two_time(x) - true) ** 2)  # noqa: E731
    assert err(out) < err(c2)


def test_denoising_is_reproducible(noisy_crops):
    c2, _ = noisy_crops
    den = Denoiser.pretrained()
    np.testing.assert_array_equal(den.denoise(c2[:3], seed=4), den.denoise(c2[:3], seed=4))
