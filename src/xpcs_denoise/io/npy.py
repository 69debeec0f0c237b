"""``.npy`` 2TCF stacks (NumPy's format, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
(N, N) or (K, N, N) arrays read safely (memory estimated from the header first, Python objects never loaded) and
written one ROI at a time (:class:`NpyWriter`). Frame stacks and label maps in .npy are read with the same
:func:`_load_npy`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory
from .files import _one_line, atomic_path


def _load_npy(path: Path, mmap_mode=None, dataset=None) -> np.ndarray:
    if dataset is not None:
        raise XPCSInputError(f"{path} is a .npy file; dataset= applies to HDF5 files only")
    try:
        if mmap_mode is None:  # the header's shape first: estimate before reading it all
            try:
                shape, dtype = _npy_header(path)
            except (ValueError, OSError, EOFError):
                shape, dtype = None, None
            if shape is not None:
                check_memory(int(np.prod(shape, dtype=np.float64)) * max(8, dtype.itemsize) * 3,
                             f"reading {path} {shape} {dtype}")
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, XPCSInputError):
            raise
        if "object" in str(exc).lower() or "pickle" in str(exc).lower():
            # an intact file of Python objects: refused for safety (loading it would run pickled code)
            raise XPCSInputError(f"{path} holds Python objects (dtype object), which are never loaded (unsafe); "
                                 "save a numeric array with numpy.save") from exc
        raise XPCSInputError(f"cannot read {path} as .npy ({_one_line(exc)}); the file is corrupt or truncated") \
            from exc


def _npy_header(path: Path):
    """(shape, dtype) declared by a .npy header, read without the data."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(fh)
    return shape, np.dtype(dtype)


def _open_npy(src, f, dataset):
    src._setup(_load_npy(src.path, mmap_mode="r", dataset=dataset), str(src.path))


class NpyWriter:
    """A (K, N, N) float64 ``.npy`` of 2TCFs written one ROI at a time, atomically (``with`` block, :meth:`write`
    once per ROI, in order)."""

    def __init__(self, path, k, n, overwrite, single: bool = False):
        self.path, self.k, self.n, self.overwrite, self.attrs = Path(path), k, n, overwrite, {}
        self.shape = (n, n) if single and k == 1 else (k, n, n)  # the input's shape: one (N, N) stays (N, N)

    def __enter__(self):
        self._ctx = atomic_path(self.path, overwrite=self.overwrite)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")
        np.lib.format.write_array_header_1_0(self._fh, {"descr": np.dtype("<f8").str, "fortran_order": False,
                                                        "shape": self.shape})
        return self

    def write(self, k, c2, **_):
        np.ascontiguousarray(c2, dtype="<f8").tofile(self._fh)

    def __exit__(self, exc_type, exc, tb):
        self._fh.close()
        self._ctx.__exit__(exc_type, exc, tb)


def _npy_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return NpyWriter(path, src.n_rois, src.n_frames, overwrite, single=getattr(src, "single", False))
