"""Checks shared by the readers, writers and the CLI: memory estimates before allocating, integer and seed
arguments, numeric arrays, regular files, outputs that must not be an input.

Every check raises :class:`~xpcs_denoise.errors.XPCSInputError` with one line saying what is wrong and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from .errors import XPCSInputError

__all__ = ["check_square", "memory_limit_bytes", "check_memory", "check_int", "check_seed", "numeric_array",
           "is_real_dtype",
           "check_regular_input", "check_output_not_input", "MAX_ROIS", "MAX_SEED"]

#: Largest number of q-ROIs in one file or label map (APS maps have a few hundred at most).
MAX_ROIS = 10_000
#: Seeds are 0 ≤ seed < 2**63 (numpy accepts any, torch not more than 64 bits).
MAX_SEED = 2**63 - 1
_GIB = 2.0**30


def memory_limit_bytes() -> int:
    """Working memory one call may ask for, bytes: ``XPCS_DENOISE_MAX_MEMORY_GB`` (GiB) if set, else half the
    machine's physical memory (8 GiB where it cannot be read)."""
    env = os.environ.get("XPCS_DENOISE_MAX_MEMORY_GB")
    if env:
        try:
            return int(float(env) * _GIB)
        except ValueError:
            raise XPCSInputError(f"XPCS_DENOISE_MAX_MEMORY_GB must be a number of GiB; got {env!r}") from None
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return int(8 * _GIB)


def check_memory(nbytes: float, what: str) -> None:
    """Refuse, before allocating, work whose estimated memory ``nbytes`` exceeds :func:`memory_limit_bytes`."""
    limit = memory_limit_bytes()
    if nbytes > limit:
        raise XPCSInputError(f"{what} would need about {nbytes / _GIB:.3g} GiB of memory, more than the "
                             f"{limit / _GIB:.3g} GiB allowed (half of this machine's memory; set "
                             "XPCS_DENOISE_MAX_MEMORY_GB to change it); use a smaller input or crop it")


def check_int(value, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int within [lo, hi]; bools, floats with a fraction and text are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) or (
            isinstance(value, (float, np.floating)) and not float(value).is_integer()):
        raise XPCSInputError(f"{name} must be a whole number; got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}" if lo is not None else f"<= {hi}"
        raise XPCSInputError(f"{name} must be {rng}; got {v}")
    return v


def check_seed(seed, name: str = "seed") -> int:
    """A seed 0 ≤ seed < 2**63."""
    return check_int(seed, name, 0, MAX_SEED)


def is_real_dtype(dtype) -> bool:
    """Booleans, integers and floats; not complex, text, objects, datetime64 or timedelta64 (an integer subtype
    for numpy, but not counts)."""
    return np.dtype(dtype).kind in "biuf"


def numeric_array(x, what: str) -> np.ndarray:
    """``np.asarray(x)`` that refuses ragged nested lists and non-numeric dtypes with a clear message."""
    if isinstance(x, np.ma.MaskedArray) and np.ma.getmaskarray(x).any():
        # np.asarray drops the mask: the masked values would be used as data
        raise XPCSInputError(f"{what} is a masked array; its mask would be lost: fill the masked values (NaN where "
                             "they may be left out, e.g. numpy.ma.filled(x, numpy.nan)) or drop them")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise XPCSInputError(f"{what} must be a rectangular array of numbers (ragged lists are not); "
                             f"{' '.join(str(exc).split())[:120]}") from None
    if not is_real_dtype(arr.dtype):
        raise XPCSInputError(f"{what} must hold real numbers; got dtype {arr.dtype}")
    return arr


_SQUARE_FORMS = {(2,): "one (N, N)", (2, 3): "(N, N) or ({b}, N, N)", (3,): "({b}, N, N)"}


def check_square(shape, what: str = "2TCF", ndim=(2, 3), min_n: int = 1, batch: str = "B") -> None:
    """The one check of a 2TCF's (or a stack's) shape: ``len(shape)`` in ``ndim`` (None: any ≥ 2), the last two
    axes equal (square in t1, t2) and at least ``min_n`` frames; else :class:`XPCSInputError` saying so.
    ``batch`` names the leading axis in the message (B 2TCFs, K ROIs)."""
    shape = tuple(int(s) for s in shape)
    form = _SQUARE_FORMS.get(tuple(ndim), "(…, N, N)") if ndim is not None else "(…, N, N)"
    form = form.format(b=batch)
    ok_dims = len(shape) >= 2 if ndim is None else len(shape) in ndim
    if not ok_dims or shape[-1] != shape[-2]:
        raise XPCSInputError(f"{what} must be square, shape {form}; got {shape}")
    if shape[-1] < min_n:
        raise XPCSInputError(f"{what} must be square, shape {form}, N >= {min_n}; got {shape}")


def check_regular_input(path) -> Path:
    """``path`` if it is an existing regular file (not a FIFO, device or socket, which would block or never end)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise XPCSInputError(f"{path} does not exist; check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise XPCSInputError(f"{path} is a folder; give a .npy or HDF5 file")
    if not stat.S_ISREG(st.st_mode):
        raise XPCSInputError(f"{path} is not a regular file (a FIFO, device or socket); give a file on disk")
    return path


#: Suffixes of files that are never HDF5 or .npy: an output named so would hold something else than its name says.
NOT_C2_SUFFIXES = (".csv", ".json", ".txt", ".png", ".jpg", ".pdf", ".tif", ".tiff", ".npz", ".mat", ".pkl",
                   ".html", ".bin", ".imm")


def check_output_file(output, what: str = "output") -> Path:
    """Refuse an output file name that is a folder (an existing one, or a name ending in a separator)."""
    text = str(output)
    out = Path(output)
    if text.endswith(("/", os.sep)) or out.is_dir():
        raise XPCSInputError(f"{what} {text} is a folder; give a file name, e.g. {out / 'denoised.h5'}")
    return out


def check_output_not_input(output, *inputs) -> None:
    """Refuse an output path that is one of the inputs (``-o`` equal to the input would replace the raw data)."""
    out = Path(output)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        try:
            same = out.exists() and inp.exists() and os.path.samefile(out, inp)
        except OSError:
            same = False
        if same or out.resolve() == inp.resolve():
            raise XPCSInputError(f"output {out} is the input {inp}; write to another file (the input is never "
                                 "replaced)")


def unique_roi_count(k: int, what: str) -> int:
    """Refuse more than :data:`MAX_ROIS` q-ROIs."""
    if k > MAX_ROIS:
        raise XPCSInputError(f"{what} has {k} q-ROIs, more than the {MAX_ROIS} supported; merge or drop ROIs")
    return k


def json_safe(value):
    """``value`` with every non-finite float replaced by None, so that ``json.dumps(..., allow_nan=False)``
    writes valid JSON (``null``, never a bare ``NaN``); numpy scalars and arrays become Python values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
