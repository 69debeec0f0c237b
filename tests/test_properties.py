"""Property-based tests over the public API: random shapes, values and NaN masks either give finite,
same-shaped output or raise the one documented error, XPCSInputError."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpcs_denoise import XPCSInputError, denoise, fit_g2, one_time_from_two_time, time_resolved_cuts, two_time
from xpcs_denoise.core.scaling import scale_parameters
from xpcs_denoise.io.formats import read_c2, write_c2

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def two_times(draw, min_n=2, max_n=70, batch=True):
    n = draw(st.integers(min_n, max_n))
    b = draw(st.integers(1, 3)) if batch and draw(st.booleans()) else None
    shape = (n, n) if b is None else (b, n, n)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["decay", "noise", "constant", "zero", "negative", "huge"]))
    lag = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    base = {"decay": 1 + 0.2 * np.exp(-2 * 0.05 * lag), "noise": 1 + rng.normal(0, 0.1, (n, n)),
            "constant": np.full((n, n), 1.3), "zero": np.zeros((n, n)), "negative": -1 - rng.random((n, n)),
            "huge": 1e200 * (1 + rng.random((n, n)))}[kind]
    x = np.broadcast_to(base, shape) + rng.normal(0, draw(st.sampled_from([0.0, 0.01, 0.1])), shape)
    if draw(st.booleans()):
        x = 0.5 * (x + np.swapaxes(x, -1, -2))
    if draw(st.integers(0, 4)) == 0:
        x = x.copy()
        x[(Ellipsis, rng.integers(0, n), rng.integers(0, n))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


def _finite_same_shape_or_documented_error(fn, x, shape=None):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(x)
    except XPCSInputError as exc:
        assert str(exc)  # a message that says what is wrong
        return None
    assert out.shape == (x.shape if shape is None else shape)
    assert np.all(np.isfinite(out)), "non-finite output without an error"
    return out


@SETTINGS
@given(x=two_times(min_n=45, max_n=70), method=st.sampled_from(["gaussian", "median", "none", "pca", "cned"]))
def test_denoise_gives_finite_same_shape_or_the_error(x, method):
    _finite_same_shape_or_documented_error(lambda a: denoise(a, method), x)


@SETTINGS
@given(x=two_times())
def test_scale_parameters_positive_or_the_error(x):
    try:
        b, base = scale_parameters(x, 50)
    except XPCSInputError:
        return
    assert np.all(b > 0) and np.all(np.isfinite(b)) and np.all(np.isfinite(base))


@SETTINGS
@given(x=two_times(max_n=40))
def test_one_time_and_cuts_have_the_documented_shapes(x):
    n = x.shape[-1]
    g = one_time_from_two_time(x)
    assert g.shape == x.shape[:-2] + (n - 1,)
    if x.ndim == 2:
        ages, lags, cuts = time_resolved_cuts(x, width=1)
        assert cuts.shape == (len(ages), len(lags))


@SETTINGS
@given(g=st.lists(st.one_of(st.floats(-1e3, 1e3), st.sampled_from([np.nan, np.inf])), min_size=1, max_size=60),
       fix_alpha=st.booleans())
def test_fit_g2_never_raises_on_numbers_and_flags_failures(g, fix_alpha):
    fit = fit_g2(np.array(g), fix={"alpha": 1.0} if fix_alpha else None)
    ok = bool(np.asarray(fit.success))
    assert ok == bool(np.isfinite(fit.gamma))  # a failed fit is NaN with a reason, a good one finite
    if not ok:
        assert str(np.asarray(fit.message)) != "ok"


@st.composite
def frame_stacks(draw):
    t = draw(st.integers(0, 12))
    p = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]))
    frames = rng.poisson(draw(st.sampled_from([0.01, 0.5, 5.0])), size=(t, 1, p)).astype(dtype)
    k = draw(st.integers(0, 3))
    labels = rng.integers(0, k + 1, size=(1, p)).astype(np.int32)
    return frames, labels


@SETTINGS
@given(data=frame_stacks())
def test_two_time_finite_or_the_error(data):
    frames, labels = data
    try:
        c2 = two_time(frames, labels)
    except XPCSInputError:
        return
    k, t = int(labels.max()), frames.shape[0]
    assert c2.shape == (k, t, t) and np.all(np.isfinite(c2))
    np.testing.assert_allclose(c2, np.swapaxes(c2, -1, -2), rtol=1e-12)


@pytest.fixture
def h5_path(tmp_path_factory):
    return tmp_path_factory.mktemp("prop") / "c2.h5"


@SETTINGS
@given(x=two_times(min_n=2, max_n=30))
def test_write_read_round_trip(h5_path, x):
    q = np.linspace(0.001, 0.01, 1 if x.ndim == 2 else x.shape[0])
    sym = 0.5 * (x + np.swapaxes(x, -1, -2))  # format v2 stores each matrix's symmetric part, once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not symmetric" for the asymmetric draws
        write_c2(h5_path, x, q=q, attrs={"seed": 3}, overwrite=True, dtype=np.float64)
    back = read_c2(h5_path)
    np.testing.assert_array_equal(back.c2, sym.reshape((-1,) + x.shape[-2:]))
    np.testing.assert_array_equal(back.q, q)
    assert back.attrs["seed"] == 3
    if np.all(np.abs(sym[np.isfinite(sym)]) < 3e38):  # default float32 storage: within half an ulp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            write_c2(h5_path, x, q=q, overwrite=True)
        np.testing.assert_allclose(read_c2(h5_path).c2, sym.reshape((-1,) + x.shape[-2:]), rtol=6e-8, atol=0)
    else:  # beyond float32: refused with a clear message, no file left half-written
        with pytest.raises(XPCSInputError, match="float32"):
            write_c2(h5_path, x, q=q, overwrite=True)
