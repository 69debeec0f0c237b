"""Files in and out: 2TCFs (.npy, our HDF5 format, the APS 8-ID-I layouts, any HDF5 dataset), frame stacks
(HDF5, .npy, TIFFs) and ROI label maps.

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

import contextvars
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.correlation import one_time_from_two_time
from ..core.errors import XPCSInputError
from ..core.validation import (
    check_memory,
    check_regular_input,
    check_square,
    is_real_dtype,
    numeric_array,
    unique_roi_count,
)
from .detectors import RIGAKU_FRAME, EigerStack, ImmStack, RigakuSparse, is_eiger_master
from .files import _one_line, atomic_path, write_csv

__all__ = ["C2File", "C2Source", "C2Writer", "APSResultWriter", "FrameStack", "read_c2", "open_c2", "write_c2",
           "write_aps_c2", "write_aps_legacy", "read_frames", "read_labels", "atomic_path", "write_csv",
           "pack_upper", "unpack_upper", "read_qmap", "FORMAT_NAME", "FORMAT_VERSION", "C2Format", "C2_FORMATS",
           "OUTPUT_FORMATS", "NpyWriter", "output_handler"]

FORMAT_NAME = "xpcs-denoise-c2"
FORMAT_VERSION = 2
_RESERVED = {"format", "format_version", "software", "software_version", "created_utc", "json_attrs"}

# APS 8-ID-I layouts, as written by AdvancedPhotonSource boost_corr (src/boost_corr/correlator/twotime.py yields
# torch.triu(c2): upper triangle WITH the diagonal, lower triangle zero, as correlation_map/c2_00001, ... one per
# processed dynamic bin, in the order of xpcs/twotime/processed_bins = the 1-based dynamic-map labels; paths in
# xpcs_aps_8idi/aps_8idi.py) and read by pyXpcsViewer (core/twotime_utils.py: c2_half + c2_half.T, diagonal
# halved; fileIO/qmap_utils.py: label → dynamic_index_mapping[label − 1] → q = dynamic_v_list_dim0[i // n_phi]).
# There is no "c2_half" flag: every map is a half. The older layout (boost_corr xpcs_aps_8idi/gpu_corr_twotime.py,
# pyXpcsViewer's first xpcs_file.py) stores the same halves as exchange/C2T_all/g2_00001, ..., with the q of each
# dynamic bin in xpcs/dqlist (1, n_bins) and the labels in xpcs/qphi_bin_to_process.
APS_C2_GROUP, APS_BINS = "xpcs/twotime/correlation_map", "xpcs/twotime/processed_bins"
APS_QLIST, APS_PHILIST = "xpcs/qmap/dynamic_v_list_dim0", "xpcs/qmap/dynamic_v_list_dim1"
APS_INDEX_MAP = "xpcs/qmap/dynamic_index_mapping"
#: Anomaly scores of the denoised windows: the group in our format and in an APS result file (our own group,
#: beside boost_corr's datasets, which readers of that layout do not look at).
ANOMALY_GROUP, APS_ANOMALY_GROUP = "anomaly", "xpcs/twotime/denoise_anomaly"
#: Datasets of the anomaly group: (K, W) per ROI and window (NaN / 0 for a ROI not denoised) and (W,) starts.
ANOMALY_PARTS = {
    "score": "combined anomaly score max(latent_distance/latent_scale, residual/residual_scale), dimensionless",
    "flagged": "1 where score > threshold: the window is outside what the model learned",
    "latent_distance": "Mahalanobis distance of the window's latent vector from the training crops', members' mean",
    "residual": "RMS reconstruction residual (lag 0 left out) in units of the training crops' median",
}
LEGACY_C2, LEGACY_QLIST, LEGACY_BINS = "exchange/C2T_all", "xpcs/dqlist", "xpcs/qphi_bin_to_process"
#: Frame stacks tried in order when no dataset is named: NeXus / APS-U detector data, APS data exchange.
FRAME_DATASETS = ("entry/data/data", "exchange/data", "entry/instrument/detector/data", "data")
#: ROI maps tried in order: APS-U result and qmap files, legacy qmap files (boost_corr), legacy result files.
LABEL_DATASETS = ("xpcs/qmap/dynamic_roi_map", "qmap/dynamic_roi_map", "data/dynamicMap", "xpcs/dqmap")
_HINT = "give dataset='path/in/file'"


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


def _h5py():
    import h5py

    try:  # registers the Blosc, bitshuffle/LZ4, Zstd... filters of beamline files with HDF5
        import hdf5plugin  # noqa: F401
    except (ImportError, OSError):
        pass
    return h5py


def _file_kind(path) -> tuple[Path, str]:
    """The path and "npy" or "hdf5" from the file's first bytes; clear errors for anything else."""
    path = check_regular_input(path)  # a FIFO or device would block: refused before opening
    with open(path, "rb") as fh:
        if fh.read(6) == b"\x93NUMPY":
            return path, "npy"
    if _h5py().is_hdf5(str(path)):
        return path, "hdf5"
    raise XPCSInputError(f"{path} is neither HDF5 nor .npy (corrupt, truncated or another format); re-export it")


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


def _open_h5(path: Path):
    try:
        return _h5py().File(path, "r")
    except OSError as exc:
        msg = _one_line(exc)
        low = msg.lower()
        # "lock" as a word: HDF5's truncated-file message names its superblock ("sblock"), not a lock
        hint = ("the file is truncated (shorter than its header says: an interrupted copy or write); copy it again"
                if "truncated" in low else
                "another program holds a lock on it; wait, or set HDF5_USE_FILE_LOCKING=FALSE"
                if re.search(r"\block(ed|ing)?\b", low) else "the file is corrupt or truncated; copy it again")
        raise XPCSInputError(f"cannot open {path} as HDF5 ({msg}); {hint}") from exc


