"""The lag-band model (issue 29): faithful on noise-free 2TCFs, any size, symmetric, affine-invariant, better than
its input on simulated data with a known truth; (lag, age) coordinates and the age-axis smoother; its files."""

import copy
import json
import warnings

import numpy as np
import pytest

from xpcs_denoise.core.band import age_smooth, band_mask, from_band, to_band
from xpcs_denoise.core.correlation import one_time_from_two_time
from xpcs_denoise.core.errors import XPCSInputError
from xpcs_denoise.core.fitting import fit_g2
from xpcs_denoise.core.simulation import simulate_speckle, true_two_time
from xpcs_denoise.restoration.denoise import denoise

torch = pytest.importorskip("torch")

from xpcs_denoise.nn.lagnet import LagDenoiser, LagNet, LagNetConfig, band_features, load_lagnet, save_lagnet  # noqa: E402


def eq3(n, gamma, alpha=1.0, offset=0.0, beta=0.2):
    tau = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return 1 + offset * beta + beta * np.exp(-2 * (gamma * tau) ** alpha)


@pytest.fixture(scope="module")
def den():
    return LagDenoiser.pretrained()


@pytest.fixture(scope="module")
def noisy_series():
    sim = simulate_speckle(100, 1500, gamma=[0.02, 0.06, 0.15], beta=0.2, mean_count=0.2, n_rois=3, seed=3)
    truth = np.stack([true_two_time(100, g, 0.2) for g in (0.02, 0.06, 0.15)])
    return sim.two_time(), truth


@pytest.mark.parametrize("n", [24, 50, 100, 200])
@pytest.mark.parametrize("alpha", [0.7, 1.0, 1.4])
@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_noise_free_in_same_out(den, n, alpha, offset):
    c2 = np.stack([eq3(n, g, alpha, offset) for g in (0.005, 0.02, 0.1, 0.3)])
    out = den.denoise(c2)
    np.testing.assert_allclose(out, c2, rtol=0, atol=1e-9)
    lags = min(49, n - 1)
    f_in = fit_g2(one_time_from_two_time(c2)[:, :lags])
    f_out = fit_g2(one_time_from_two_time(out)[:, :lags])
    np.testing.assert_allclose(f_out.gamma, f_in.gamma, rtol=0.03)


def test_paper_network_is_not_faithful():
    # The reason for the new model: the 2021 network re-draws a noise-free decay (METHOD §8).
    c2 = eq3(50, 0.01)
    g_in = fit_g2(one_time_from_two_time(c2)[None]).gamma[0]
    g_out = fit_g2(one_time_from_two_time(denoise(c2, "paper-2021"))[None]).gamma[0]
    assert abs(g_out / g_in - 1) > 0.1


def test_default_method_is_lagnet_and_alias(den, noisy_series):
    c2 = noisy_series[0][0]
    np.testing.assert_array_equal(denoise(c2), den.denoise(c2))
    np.testing.assert_array_equal(denoise(c2[:50, :50], "paper-2021"), denoise(c2[:50, :50], "cned"))


def test_denoises_toward_the_truth(den, noisy_series):
    c2, truth = noisy_series
    out = den.denoise(c2)
    k = 49
    err_raw = np.mean((to_band(c2, k) - to_band(truth, k)) ** 2)
    err_out = np.mean((to_band(out, k) - to_band(truth, k)) ** 2)
    assert err_out < 0.5 * err_raw
    # and the plain fit of the output lands near the true Γ
    fit = fit_g2(one_time_from_two_time(out)[:, :49])
    np.testing.assert_allclose(fit.gamma, [0.02, 0.06, 0.15], rtol=0.35)


def test_symmetric_shape_dtype_and_untouched_cells(den, noisy_series):
    c2 = noisy_series[0][1]
    out = den.denoise(c2, max_lag=30)
    assert out.shape == c2.shape and out.dtype == np.float64
    far = np.abs(np.subtract.outer(np.arange(100), np.arange(100))) > 30
    np.testing.assert_array_equal(out[~far], out.T[~far])  # the band is written to both triangles
    np.testing.assert_array_equal(np.diag(out), np.diag(c2))  # lag 0 kept
    np.testing.assert_array_equal(out[far], c2[far])  # beyond the band: kept
    assert not np.allclose(out[~far], c2[~far])
    out32 = den.denoise(c2.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, den.denoise(c2), atol=1e-4)


def test_affine_invariant(den, noisy_series):
    # A baseline above 1 (an intensity gradient across the ring) or any contrast: the same output, mapped.
    c2 = noisy_series[0][0]
    a, b = 2.5, 0.3
    np.testing.assert_allclose(den.denoise(a * c2 + b), a * den.denoise(c2) + b, rtol=0, atol=1e-4)


def test_correction_shrinks_with_the_noise(den, noisy_series):
    c2, truth = noisy_series[0][1], noisy_series[1][1]
    sizes = [np.abs(den.denoise(truth + f * (c2 - truth)) - (truth + f * (c2 - truth))).mean()
             for f in (1.0, 0.3, 0.1, 0.0)]
    assert sizes[0] > sizes[1] > sizes[2] > 1e3 * sizes[3] and sizes[3] < 1e-12  # rounding only


def test_spread(den, noisy_series):
    c2, truth = noisy_series
    _, sd = den.denoise(c2[0], return_std=True)
    assert sd.shape == (100, 100) and np.all(sd >= 0) and sd[0, 5] > 0
    _, sd0 = den.denoise(truth[0], return_std=True)
    assert np.all(sd0 < 1e-9)


def test_any_size_one_pass(den):
    for n in (3, 24, 37):
        c2 = eq3(n, 0.05) + 0.01 * np.random.default_rng(n).standard_normal((n, n))
        c2 = 0.5 * (c2 + c2.T)
        assert den.denoise(c2).shape == (n, n)


