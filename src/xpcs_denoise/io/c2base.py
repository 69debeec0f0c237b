"""What the 2TCF formats share: :class:`C2File` (what :func:`~xpcs_denoise.io.formats.read_c2` returns), the
checks and the mirroring of stored matrices (one triangle → the full symmetric matrix), reading a (N, N) or
(K, N, N) dataset, or a group of (N, N) datasets, one ROI at a time, the packed upper triangles of our format's
version 2 (:func:`pack_upper`, :func:`unpack_upper`; see :mod:`xpcs_denoise.io.native`), the anomaly-score group
that our files and APS result files both carry, and the base of the streaming writers (atomic, one ROI at a
time). No format of its own: the formats are :mod:`.native`, :mod:`.aps`, :mod:`.npy` and :mod:`.hdf5`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory, check_square, is_real_dtype, numeric_array, unique_roi_count
from .hdf5 import _HINT, _attr_value, _check_local_dataset, _encode_attrs, _h5py, _natural_key, _node, _read

#: Anomaly scores of the denoised windows: the group in our format and in an APS result file (our own group,
#: beside boost_corr's datasets, which readers of that layout do not look at).
ANOMALY_GROUP, APS_ANOMALY_GROUP = "anomaly", "xpcs/twotime/denoise_anomaly"
#: Datasets of the anomaly group: (K, W) per ROI and window (NaN / 0 for a ROI not denoised) and (W,) starts.
ANOMALY_PARTS = {
    "score": "combined anomaly score max(latent_distance/latent_scale, residual/residual_scale, threshold x "
             "structure/scale), dimensionless",
    "flagged": "1 where score > threshold: the window is outside what the model learned",
    "latent_distance": "Mahalanobis distance of the window's latent vector from the training crops', members' mean",
    "residual": "RMS reconstruction residual (lag 0 left out) in units of the training crops' median",
}


@dataclass
class C2File:
    """2TCFs read by :func:`read_c2`: ``c2`` (K, N, N) float64; ``q`` (K,) Å⁻¹ or None; ``g2`` (K, N − 1) or None;
    ``raw``, ``std`` (K, N, N) or None (our format only); ``attrs``; ``source_format``: "npy", "xpcs-denoise",
    "aps-8idi", "aps-8idi-legacy" or "hdf5-dataset"; ``phi`` (K,) degrees or None (APS q×φ bins); ``rois`` (K,)
    the ROI labels as the input numbers them (APS ``processed_bins``, our ``roi``), or None (1..K)."""

    c2: np.ndarray
    q: np.ndarray | None = None
    g2: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    source_format: str = "npy"
    raw: np.ndarray | None = None
    std: np.ndarray | None = None
    phi: np.ndarray | None = None
    rois: np.ndarray | None = None
    #: Seconds between the 2TCF's frames where the file says (APS 8-ID-I: detector frame time × averaged ×
    #: strided frames; ours: the ``frame_time`` attribute), else None (times in frames).
    frame_time: float | None = None
    #: Stored anomaly scores of the denoised windows (:meth:`C2Source.anomaly`), or None.
    anomaly: dict | None = None


def _full_from_half(h: np.ndarray, layout: str | None = None) -> np.ndarray:
    """Full symmetric matrix from one stored triangle (c2 + c2ᵀ − diag); a full matrix is returned as is.

    ``layout="upper"`` (APS files, upper triangle by format) mirrors the upper triangle whatever lies below the
    diagonal (unless only the lower triangle holds values); otherwise the layout is recognised from the zeros.
    """
    if layout == "upper":
        return np.tril(h) + np.tril(h, -1).T if not np.any(np.triu(h, 1)) else np.triu(h) + np.triu(h, 1).T
    if not np.any(np.tril(h, -1)):
        return np.triu(h) + np.triu(h, 1).T
    if not np.any(np.triu(h, 1)):
        return np.tril(h) + np.tril(h, -1).T
    return h


def _c2_stack(arr, where: str, *, halves: bool = True, layout: str | None = None) -> np.ndarray:
    """(K, N, N) float64 from (N, N) or (K, N, N), with a clear error for anything else; halves mirrored."""
    try:
        arr = np.asarray(arr)
    except (ValueError, TypeError):
        arr = numeric_array(arr, where)  # the clear message for ragged lists
    _check_c2_shape(arr.shape, arr.dtype, where)
    check_memory(arr.size * 8 * 3, f"{where} {arr.shape}")
    out = np.asarray(arr, dtype=np.float64)
    out = out[None] if out.ndim == 2 else out
    return np.stack([_full_from_half(m, layout) for m in out]) if halves else out


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xpcs-denoise")
    except PackageNotFoundError:
        return "unknown"


def _matching(arr, shape: tuple, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    arr = arr[None] if arr.shape != shape and shape[0] == 1 and arr.shape == shape[1:] else arr
    if arr.shape != shape:
        raise XPCSInputError(f"{name} has shape {arr.shape}; expected {shape} to match c2")
    return arr


_PACKED = "upper_triangle_packed"


def _tri_offsets(n: int) -> np.ndarray:
    """Start of row i of a packed upper triangle (diagonal included, ``triu_indices`` order), i = 0..n."""
    i = np.arange(n + 1, dtype=np.int64)
    return i * n - i * (i - 1) // 2


def pack_upper(m: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Upper triangle, diagonal included, of the symmetric part of an (N, N) matrix, row by row
    (``numpy.triu_indices`` order), as a (N(N+1)/2,) array of ``dtype``. Holds one row at a time besides the
    result: 4 N²/2 bytes for float32."""
    n = m.shape[-1]
    off = _tri_offsets(n)
    out = np.empty(off[-1], dtype=dtype)
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by C2Writer.write
        for i in range(n):
            out[off[i]:off[i + 1]] = 0.5 * (m[i, i:] + m[i:, i])
    return out


