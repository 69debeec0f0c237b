"""Frame time (Γ in s⁻¹), Γ(q) = D q² and trust flags through files, the CLI and the report."""

import csv
import json

import h5py
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xpcs_denoise import XPCSInputError, read_c2, write_c2  # noqa: E402
from xpcs_denoise.app.pipeline import fit_file, report_file  # noqa: E402
from xpcs_denoise.io.formats import write_aps_c2  # noqa: E402

from .conftest import run_cli  # noqa: E402

Q = np.array([0.004, 0.005, 0.006, 0.007])
D_FRAMES = 2500.0  # Å² per frame: Γ = D q², frames⁻¹


def _c2(n=60, beta=0.3):
    t = np.arange(n)
    lag = np.abs(np.subtract.outer(t, t))
    return np.stack([1 + beta * np.exp(-2 * D_FRAMES * q**2 * lag) for q in Q])


def _aps(path, *, t0=None, avg=None, stride=None, legacy_time=False):
    write_aps_c2(path, _c2(), q=Q)
    with h5py.File(path, "a") as f:
        if t0 is not None:
            key = ("measurement/instrument/detector/exposure_period" if legacy_time
                   else "entry/instrument/detector_1/frame_time")
            f[key] = t0
        if avg is not None:
            f["xpcs/twotime/config/avg_frame"] = avg
        if stride is not None:
            f["xpcs/twotime/config/stride_frame"] = stride
    return path


def test_aps_frame_time_is_read_with_averaging_and_stride(tmp_path):
    assert read_c2(_aps(tmp_path / "a.hdf", t0=0.002)).frame_time == pytest.approx(0.002)
    assert read_c2(_aps(tmp_path / "b.hdf", t0=0.002, avg=2, stride=3)).frame_time == pytest.approx(0.012)
    assert read_c2(_aps(tmp_path / "c.hdf", t0=0.01, legacy_time=True)).frame_time == pytest.approx(0.01)
    assert read_c2(_aps(tmp_path / "d.hdf")).frame_time is None
    # Our format keeps a frame time given at writing (denoise stores it).
    write_c2(tmp_path / "ours.h5", _c2(), q=Q, attrs={"frame_time": 0.004})
    assert read_c2(tmp_path / "ours.h5").frame_time == pytest.approx(0.004)


def test_fit_file_gives_gamma_per_second_and_diffusion_from_the_file_frame_time(tmp_path):
    src = _aps(tmp_path / "a.hdf", t0=0.002, avg=2, stride=1)  # 4 ms per 2TCF frame
    s = fit_file(src, tmp_path / "f.csv", fix_alpha=True, weighted=False)
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    gamma = np.array([float(r["gamma"]) for r in rows])
    np.testing.assert_allclose(gamma, D_FRAMES * Q**2 / 0.004, rtol=1e-6)
    assert {r["gamma_unit"] for r in rows} == {"1/s"} and s["gamma_unit"] == "1/s"
    meta = json.loads((tmp_path / "f.json").read_text())
    assert meta["frame_time_s"] == pytest.approx(0.004) and meta["q_unit"] == "1/Å"
    d = meta["diffusion"]
    assert d["D"] == pytest.approx(D_FRAMES / 0.004, rel=1e-6) and d["D_unit"] == "Å^2/s" and d["power"] == 2.0
    # An explicit frame time wins; without any, Γ stays per frame.
    fit_file(src, tmp_path / "g.csv", fix_alpha=True, frame_time=0.001, weighted=False)
    g2 = [float(r["gamma"]) for r in csv.DictReader(open(tmp_path / "g.csv"))]
    np.testing.assert_allclose(g2, D_FRAMES * Q**2 / 0.001, rtol=1e-6)
    fit_file(_aps(tmp_path / "n.hdf"), tmp_path / "n.csv", fix_alpha=True)
    rows = list(csv.DictReader(open(tmp_path / "n.csv")))
    assert {r["gamma_unit"] for r in rows} == {"1/frame"}
    np.testing.assert_allclose([float(r["gamma"]) for r in rows], D_FRAMES * Q**2, rtol=1e-5)
    with pytest.raises(XPCSInputError, match="frame_time"):
        fit_file(src, tmp_path / "bad.csv", frame_time=-1)
    assert not (tmp_path / "bad.csv").exists()