def _check_filters(dset, path: Path) -> None:
    """Raise if ``dset`` is compressed with a filter that this HDF5 library cannot decode."""
    h5py, plist = _h5py(), dset.id.get_create_plist()
    missing = [f"{name.decode(errors='replace')} (id {code})" for code, _, _, name in
               (plist.get_filter(i) for i in range(plist.get_nfilters())) if not h5py.h5z.filter_avail(code)]
    if missing:
        raise XPCSInputError(f"{path}:{dset.name} is compressed with {', '.join(missing)}, which this HDF5 "
                             "cannot decode; pip install hdf5plugin")


def _read(dset, path: Path, key=()) -> np.ndarray:
    _check_local_dataset(dset, path)
    if key == () or key is Ellipsis:
        check_memory(dset.size * max(8, dset.dtype.itemsize) * 2, f"reading {path}:{dset.name} {dset.shape}")
    try:
        return np.asarray(dset[key])
    except OSError as exc:
        _check_filters(dset, path)
        raise XPCSInputError(f"cannot read {dset.name} from {path} ({_one_line(exc)}); the file is corrupt") from exc


# --- Safety: HDF5 objects that reach outside the file ------------------------------------------------------
#: Set by the readers' ``allow_external=True``: follow external links, external raw storage, virtual datasets.
_ALLOW_EXTERNAL = contextvars.ContextVar("xpcs_denoise_allow_external", default=False)
_MAX_LINK_HOPS = 32
_OUTSIDE_HINT = "pass allow_external=True if you trust where it points"


def _check_local_dataset(dset, path: Path) -> None:
    """Refuse a dataset whose bytes live outside the file (external raw storage, virtual dataset)."""
    if _ALLOW_EXTERNAL.get():
        return
    if dset.external:
        raise XPCSInputError(f"{path}:{dset.name} stores its data in other files ({dset.external[0][0]!r}...); "
                             f"refused: {_OUTSIDE_HINT}")
    if dset.is_virtual:
        raise XPCSInputError(f"{path}:{dset.name} is a virtual dataset mapping other files; refused: "
                             f"{_OUTSIDE_HINT}")


def _resolve(f, name: str, path: Path, hops: list) -> str | None:
    """Absolute path of ``name`` with soft links resolved; None if absent; external links and loops refused."""
    h5py = _h5py()
    cur = ""
    for part in (p for p in str(name).split("/") if p and p != "."):
        nxt = f"{cur}/{part}"
        try:
            link = f.get(nxt, getlink=True)
        except (KeyError, RuntimeError, OSError, ValueError):
            return None
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            if not _ALLOW_EXTERNAL.get():
                raise XPCSInputError(f"{path}:{nxt} is an external link to {link.filename}:{link.path}; refused: "
                                     f"{_OUTSIDE_HINT}")
        elif isinstance(link, h5py.SoftLink):
            hops[0] += 1
            if hops[0] > _MAX_LINK_HOPS:
                raise XPCSInputError(f"{path}:{name}: soft links loop (more than {_MAX_LINK_HOPS} hops); fix the "
                                     "links in the file")
            target = link.path if link.path.startswith("/") else f"{cur}/{link.path}"
            nxt = _resolve(f, target, path, hops)
            if nxt is None:
                return None
        cur = nxt
    return cur or "/"


@contextmanager
def _external(allow: bool):
    """Within the block, outside references are followed only if ``allow``."""
    token = _ALLOW_EXTERNAL.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_EXTERNAL.reset(token)


def _node(f, name: str, path: Path):
    """The object at ``name`` in ``f``, or None when absent (dangling links included), after the checks of
    :func:`_resolve`."""
    resolved = _resolve(f, name, path, [0])
    if resolved is None:
        return None
    try:
        return f[resolved]
    except (KeyError, RuntimeError, OSError, ValueError):
        return None


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _dataset(f, name: str | None, path: Path, candidates=(), what: str = "dataset"):
    """The object ``name`` of ``f`` (dataset or group), or else the first dataset of ``candidates`` present."""
    h5py = _h5py()
    if name is None:
        name = next((c for c in candidates if isinstance(_node(f, c, path), h5py.Dataset)), None)
        if name is None:
            raise XPCSInputError(f"{path}: no {what} at {', '.join(candidates)} (top-level keys: {sorted(f)}); {_HINT}")
    node = _node(f, name, path)
    if node is None:
        raise XPCSInputError(f"{path} has no {name!r} (top-level keys: {sorted(f)}); check the path in the file")
    return node


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


def _q_of_bins(f, path: Path, k: int, qlist: str, bins: str, philist: str | None = None, mapping: str | None = None,
               names=None):
    """(q, φ of each stored 2TCF from its 1-based dynamic-bin label, each None when the file does not say; the
    labels)."""
    def get(name):
        node = _node(f, name, path) if name is not None else None
        if node is None:
            return None
        if not isinstance(node, _h5py().Dataset):
            raise XPCSInputError(f"{path}:{node.name} is a group; expected a dataset of numbers")
        arr = _read(node, path).ravel()
        if not is_real_dtype(arr.dtype):
            raise XPCSInputError(f"{path}:{node.name} must hold numbers; got dtype {arr.dtype} (re-export the "
                                 "file, or read the 2TCFs with dataset='path/in/file')")
        return arr

    qs, labels, phis, index = get(qlist), get(bins), get(philist), get(mapping)
    if labels is not None and names is not None:
        labels = _labels_of_maps(names, labels, path, bins)
    if qs is None or labels is None or labels.size != k:
        return (qs.astype(np.float64) if qs is not None and qs.size == k else None), None, labels
    q, phi = _qphi_of_labels(labels, qs, phis, index)
    if q is None:
        raise XPCSInputError(f"{path}: {bins} {labels.astype(np.int64).tolist()[:8]} reaches beyond the q list "
                             f"({qlist}, {qs.size} values); the file is inconsistent: export it again")
    return q, phi, labels