def test_tiles_match_one_pass(noisy_series):
    # Long series are processed in tiles along age with a halo of the receptive field: no seams.
    model, card = load_lagnet(LagDenoiser.pretrained().directory)
    c2 = noisy_series[0][0]
    whole = LagDenoiser(model, card, tile=4096).denoise(c2)
    tiled = LagDenoiser(model, card, tile=16).denoise(c2)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_refuses_bad_input(den):
    with pytest.raises(XPCSInputError):
        den.denoise(np.ones((5, 6)))
    c2 = eq3(30, 0.1)
    c2[3, 4] = np.nan
    with pytest.raises(XPCSInputError, match="NaN"):
        den.denoise(c2)
    with pytest.raises(XPCSInputError, match="max_lag"):
        den.denoise(eq3(30, 0.1), max_lag=2.5)
    with pytest.raises(XPCSInputError, match="option"):
        denoise(eq3(30, 0.1), "lagnet", width=3)


def test_files_round_trip_and_checks(tmp_path, noisy_series):
    model = LagNet(LagNetConfig(channels=4, dilations=((1, 1), (1, 2))))
    torch.nn.init.normal_(model.head.weight, std=0.5)
    save_lagnet(model, tmp_path, {"name": "tiny"})
    den = LagDenoiser.from_directory(tmp_path)
    c2 = noisy_series[0][0]
    np.testing.assert_allclose(den.denoise(c2), LagDenoiser(model).denoise(c2), atol=1e-12)
    w = tmp_path / "lagnet.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    with pytest.raises(XPCSInputError, match="SHA-256"):
        LagDenoiser.from_directory(tmp_path)
    card = json.loads((tmp_path / "lagnet_card.json").read_text())
    card.pop("weights_sha256")
    (tmp_path / "lagnet_card.json").write_text(json.dumps(card))
    with pytest.raises(XPCSInputError, match="cannot be loaded"):
        LagDenoiser.from_directory(tmp_path)
    with pytest.raises(XPCSInputError, match="no lag-band model"):
        LagDenoiser.from_directory(tmp_path / "nowhere")


def test_config_checked():
    with pytest.raises(XPCSInputError):
        LagNetConfig(bound=float("nan"))
    with pytest.raises(XPCSInputError):
        LagNetConfig(dilations=((0, 1),))
    for bad in ({"prior_weight": 1.5}, {"prior_weight": -0.1}, {"prior_from": 0.0}, {"prior_bound": 0.0}):
        with pytest.raises(XPCSInputError):
            LagNetConfig(**bad)


def test_the_far_lag_prior_moves_only_far_lags_toward_the_2021_ensemble(noisy_series):
    """Lags 0.4 N … 49 of a short series move toward the 2021 ensemble's 1TCF by at most half the way, the same
    at every age; nearer lags, series shorter than the ensemble's window or too long for a far lag below it, and a
    model without the prior are untouched."""
    from dataclasses import replace

    model, card = load_lagnet(LagDenoiser.pretrained().directory)
    on, off = LagDenoiser(model, card), LagDenoiser(model, card)
    on.config = replace(model.config, prior_weight=0.5, prior_from=0.4)
    off.config = replace(model.config, prior_weight=0.0)
    c2 = noisy_series[0][:, :60, :60]
    diff = on.denoise(c2) - off.denoise(c2)
    np.testing.assert_allclose(diff, np.swapaxes(diff, 1, 2), atol=1e-12)
    moved = one_time_from_two_time(diff)  # (3, 59)
    for k in range(1, 60):  # the same at every age of a lag
        d = np.diagonal(diff, k, axis1=1, axis2=2)
        np.testing.assert_allclose(d, d[:, :1] + 0 * d, atol=1e-12)
    assert np.all(moved[:, :23] == 0) and np.all(moved[:, 49:] == 0)  # lags < 24 = 0.4 · 60, and ≥ 50
    assert np.all(np.abs(moved[:, 23:49]).max(axis=1) > 1e-4)
    # the ensemble denoises each 2TCF alone (its lag-0 draws then do not depend on the batch)
    paper = np.stack([denoise(c, "paper-2021") for c in c2])
    toward = one_time_from_two_time(paper) - one_time_from_two_time(off.denoise(c2))
    far = slice(23, 49)
    assert np.all(np.abs(moved[:, far]) <= 0.5 * np.abs(toward[:, far]) + 1e-12)
    assert np.all(moved[:, far] * toward[:, far] >= 0)
    long = simulate_speckle(130, 1500, gamma=0.05, beta=0.2, mean_count=0.2, seed=4).two_time()[0]
    for c in (c2[0, :40, :40], long):  # below the window; 0.4 N beyond lag 49
        np.testing.assert_array_equal(on.denoise(c), off.denoise(c))
    # what the ensemble cannot scale (a negative baseline, which ours takes: it is affine-invariant) takes no
    # prior, without an error, beside 2TCFs that do (pure noise too, if its scaling finds a contrast)
    flat = 1 + 0.01 * np.random.default_rng(0).standard_normal((60, 60))
    odd = np.stack([-c2[0], 0.5 * (flat + flat.T), c2[1]])
    got = on.denoise(odd)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[0], off.denoise(odd[0]))
    np.testing.assert_allclose(got[2], on.denoise(c2[1]), atol=1e-12)