def unpack_upper(tri: np.ndarray, n: int) -> np.ndarray:
    """Symmetric (N, N) float64 matrix from :func:`pack_upper`'s packed triangle."""
    off = _tri_offsets(n)
    if tri.shape != (off[-1],):
        raise XPCSInputError(f"packed 2TCF has {tri.size} values; an {n}×{n} upper triangle has {off[-1]}")
    out = np.empty((n, n))
    for i in range(n):
        row = tri[off[i]:off[i + 1]]
        out[i, i:] = row
        out[i + 1:, i] = row[1:]
    return out


def _check_c2_shape(shape, dtype, where: str) -> None:
    if not is_real_dtype(dtype) or dtype == np.bool_:
        raise XPCSInputError(f"{where}: 2TCF must be numeric; got dtype {dtype}")
    check_square(shape, f"{where}: 2TCF", batch="K")
    if shape[-1] < 2 or int(np.prod(shape)) == 0:
        raise XPCSInputError(f"{where}: 2TCF must hold at least one 2×2 matrix; got {tuple(shape)}")
    if len(shape) == 3:
        unique_roi_count(shape[0], where)


def _node_getter(node, path: Path, where: str, layout: str | None = None):
    """(K, N, getter(k) → full (N, N) float64, dataset names, stored dtype) of an array, a (N, N) or (K, N, N)
    dataset, or a group of (N, N) datasets (natural order of names). Members reaching outside the file are
    refused (:func:`_node`); the memory of one ROI is checked (:func:`~xpcs_denoise.safety.check_memory`)."""
    h5py = _h5py()
    if isinstance(node, h5py.Dataset) and _attr_value(node.attrs.get("layout", "")) == _PACKED:
        return _packed_getter(node, path, where)  # our format's c2 named with dataset=
    if isinstance(node, np.ndarray) or isinstance(node, h5py.Dataset):
        _check_c2_shape(node.shape, node.dtype, where)
        if isinstance(node, h5py.Dataset):
            _check_local_dataset(node, path)
        check_memory(node.shape[-1] ** 2 * 8 * 3, f"{where}: one {node.shape[-1]}×{node.shape[-1]} 2TCF")
        read = (lambda key: np.asarray(node[key])) if isinstance(node, np.ndarray) else \
            (lambda key: _read(node, path, key))
        k, n = (1, node.shape[-1]) if node.ndim == 2 else node.shape[:2]
        names = [f"c2_{i + 1:05d}" for i in range(k)]
        if node.ndim == 2:
            return 1, int(n), lambda i: _full_from_half(read(()).astype(np.float64), layout), names, node.dtype
        return int(k), int(n), lambda i: _full_from_half(read(i).astype(np.float64), layout), names, node.dtype
    if not isinstance(node, h5py.Group):
        raise XPCSInputError(f"{where} is neither a dataset nor a group; {_HINT}")
    unique_roi_count(len(node), where)
    members = {n: _node(node.file, f"{node.name}/{n}", path) for n in sorted(node, key=_natural_key)}
    dsets = {n: d for n, d in members.items() if isinstance(d, h5py.Dataset)}
    if not dsets:
        raise XPCSInputError(f"{path}:{node.name} holds no dataset, so no 2TCF; {_HINT}")
    names = list(dsets)
    first = dsets[names[0]]
    for dset in dsets.values():
        _check_c2_shape(dset.shape, dset.dtype, f"{path}:{dset.name}")
        _check_local_dataset(dset, path)
        if dset.ndim != 2 or dset.shape != first.shape:
            raise XPCSInputError(f"{path}:{dset.name} has shape {dset.shape}; expected one (N, N) matrix per ROI")
    n = int(first.shape[-1])
    check_memory(n * n * 8 * 3, f"{where}: one {n}×{n} 2TCF")
    return (len(names), n, lambda i: _full_from_half(_read(dsets[names[i]], path).astype(np.float64), layout),
            names, first.dtype)


