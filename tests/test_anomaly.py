"""Anomaly scores: where a 2TCF holds structure the ensemble has not learned."""

import warnings

import numpy as np
import pytest

from xpcs_denoise import XPCSInputError, simulate_speckle
from xpcs_denoise.nn.anomaly import anomaly_scores


def test_residual_rises_where_the_2tcf_holds_unlearned_structure():
    sim = simulate_speckle(200, 3000, gamma=0.05, beta=0.2, mean_count=0.3, seed=1)
    c2 = sim.two_time()[0]
    t = np.arange(200)
    bad = c2.copy()
    block = (t[:, None] >= 100) & (t[:, None] < 150) & (t[None, :] >= 100) & (t[None, :] < 150)
    bad[block] += (0.15 * np.cos(2 * np.pi * (t[:, None] - t[None, :]) / 6))[block]  # an oscillation, frames 100-150
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean, odd = anomaly_scores(c2, step=10), anomaly_scores(bad, step=10)
    assert clean["residual"].shape == clean["latent_distance"].shape == (16,) and clean["size"] == 50
    # like the training crops: residuals near the training median, latent distances near √8
    assert np.all(np.abs(clean["residual"] - 0.6) < 0.3) and np.all(clean["latent_distance"] < 5)
    inside = (odd["starts"] >= 80) & (odd["starts"] <= 120)
    far = (odd["starts"] + 50 <= 100) | (odd["starts"] >= 150)
    assert odd["residual"][inside].max() > 1.3 * clean["residual"].max()
    np.testing.assert_allclose(odd["residual"][far], clean["residual"][far], rtol=0.15)


def test_a_model_without_reference_is_refused():
    from xpcs_denoise import Denoiser

    den = Denoiser.pretrained()
    bare = Denoiser(den.model, {k: v for k, v in den.card.items() if k != "latent_reference"})
    with pytest.raises(XPCSInputError, match="latent_reference"):
        anomaly_scores(np.ones((50, 50)) + np.eye(50), model=bare)