def _labels_of_maps(names, bins, path: Path, where: str) -> np.ndarray:
    """The dynamic-bin label of each stored map, from the number in its name, never from its place among the
    maps present (a missing map must not shift the others onto other bins' labels). Maps numbered 1…K for K listed
    bins are the bins in order (boost_corr's counter); otherwise ``c2_{label:05d}`` where every number is a listed
    label, else ``c2_{n:05d}`` for the n-th listed bin. A list that fits none of these is refused."""
    bins = np.asarray(bins, dtype=np.float64)
    if bins.size == 0 or not np.all(np.isfinite(bins)) or np.any(bins != np.round(bins)) or np.any(bins < 1):
        raise XPCSInputError(f"{path}:{where} must hold whole numbers >= 1 (dynamic-bin labels); got "
                             f"{bins.tolist()[:8]}")
    bins = bins.astype(np.int64)
    if np.unique(bins).size != bins.size:
        raise XPCSInputError(f"{path}:{where} lists a bin twice ({bins.tolist()[:8]}); each map needs its own "
                             "label: export the file again")
    found = [re.fullmatch(r"c2_0*(\d+)", str(nm)) for nm in names]
    if not all(found):  # maps not named by number: only a list of the same length can be matched
        if bins.size != len(names):
            raise XPCSInputError(f"{path}:{where} lists {bins.size} bins for {len(names)} maps; the file is "
                                 "inconsistent: export it again")
        return bins
    num = np.array([int(m.group(1)) for m in found])
    if num.size == bins.size and np.array_equal(num, np.arange(1, num.size + 1)):
        return bins  # every bin's map, numbered in order (boost_corr): the list as it stands
    if np.all(np.isin(num, bins)):
        return num
    if num.min() >= 1 and num.max() <= bins.size:
        return bins[num - 1]
    bad = names[int(np.flatnonzero(~np.isin(num, bins))[0])]
    raise XPCSInputError(f"{path}: map {bad} matches no bin of {where} {bins.tolist()[:8]}; the file is "
                         "inconsistent: export it again")


def _qphi_of_labels(labels, qs, phis=None, index=None):
    """q and φ (or None) of 1-based dynamic-bin labels: label → ``index[label − 1]`` (identity without a
    mapping) → q = ``qs[i // n_φ]``, φ = ``phis[i % n_φ]``, as pyXpcsViewer's qmap_utils reads them."""
    idx = np.asarray(labels).astype(np.int64) - 1
    if index is not None:
        if idx.min() < 0 or idx.max() >= index.size:
            return None, None
        idx = index.astype(np.int64)[idx]
    n_phi = 1 if phis is None else max(1, phis.size)
    iq, iphi = idx // n_phi, idx % n_phi
    q = qs[iq].astype(np.float64) if iq.min() >= 0 and iq.max() < qs.size else None
    phi = phis[iphi].astype(np.float64) if phis is not None and phis.size and q is not None else None
    return q, phi


def read_qmap(path, dataset: str | None = None, *, allow_external: bool = False):
    """ROI label map and, where the file says, q and φ of each label (APS qmap and result files).

    Parameters
    ----------
    path, dataset : as :func:`read_labels`

    Returns
    -------
    labels : ndarray of int64 (H, W)
        As :func:`read_labels`; pixels outside the file's ``mask`` (APS ``qmap/mask``, beside the map) set to 0.
    info : dict
        ``labels`` (L,) the labels present (sorted), ``q`` (L,) Å⁻¹ and ``phi`` (L,) degrees or None, from
        ``dynamic_v_list_dim0``/``dim1`` and ``dynamic_index_mapping`` next to the map; ``qmap``: True when the
        map came with a mask or q lists (an APS qmap, whose selected labels may have gaps).
    """
    labels = read_labels(path, dataset, allow_external=allow_external)
    present = np.unique(labels[labels > 0])
    info = {"labels": present, "q": None, "phi": None, "qmap": False}
    p, kind = _file_kind(path)
    if kind != "hdf5":
        return labels, info
    with _open_h5(p) as f, _external(allow_external):
        name = _dataset(f, dataset, p, LABEL_DATASETS, "ROI label map").name.strip("/")
        group = name.rsplit("/", 1)[0] if "/" in name else ""
        def get(leaf):
            node = _node(f, f"{group}/{leaf}" if group else leaf, p)
            if node is None or not isinstance(node, _h5py().Dataset):
                return None
            arr = _read(node, p)
            if not is_real_dtype(arr.dtype):
                raise XPCSInputError(f"{p}:{node.name} must hold numbers; got dtype {arr.dtype}")
            return arr
        mask = get("mask")
        info["qmap"] = mask is not None or get("dynamic_v_list_dim0") is not None
        if mask is not None and np.squeeze(mask).shape == labels.shape:
            labels = np.where(np.squeeze(mask) != 0, labels, 0)
            present = np.unique(labels[labels > 0])
            info["labels"] = present
        qs = get("dynamic_v_list_dim0")
        if qs is not None and present.size:
            phis, index = get("dynamic_v_list_dim1"), get("dynamic_index_mapping")
            info["q"], info["phi"] = _qphi_of_labels(present, qs.ravel(), None if phis is None else phis.ravel(),
                                                     None if index is None else index.ravel())
    return labels, info


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _decode_attrs(attrs) -> dict:
    out = {k: _attr_value(v) for k, v in attrs.items()}
    for key in json.loads(out.pop("json_attrs", "[]")):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


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