def _packed_getter(dset, path: Path, where: str):
    """As :func:`_node_getter` for a (K, N(N+1)/2) dataset of packed upper triangles (our format v2)."""
    try:
        n = int(_attr_value(dset.attrs["n_frames"]))
    except (KeyError, TypeError, ValueError):
        raise XPCSInputError(f"{where} is packed but its n_frames attribute is missing or not a whole number; "
                             "write the file again") from None
    if not is_real_dtype(dset.dtype) or dset.dtype == np.bool_:
        raise XPCSInputError(f"{where} must hold numbers; got dtype {dset.dtype}; write the file again")
    if n < 2 or dset.ndim != 2 or dset.shape[1] != n * (n + 1) // 2:
        raise XPCSInputError(f"{where} has shape {dset.shape}; expected (K, {n * (n + 1) // 2}) for {n} frames; "
                             "write it again")
    _check_local_dataset(dset, path)
    k = unique_roi_count(dset.shape[0], where)
    check_memory(n * n * 8 * 3, f"{where}: one {n}×{n} 2TCF")
    return (int(k), n, lambda i: unpack_upper(_read(dset, path, i).astype(np.float64), n),
            [f"c2_{i + 1:05d}" for i in range(k)], dset.dtype)


class _StreamWriter:
    """What both streaming writers share: an open HDF5 file (``_f``) inside an atomic-path context (``_ctx``),
    one flag per ROI written (``written``)."""

    _f = None
    _ctx = None

    def _abort(self, exc):
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(type(exc), exc, exc.__traceback__)

    def _publish(self):
        """Close the finished file and move it into place (the atomic-path context's end)."""
        self._f.close()
        self._f = None
        ctx, self._ctx = self._ctx, None
        ctx.__exit__(None, None, None)
        return self.path

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self._abort(exc)
        elif self._ctx is not None:
            self.close()

    def _check_complete(self):
        """Refuse to publish a file with ROIs missing (the temporary file is removed)."""
        if not self.written.all():
            exc = XPCSInputError(f"ROI index {np.flatnonzero(~self.written)[:5].tolist()} not written")
            self._abort(exc)
            raise exc


def _write_anomaly(f, group: str, k: int, n_rois: int, table: dict, attrs: dict) -> None:
    """Store one ROI's anomaly table (:func:`~xpcs_denoise.anomaly.finish_scores`, (W,) arrays) as row ``k`` of
    the (K, W) datasets of ``group``, created at the first ROI with ``attrs`` (window, step, threshold...)."""
    starts = np.asarray(table["starts"], np.int64)
    if group not in f:
        g = f.create_group(group)
        g.create_dataset("window_start", data=starts).attrs.update(
            {"units": "frames", "description": "first frame of each window; it covers frames [start, start + "
                                               "window) on both time axes (t1, t2), ages start + (window - 1)/2"})
        for name, desc in ANOMALY_PARTS.items():
            flag = name == "flagged"
            d = g.create_dataset(name, shape=(n_rois, starts.size), dtype=np.uint8 if flag else np.float64,
                                 fillvalue=0 if flag else np.nan)
            d.attrs.update({"units": "1 = flagged" if flag else "dimensionless", "description": desc})
        g.attrs.update(_encode_attrs(attrs))
    g = f[group]
    if not np.array_equal(g["window_start"][()], starts):
        raise XPCSInputError(f"anomaly windows of ROI index {k} differ from the first ROI's")
    for name in ANOMALY_PARTS:
        if name in table:
            g[name][k] = np.asarray(table[name]).astype(g[name].dtype)
