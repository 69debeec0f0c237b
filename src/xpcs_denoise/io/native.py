"""Our 2TCF format, ``xpcs-denoise-c2``, specified below: reading (the ``ours`` handler of the registry
:data:`~xpcs_denoise.io.formats.C2_FORMATS`), :func:`write_c2` and the streaming :class:`C2Writer`.

Our format (root attribute ``format = "xpcs-denoise-c2"``, written by :func:`write_c2` / :class:`C2Writer`),
version 2; K ROIs of N frames, P = N(N + 1)/2:

==========  ==========  ================================================================================
name        shape       meaning
==========  ==========  ================================================================================
``c2``      (K, P)      main 2TCFs (denoised when a method ran): upper triangle, diagonal included, of each
                        symmetric matrix, row by row (``numpy.triu_indices`` order); attributes
                        ``layout = "upper_triangle_packed"``, ``n_frames = N``; float32 (relative precision
                        6e-8) unless written with ``dtype=float64``; shuffle + gzip, one chunk row per ROI
``c2_raw``  (K, P)      optional: the input 2TCFs, same layout
``c2_std``  (K, P)      optional: 1-σ uncertainty of ``c2`` (ensemble spread), same layout
``g2``      (K, N − 1)  1TCF of ``c2`` (Eq. 2) at lags ``lag``, float64
``lag``     (N − 1,)    lags 1..N − 1, frames
``q``       (K,)        optional: q of each ROI, Å⁻¹ (attribute ``units = "1/Angstrom"``)
``phi``     (K,)        optional: φ of each ROI (q×φ bins), degrees
``roi``     (K,)        optional: label of each ROI in the input (APS ``processed_bins``, qmap labels)
``anomaly`` group       optional (``denoise`` with cned): anomaly scores of the W sliding-window positions,
                        see :data:`ANOMALY_PARTS`; APS result files hold the same under
                        ``xpcs/twotime/denoise_anomaly``
==========  ==========  ================================================================================

Version 1 files (``c2``, ``c2_raw``, ``c2_std`` as full (K, N, N) float64 matrices) are still read.
:func:`open_c2` reads any layout one ROI at a time; :class:`APSResultWriter` writes APS 8-ID-I result files.

Root attributes: ``format``, ``format_version`` (1), ``software``, ``software_version``, ``created_utc`` (ISO 8601),
``json_attrs`` (JSON list of the attributes stored as JSON text), then the caller's (method, model card hash,
window, step, seed...). Writers are atomic (:func:`atomic_path`); readers open files read-only. Compressed
beamline files (Blosc, bitshuffle/LZ4, Zstd) need ``pip install hdf5plugin``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.correlation import one_time_from_two_time
from ..core.errors import XPCSInputError
from ..core.validation import check_memory, is_real_dtype
from .c2base import (
    _PACKED,
    ANOMALY_GROUP,
    _c2_stack,
    _check_c2_shape,
    _matching,
    _package_version,
    _packed_getter,
    _StreamWriter,
    _tri_offsets,
    _write_anomaly,
    pack_upper,
    unpack_upper,
)
from .files import atomic_path
from .hdf5 import _attr_value, _check_local_dataset, _dataset, _decode_attrs, _encode_attrs, _h5py, _node, _read

FORMAT_NAME = "xpcs-denoise-c2"
FORMAT_VERSION = 2


def _c2_float(arr: np.ndarray, where: str) -> np.ndarray:
    if not is_real_dtype(arr.dtype):
        raise XPCSInputError(f"{where} must hold numbers; got dtype {arr.dtype}; write the file again")
    return arr.astype(np.float64)


def write_c2(path, c2, *, raw=None, g2=None, std=None, q=None, phi=None, rois=None, attrs: dict | None = None,
             overwrite: bool = False, dtype=np.float32) -> Path:
    """Write 2TCFs in our HDF5 format (table in the module docstring), atomically.

    Parameters
    ----------
    path : str or Path
        Output file (``.h5``).
    c2 : array_like, shape (N, N) or (K, N, N)
        Main 2TCFs (the denoised ones after a method ran); each stored once, as the upper triangle of its
        symmetric part (:class:`C2Writer`).
    raw, std : array_like, optional
        Input 2TCFs and the 1-σ uncertainty of ``c2``, same shape as ``c2``.
    g2 : array_like, shape (K, N − 1), optional
        1TCFs at lags 1..N − 1 frames; default :func:`~xpcs_denoise.correlation.one_time_from_two_time` of ``c2``.
    q, phi, rois : array_like, shape (K,), optional
        q of each ROI (Å⁻¹), its φ (degrees) and its label in the input (APS ``processed_bins``).
    attrs : dict, optional
        Provenance (method, model card hash, window, step, seed...): numbers and strings stored as they are,
        other values (lists, dicts, arrays) as JSON text, which :func:`read_c2` decodes.
    overwrite : bool
        Replace an existing ``path`` (otherwise an error).
    dtype : float32 (default, relative precision 6e-8) or float64 (exact)
        Storage type of the matrices.

    Returns
    -------
    Path
        ``path``. Peak memory: the inputs plus one packed triangle.
    """
    c2 = _c2_stack(c2, "c2", halves=False)
    k, n = c2.shape[:2]
    asym = float(np.nanmax(np.abs(c2 - np.swapaxes(c2, -1, -2)), initial=0.0))
    if asym > 1e-9 * max(1.0, float(np.nanmax(np.abs(c2), initial=0.0))):
        import warnings

        warnings.warn(f"c2 is not symmetric (max |C - C^T| = {asym:.3g}); storing its symmetric part (C + C^T)/2",
                      stacklevel=2)
    raw = None if raw is None else _matching(raw, c2.shape, "raw")
    std = None if std is None else _matching(std, c2.shape, "std")
    g2 = None if g2 is None else _matching(g2, (k, n - 1), "g2")
    with C2Writer(path, k, n, raw=raw is not None, std=std is not None, q=q, phi=phi, rois=rois, attrs=attrs,
                  overwrite=overwrite, dtype=dtype) as w:
        for i in range(k):
            w.write(i, c2[i], raw=None if raw is None else raw[i], std=None if std is None else std[i],
                    g2=None if g2 is None else g2[i])
    return Path(path)


def _overflows(m: np.ndarray, packed: np.ndarray) -> bool:
    """Whether a finite value of ``m``'s symmetric part became ±inf in its float32 ``packed`` triangle (row by
    row: one float64 row besides the inputs)."""
    off = _tri_offsets(m.shape[-1])
    for i in range(m.shape[-1]):
        row = packed[off[i]:off[i + 1]]
        if np.isinf(row).any():
            with np.errstate(over="ignore", invalid="ignore"):
                exact = 0.5 * (m[i, i:].astype(np.float64) + m[i:, i])
            if np.any(np.isinf(row) & np.isfinite(exact)):
                return True
    return False


def _open_ours(src, f, dataset):
    path = src.path
    raw_version = _attr_value(f.attrs.get("format_version", 0))
    try:
        version = int(raw_version)
    except (TypeError, ValueError):
        raise XPCSInputError(f"{path} has format_version {raw_version!r}, not a whole number; the file was not "
                             "written by xpcs-denoise or was edited: write it again") from None
    if version > FORMAT_VERSION:
        raise XPCSInputError(f"{path} has format version {version}; this xpcs-denoise reads up to "
                             f"{FORMAT_VERSION}; upgrade xpcs-denoise")
    src.attrs = _decode_attrs(f.attrs)
    try:
        ft = float(src.attrs.get("frame_time", np.nan))
    except (TypeError, ValueError):
        ft = np.nan
    src.frame_time = ft if np.isfinite(ft) and ft > 0 else None
    main = _dataset(f, "c2", path)
    h5py = _h5py()
    if not isinstance(main, h5py.Dataset):
        raise XPCSInputError(f"{path}:/c2 is a group, expected a (K, N, N) dataset; write the file again")
    _check_local_dataset(main, path)
    packed = _attr_value(main.attrs.get("layout", "")) == _PACKED
    if packed:
        k, n = _packed_getter(main, path, f"{path}:/c2")[:2]

        def getter(dset):
            return lambda i: unpack_upper(_read(dset, path, i).astype(np.float64), n)
    else:
        _check_c2_shape(main.shape, main.dtype, f"{path}:/c2")
        k, n = (1, main.shape[-1]) if main.ndim == 2 else main.shape[:2]

        def getter(dset):
            if dset.ndim == 2:
                return lambda i: _read(dset, path).astype(np.float64)
            return lambda i: _read(dset, path, i).astype(np.float64)
    src.n_rois, src.n_frames, src.dtype = int(k), int(n), main.dtype
    check_memory(n * n * 8 * 3, f"{path}:/c2: one {n}×{n} 2TCF")
    src.names = [f"c2_{i + 1:05d}" for i in range(src.n_rois)]
    src._get = getter(main)
    for name in ("c2_raw", "c2_std"):
        if (node := _node(f, name, path)) is not None:
            if not isinstance(node, h5py.Dataset):
                raise XPCSInputError(f"{path}:/{name} is a group, expected a dataset of shape {main.shape}; "
                                     "write it again")
            _check_local_dataset(node, path)
            if node.shape != main.shape:
                raise XPCSInputError(f"{path}:/{name} has shape {node.shape}, expected {main.shape}; "
                                     "write it again")
            if not is_real_dtype(node.dtype):
                raise XPCSInputError(f"{path}:/{name} must hold numbers; got dtype {node.dtype}; write the "
                                     "file again")
            src._parts[name[3:]] = getter(node)
    if _node(f, ANOMALY_GROUP, path) is not None:
        src._anomaly_group = ANOMALY_GROUP
    for name, shape in (("g2", (k, n - 1)), ("q", (k,)), ("phi", (k,)), ("roi", (k,))):
        node = _node(f, name, path)
        if node is not None and not isinstance(node, h5py.Dataset):
            raise XPCSInputError(f"{path}:/{name} is a group, expected a dataset of shape {shape}; write it "
                                 "again")
        val = _c2_float(_read(node, path), f"{path}:/{name}") if node is not None else None
        if val is not None and val.shape != shape:
            raise XPCSInputError(f"{path}:/{name} has shape {val.shape}, expected {shape}; write it again")
        if val is not None:
            setattr(src, "rois" if name == "roi" else name,
                    val.astype(np.int64) if name == "roi" else val.astype(np.float64))


class C2Writer(_StreamWriter):
    """Write our HDF5 format one ROI at a time, atomically (see :func:`atomic_path`); use it in a ``with``
    block and call :meth:`write` once per ROI.

    Format version 2: ``c2`` (and ``c2_raw``, ``c2_std``) are (K, N(N+1)/2) arrays of each ROI's upper
    triangle, diagonal included (the matrices are symmetric; attribute ``layout = "upper_triangle_packed"``,
    ``n_frames = N``), float32 by default (relative precision 6e-8, far below the noise of a measured 2TCF;
    ``dtype=np.float64`` keeps float64 exactly), chunked one ROI at a time, shuffle + gzip level 4.
    """

    def __init__(self, path, n_rois: int, n_frames: int, *, raw: bool = False, std: bool = False, q=None,
                 phi=None, rois=None, attrs: dict | None = None, overwrite: bool = False, dtype=np.float32):
        self.path, self.k, self.n = Path(path), int(n_rois), int(n_frames)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise XPCSInputError(f"dtype must be float32 or float64; got {self.dtype}")
        self.parts = ["c2"] + (["c2_raw"] if raw else []) + (["c2_std"] if std else [])
        self.extra = {}
        for name, val, kind in (("q", q, np.float64), ("phi", phi, np.float64), ("roi", rois, np.int64)):
            if val is not None:
                self.extra[name] = np.asarray(np.ravel(val)).astype(kind)
                if self.extra[name].shape != (self.k,):
                    raise XPCSInputError(f"{name} has shape {np.shape(val)}; expected ({self.k},) to match c2")
        _encode_attrs(attrs)  # refuse reserved names and unstorable values before anything is written
        #: Provenance written as root attributes when the file is closed (may be updated until then).
        self.attrs = dict(attrs or {})
        #: Attributes of the ``anomaly`` group (window, step, threshold, calibration), set before the first write.
        self.anomaly_attrs: dict = {}
        self._ctx = self._f = None
        self._overwrite = bool(overwrite)
        self.written = np.zeros(self.k, bool)

    def open(self) -> C2Writer:
        """Create the temporary file (renamed onto ``path`` by :meth:`close`)."""
        self._ctx = atomic_path(self.path, overwrite=self._overwrite)
        tmp = self._ctx.__enter__()
        try:
            f = self._f = _h5py().File(tmp, "w")
            p = self.n * (self.n + 1) // 2
            desc = {"c2": "two-time correlation functions C2[k, t1, t2], upper triangles",
                    "c2_raw": "input 2TCFs, upper triangles", "c2_std": "1-sigma uncertainty of c2, upper triangles"}
            for name in self.parts:
                d = f.create_dataset(name, shape=(self.k, p), dtype=self.dtype, chunks=(1, min(p, 2**18)),
                                     compression="gzip", compression_opts=4, shuffle=True)
                d.attrs.update({"layout": _PACKED, "n_frames": self.n, "units": "dimensionless",
                                "description": desc[name]})
            g = f.create_dataset("g2", shape=(self.k, self.n - 1), dtype=np.float64)
            g.attrs.update({"units": "dimensionless", "description": "one-time correlation functions at lags 'lag'"})
            f.create_dataset("lag", data=np.arange(1, self.n, dtype=np.int64)).attrs["units"] = "frames"
            units = {"q": "1/Angstrom", "phi": "degrees", "roi": "label"}
            for name, val in self.extra.items():
                f.create_dataset(name, data=val).attrs["units"] = units[name]
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def write(self, k: int, c2, *, raw=None, std=None, g2=None, anomaly=None) -> None:
        """Store ROI index ``k`` (0-based): full (N, N) matrices; the 1TCF is computed unless ``g2`` is given;
        ``anomaly``: the ROI's window table (:func:`~xpcs_denoise.anomaly.finish_scores`) into group ``anomaly``,
        whose attributes are :attr:`anomaly_attrs`."""
        for name, m in (("c2", c2), ("c2_raw", raw), ("c2_std", std)):
            if (m is None) != (name not in self.parts):
                raise XPCSInputError(f"{name} {'missing' if m is None else 'not declared'} for ROI index {k}")
            if m is None:
                continue
            m = np.asarray(m)
            if m.shape != (self.n, self.n):
                raise XPCSInputError(f"{name} has shape {m.shape}; expected {(self.n, self.n)}")
            packed = pack_upper(m, self.dtype)
            if self.dtype == np.float32 and np.isinf(packed).any() and _overflows(m, packed):
                raise XPCSInputError(f"{name} of ROI index {k} holds values beyond the float32 range (|x| > 3.4e38); "
                                     "write with dtype=np.float64")
            self._f[name][k] = packed
        self._f["g2"][k] = one_time_from_two_time(c2) if g2 is None else np.asarray(g2, np.float64)
        if anomaly is not None:
            _write_anomaly(self._f, ANOMALY_GROUP, k, self.k, anomaly, self.anomaly_attrs)
        self.written[k] = True

    def close(self) -> Path:
        self._check_complete()
        try:
            self._f.attrs.update({**_encode_attrs(self.attrs), "format": FORMAT_NAME,
                                  "format_version": FORMAT_VERSION, "software": "xpcs-denoise",
                                  "software_version": _package_version(),
                                  "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        except BaseException as exc:
            self._abort(exc)
            raise
        return self._publish()


def _c2_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return C2Writer(path, src.n_rois, src.n_frames, raw=keep_raw, std=uncertainty, q=src.q, phi=src.phi,
                    rois=src.roi_labels(), attrs=attrs, overwrite=overwrite)