def test_training_runs_and_resumes(tmp_path):
    from xpcs_denoise.nn.lag_data import simulated_bands
    from xpcs_denoise.nn.lag_training import LagTrainConfig, train_lagnet

    d = simulated_bands(6, 30, 12, seed=1)
    a = simulated_bands(4, 40, 12, seed=2, ageing=True)
    data = {"stat": (d["x"], d["y"]), "stat_val": (d["x"][:2], d["y"][:2]), "age": (a["x"], a["y"])}
    cfg = LagTrainConfig(steps=4, eval_every=2, batch_sim=2, batch_ageing=2, schedule=("stat", "age"),
                         weight_pooled=1.0, weight_fit=1.0, weight_fit_bias=1.0, weight_far=1.0)
    small = LagNetConfig(channels=4, dilations=((1, 1),))
    best = train_lagnet(data, tmp_path, cfg, small, log=lambda s: None)
    den = LagDenoiser.from_directory(best)
    assert den.card["training"]["steps"] == 4
    hist = json.loads(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"])["history"]
    assert [h["step"] for h in hist] == [2, 4] and "pooled" in hist[0]["stat_val"] and "far" in hist[0]["stat_val"]
    assert "fit" in hist[0]["stat_val"] and "fit" not in hist[0]["train"]  # the fit cost: stationary sources only
    # An interrupted run resumes where it stopped (here: nothing left to do); another configuration is refused.
    logs = []
    train_lagnet(data, tmp_path, cfg, small, log=logs.append)
    assert logs == ["resumed at step 4"]
    with pytest.raises(XPCSInputError, match="steps differ"):
        train_lagnet(data, tmp_path, LagTrainConfig(steps=6, eval_every=2, batch_sim=2, batch_ageing=2,
                                                    schedule=("stat", "age"), weight_pooled=1.0, weight_fit=1.0,
                                                    weight_fit_bias=1.0, weight_far=1.0),
                     small,
                     log=lambda s: None)
    with pytest.raises(XPCSInputError):
        LagTrainConfig(lr=-1.0)
    with pytest.raises(XPCSInputError, match="fit_informative"):
        LagTrainConfig(fit_informative=0.0)  # would leave every 2TCF out of the fit cost
    with pytest.raises(XPCSInputError, match="fit_start"):
        LagTrainConfig(fit_start="grid")


def test_the_context_branch_trains_at_its_own_rate(tmp_path):
    """``lr_context``: the context branch (zero at the start) learns at its own multiple of ``lr``; with the level
    input it is fed where 1 lies too. ``far_from`` must be a share of the lags."""
    from xpcs_denoise.nn.lag_data import simulated_bands
    from xpcs_denoise.nn.lag_training import LagTrainConfig, train_lagnet
    from xpcs_denoise.nn.lagnet import load_lagnet

    d = simulated_bands(6, 30, 12, seed=1)
    data = {"stat": (d["x"], d["y"]), "stat_val": (d["x"][:2], d["y"][:2])}
    cfg = LagTrainConfig(steps=3, eval_every=3, batch_sim=2, schedule=("stat",), lr=1e-3, lr_context=5.0,
                         lr_schedule="constant", weight_far=1.0, far_from=0.5)
    arch = LagNetConfig(channels=4, dilations=((1, 1),), context_channels=4, context_dilations=(1,),
                        level_feature=True)
    best = train_lagnet(data, tmp_path, cfg, arch, log=lambda s: None)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert [g["lr"] for g in saved["opt"]["param_groups"]] == pytest.approx([1e-3, 5e-3])
    model, card = load_lagnet(best)
    assert model.context.stem.in_channels == 7 and card["training"]["far_from"] == 0.5
    assert float(model.context.head.weight.abs().max()) > 0  # it left zero
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(XPCSInputError, match="far_from"):
            LagTrainConfig(far_from=bad)
    with pytest.raises(XPCSInputError, match="lr_context"):
        LagTrainConfig(lr_context=0.0)


def test_learning_rate_schedules(tmp_path):
    """``lr_schedule="constant"`` keeps the rate at ``lr`` to the last step; ``"onecycle"`` (the default) anneals it
    toward 0, also over 20 steps (where a 5 % warm-up of one step made OneCycleLR divide by zero); any other name is
    refused."""
    from xpcs_denoise.nn.lag_data import simulated_bands
    from xpcs_denoise.nn.lag_training import LagTrainConfig, train_lagnet

    d = simulated_bands(4, 30, 12, seed=3)
    data = {"stat": (d["x"], d["y"]), "stat_val": (d["x"][:2], d["y"][:2])}
    small = LagNetConfig(channels=4, dilations=((1, 1),))
    rates = {}
    for name in ("constant", "onecycle"):
        cfg = LagTrainConfig(steps=20, eval_every=20, batch_sim=2, schedule=("stat",), lr=1e-3, lr_schedule=name)
        train_lagnet(data, tmp_path / name, cfg, small, log=lambda s: None)
        saved = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        rates[name] = saved["opt"]["param_groups"][0]["lr"]
    assert rates["constant"] == pytest.approx(1e-3) and rates["onecycle"] < 1e-4
    with pytest.raises(XPCSInputError, match="lr_schedule"):
        LagTrainConfig(lr_schedule="cosine")


def test_band_round_trip_and_mask():
    rng = np.random.default_rng(0)
    c2 = rng.standard_normal((2, 9, 9))
    c2 = c2 + np.swapaxes(c2, 1, 2)
    band = to_band(c2, 8)
    assert band.shape == (2, 8, 9)
    np.testing.assert_array_equal(from_band(c2 * 0, band) + np.eye(9) * c2, c2 * (1 - np.eye(9)) + np.eye(9) * c2)
    m = band_mask(9, 8)
    assert m.sum() == 9 * 8 // 2 and m[0, 7] and not m[0, 8]


def test_age_smoother():
    from scipy.ndimage import gaussian_filter1d

    c2 = eq3(40, 0.05)
    np.testing.assert_allclose(age_smooth(c2, 6.0), c2, atol=1e-12)
    rng = np.random.default_rng(1)
    noisy = c2 + 0.05 * rng.standard_normal(c2.shape)
    noisy = 0.5 * (noisy + noisy.T)
    out = age_smooth(noisy, 3.0)
    np.testing.assert_allclose(np.diagonal(out, 5), gaussian_filter1d(np.diagonal(noisy, 5), 3.0, mode="nearest"))
    np.testing.assert_array_equal(out, out.T)
    np.testing.assert_array_equal(denoise(noisy, "age", width=3.0), out)
    with pytest.raises(XPCSInputError):
        age_smooth(c2, 0.0)


def test_api_fit_and_report_agree_on_lagnet(tmp_path, noisy_series):
    """fit_two_time(method="lagnet"), `fit` and `report` on the file it denoised give the same Γ, σ and path."""
    import csv

    from xpcs_denoise.analysis.uncertainty import fit_two_time
    from xpcs_denoise.app.pipeline import denoise_file, fit_file, report_file
    from xpcs_denoise.io.formats import write_c2

    c2 = noisy_series[0]
    write_c2(tmp_path / "c2.h5", c2, q=[0.01, 0.02, 0.03])
    api = fit_two_time(c2, method="lagnet", max_lag=49, seed=2)
    denoise_file(tmp_path / "c2.h5", tmp_path / "d.h5")
    fit_file(tmp_path / "d.h5", tmp_path / "f.csv", max_lag=49, seed=2)
    report_file(tmp_path / "d.h5", tmp_path / "rep", seed=2)
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    rep = [r for r in csv.DictReader(open(tmp_path / "rep" / "fits.csv")) if r["method"] == "lagnet"]
    for i, (a, b) in enumerate(zip(rows, rep, strict=True)):
        # the file stores float32: the same fit to that precision
        assert float(a["gamma"]) == pytest.approx(api.fit.gamma[i], rel=1e-4)
        assert float(a["gamma_err"]) == pytest.approx(api.fit.gamma_err[i], rel=1e-3)
        assert a["path"] == b["path"] == api.path[i] and float(a["gamma"]) == float(b["gamma"])
    # the plain fit of the faithful output is near the truth, within its (raw) error bars
    assert np.all(np.abs(api.fit.gamma - [0.02, 0.06, 0.15]) < 3 * api.fit.gamma_err)


def test_an_expanded_model_computes_what_the_smaller_one_did():
    """New smooth widths and layers at zero weight: the same function, so training can start from it."""
    from xpcs_denoise.nn.lagnet import LagDenoiser, LagNetConfig, expand_lagnet, load_lagnet

    model, _ = load_lagnet(LagDenoiser.pretrained().directory)
    cfg = model.config
    big_cfg = LagNetConfig(**{**cfg.__dict__, "smooth_widths": (*cfg.smooth_widths, 64.0),
                              "dilations": (*cfg.dilations[:-1], (1, 64), cfg.dilations[-1])})
    big = expand_lagnet(model, big_cfg)
    rng = np.random.default_rng(0)
    t = np.arange(90)
    x = 1 + 0.2 * np.exp(-0.1 * np.abs(t[:, None] - t[None])) + 0.03 * rng.standard_normal((90, 90))
    a, b = LagDenoiser(model).denoise(x), LagDenoiser(big).denoise(x)
    assert np.abs(a - x).max() > 1e-3 and np.allclose(a, b, rtol=0, atol=1e-9)
    with pytest.raises(XPCSInputError, match="cannot expand"):
        expand_lagnet(model, LagNetConfig(**{**cfg.__dict__, "channels": cfg.channels + 1}))
    with pytest.raises(XPCSInputError, match="cannot expand"):
        expand_lagnet(model, LagNetConfig(**{**cfg.__dict__, "dilations": cfg.dilations[::-1]}))


def test_the_level_input_says_where_1_lies_and_keeps_the_model_faithful():
    """``level_feature``: the network is also told (1 − lo)/s, where a normalised 2TCF's baseline would be (0 for a
    2TCF whose baseline is not near 1). Grown at zero weight it computes what the model did; with any weights a
    clean 2TCF, baseline offset or not, still passes unchanged (σ̂ = 0)."""
    from xpcs_denoise.core.band import band_mask, to_band
    from xpcs_denoise.nn.lagnet import LagDenoiser, LagNetConfig, band_features, expand_lagnet, load_lagnet

    small, _ = load_lagnet(LagDenoiser.pretrained().directory)
    grown = expand_lagnet(small, LagNetConfig(**{**small.config.__dict__, "level_feature": True}))
    rng = np.random.default_rng(4)
    x = eq3(60, 0.05, offset=0.05) + 0.03 * rng.standard_normal((60, 60))
    x = 0.5 * (x + x.T)
    assert np.allclose(LagDenoiser(small).denoise(x), LagDenoiser(grown).denoise(x), rtol=0, atol=1e-9)
    with pytest.raises(XPCSInputError, match="cannot expand"):
        expand_lagnet(grown, small.config)
    mask = torch.as_tensor(band_mask(60, 59))
    bands = torch.as_tensor(np.stack([to_band(v, 59) for v in (x, x - 1.0, 3.0 * x)]))
    feats, _, _, lo, s = band_features(bands, mask, grown.config)
    level = feats[:, -1, 0, 0]
    assert level.shape == (3,) and abs(float(level[0]) - float((1 - lo[0]) / s[0])) < 1e-12
    assert -0.6 < float(level[0]) < 0.0 and float(level[1]) == 0.0 and float(level[2]) == 0.0  # not near 1: off
    cfg = LagNetConfig(channels=4, dilations=((1, 1), (1, 2)), smooth_widths=(2.0, 8.0), level_feature=True)
    model = LagNet(cfg)
    torch.nn.init.normal_(model.head.weight, std=2.0)
    torch.nn.init.normal_(model.stem.weight, std=1.0)
    for n, offset in ((24, 0.0), (50, 0.12), (120, 0.3)):
        clean = eq3(n, 0.07, alpha=0.8, offset=offset)
        assert np.abs(LagDenoiser(model).denoise(clean) - clean).max() < 1e-12
    with pytest.raises(XPCSInputError):
        LagNetConfig(level_feature=1)


def test_the_context_branch_sees_the_whole_band_and_keeps_the_model_faithful():
    """``context_channels``: a 1-D network along lag over the whole band's 1TCF feeds every residual layer. Grown
    with its last layer at zero it computes what the model did; with any weights a clean 2TCF passes unchanged
    (σ̂ = 0); a change at ages beyond the 2-D layers' reach moves the output mostly through it; tiles along age
    share one context, so tiling changes nothing."""
    from xpcs_denoise.nn.lagnet import LagDenoiser, LagNetConfig, expand_lagnet, load_lagnet

    small, _ = load_lagnet(LagDenoiser.pretrained().directory)
    grown = expand_lagnet(small, LagNetConfig(**{**small.config.__dict__, "context_channels": 8}))
    rng = np.random.default_rng(5)
    x = eq3(60, 0.05, offset=0.05) + 0.03 * rng.standard_normal((60, 60))
    x = 0.5 * (x + x.T)
    assert np.allclose(LagDenoiser(small).denoise(x), LagDenoiser(grown).denoise(x), rtol=0, atol=1e-9)
    with pytest.raises(XPCSInputError, match="cannot expand"):
        expand_lagnet(grown, LagNetConfig(**{**small.config.__dict__, "context_channels": 4}))
    with pytest.raises(XPCSInputError, match="cannot expand"):  # the branch's inputs would change
        expand_lagnet(grown, LagNetConfig(**{**small.config.__dict__, "context_channels": 8, "level_feature": True}))
    cfg = LagNetConfig(channels=4, dilations=((1, 1), (1, 2)), smooth_widths=(2.0, 8.0), context_channels=4,
                       context_dilations=(1, 2), max_lag=20)
    torch.manual_seed(0)
    model = LagNet(cfg)
    torch.nn.init.normal_(model.head.weight, std=2.0)
    torch.nn.init.normal_(model.context.head.weight, std=2.0)
    for n, offset in ((24, 0.0), (50, 0.12), (120, 0.3)):
        clean = eq3(n, 0.07, alpha=0.8, offset=offset)
        assert np.abs(LagDenoiser(model).denoise(clean) - clean).max() < 1e-12
    n = 400
    assert cfg.halo < 200  # ages 0-19 and 300-399 are out of each other's reach but for the context
    x = eq3(n, 0.05) + 0.05 * rng.standard_normal((n, n))
    x = 0.5 * (x + x.T)
    far = x.copy()
    far[300:, 300:] += 0.1 * rng.standard_normal((100, 100))
    far = 0.5 * (far + far.T)
    near = (slice(0, 20), slice(1, 15))
    blind = copy.deepcopy(model)  # the same network with the context's last layer at zero
    torch.nn.init.zeros_(blind.context.head.weight)
    moved = []
    for m in (model, blind):
        a, b = LagDenoiser(m).denoise(x), LagDenoiser(m).denoise(far)
        moved.append(np.abs(a - b)[near].max())
        assert np.allclose(LagDenoiser(m, tile=64).denoise(x), a, rtol=0, atol=1e-6)  # float32 sums differ
    # Without the branch, only the band's scale (lo, s: medians over the whole band) feels the far ages.
    assert moved[0] > 3 * moved[1], moved
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(XPCSInputError, match="invalid lagnet configuration"):
            LagNetConfig(context_channels=bad)


def test_mixing_head_is_an_adaptive_age_smoother():
    """With ``mix``, the output may mix each cell with its smooths along age: it stays faithful on stationary
    2TCFs whatever the weights, and a head that picks one smooth everywhere is the age-axis smoother."""
    from xpcs_denoise.core.band import age_smooth
    from xpcs_denoise.nn.lagnet import LagDenoiser, LagNetConfig, expand_lagnet, load_lagnet

    cfg = LagNetConfig(channels=4, dilations=((1, 1), (1, 2)), smooth_widths=(2.0, 8.0), mix=True)
    model = LagNet(cfg)
    torch.nn.init.normal_(model.head.weight, std=2.0)
    torch.nn.init.normal_(model.stem.weight, std=1.0)
    for n in (5, 37, 120):
        clean = eq3(n, 0.07, alpha=0.8, offset=0.15)
        assert np.abs(LagDenoiser(model).denoise(clean) - clean).max() < 1e-12
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 60.0]))  # correction 0, spread, keep, 2, 8 frames
    rng = np.random.default_rng(3)
    x = eq3(80, 0.05) + 0.05 * rng.standard_normal((80, 80))
    x = 0.5 * (x + x.T)
    y = LagDenoiser(model).denoise(x, max_lag=30)
    # (the model's kernels stop at 3 widths, age_smooth's at 4: a difference far below the smoothing itself)
    assert np.abs(y - x).max() > 0.05
    np.testing.assert_allclose(y, age_smooth(x, 8.0, max_lag=30), rtol=0, atol=1e-3)
    # the shipped model grows a mixing head that starts near "keep"; a head cannot be taken away
    small, _ = load_lagnet(LagDenoiser.pretrained().directory)
    grown = expand_lagnet(small, LagNetConfig(**{**small.config.__dict__, "mix": True}))
    a, b = LagDenoiser(small).denoise(x), LagDenoiser(grown).denoise(x)
    assert 0 < np.abs(a - b).max() < 0.5 * np.abs(a - x).max()
    with pytest.raises(XPCSInputError, match="cannot expand"):
        expand_lagnet(grown, small.config)
    with pytest.raises(XPCSInputError):
        LagNetConfig(mix="yes")