#: Detector frame time (s) in APS 8-ID-I result files: NeXus layout (boost_corr for APS-U, read by pyXpcsViewer
#: as "t0"), then the older layout's exposure period.
APS_FRAME_TIME = ("entry/instrument/detector_1/frame_time", "measurement/instrument/detector/exposure_period")
#: Frames averaged and strided before the 2TCF (the 2TCF's frame is this many detector frames).
APS_AVG_STRIDE = (("xpcs/twotime/config/avg_frame", "xpcs/twotime/config/stride_frame"),
                  ("xpcs/avg_frames", "xpcs/stride_frames"))


def _aps_scalar(f, name):
    node = _node(f, name, Path(f.filename))
    if node is None or not isinstance(node, _h5py().Dataset):
        return None
    try:
        v = np.asarray(_read(node, Path(f.filename)), dtype=np.float64).ravel()
    except (TypeError, ValueError, OSError):
        return None
    return float(v[0]) if v.size and np.isfinite(v[0]) and v[0] > 0 else None


def _aps_frame_time(f) -> float | None:
    """Seconds per 2TCF frame of an APS 8-ID-I result file (None where the file does not say)."""
    t0 = next((v for v in (_aps_scalar(f, k) for k in APS_FRAME_TIME) if v is not None), None)
    if t0 is None:
        return None
    for avg_key, stride_key in APS_AVG_STRIDE:
        avg, stride = _aps_scalar(f, avg_key), _aps_scalar(f, stride_key)
        if avg is not None or stride is not None:
            return t0 * (avg or 1.0) * (stride or 1.0)
    return t0


def _c2_float(arr: np.ndarray, where: str) -> np.ndarray:
    if not is_real_dtype(arr.dtype):
        raise XPCSInputError(f"{where} must hold numbers; got dtype {arr.dtype}; write the file again")
    return arr.astype(np.float64)


