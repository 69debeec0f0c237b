"""The lag-band model's profile stage: a 1-D network along lag that corrects the output's 1TCF within a bound
set by that 1TCF's own noise, so a noise-free 2TCF still passes unchanged; its files and its training."""

import numpy as np
import pytest

from xpcs_denoise.core.band import band_mask, to_band
from xpcs_denoise.core.correlation import one_time_from_two_time
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.simulation import simulate_speckle

torch = pytest.importorskip("torch")

from xpcs_denoise.nn.lagnet import (  # noqa: E402
    LagDenoiser,
    LagNet,
    LagNetConfig,
    band_features,
    load_lagnet,
    profile_correction,
    save_lagnet,
)
from xpcs_denoise.nn.profile_training import (  # noqa: E402
    ProfileTrainConfig,
    profile_inputs,
    profile_loss,
    profile_theta,
    train_profile,
)

SMALL = dict(channels=4, dilations=((1, 1), (1, 2)), smooth_widths=(2.0, 8.0))


def _model(seed=0, head=0.5, **kw):
    """A small model with a profile stage whose head is not zero (it corrects)."""
    torch.manual_seed(seed)
    model = LagNet(LagNetConfig(**SMALL, profile_channels=6, profile_dilations=(1, 2), **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        model.profile.head.bias.fill_(head)
    return model


def eq3(n, gamma, alpha=1.0, offset=0.0, beta=0.2):
    tau = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return 1 + offset * beta + beta * np.exp(-2 * (gamma * tau) ** alpha)


@pytest.mark.parametrize("n", [24, 50, 200])
def test_noise_free_2tcfs_pass_unchanged(n):
    den = LagDenoiser(_model())
    for gamma, alpha in ((0.01, 0.7), (0.05, 1.0), (0.3, 1.4)):
        clean = eq3(n, gamma, alpha, offset=0.2)
        assert np.max(np.abs(den.denoise(clean) - clean)) < 1e-10


def test_the_correction_is_bounded_by_the_1tcf_noise_and_reaches_it():
    model = _model(head=50.0)  # tanh saturated: the correction is the bound
    sim = simulate_speckle(60, 400, gamma=0.05, beta=0.2, mean_count=0.3, seed=1).two_time()[0]
    k = 59
    band = to_band(sim, k)[None]
    mask = torch.as_tensor(band_mask(60, k))
    bt = torch.as_tensor(band)
    _, _, S, lo, s = band_features(bt, mask, model.config)
    m = mask.double()
    sbar = (S * m).sum(-1) / m.sum(-1)
    g = (bt * m).sum(-1) / m.sum(-1)
    with torch.no_grad():
        corr = profile_correction(model.profile, model.config.profile_bound, g, g, sbar, lo, s, 60)
    lag = torch.arange(1, k + 1, dtype=torch.float64)
    limit = model.config.profile_bound * sbar / torch.sqrt(60 - lag) * s[:, None]
    assert torch.all(corr.abs() <= limit + 1e-12)
    assert torch.all(corr.abs() > 0.99 * limit)
    # far lags, averaged over few ages, may move more than the first ones
    assert float(limit[0, -1]) > 2 * float(limit[0, 0])


def test_the_stage_changes_the_1tcf_by_its_correction_at_every_age():
    model = _model()
    base = LagNet(LagNetConfig(**SMALL))
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("profile.")})
    sim = simulate_speckle(50, 300, gamma=0.04, beta=0.2, mean_count=0.2, seed=2).two_time()[0]
    a, b = LagDenoiser(model).denoise(sim), LagDenoiser(base).denoise(sim)
    d = to_band(a - b, 49)
    valid = band_mask(50, 49)
    assert np.abs(d[valid]).max() > 1e-4  # it corrects
    for k in range(49):  # by one value per lag, at every age
        assert np.ptp(d[k][valid[k]]) < 1e-12
    assert np.allclose(a, a.T)