def test_simulated_baselines_follow_the_offset_power():
    """``offset_power`` p: C∞ − 1 = 0.4 β u^p (p = 2: median 0.1 β, as real CHX baselines); the same draws
    otherwise; a bad power is refused in one line."""
    from xpcs_denoise.nn.lag_data import simulated_bands

    a = simulated_bands(64, 12, 4, seed=5, clean_share=1.0)
    b = simulated_bands(64, 12, 4, seed=5, clean_share=1.0, offset_power=2.0)
    u = a["offset"] / (0.4 * a["beta"])
    np.testing.assert_allclose(b["offset"], 0.4 * b["beta"] * u ** 2, rtol=1e-12)
    np.testing.assert_array_equal(a["gamma"], b["gamma"])
    # noise-free targets: the band's far level is the baseline, 1 + offset, up to the decay left there
    assert np.abs(b["y"][:, -1, 0] - 1 - b["offset"] - (a["y"][:, -1, 0] - 1 - a["offset"])).max() < 1e-5
    for bad in (0.0, -1.0, float("nan"), "2"):
        with pytest.raises(XPCSInputError, match="offset_power"):
            simulated_bands(2, 12, 4, seed=5, offset_power=bad)


def test_the_far_cost_sees_the_far_lags_level_only():
    """``weight_far``: 1 for the input, 0 for the truth; an error at the near lags, or one that averages to 0 over
    the far lags, costs nothing; a shift of the far lags costs in proportion to its square."""
    from xpcs_denoise.core.band import band_mask, to_band
    from xpcs_denoise.nn.lag_training import _far_cost

    rng = np.random.default_rng(2)
    y = torch.as_tensor(np.stack([to_band(eq3(50, g), 49) for g in (0.02, 0.1)]))
    m = torch.as_tensor(band_mask(50, 49)).to(y.dtype).expand_as(y)
    x = y + 0.5 * torch.as_tensor(rng.standard_normal(y.shape)) * m
    assert float(_far_cost(x, x, y, m)) == pytest.approx(1.0, rel=0.01)  # (a floor for noise-free batches)
    assert float(_far_cost(y, x, y, m)) == 0.0
    near = y.clone()
    near[:, :19] += 0.3
    assert float(_far_cost(near, x, y, m)) == 0.0
    sign = torch.where(torch.arange(49) % 2 == 0, 1.0, -1.0).to(y.dtype)[None, 19:, None]
    alt = y.clone()
    alt[:, 19:] += 0.2 * sign * m[:, 19:]
    assert float(_far_cost(alt, x, y, m)) < 0.05 * float(_far_cost(y + 0.2 * m, x, y, m))
    assert float(_far_cost(y + 0.02 * m, x, y, m)) == pytest.approx(4 * float(_far_cost(y + 0.01 * m, x, y, m)))