def test_cut_tables_carry_trust_and_age_units(tmp_path):
    src = _aps(tmp_path / "a.hdf", t0=0.01)
    fit_file(src, tmp_path / "cuts.csv", cut_width=3, fix_beta=True, fix_alpha=True)
    rows = list(csv.DictReader(open(tmp_path / "cuts.csv")))
    assert {"trusted", "age", "age_s", "age_unit", "gamma_unit", "at_bound"} <= set(rows[0])
    assert {r["age_unit"] for r in rows} == {"frames"}
    r = next(r for r in rows if r["roi"] == "1" and float(r["age"]) == 10)
    assert float(r["age_s"]) == pytest.approx(0.1)
    # ROI 1: Γ = 0.04 frames⁻¹, t½ = 8.66 frames. A cut at age a of a 60-frame 2TCF reaches lags up to
    # about min(2a, 2(59 − a)) frames (± the cut's width): ≥ 2 t½ ≈ 17 only for about 8 ≤ a ≤ 52.
    roi1 = {float(r["age"]): r["trusted"] for r in rows if r["roi"] == "1"}
    assert all(v == "True" for a, v in roi1.items() if 10 <= a <= 49)
    assert all(v == "False" for a, v in roi1.items() if a <= 6 or a >= 54)


def test_cli_frame_time_option_and_bad_value(tmp_path):
    src = _aps(tmp_path / "a.hdf")
    r = run_cli("fit", src, "-o", tmp_path / "f.csv", "--fix-alpha", "--frame-time", "0.01")
    assert r.returncode == 0, r.stderr
    assert "1/s" in r.stdout and "D = " in r.stdout and "Å^2/s" in r.stdout
    r = run_cli("fit", src, "-o", tmp_path / "g.csv", "--frame-time", "0")
    assert r.returncode != 0 and "frame_time" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "g.csv").exists()


def test_report_states_units_and_draws_the_diffusion_line(tmp_path):
    src = _aps(tmp_path / "a.hdf", t0=0.002)
    report_file(src, tmp_path / "rep", method="gaussian", fix_alpha=True)
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["gamma_unit"] == "1/s" and summary["lag_unit"] == "s"
    assert summary["frame_time_s"] == pytest.approx(0.002)
    assert summary["diffusion"]["raw"]["D_unit"] == "Å^2/s"
    assert summary["diffusion"]["raw"]["D"] == pytest.approx(D_FRAMES / 0.002, rel=0.02)
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Γ in 1/s" in page and "D q²" in page and (tmp_path / "rep" / "gamma_q.png").stat().st_size > 0