def test_files_round_trip_and_old_cards_load_without_a_stage(tmp_path):
    model = _model()
    save_lagnet(model, tmp_path / "m", {"name": "t"})
    back, card = load_lagnet(tmp_path / "m")
    assert card["architecture"]["profile_channels"] == 6
    sim = simulate_speckle(40, 300, gamma=0.05, beta=0.2, mean_count=0.2, seed=3).two_time()[0]
    assert np.array_equal(LagDenoiser(model).denoise(sim), LagDenoiser(back).denoise(sim))
    old = LagNet(LagNetConfig(**SMALL))
    save_lagnet(old, tmp_path / "o", {})
    import json

    p = tmp_path / "o" / "lagnet_card.json"
    c = json.loads(p.read_text())
    for key in ("profile_channels", "profile_dilations", "profile_bound"):
        del c["architecture"][key]  # a card written before the stage existed
    p.write_text(json.dumps(c))
    assert load_lagnet(tmp_path / "o")[0].profile is None
    with pytest.raises(XPCSInputError):
        LagNetConfig(profile_channels=-1)
    with pytest.raises(XPCSInputError):
        LagNetConfig(profile_bound=0.0)
    with pytest.raises(XPCSInputError):
        ProfileTrainConfig(weight_fit=-1.0)


def test_training_lowers_the_1tcf_error_of_a_noisy_base_output():
    """A base output whose 1TCF is the truth plus noise that the stage can see (its input's 1TCF carries the same
    noise, and its σ̂ says how large): a short run learns to remove part of it, and the fit cost reads finite."""
    rng = np.random.default_rng(0)
    n, k = 50, 49
    lag = np.arange(1, k + 1)
    gam = np.exp(rng.uniform(np.log(0.02), np.log(0.2), 256))
    g_y = 1.1 + np.exp(-2 * gam[:, None] * lag[None])
    sbar = np.full((256, k), 0.3)
    noise = rng.normal(0, 1, (256, k)) * 0.3 / np.sqrt(n - lag)[None] * 2
    src = {"g_raw": g_y + noise, "g_out": g_y + noise, "sbar": sbar, "lo": np.full(256, 1.1), "s": np.ones(256),
           "g_y": g_y, "theta": profile_theta(g_y), "n_frames": n, "kind": "sim"}
    model = _model(head=0.0)
    with torch.no_grad():
        model.profile.head.weight.zero_()
    keys = ("g_raw", "g_out", "sbar", "lo", "s", "g_y", "theta")
    batch = {k_: torch.as_tensor(np.asarray(src[k_], np.float64)) for k_ in keys}
    before, parts = profile_loss(model.profile, 10.0, batch, n)
    assert abs(parts["g"] - 1.0) < 1e-3 and np.isfinite(parts["fit"])  # no correction yet: the input's error
    cfg = ProfileTrainConfig(steps=150, batch_sim=64, lr=5e-3, weight_fit=0.0, seed=1)
    train_profile(model.profile, 10.0, [src], cfg, log=lambda row: None)
    after, parts = profile_loss(model.profile, 10.0, batch, n, weight_fit=0.0)
    assert parts["g"] < 0.8


def test_profile_inputs_match_what_the_denoiser_applies():
    model = _model()
    den = LagDenoiser(model)
    sim = simulate_speckle(50, 300, gamma=0.05, beta=0.2, mean_count=0.2, n_rois=2, seed=4).two_time()
    band = np.stack([to_band(c, 49) for c in sim])
    inp = profile_inputs(den, band, 50)
    with torch.no_grad():
        corr = profile_correction(model.profile, model.config.profile_bound,
                                  *(torch.as_tensor(inp[k]) for k in ("g_out", "g_raw", "sbar", "lo", "s")), 50)
    g = one_time_from_two_time(den.denoise(sim))[:, :49]  # lags 1…49
    assert np.allclose(g, inp["g_out"] + corr.numpy(), atol=1e-9)