def test_the_cut_cost_sees_errors_that_move_a_cut_and_not_those_that_average_out():
    """The cuts' cost (issue 29's ageing bar): 1 for the input, 0 for the truth, and an error that is the same at
    every lag of an age (it moves that age's Γ) costs far more than one of the same size alternating along lags."""
    from xpcs_denoise.nn.lag_training import _cut_cost

    k, w = 24, 60
    lag = torch.arange(1, k + 1, dtype=torch.float64)[:, None]
    y = (torch.exp(-0.2 * lag) * torch.ones(1, w))[None]
    m = torch.ones_like(y)
    rng = np.random.default_rng(0)
    x = y + 0.05 * torch.as_tensor(rng.standard_normal(y.shape))
    assert float(_cut_cost(x, x, y, m)) == pytest.approx(1.0, rel=0.02)  # (a small floor in the denominator)
    assert float(_cut_cost(y, x, y, m)) == 0.0
    common = y + 0.02 * torch.as_tensor(rng.standard_normal((1, 1, w)))
    alternating = y + 0.02 * torch.as_tensor(rng.standard_normal((1, 1, w))) * (-1.0) ** lag
    assert float(_cut_cost(common, x, y, m)) > 5 * float(_cut_cost(alternating, x, y, m))


def test_the_pooled_1tcf_cost_weighs_the_noisiest_2tcfs_most():
    """Per-2TCF ratios rate halving the error of a nearly clean 2TCF like halving that of a very noisy one; the
    pooled cost (``weight_pooled``) rates the second far better (where plain fits go grossly wrong)."""
    from xpcs_denoise.nn.lag_training import _tcf_errors

    k, w = 16, 40
    lag = torch.arange(1, k + 1, dtype=torch.float64)[:, None]
    y = (torch.exp(-0.2 * lag) * torch.ones(1, w))[None].repeat(2, 1, 1)
    m = torch.ones_like(y)
    noise = torch.as_tensor(np.random.default_rng(1).standard_normal(y.shape))
    x = y + noise * torch.tensor([0.01, 0.3], dtype=torch.float64)[:, None, None]
    fix_clean = torch.stack([y[0] + 0.5 * (x[0] - y[0]), x[1]])
    fix_noisy = torch.stack([x[0], y[1] + 0.5 * (x[1] - y[1])])

    def costs(out):
        e_out, e_in = _tcf_errors(out, x, y, m, 1.0)
        return float((e_out / e_in).mean()), float(e_out.sum() / e_in.sum())

    (ratio_c, pooled_c), (ratio_n, pooled_n) = costs(fix_clean), costs(fix_noisy)
    assert ratio_c == pytest.approx(ratio_n) and ratio_c == pytest.approx(0.625)
    assert pooled_n < 0.3 and pooled_c > 0.99
    assert costs(x) == (pytest.approx(1.0), pytest.approx(1.0)) and costs(y) == (0.0, 0.0)