def test_log_ticks_on_a_narrow_q_range_do_not_pile_up():
    import matplotlib.pyplot as plt

    from xpcs_denoise import fit_g2, g2_model
    from xpcs_denoise.analysis.plotting import log_ticks, plot_parameters
    from xpcs_denoise.core.fitting import fit_diffusion

    q = np.linspace(0.0041, 0.0089, 7)  # less than a decade: matplotlib's default labels every 0.001 here
    lags = np.arange(1, 50.0)
    fit = fit_g2(g2_model(lags, 2500 * q[:, None] ** 2, 0.2, 1.0, 1.0))
    fig = plot_parameters(q, {"raw": fit}, diffusion={"raw": fit_diffusion(q, fit.gamma)})
    fig.canvas.draw()
    ax = fig.axes[0]
    assert any("D = 2.5e+03" in t.get_text() for t in ax.get_legend().get_texts())
    for axis in (ax.xaxis, ax.yaxis):
        shown = [t for t in axis.get_ticklabels() if t.get_text() and t.get_visible()]
        lo, hi = sorted(ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
        shown = [t for t in shown if lo <= (t.get_position()[0] if axis is ax.xaxis else t.get_position()[1]) <= hi]
        assert 2 <= len(shown) <= 5 and len({t.get_text() for t in shown}) == len(shown)
        assert not [t for t in axis.get_ticklabels(minor=True) if t.get_text()]
        boxes = sorted((t.get_window_extent() for t in shown), key=lambda b: b.x0 if axis is ax.xaxis else b.y0)
        for a, b in zip(boxes, boxes[1:], strict=False):  # neighbouring labels do not overlap on the page
            assert (a.x1 < b.x0) if axis is ax.xaxis else (a.y1 < b.y0)
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.loglog([1e-3, 1e3], [1, 2])  # six decades: powers of ten only, at most 5
    log_ticks(ax)
    fig.canvas.draw()
    assert 2 <= len([t for t in ax.xaxis.get_ticklabels() if t.get_text()]) <= 5
    plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cned", "lagnet"])
def test_report_and_fit_file_give_the_same_whole_series_fits_of_a_denoised_file(tmp_path, method):
    """One whole-series fit behind both: Γ, σ(Γ) and path per ROI agree for the same file, seed and lags."""
    rng = np.random.default_rng(5)
    c2 = _c2(n=80, beta=0.2)
    c2 = c2 + rng.normal(0, 0.02, c2.shape)
    c2 = (c2 + np.swapaxes(c2, -1, -2)) / 2
    write_c2(tmp_path / "c2.h5", c2, q=Q)
    from xpcs_denoise.app.pipeline import denoise_file

    denoise_file(tmp_path / "c2.h5", tmp_path / "den.h5", method=method)  # raw kept
    fit_file(tmp_path / "den.h5", tmp_path / "fits.csv", max_lag=49, seed=3)
    report_file(tmp_path / "den.h5", tmp_path / "rep", seed=3)
    with open(tmp_path / "fits.csv") as f:
        mine = list(csv.DictReader(f))
    with open(tmp_path / "rep" / "fits.csv") as f:
        rep = [r for r in csv.DictReader(f) if r["method"] == method]
    assert len(mine) == len(rep) == len(Q)
    paths = {"cned": "paper-2021: plain fit of the denoised 2TCF", "lagnet": "lagnet: denoised and raw fits pooled by "
             "precision"}
    assert {r["path"] for r in mine} == {paths[method]}
    assert {r["lag_range"] for r in rep} == {"1–49 frames"}
    for a, b in zip(mine, rep, strict=True):
        assert a["roi"] == b["roi"] and a["path"] == b["path"] and a["raw_weight"] == b["raw_weight"]
        assert 0 <= float(a["raw_weight"]) <= (1 if method == "lagnet" else 0)
        assert float(a["gamma"]) == pytest.approx(float(b["gamma"]), rel=1e-12)
        assert float(a["gamma_err"]) == pytest.approx(float(b["gamma_err"]), rel=1e-12)
        assert float(a["gamma_err"]) > 0


def test_fix_beta_on_a_short_series_warns_that_beta_star_is_biased(tmp_path):
    """β*(lag = 1) of a series of up to 100 frames is biased low: the fit still runs, with a warning; a long
    series fits without one."""
    short = tmp_path / "short.hdf"
    write_aps_c2(short, _c2(60), q=Q)
    with pytest.warns(UserWarning, match="biased low"):
        fit_file(short, tmp_path / "s.csv", fix_beta=True, fix_alpha=True)
    assert (tmp_path / "s.csv").exists()
    long = tmp_path / "long.hdf"
    write_aps_c2(long, _c2(120), q=Q)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit_file(long, tmp_path / "l.csv", fix_beta=True, fix_alpha=True)
    assert all(r["success"] == "True" for r in csv.DictReader(open(tmp_path / "l.csv")))