def test_the_mean_term_measures_a_uniform_shift():
    """A head bias shifts every 2TCF's lag alike: the batch mean of the correction (in 1TCF noise units) is then
    the bound's tanh of it at every lag, and the term's gradient takes the shift away."""
    rng = np.random.default_rng(1)
    n, k = 50, 49
    lag = np.arange(1, k + 1)
    g_y = 1.1 + np.exp(-2 * 0.05 * lag)[None].repeat(128, 0)
    sbar = np.full((128, k), 0.3)
    noise = rng.normal(0, 1, (128, k)) * 0.3 / np.sqrt(n - lag)[None]
    batch = {key: torch.as_tensor(v) for key, v in {
        "g_raw": g_y + noise, "g_out": g_y + noise, "sbar": sbar, "lo": np.full(128, 1.1), "s": np.ones(128),
        "g_y": g_y, "theta": profile_theta(g_y)}.items()}
    model = _model(head=0.0)
    with torch.no_grad():
        model.profile.head.weight.zero_()
        model.profile.head.bias.fill_(2.0)
    _, parts = profile_loss(model.profile, 10.0, batch, n, weight_fit=0.0, weight_mean=1.0)
    expect = (10.0 * np.tanh(2.0 / 10.0)) ** 2
    assert parts["mean"] == pytest.approx(expect, rel=1e-6)
    with torch.no_grad():
        model.profile.head.bias.zero_()  # no correction: nothing to measure
    _, parts = profile_loss(model.profile, 10.0, batch, n, weight_fit=0.0, weight_mean=1.0)
    assert parts["mean"] == 0.0
    # its gradient takes the uniform shift away: one step on the mean term alone shrinks the head's bias
    with torch.no_grad():
        model.profile.head.bias.fill_(2.0)
    loss, _ = profile_loss(model.profile, 10.0, batch, n, weight_fit=0.0, weight_mean=1.0)
    loss.backward()
    assert float(model.profile.head.bias.grad) > 0
    with pytest.raises(XPCSInputError):
        ProfileTrainConfig(bias_kinds=("other",))
    with pytest.raises(XPCSInputError):
        ProfileTrainConfig(weight_mean=float("nan"))


def test_the_unbiased_term_sees_a_shift_within_one_octave_and_not_the_base_models_bias():
    """The output's 1TCF less the input's, averaged per Γ octave: an output equal to the input costs nothing; an
    output one 1TCF noise level above it in one octave only costs that octave's squared mean times its share of
    the batch (a bias of the base model counts, so the stage is asked to remove it)."""
    rng = np.random.default_rng(2)
    n, k, b = 50, 49, 64
    lag = np.arange(1, k + 1)
    gammas = np.where(np.arange(b) < b // 2, 0.02, 0.2)  # two octaves apart
    g_y = 1.1 + np.exp(-2 * gammas[:, None] * lag[None])
    sig = 0.3 / np.sqrt(n - lag)[None]
    g_raw = g_y + rng.normal(0, 1, (b, k)) * sig
    batch = {key: torch.as_tensor(v) for key, v in {
        "g_raw": g_raw, "g_out": g_raw.copy(), "sbar": np.full((b, k), 0.3), "lo": np.full(b, 1.1), "s": np.ones(b),
        "g_y": g_y, "theta": profile_theta(g_y)}.items()}
    model = _model(head=0.0)
    with torch.no_grad():
        model.profile.head.weight.zero_()
        model.profile.head.bias.zero_()
    _, parts = profile_loss(model.profile, 10.0, batch, n, weight_fit=0.0, weight_unbiased=1.0)
    assert parts["unbiased"] == 0.0  # output = input: unbiased
    # a base output one noise level above the input on the slow half only: (1² × 32) / 64 per lag
    shifted = dict(batch, g_out=batch["g_out"] + torch.as_tensor(np.where(gammas[:, None] < 0.1, sig, 0.0)))
    _, parts = profile_loss(model.profile, 10.0, shifted, n, weight_fit=0.0, weight_unbiased=1.0)
    assert parts["unbiased"] == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(XPCSInputError):
        ProfileTrainConfig(weight_unbiased=-1.0)


def test_the_held_alpha_fit_cost_is_zero_on_the_truth_and_grows_with_a_bias():
    """The fit cost of fits with α held at the target's: nothing for an output equal to the noise-free target,
    more for one whose head is lowered (what read slow decays slow in run T)."""
    n, k, b = 50, 49, 16
    lag = np.arange(1, k + 1)
    gam = np.geomspace(0.02, 0.2, b)
    g_y = 1.1 + 0.3 * np.exp(-2 * gam[:, None] * lag[None])
    theta = profile_theta(g_y)
    model = _model(head=0.0)
    with torch.no_grad():
        model.profile.head.weight.zero_()
        model.profile.head.bias.zero_()

    def held(g_out):
        batch = {key: torch.as_tensor(v) for key, v in {
            "g_raw": g_out, "g_out": g_out, "sbar": np.full((b, k), 0.3), "lo": np.full(b, 1.1), "s": np.full(b, 0.3),
            "g_y": g_y, "theta": theta}.items()}
        return profile_loss(model.profile, 10.0, batch, n, weight_fit=1.0, weight_fit_held=1.0)[1]["fit_held"]

    assert held(g_y) < 1e-6
    assert held(g_y - 0.03 * np.exp(-lag / 5.0)[None]) > 1e-3
    with pytest.raises(XPCSInputError):
        ProfileTrainConfig(weight_fit_held=float("inf"))
