"""Files in and out: 2TCFs (.npy, our HDF5 format, the APS 8-ID-I layouts, any HDF5 dataset), frame stacks
(HDF5, .npy, TIFFs) and ROI label maps.

This module is the one registry of the 2TCF formats (:data:`C2_FORMATS`: one handler per format, as boost_corr
keeps one per format) and the entry points that go through it: :func:`read_c2`, :func:`open_c2` /
:class:`C2Source`, :func:`output_handler`. Each format lives in its own module, and every name those modules
export is importable from here as well:

- :mod:`xpcs_denoise.io.native`: ours, ``xpcs-denoise-c2`` (:func:`write_c2`, :class:`C2Writer`; the table of
  its datasets and attributes is that module's docstring);
- :mod:`xpcs_denoise.io.aps`: APS 8-ID-I result files of boost_corr, NeXus and older layout
  (:func:`write_aps_c2`, :func:`write_aps_legacy`, :class:`APSResultWriter`) and their q-maps (:func:`read_qmap`);
- :mod:`xpcs_denoise.io.npy`: ``.npy`` stacks of 2TCFs (:class:`NpyWriter`);
- :mod:`xpcs_denoise.io.hdf5`: the HDF5 helpers the formats share, and any HDF5 dataset named with ``dataset=``;
- :mod:`xpcs_denoise.io.frames`: raw frame stacks (:func:`read_frames`, :class:`FrameStack`; the raw detector
  formats are :mod:`xpcs_denoise.io.detectors`) and ROI label maps (:func:`read_labels`);
- :mod:`xpcs_denoise.io.c2base`: what the 2TCF formats share (:class:`C2File`, :func:`pack_upper`,
  :func:`unpack_upper`, the streaming writers' base).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory

# Besides what this module uses, every name the format modules export: importable from here, as before the split.
from .aps import (  # noqa: F401  (re-exported)
    APS_AVG_STRIDE,
    APS_BINS,
    APS_C2_GROUP,
    APS_C2_RAW_GROUP,
    APS_FRAME_TIME,
    APS_G2,
    APS_G2_SEGMENTS,
    APS_INDEX_MAP,
    APS_N_SEGMENTS,
    APS_PHILIST,
    APS_QLIST,
    LEGACY_BINS,
    LEGACY_C2,
    LEGACY_QLIST,
    APSResultWriter,
    _aps_writer,
    _open_aps,
    _open_aps_legacy,
    read_qmap,
    write_aps_c2,
    write_aps_legacy,
)
from .c2base import (  # noqa: F401  (re-exported)
    ANOMALY_GROUP,
    ANOMALY_PARTS,
    APS_ANOMALY_GROUP,
    C2File,
    _node_getter,
    pack_upper,
    unpack_upper,
)
from .files import atomic_path, write_csv  # noqa: F401  (re-exported)
from .frames import FRAME_DATASETS, LABEL_DATASETS, FrameStack, read_frames, read_labels  # noqa: F401  (re-exported)
from .hdf5 import (
    _HINT,
    _attr_value,
    _decode_attrs,
    _external,
    _file_kind,
    _h5py,
    _node,
    _open_dataset,
    _open_h5,
    _OpenFile,
    _read,
)
from .native import FORMAT_NAME, FORMAT_VERSION, C2Writer, _c2_writer, _open_ours, write_c2  # noqa: F401  (re-exported)
from .npy import NpyWriter, _npy_writer, _open_npy  # noqa: F401  (re-exported)

__all__ = ["C2File", "C2Source", "C2Writer", "APSResultWriter", "FrameStack", "read_c2", "open_c2", "write_c2",
           "write_aps_c2", "write_aps_legacy", "read_frames", "read_labels", "atomic_path", "write_csv",
           "pack_upper", "unpack_upper", "read_qmap", "FORMAT_NAME", "FORMAT_VERSION", "C2Format", "C2_FORMATS",
           "OUTPUT_FORMATS", "NpyWriter", "output_handler"]


def read_c2(path, dataset: str | None = None, *, allow_external: bool = False) -> C2File:
    """Read 2TCFs from a .npy file, our HDF5 format, an APS 8-ID-I result file or any HDF5 dataset.

    Parameters
    ----------
    path : str or Path
        ``.npy`` of shape (N, N) or (K, N, N), or an HDF5 file (opened read-only) whose layout is recognised from
        its contents: our ``format`` attribute, APS 8-ID-I ``xpcs/twotime/correlation_map/c2_*``, or the older
        ``exchange/C2T_all`` (a group of per-ROI halves, or one 2-D/3-D dataset).
    dataset : str, optional
        HDF5 path of a (N, N) or (K, N, N) dataset, or of a group of (N, N) datasets (one per ROI, in natural
        order of their names); skips the recognition.
    allow_external : bool
        Follow HDF5 external links, external raw storage and virtual datasets (data outside the file); refused
        by default.

    Returns
    -------
    C2File
        ``c2`` is (K, N, N) float64, always 3-D. A matrix stored as one triangle (the other strictly zero, as APS
        writes them) is mirrored exactly: ``c2 + c2ᵀ − diag``; full matrices are kept as stored. NaN and Inf pass
        through unchanged (masked frames): later stages handle or reject them.

    Raises
    ------
    XPCSInputError
        Missing file, not HDF5 or .npy, corrupt or truncated, unknown layout (lists the top-level keys), missing
        dataset, wrong number of dimensions, non-square matrices, compression filter missing (hdf5plugin), data
        outside the file (unless ``allow_external``), more memory than allowed
        (:func:`~xpcs_denoise.safety.check_memory`).
    """
    with open_c2(path, dataset, allow_external=allow_external) as src:
        k, n = src.n_rois, src.n_frames
        check_memory(k * n * n * 8 * (1 + src.has_raw + src.has_std), f"reading {src.path} ({k} × {n}×{n})")

        def stack(get):
            out = np.empty((k, n, n))
            for i in range(k):
                out[i] = get(i)
            return out

        return C2File(stack(src.c2), q=src.q, g2=src.g2, attrs=src.attrs, source_format=src.source_format,
                      raw=stack(src.raw) if src.has_raw else None, std=stack(src.std) if src.has_std else None,
                      phi=src.phi, rois=src.rois, frame_time=src.frame_time, anomaly=src.anomaly())


class C2Source(_OpenFile):
    """2TCFs opened for reading one ROI at a time (:func:`open_c2`); the file stays open until :meth:`close`
    or the end of a ``with`` block.

    Attributes: ``n_rois``, ``n_frames``, ``q`` (K,) Å⁻¹ or None, ``phi`` (K,) degrees or None, ``rois`` (K,)
    labels as the input numbers them (APS ``processed_bins``; default 1..K), ``names`` (K,) the input's dataset
    names (APS ``c2_00001``...), ``dtype`` (as stored), ``g2`` (K, N − 1) or None (our format), ``attrs``,
    ``source_format``, ``has_raw``, ``has_std``. :meth:`c2`, :meth:`raw`, :meth:`std` return one ROI as a full
    symmetric (N, N) float64 matrix (halves mirrored, as :func:`read_c2`).
    """

    def __init__(self, path, dataset: str | None = None, *, allow_external: bool = False):
        self._allow_external = bool(allow_external)
        with _external(self._allow_external):
            self._init(path, dataset)

    def _init(self, path, dataset):
        self.path, kind = _file_kind(path)
        self.attrs = {"source_path": str(self.path)}
        self.q = self.phi = self.g2 = self._file = None
        self.rois = self.frame_time = None
        self._parts: dict = {}
        self._anomaly_group = None
        if kind == "hdf5":
            self._file = _open_h5(self.path)
        try:
            handler = _reader(kind, self._file, dataset, self.path)
            self.source_format = handler.source_format
            handler.open(self, self._file, dataset)
        except BaseException:
            self.close()
            raise

    def _setup(self, node, where, layout=None):
        self.n_rois, self.n_frames, self._get, self.names, self.dtype = _node_getter(node, self.path, where, layout)
        self.single = getattr(node, "ndim", 3) == 2  # one (N, N) 2TCF: written back as one

    has_raw = property(lambda self: "raw" in self._parts)
    has_std = property(lambda self: "std" in self._parts)

    def _check(self, k: int) -> int:
        if not 0 <= int(k) < self.n_rois:
            raise XPCSInputError(f"ROI index {k} out of range 0..{self.n_rois - 1}")
        return int(k)

    def c2(self, k: int) -> np.ndarray:
        """2TCF of ROI index ``k`` (0-based), (N, N) float64."""
        with _external(self._allow_external):
            return self._get(self._check(k))

    def raw(self, k: int) -> np.ndarray:
        """Raw (input) 2TCF of ROI index ``k`` kept in a denoised file."""
        with _external(self._allow_external):
            return self._parts["raw"](self._check(k))

    def std(self, k: int) -> np.ndarray:
        """1-σ uncertainty of ROI index ``k`` (our format with ``c2_std``)."""
        with _external(self._allow_external):
            return self._parts["std"](self._check(k))

    def roi_labels(self) -> np.ndarray:
        """The ROI labels as the input numbers them (1..K when it does not say)."""
        return self.rois if self.rois is not None else np.arange(1, self.n_rois + 1)

    has_anomaly = property(lambda self: self._anomaly_group is not None)

    def anomaly(self) -> dict | None:
        """The stored anomaly scores (``denoise`` with cned), or None: ``window_start`` (W,) frames, ``score``,
        ``latent_distance``, ``residual`` (K, W) float64, ``flagged`` (K, W) bool, and ``attrs`` (window, step,
        threshold, calibration). Small (K × W numbers), read whole."""
        if self._anomaly_group is None:
            return None
        h5py = _h5py()
        where = f"{self.path}:/{self._anomaly_group}"
        with _external(self._allow_external):
            g = _node(self._file, self._anomaly_group, self.path)
            if not isinstance(g, h5py.Group) or not isinstance(g.get("window_start"), h5py.Dataset):
                raise XPCSInputError(f"{where} is not an anomaly group with window_start; write the file again")
            out = {"window_start": _read(g["window_start"], self.path).astype(np.int64).ravel()}
            for name in ANOMALY_PARTS:
                node = g.get(name)
                if not isinstance(node, h5py.Dataset) or node.shape != (self.n_rois, out["window_start"].size):
                    raise XPCSInputError(f"{where}/{name} is missing or not of shape ({self.n_rois}, "
                                         f"{out['window_start'].size}); write the file again")
                val = _read(node, self.path)
                out[name] = val.astype(bool) if name == "flagged" else val.astype(np.float64)
            out["attrs"] = _decode_attrs(g.attrs)
        return out


def open_c2(path, dataset: str | None = None, *, allow_external: bool = False) -> C2Source:
    """Open 2TCFs for reading one ROI at a time: the layouts of :func:`read_c2`; peak memory is one (N, N)
    float64 matrix (8 N² bytes) per ROI read, whatever the number of ROIs. ``allow_external`` as
    :func:`read_c2` (external links, external storage and virtual datasets refused by default).

    >>> with open_c2("result.hdf") as src:
    ...     for k in range(src.n_rois):
    ...         m = src.c2(k)
    """
    return C2Source(path, dataset, allow_external=allow_external)


@dataclass(frozen=True)
class C2Format:
    """One 2TCF file format, a handler of the registry :data:`C2_FORMATS` (as boost_corr's dataset handlers).

    ``name``: what ``output_format`` calls it; ``source_format``: :attr:`C2Source.source_format` of a file read
    as it; ``kind``: "hdf5" or "npy" (the file's first bytes); ``detect(f) -> bool``: recognises the open HDF5
    file (None: read only when ``dataset=`` names a dataset); ``open(source, f, dataset)``: fills a
    :class:`C2Source` (``f`` the open HDF5 file, None for .npy). Writing (``writer`` None: read only):
    ``writer(source, path, *, attrs, keep_raw, uncertainty, overwrite)`` a streaming writer (``with`` block,
    ``write(k, c2, **parts)`` once per ROI); ``suffixes``: the output names it needs (empty: any name that
    another format's suffixes do not claim); ``copies``: the source format it copies (None: any);
    ``stores``: the parts its ``write`` takes besides the 2TCF ("raw", "std", "g2", "anomaly").
    """

    name: str
    source_format: str
    kind: str = "hdf5"
    detect: object = None
    open: object = None
    writer: object = None
    suffixes: tuple = ()
    copies: str | None = None
    stores: frozenset = frozenset()


def _has(name):
    return lambda f: _node(f, name, Path(f.filename)) is not None


#: The 2TCF formats, one handler each; a file is read by the first whose ``detect`` recognises it.
C2_FORMATS = (
    C2Format("ours", "xpcs-denoise", detect=lambda f: _attr_value(f.attrs.get("format")) == FORMAT_NAME,
             open=_open_ours, writer=_c2_writer, stores=frozenset({"raw", "std", "g2", "anomaly"})),
    C2Format("aps", "aps-8idi", detect=_has(APS_C2_GROUP), open=_open_aps, writer=_aps_writer,
             copies="aps-8idi", stores=frozenset({"anomaly"})),
    C2Format("aps-legacy", "aps-8idi-legacy", detect=_has(LEGACY_C2), open=_open_aps_legacy),
    C2Format("hdf5-dataset", "hdf5-dataset", open=_open_dataset),
    C2Format("npy", "npy", kind="npy", detect=lambda f: True, open=_open_npy, writer=_npy_writer,
             suffixes=(".npy",)),
)
#: Names of the formats that can be written (``output_format``).
OUTPUT_FORMATS = tuple(h.name for h in C2_FORMATS if h.writer is not None)


def _reader(kind: str, f, dataset, path: Path) -> C2Format:
    """The handler that reads a file of this kind: with ``dataset`` (HDF5) the one for a named dataset, else the
    first whose ``detect`` recognises the file."""
    named = dataset is not None and kind == "hdf5"
    for h in C2_FORMATS:
        if h.kind == kind and (h.detect is None if named else h.detect is not None and h.detect(f)):
            return h
    raise XPCSInputError(f"{path}: unknown 2TCF layout (top-level keys: {sorted(f)}); {_HINT}")


def output_handler(output, source_format: str, name: str | None = None) -> C2Format:
    """The handler that writes ``output``: ``name`` (one of :data:`OUTPUT_FORMATS`) checked against the output's
    suffix and the input's ``source_format``, or by default the one whose suffix the name has, else the input's
    own format where it can be written, else ours."""
    output = Path(output)
    writers = {h.name: h for h in C2_FORMATS if h.writer is not None}
    suffix = output.suffix.lower()
    claimed = {s for h in writers.values() for s in h.suffixes}

    def fits(h):
        return suffix in h.suffixes if h.suffixes else suffix not in claimed

    if name is None:
        return next((h for h in writers.values() if h.suffixes and fits(h)), None) or \
            next((h for h in writers.values() if h.source_format == source_format and fits(h)), writers["ours"])
    if name not in writers:
        raise XPCSInputError(f"unknown output format {name!r}; choose one of {', '.join(writers)}")
    h = writers[name]
    if not fits(h):
        raise XPCSInputError(f"output {output.name}: a .npy name holds a .npy array of the denoised 2TCFs only; "
                             f"name the output .h5/.hdf for output_format={name!r}" if suffix in claimed else
                             f"output_format={name!r} needs an output name ending in {' or '.join(h.suffixes)}; "
                             f"got {output.name}")
    if h.copies is not None and source_format != h.copies:
        raise XPCSInputError(f"output_format={name!r} copies an APS 8-ID-I result file (boost_corr layout) and the "
                             f"input is {source_format}; use output_format='ours'")
    return h