def test_simulated_bands_take_pixel_count_and_alpha_ranges():
    from xpcs_denoise.nn.lag_data import simulated_bands

    d = simulated_bands(6, 30, 8, seed=2, ageing=True, pixels=(5e3, 5e4), count=(0.05, 1.0), clean_share=0.0)
    assert np.all((d["pixels"] >= 5e3) & (d["pixels"] <= 5e4)) and np.all((d["count"] >= 0.05) & (d["count"] <= 1))
    assert d["x"].shape == (6, 8, 30) and np.all(d["noise_factor"] > 0)
    s = simulated_bands(40, 30, 8, seed=3, alpha=(1.5, 2.0))  # compressed decays, as most real CHX ones
    assert np.all((s["alpha"] >= 1.5) & (s["alpha"] <= 2.0))
    assert np.min(simulated_bands(40, 30, 8, seed=3)["alpha"]) < 1.0  # TRAIN_RANGES otherwise


def test_a_mixing_model_grows_new_smooths_without_changing_its_function():
    from xpcs_denoise.nn.lagnet import LagDenoiser, LagNetConfig, expand_lagnet

    cfg = LagNetConfig(channels=4, dilations=((1, 1), (1, 2)), smooth_widths=(2.0, 8.0), mix=True)
    model = LagNet(cfg)
    for prm in (model.head.weight, model.head.bias, model.stem.weight):
        torch.nn.init.normal_(prm, std=1.0)
    big = expand_lagnet(model, LagNetConfig(**{**cfg.__dict__, "smooth_widths": (2.0, 4.0, 8.0, 32.0)}))
    rng = np.random.default_rng(5)
    x = eq3(70, 0.05) + 0.05 * rng.standard_normal((70, 70))
    x = 0.5 * (x + x.T)
    a, b = LagDenoiser(model).denoise(x), LagDenoiser(big).denoise(x)
    assert np.abs(a - x).max() > 1e-3 and np.allclose(a, b, rtol=0, atol=1e-9)