def _json_default(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_attrs(attrs: dict | None) -> dict:
    out, json_keys = {}, []
    for key, value in (attrs or {}).items():
        if str(key) in _RESERVED:
            raise XPCSInputError(f"attribute name {key!r} is reserved by the file format; rename it")
        if isinstance(value, (str, bytes, bool, int, float, np.bool_, np.integer, np.floating)):
            out[str(key)] = value
            continue
        try:
            out[str(key)] = json.dumps(value, default=_json_default, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise XPCSInputError(f"attribute {key!r} cannot be stored ({exc}); use numbers, strings, lists, dicts") \
                from exc
        json_keys.append(str(key))
    return {**out, "json_attrs": json.dumps(json_keys)}


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xpcs-denoise")
    except PackageNotFoundError:
        return "unknown"


def _write_dataset(f, name: str, data, attrs: dict | None = None) -> None:
    dset = f.create_dataset(name, data=data)
    for key, value in (attrs or {}).items():
        dset.attrs[key] = value


def _write_h5(path, datasets: dict, root_attrs: dict, overwrite: bool) -> Path:
    """Write ``{name: (array, attrs)}`` and the root attributes, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp, _h5py().File(tmp, "w") as f:
        f.attrs.update(root_attrs)
        for name, (data, attrs) in datasets.items():
            _write_dataset(f, name, data, attrs)
    return Path(path)


def _matching(arr, shape: tuple, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    arr = arr[None] if arr.shape != shape and shape[0] == 1 and arr.shape == shape[1:] else arr
    if arr.shape != shape:
        raise XPCSInputError(f"{name} has shape {arr.shape}; expected {shape} to match c2")
    return arr


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


def _write_halves(path, c2, q, overwrite: bool, legacy: bool) -> Path:
    c2 = _c2_stack(c2, "c2", halves=False)
    k = len(c2)
    name = f"{LEGACY_C2}/g2" if legacy else f"{APS_C2_GROUP}/c2"
    datasets = {f"{name}_{i + 1:05d}": (np.triu(0.5 * (m + m.T)), None) for i, m in enumerate(c2)}
    bins = np.arange(1, k + 1, dtype=np.uint64 if legacy else np.int64)
    datasets[LEGACY_BINS if legacy else APS_BINS] = (bins[:, None] if legacy else bins, None)
    if q is not None:
        q = _matching(np.ravel(q), (k,), "q")
        datasets.update({LEGACY_QLIST: (q[None], None)} if legacy else {
            APS_QLIST: (q, None), APS_PHILIST: (np.zeros(1), None), APS_INDEX_MAP: (np.arange(k), None)})
    return _write_h5(path, datasets, {}, overwrite)


def write_aps_c2(path, c2, q=None, *, overwrite: bool = False) -> Path:
    """Write 2TCFs (N, N) or (K, N, N) in the APS 8-ID-I (boost_corr) layout, atomically.

    ``xpcs/twotime/correlation_map/c2_00001``, ... hold the upper triangle, diagonal included, of the symmetric
    part of each matrix (float64; boost_corr writes float32); ``xpcs/twotime/processed_bins`` = 1..K; with ``q``
    (K,) in Å⁻¹: ``xpcs/qmap/dynamic_v_list_dim0`` = q, ``dynamic_v_list_dim1`` = [0] (one φ) and
    ``dynamic_index_mapping`` = 0..K − 1.
    """
    return _write_halves(path, c2, q, overwrite, legacy=False)


def write_aps_legacy(path, c2, q=None, *, overwrite: bool = False) -> Path:
    """Write 2TCFs in the older APS 8-ID-I layout, atomically: upper triangles as ``exchange/C2T_all/g2_00001``,
    ...; ``xpcs/qphi_bin_to_process`` (K, 1) = 1..K; with ``q`` (K,) Å⁻¹, ``xpcs/dqlist`` (1, K)."""
    return _write_halves(path, c2, q, overwrite, legacy=True)


# --- streaming: one ROI at a time -----------------------------------------------------------------------------

APS_C2_RAW_GROUP = "xpcs/twotime/correlation_map_raw"
APS_G2, APS_G2_SEGMENTS = "xpcs/twotime/normalized_g2", "xpcs/twotime/normalized_g2_segments"
#: boost_corr's number of equal segments of the diagonal in ``normalized_g2_segments``.
APS_N_SEGMENTS = 5
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


def _diag_means(m: np.ndarray) -> np.ndarray:
    """Mean of each diagonal of a symmetric (N, N) matrix, lags 0..N − 1 (boost_corr's ``g2full``)."""
    return np.concatenate([[np.mean(np.diagonal(m))], one_time_from_two_time(m)])


class _OpenFile:
    """Closes the HDF5 file it holds (``_file``) on ``close()`` or at the end of a ``with`` block."""

    _file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def _open_npy(self, f, dataset):
        self._setup(_load_npy(self.path, mmap_mode="r", dataset=dataset), str(self.path))

    def _open_dataset(self, f, dataset):
        node = _dataset(f, dataset, self.path)
        self.attrs = {**_decode_attrs(node.attrs), **self.attrs, "dataset": node.name}
        self._setup(node, f"{self.path}:{node.name}")

    def _open_aps(self, f, dataset):
        path = self.path
        self._setup(_node(f, APS_C2_GROUP, path), f"{path}:/{APS_C2_GROUP}", layout="upper")
        self.q, self.phi, bins = _q_of_bins(f, path, self.n_rois, APS_QLIST, APS_BINS, APS_PHILIST, APS_INDEX_MAP,
                                            names=self.names)
        if (raw := _node(f, APS_C2_RAW_GROUP, path)) is not None:
            self._parts["raw"] = _node_getter(raw, path, f"{path}:/{APS_C2_RAW_GROUP}", layout="upper")[2]
        if _node(f, APS_ANOMALY_GROUP, path) is not None:
            self._anomaly_group = APS_ANOMALY_GROUP
        if (tt := _node(f, "xpcs/twotime", path)) is not None:
            self.attrs.update({k: v for k, v in _decode_attrs(tt.attrs).items()})
        self._aps_bins_and_time(f, bins)

    def _open_aps_legacy(self, f, dataset):
        path = self.path
        self._setup(_node(f, LEGACY_C2, path), f"{path}:/{LEGACY_C2}", layout="upper")
        self.q, self.phi, bins = _q_of_bins(f, path, self.n_rois, LEGACY_QLIST, LEGACY_BINS, names=self.names)
        self._aps_bins_and_time(f, bins)

    def _aps_bins_and_time(self, f, bins):
        if bins is not None:
            self.attrs["processed_bins"] = bins.astype(np.int64).tolist()
            if bins.size == self.n_rois:
                self.rois = bins.astype(np.int64)
        self.frame_time = _aps_frame_time(f)
        if self.frame_time is not None:
            self.attrs["frame_time"] = self.frame_time

    def _setup(self, node, where, layout=None):
        self.n_rois, self.n_frames, self._get, self.names, self.dtype = _node_getter(node, self.path, where, layout)
        self.single = getattr(node, "ndim", 3) == 2  # one (N, N) 2TCF: written back as one

    def _open_ours(self, f, dataset):
        path = self.path
        raw_version = _attr_value(f.attrs.get("format_version", 0))
        try:
            version = int(raw_version)
        except (TypeError, ValueError):
            raise XPCSInputError(f"{path} has format_version {raw_version!r}, not a whole number; the file was not "
                                 "written by xpcs-denoise or was edited: write it again") from None
        if version > FORMAT_VERSION:
            raise XPCSInputError(f"{path} has format version {version}; this xpcs-denoise reads up to "
                                 f"{FORMAT_VERSION}; upgrade xpcs-denoise")
        self.attrs = _decode_attrs(f.attrs)
        try:
            ft = float(self.attrs.get("frame_time", np.nan))
        except (TypeError, ValueError):
            ft = np.nan
        self.frame_time = ft if np.isfinite(ft) and ft > 0 else None
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
        self.n_rois, self.n_frames, self.dtype = int(k), int(n), main.dtype
        check_memory(n * n * 8 * 3, f"{path}:/c2: one {n}×{n} 2TCF")
        self.names = [f"c2_{i + 1:05d}" for i in range(self.n_rois)]
        self._get = getter(main)
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
                self._parts[name[3:]] = getter(node)
        if _node(f, ANOMALY_GROUP, path) is not None:
            self._anomaly_group = ANOMALY_GROUP
        for name, shape in (("g2", (k, n - 1)), ("q", (k,)), ("phi", (k,)), ("roi", (k,))):
            node = _node(f, name, path)
            if node is not None and not isinstance(node, h5py.Dataset):
                raise XPCSInputError(f"{path}:/{name} is a group, expected a dataset of shape {shape}; write it "
                                     "again")
            val = _c2_float(_read(node, path), f"{path}:/{name}") if node is not None else None
            if val is not None and val.shape != shape:
                raise XPCSInputError(f"{path}:/{name} has shape {val.shape}, expected {shape}; write it again")
            if val is not None:
                setattr(self, "rois" if name == "roi" else name,
                        val.astype(np.int64) if name == "roi" else val.astype(np.float64))

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


def open_c2(path, dataset: str | None = None, *, allow_external: bool = False) -> C2Source:
    """Open 2TCFs for reading one ROI at a time: the layouts of :func:`read_c2`; peak memory is one (N, N)
    float64 matrix (8 N² bytes) per ROI read, whatever the number of ROIs. ``allow_external`` as
    :func:`read_c2` (external links, external storage and virtual datasets refused by default).

    >>> with open_c2("result.hdf") as src:
    ...     for k in range(src.n_rois):
    ...         m = src.c2(k)
    """
    return C2Source(path, dataset, allow_external=allow_external)


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

    def __enter__(self) -> C2Writer:
        return self.open()

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


class APSResultWriter(_StreamWriter):
    """An APS 8-ID-I result file (boost_corr layout) with its 2TCFs replaced, written one ROI at a time,
    atomically; use it in a ``with`` block and call :meth:`write` once per ROI.

    The input file is copied whole (qmap, metadata, multitau, temporal and spatial means... every group and
    attribute). Then ``xpcs/twotime/correlation_map`` moves to ``xpcs/twotime/correlation_map_raw`` and
    ``normalized_g2``/``normalized_g2_segments`` to ``..._raw`` (``keep_raw=False`` deletes them instead); the
    new ``correlation_map/c2_*`` (same names, the input's dtype) hold the upper triangles, diagonal included,
    of the given matrices, lower triangle zero, as boost_corr writes them (lzf); ``normalized_g2`` (N, K) holds
    their diagonal means at lags 0..N − 1 (column k = ``processed_bins[k]``) and ``normalized_g2_segments``
    (N // 5, 5, K) the same over 5 equal segments of the diagonal, as boost_corr computes them. Provenance
    attributes go on ``xpcs/twotime``. If the input already has ``correlation_map_raw`` (a denoised file), that
    raw group is kept and the current maps are replaced.
    """

    def __init__(self, source: C2Source, path, *, attrs: dict | None = None, keep_raw: bool = True,
                 overwrite: bool = False):
        if source.source_format != "aps-8idi":
            raise XPCSInputError(f"{source.path} is not an APS 8-ID-I result file (xpcs/twotime/correlation_map); "
                                 "write our format instead (output_format='ours')")
        self.source, self.path, self.keep_raw, self._overwrite = source, Path(path), keep_raw, bool(overwrite)
        _encode_attrs(attrs)
        #: Provenance written on ``xpcs/twotime`` when the file is closed (may be updated until then).
        self.attrs = dict(attrs or {})
        #: Attributes of ``xpcs/twotime/denoise_anomaly`` (window, step, threshold...), set before the first write.
        self.anomaly_attrs: dict = {}
        self.k, self.n = source.n_rois, source.n_frames
        self.dtype = np.dtype(source.dtype) if np.issubdtype(source.dtype, np.floating) else np.dtype(np.float32)
        self._ctx = self._f = None
        self.written = np.zeros(self.k, bool)

    def __enter__(self) -> APSResultWriter:
        return self.open()

    def open(self) -> APSResultWriter:
        """Copy the input to the temporary file and move its maps aside."""
        import shutil

        self._ctx = atomic_path(self.path, overwrite=self._overwrite)
        tmp = self._ctx.__enter__()
        try:
            shutil.copyfile(self.source.path, tmp)
            f = self._f = _h5py().File(tmp, "r+")
            with _external(self.source._allow_external):  # the copy's links, checked as the input's
                present = {name: _node(f, name, self.source.path) is not None
                           for name in (APS_C2_RAW_GROUP, APS_C2_GROUP, APS_G2, APS_G2_SEGMENTS)}
                g2 = _node(f, APS_G2, self.source.path)
            had_raw = present[APS_C2_RAW_GROUP]
            g2_dtype = g2.dtype if isinstance(g2, _h5py().Dataset) else self.dtype
            for name in (APS_C2_GROUP, APS_G2, APS_G2_SEGMENTS):
                if not present[name]:
                    continue
                if self.keep_raw and not had_raw:
                    f.move(name, APS_C2_RAW_GROUP if name == APS_C2_GROUP else name + "_raw")
                else:
                    del f[name]
            f.create_group(APS_C2_GROUP)
            if APS_ANOMALY_GROUP in f:  # a file denoised before: its scores belong to the maps replaced
                del f[APS_ANOMALY_GROUP]
            seg = self.n // APS_N_SEGMENTS
            self.g2 = np.zeros((self.n, self.k), dtype=g2_dtype)
            self.g2_segments = np.zeros((seg, APS_N_SEGMENTS, self.k), dtype=g2_dtype)
            self.raw_group = APS_C2_RAW_GROUP if (self.keep_raw or had_raw) else ""
        except BaseException as exc:
            self._abort(exc)
            raise
        return self

    def write(self, k: int, c2, *, anomaly=None) -> None:
        """Store ROI index ``k`` (0-based, the k-th of ``processed_bins``): a full symmetric (N, N) matrix;
        ``anomaly``: its window table, into ``xpcs/twotime/denoise_anomaly`` (row k)."""
        c2 = np.asarray(c2)
        if c2.shape != (self.n, self.n):
            raise XPCSInputError(f"2TCF has shape {c2.shape}; expected {(self.n, self.n)}")
        half = c2.astype(self.dtype)
        for i in range(1, self.n):  # lower triangle zero, row by row (no second N×N array)
            half[i, :i] = 0
        chunk = (min(self.n, 16384),) * 2
        self._f.create_dataset(f"{APS_C2_GROUP}/{self.source.names[k]}", data=half, chunks=chunk, compression="lzf")
        del half
        self.g2[:, k] = _diag_means(c2)
        seg = self.g2_segments.shape[0]
        for s in range(APS_N_SEGMENTS if seg > 1 else 0):
            sl = slice(s * seg, (s + 1) * seg)
            self.g2_segments[:, s, k] = _diag_means(c2[sl, sl])
        if anomaly is not None:
            _write_anomaly(self._f, APS_ANOMALY_GROUP, k, self.k, anomaly, self.anomaly_attrs)
        self.written[k] = True

    def close(self) -> Path:
        self._check_complete()
        f = self._f
        labels = self.source.roi_labels()
        if APS_BINS in f and (f[APS_BINS].shape != (self.k,) or not np.array_equal(f[APS_BINS][()], labels)):
            del f[APS_BINS]  # a list that did not match the maps one by one (a map was missing): the maps' labels
        if APS_BINS not in f:
            f.create_dataset(APS_BINS, data=np.asarray(labels, dtype=np.int64))
        f.create_dataset(APS_G2, data=self.g2, compression="lzf" if self.g2.size > 8192 else None)
        f.create_dataset(APS_G2_SEGMENTS, data=self.g2_segments,
                         compression="lzf" if self.g2_segments.size > 8192 else None)
        f["xpcs/twotime"].attrs.update({**_encode_attrs(self.attrs), "denoised_by": "xpcs-denoise",
                                        "software_version": _package_version(),
                                        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                        "raw_group": self.raw_group})
        return self._publish()


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


def _c2_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return C2Writer(path, src.n_rois, src.n_frames, raw=keep_raw, std=uncertainty, q=src.q, phi=src.phi,
                    rois=src.roi_labels(), attrs=attrs, overwrite=overwrite)


def _aps_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return APSResultWriter(src, path, attrs=attrs, keep_raw=keep_raw, overwrite=overwrite)


def _npy_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return NpyWriter(path, src.n_rois, src.n_frames, overwrite, single=getattr(src, "single", False))


def _has(name):
    return lambda f: _node(f, name, Path(f.filename)) is not None


#: The 2TCF formats, one handler each; a file is read by the first whose ``detect`` recognises it.
C2_FORMATS = (
    C2Format("ours", "xpcs-denoise", detect=lambda f: _attr_value(f.attrs.get("format")) == FORMAT_NAME,
             open=C2Source._open_ours, writer=_c2_writer, stores=frozenset({"raw", "std", "g2", "anomaly"})),
    C2Format("aps", "aps-8idi", detect=_has(APS_C2_GROUP), open=C2Source._open_aps, writer=_aps_writer,
             copies="aps-8idi", stores=frozenset({"anomaly"})),
    C2Format("aps-legacy", "aps-8idi-legacy", detect=_has(LEGACY_C2), open=C2Source._open_aps_legacy),
    C2Format("hdf5-dataset", "hdf5-dataset", open=C2Source._open_dataset),
    C2Format("npy", "npy", kind="npy", detect=lambda f: True, open=C2Source._open_npy, writer=_npy_writer,
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


class FrameStack(_OpenFile):
    """A (T, H, W) or (T, P) frame stack for ``two_time``: ``shape``, ``dtype``, ``ndim``, slicing into numpy arrays
    and ``np.asarray``. ``data`` is an h5py dataset (kept open, read-only, until :meth:`close` or the end of a
    ``with`` block), a memory map (.npy) or an array (TIFFs)."""

    def __init__(self, data, *, source_format: str, path: Path, dataset: str | None = None, handle=None,
                 allow_external: bool = False):
        self.data, self.source_format, self.path, self.dataset, self._file = data, source_format, path, dataset, handle
        self._allow_external = allow_external
        shape, dtype = self.shape, self.dtype
        if len(shape) not in (2, 3):
            raise XPCSInputError(f"{path}: frames must have shape (T, H, W) or (T, P); got {shape}")
        if shape[0] < 2:
            raise XPCSInputError(f"{path}: need at least 2 frames to correlate; got {shape[0]}")
        if not is_real_dtype(dtype):
            raise XPCSInputError(f"{path}: frames must hold numbers (integer or float counts); got dtype {dtype}")

    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: np.dtype(self.data.dtype))
    ndim = property(lambda self: len(self.data.shape))

    def __getitem__(self, key) -> np.ndarray:
        if self.source_format != "hdf5":  # arrays, memory maps and the detector handlers read themselves
            return np.asarray(self.data[key])
        with _external(self._allow_external):
            return _read(self.data, self.path, key)

    def __array__(self, dtype=None, copy=None):
        return self[...] if dtype is None else self[...].astype(dtype)



def _tiff_reader():
    try:
        import tifffile

        return tifffile.imread
    except ImportError:
        pass
    try:
        from PIL import Image, ImageSequence
    except ImportError:
        raise XPCSInputError("reading TIFF frames needs tifffile: pip install tifffile (or Pillow)") from None

    def read(p):
        with Image.open(p) as im:
            pages = [np.asarray(page) for page in ImageSequence.Iterator(im)]
        return pages[0] if len(pages) == 1 else np.stack(pages)

    return read


def _read_tiff_folder(folder: Path) -> np.ndarray:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file()
                    and not p.name.startswith(".")), key=lambda p: _natural_key(p.name))
    if not files:
        raise XPCSInputError(f"folder {folder} holds no .tif/.tiff files; give TIFF frames, an HDF5 or a .npy file")
    read = _tiff_reader()
    out = None
    for i, file in enumerate(files):
        img = np.asarray(read(file))
        if img.ndim != 2 or (out is not None and img.shape != out.shape[1:]):
            want = "one 2-D frame per file" if out is None else f"the size of {files[0].name}, {out.shape[1:]}"
            raise XPCSInputError(f"{file} has shape {img.shape}; a TIFF folder needs {want}")
        if not is_real_dtype(img.dtype):
            raise XPCSInputError(f"{file} holds dtype {img.dtype}, not counts")
        if out is None:
            check_memory(len(files) * img.size * max(img.dtype.itemsize, 4),
                         f"{len(files)} TIFF frames of {img.shape} {img.dtype}")
            out = np.empty((len(files), *img.shape), dtype=img.dtype)
        elif not np.can_cast(img.dtype, out.dtype, "safe"):  # e.g. uint8 then uint16: widen, never wrap
            common = np.result_type(out.dtype, img.dtype)
            check_memory(out.size * common.itemsize, f"{len(files)} TIFF frames of {img.shape} {common}")
            out = out.astype(common)
        out[i] = img
    return out


class _Closing:
    """Closes a detector handler and the file it was opened from, as one handle."""

    def __init__(self, *parts):
        self.parts = parts

    def close(self):
        for p in self.parts:
            p.close()


def read_frames(path, dataset: str | None = None, *, allow_external: bool = False,
                frame_shape=None) -> FrameStack:
    """Open a frame stack for :func:`~xpcs_denoise.correlation.two_time`.

    Parameters
    ----------
    path : str or Path
        HDF5 file (the dataset ``dataset``, else the first of :data:`FRAME_DATASETS` present: ``entry/data/data``,
        ``exchange/data``...), an Eiger master file (its ``entry/data/data_…`` links followed into the master's own
        folder only), a Rigaku sparse ``.bin`` file (APS 8-ID-I), an ``.imm`` file (legacy APS), a ``.npy`` file,
        a multi-page ``.tif``, or a folder of single-frame TIFFs (natural name order: ``f_2.tif`` before
        ``f_10.tif``; read with tifffile, else Pillow). The detector formats are :mod:`xpcs_denoise.io.detectors`.
    frame_shape : (rows, columns), optional
        Frame size of a Rigaku ``.bin`` file (default 512 × 1024, the Rigaku 500K).
    dataset : str, optional
        HDF5 path of the (T, H, W) or (T, P) dataset.
    allow_external : bool
        Follow HDF5 external links, external raw storage and virtual datasets; refused by default.

    Returns
    -------
    FrameStack
        Use it in a ``with`` block (or call ``close()``) to close an HDF5 file. Peak memory: HDF5 and .npy are
        read lazily (h5py dataset, memory map), so ``two_time`` holds one block of pixels (≤ 128 MiB by default)
        besides its result; TIFFs are loaded whole in their own dtype: T × H × W × itemsize bytes.
    """
    path = Path(path)
    if path.is_dir():
        return FrameStack(_read_tiff_folder(path), source_format="tiff", path=path)
    if path.suffix.lower() == ".bin" and path.is_file():
        return FrameStack(RigakuSparse(path, frame_shape or RIGAKU_FRAME), source_format="rigaku", path=path)
    if path.suffix.lower() == ".imm" and path.is_file():
        return FrameStack(ImmStack(path), source_format="imm", path=path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        arr = np.asarray(_tiff_reader()(path))
        return FrameStack(arr[None] if arr.ndim == 2 else arr, source_format="tiff", path=path)
    path, kind = _file_kind(path)
    if kind == "npy":
        return FrameStack(_load_npy(path, mmap_mode="r", dataset=dataset), source_format="npy", path=path)
    f = _open_h5(path)
    if dataset is None and is_eiger_master(f):
        try:
            stack = EigerStack(path, f)
        except BaseException:
            f.close()
            raise
        return FrameStack(stack, source_format="eiger", path=path, handle=_Closing(stack, f))
    try:
        with _external(allow_external):
            dset = _dataset(f, dataset, path, FRAME_DATASETS, "frame stack")
            if not isinstance(dset, _h5py().Dataset):
                raise XPCSInputError(f"{path}:{dset.name} is a group (members: {sorted(dset)[:10]}); name a dataset")
            _check_local_dataset(dset, path)
        _check_filters(dset, path)
        return FrameStack(dset, source_format="hdf5", path=path, dataset=dset.name, handle=f,
                          allow_external=allow_external)
    except BaseException:
        f.close()
        raise


def read_labels(path, dataset: str | None = None, *, allow_external: bool = False) -> np.ndarray:
    """Read an integer q-ROI label map (0 = unused pixel, 1..K = ROI) from .npy or HDF5.

    Parameters
    ----------
    path : str or Path
        ``.npy`` or HDF5 file; in HDF5 the dataset ``dataset``, else the first of :data:`LABEL_DATASETS` present
        (``xpcs/qmap/dynamic_roi_map``, ``qmap/dynamic_roi_map``, ``data/dynamicMap``, ``xpcs/dqmap``).
    dataset : str, optional
        HDF5 path of the map.

    Returns
    -------
    labels : ndarray of int64, shape (H, W)
        Leading axes of length 1 dropped; booleans become 0/1; integer-valued floats accepted. The numbering is
        kept as stored (``two_time`` rejects ROI labels without pixels).

    Raises
    ------
    XPCSInputError
        Not 2-D, not whole numbers (NaN included), negative, or no labelled pixel; file errors as :func:`read_c2`.
    """
    path, kind = _file_kind(path)
    if kind == "npy":
        arr, where = _load_npy(path, dataset=dataset), str(path)
    else:
        with _open_h5(path) as f, _external(allow_external):
            dset = _dataset(f, dataset, path, LABEL_DATASETS, "ROI label map")
            if not isinstance(dset, _h5py().Dataset):
                raise XPCSInputError(f"{path}:{dset.name} is a group, not a label map; name a dataset")
            arr, where = _read(dset, path), f"{path}:{dset.name}"
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (1, 2):
        raise XPCSInputError(f"{where}: ROI label map must be (H, W) like one frame, or (P,) for a (T, P) frame "
                             f"stack; got shape {arr.shape}")
    arr = arr.astype(np.int64) if arr.dtype == np.bool_ else arr
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise XPCSInputError(f"{where}: ROI labels must be whole numbers (0 = unused, 1..K = q-ROIs)")
    elif not np.issubdtype(arr.dtype, np.integer) or not is_real_dtype(arr.dtype):
        raise XPCSInputError(f"{where}: ROI labels must be integers; got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise XPCSInputError(f"{where}: ROI labels must be >= 0 (set unused pixels to 0); minimum is {arr.min()}")
    if not arr.size or arr.max() == 0:
        raise XPCSInputError(f"{where}: ROI label map has no labelled pixel; label the q-ROIs 1..K")
    return arr.astype(np.int64)