def test_the_ageing_model_is_faithful_and_follows_an_ageing_series_better_than_the_raw_2tcf():
    """pretrained/lagnet_ageing (mixing head): noise-free stationary 2TCFs pass unchanged, its card holds its own
    calibration and benchmark, and on a simulated series whose Γ falls 4× the cuts of its output are closer to the
    truth than those of the raw 2TCF."""
    from xpcs_denoise.analysis.workflows import ageing_analysis
    from xpcs_denoise.core.simulation import simulate_speckle
    from xpcs_denoise.nn.config import pretrained_directory
    from xpcs_denoise.nn.lagnet import LagDenoiser

    den = LagDenoiser.from_directory(pretrained_directory() / "lagnet_ageing")
    assert den.config.mix and {"calibration", "benchmark", "lineage"} <= set(den.card)
    for n in (24, 60):
        clean = eq3(n, 0.08, alpha=1.3, offset=0.2)
        assert np.abs(den.denoise(clean) - clean).max() < 1e-9
    n = 240
    gamma = 0.08 * 4.0 ** (-np.arange(n) / (n - 1))
    c2 = simulate_speckle(n, 20000, gamma=gamma, beta=0.2, mean_count=0.2, seed=11).two_time()[0]
    errs = []
    for x in (c2, den.denoise(c2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ageing_analysis(x, width=3, max_lag=49, beta=0.2)
        a = np.asarray(res.ages).astype(int)
        errs.append(np.nanmedian(np.abs(res.fit.gamma / gamma[a] - 1)))
    assert errs[1] < 0.6 * errs[0]


def test_the_fit_cost_follows_what_a_plain_fit_of_the_output_finds():
    """The fit cost's differentiable fit (``fit_log_gamma``) from the target's own fit reaches Γ of ``fit_g2`` on a
    noisy 1TCF, recovers Γ of a noise-free one from a start 40 % off, and passes a gradient back to the 1TCF that
    lowers |log Γ̂ − log Γ|."""
    from xpcs_denoise.nn.lag_training import fit_log_gamma, fit_targets

    lags = np.arange(1, 50)
    rng = np.random.default_rng(4)
    gam = np.array([0.02, 0.05, 0.1])
    alpha = np.array([1.0, 0.8, 1.4])
    clean = 1.05 + 0.2 * np.exp(-2 * (gam[:, None] * lags) ** alpha[:, None])
    noisy = clean + 0.01 * rng.standard_normal(clean.shape)
    theta = np.stack([np.log(gam), np.full(3, 0.2), np.full(3, 1.05), np.log(alpha)], -1)
    start = theta + np.array([np.log(1.4), 0.02, -0.01, 0.2])
    u_clean = fit_log_gamma(torch.tensor(clean), torch.tensor(start)).numpy()
    np.testing.assert_allclose(np.exp(u_clean), gam, rtol=1e-4)
    g = torch.tensor(noisy, requires_grad=True)
    u = fit_log_gamma(g, torch.tensor(theta))
    np.testing.assert_allclose(np.exp(u.detach().numpy()), fit_g2(noisy).gamma, rtol=1e-3)
    # A small step of the 1TCF against the gradient of the cost brings the fitted Γ closer to the truth.
    cost = (u - torch.tensor(np.log(gam))).abs().sum()
    cost.backward()
    better = fit_log_gamma(g.detach() - 1e-4 * g.grad / g.grad.abs().max(), torch.tensor(theta))
    assert float((better - torch.tensor(np.log(gam))).abs().sum()) < float(cost.detach())
    # With α held (as ``fit --fix-alpha``) it keeps α where it starts and reaches fit_g2's Γ with α fixed there.
    held = fit_log_gamma(torch.tensor(noisy), torch.tensor(theta), full=True, hold_alpha=True).numpy()
    np.testing.assert_array_equal(held[:, 3], theta[:, 3])
    ref_held = fit_g2(noisy, fix={"alpha": alpha}).gamma
    np.testing.assert_allclose(np.exp(held[:, 0]), ref_held, rtol=1e-3)
    # The targets' references: a 2TCF band's own fit; a decay that hardly starts within the lags has none.
    band = np.repeat(np.concatenate([clean, 1.05 + 0.2 * np.exp(-2 * 1e-4 * lags)[None]])[:, :, None], 60, -1)
    ref = fit_targets(band.astype(np.float32), band_mask(60, 49))
    np.testing.assert_allclose(np.exp(ref[:3, 0]), gam, rtol=1e-3)
    assert np.isnan(ref[3]).all()


def test_the_fit_cost_can_start_where_a_users_fit_starts():
    """``fit_start="user"``: the fit cost's fit of the output starts from ``fit_g2``'s own grid start, so on slow,
    noisy decays (where a fit has several minima) it finds the Γ a user's plain fit finds, not the minimum nearest
    the truth; a row whose fit fails starts from the fallback (the truth)."""
    from xpcs_denoise.nn.lag_training import _user_start, fit_log_gamma

    lags = np.arange(1, 50)
    rng = np.random.default_rng(7)
    gam = np.tile([0.006, 0.01, 0.03, 0.1], 8)
    clean = 1.0 + 0.2 * np.exp(-2 * gam[:, None] * lags)
    noisy = clean + 0.03 * rng.standard_normal(clean.shape)
    noisy[-1] = np.nan  # a fit that fails
    theta = torch.tensor(np.stack([np.log(gam), np.full(gam.size, 0.2), np.ones(gam.size), np.zeros(gam.size)], -1))
    g = torch.tensor(noisy)
    start = _user_start(g, theta)
    torch.testing.assert_close(start[-1], theta[-1])
    user = fit_log_gamma(g[:-1], start[:-1], steps=4).numpy()
    ref = fit_g2(noisy[:-1]).gamma
    # The same minimum as fit_g2's (a row with α at its bound may slide along its flat valley).
    assert np.mean(np.abs(np.exp(user) / ref - 1) < 1e-2) >= 0.8
    # From the truth, some of the same fits end elsewhere: that cost would not see what users get.
    near = np.exp(fit_log_gamma(g[:-1], theta[:-1]).numpy())
    assert (np.abs(np.log(near / ref)) > 0.2).sum() >= 3


def test_the_fit_cost_can_hold_the_shape_of_the_decay():
    """``weight_fit_alpha``: the differentiable fit returns all four parameters (``full=True``), α recovered on a
    clean compressed decay, and a step of the 1TCF against the gradient of |log α̂ − log α| brings α̂ closer;
    ``lag_loss`` reports the term where the fit cost applies; a negative weight is refused. ``weight_pixel``
    scales the band's cost."""
    from xpcs_denoise.nn.lag_training import LagTrainConfig, fit_log_gamma, lag_loss

    lags = np.arange(1, 50)
    gam, alpha = np.array([0.04, 0.08]), np.array([1.9, 0.7])
    clean = 1.1 + 0.8 * np.exp(-2 * (gam[:, None] * lags) ** alpha[:, None])
    theta = torch.tensor(np.stack([np.log(gam), np.full(2, 0.8), np.full(2, 1.1), np.log(alpha)], -1))
    p = fit_log_gamma(torch.tensor(clean), theta + torch.tensor([0.2, 0.05, 0.02, -0.2]), full=True)
    np.testing.assert_allclose(np.exp(p[:, 3].numpy()), alpha, rtol=1e-3)
    rng = np.random.default_rng(2)
    g = torch.tensor(clean + 0.05 * rng.standard_normal(clean.shape), requires_grad=True)
    cost = (fit_log_gamma(g, theta, full=True)[:, 3] - theta[:, 3]).abs().sum()
    cost.backward()
    moved = fit_log_gamma(g.detach() - 1e-4 * g.grad / g.grad.abs().max(), theta, full=True)
    assert float((moved[:, 3] - theta[:, 3]).abs().sum()) < float(cost.detach())
    net = LagNet(LagNetConfig(channels=4, dilations=((1, 1),)))
    band = torch.tensor(np.repeat(clean[:, :, None], 60, -1), dtype=torch.float32)
    noisy = band + 0.02 * torch.randn(band.shape, generator=torch.Generator().manual_seed(0))
    mask = torch.as_tensor(band_mask(60, 49))
    _, parts = lag_loss(net, noisy, band, mask, weight_fit=1.0, theta=theta.float(), weight_fit_alpha=1.0)
    assert parts["fit_alpha"] > 0 and "fit_alpha" not in lag_loss(net, noisy, band, mask, weight_fit=1.0,
                                                                   theta=theta.float())[1]
    # Only decays the lags resolve (Γ·K at least fit_alpha_resolved) count: here Γ·K = 2.0 and 3.9.
    slow = lag_loss(net, noisy, band, mask, weight_fit=1.0, theta=theta.float(), weight_fit_alpha=1.0,
                    fit_alpha_resolved=3.0)[1]["fit_alpha"]
    none = lag_loss(net, noisy, band, mask, weight_fit=1.0, theta=theta.float(), weight_fit_alpha=1.0,
                    fit_alpha_resolved=5.0)[1]["fit_alpha"]
    assert none == 0.0 and slow > 0
    with pytest.raises(XPCSInputError, match="weight_fit_alpha"):
        LagTrainConfig(weight_fit_alpha=-1.0)
    # weight_pixel scales the band's squared-error cost alone.
    full, p1 = lag_loss(net, noisy, band, mask)
    less, _ = lag_loss(net, noisy, band, mask, weight_pixel=0.25)
    assert float(full - less) == pytest.approx(0.75 * p1["pix"], rel=1e-4)
    with pytest.raises(XPCSInputError, match="weight_pixel"):
        LagTrainConfig(weight_pixel=-0.5)


def test_l1_costs_keep_the_shape_of_the_decay():
    """``loss_norm="l1"``: over decays of uncertain Γ (one noisy input, several possible truths), the absolute-error
    cost prefers the decay of the median Γ, which keeps α, to the mean of the decays (rounder: the squared-error
    cost's optimum); ``lag_loss`` uses it for the band's and the 1TCF's costs; another name is refused."""
    from xpcs_denoise.core.fitting import fit_g2
    from xpcs_denoise.nn.lag_training import LagTrainConfig, _tcf_errors, lag_loss

    lags = np.arange(1, 50)
    gam = np.exp(np.linspace(np.log(0.02), np.log(0.08), 9))  # the Γ the input allows
    curves = 1.1 + 0.8 * np.exp(-2 * (gam[:, None] * lags) ** 1.9)
    mean, med = curves.mean(0), curves[4]
    assert fit_g2(mean).alpha < 1.6 < 1.85 < fit_g2(med).alpha  # the mixture is rounder
    y = torch.tensor(curves[:, :, None])
    m = torch.ones_like(y)

    def cost(out, err):
        o = torch.tensor(np.broadcast_to(out, curves.shape).copy())[:, :, None]
        return float(_tcf_errors(o, o, y, m, 1.0, err)[0].sum())

    l2, l1 = (lambda v: v ** 2), torch.abs
    assert cost(med, l1) < cost(mean, l1) and cost(mean, l2) < cost(med, l2)
    net = LagNet(LagNetConfig(channels=4, dilations=((1, 1),)))
    band = torch.tensor(np.repeat(curves[:2, :, None], 60, -1), dtype=torch.float32)
    noisy = band + 0.02 * torch.randn(band.shape, generator=torch.Generator().manual_seed(0))
    mask = torch.as_tensor(band_mask(60, 49))
    # The band's cost is the output's summed |error| over the input's, in the network's units.
    with torch.no_grad():
        feats, x, S, lo, sc = band_features(noisy, mask, net.config)
        y = (band - lo[:, None, None]) / sc[:, None, None]
        xo = net.correct(feats, x, S)[0]
    m = mask.to(x.dtype).expand_as(x)
    want = (((xo - y).abs() * m).sum((1, 2)) / (((x - y).abs() * m).sum((1, 2)) + 1e-3 * m.sum((1, 2)))).mean()
    assert lag_loss(net, noisy, band, mask, loss_norm="l1")[1]["pix"] == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(XPCSInputError, match="loss_norm"):
        LagTrainConfig(loss_norm="huber")
