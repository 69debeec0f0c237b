"""The APS 8-ID-I result files of boost_corr (https://github.com/AdvancedPhotonSource/boost_corr), as
pyXpcsViewer reads them: the NeXus layout of APS-U (``xpcs/twotime/correlation_map/c2_*``) and the older one
(``exchange/C2T_all``), read, written (:func:`write_aps_c2`, :func:`write_aps_legacy`) and copied with the 2TCFs
replaced (:class:`APSResultWriter`); the q and φ of each map from the q-map (:func:`read_qmap`). The layouts, as
found in boost_corr's and pyXpcsViewer's sources, are described in the comment below.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.correlation import one_time_from_two_time
from ..core.errors import XPCSInputError
from ..core.validation import is_real_dtype
from .c2base import (
    APS_ANOMALY_GROUP,
    _c2_stack,
    _matching,
    _node_getter,
    _package_version,
    _StreamWriter,
    _write_anomaly,
)
from .files import atomic_path
from .frames import LABEL_DATASETS, read_labels
from .hdf5 import (
    _dataset,
    _decode_attrs,
    _encode_attrs,
    _external,
    _file_kind,
    _h5py,
    _node,
    _open_h5,
    _read,
    _write_h5,
)

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
LEGACY_C2, LEGACY_QLIST, LEGACY_BINS = "exchange/C2T_all", "xpcs/dqlist", "xpcs/qphi_bin_to_process"
APS_C2_RAW_GROUP = "xpcs/twotime/correlation_map_raw"
APS_G2, APS_G2_SEGMENTS = "xpcs/twotime/normalized_g2", "xpcs/twotime/normalized_g2_segments"
#: boost_corr's number of equal segments of the diagonal in ``normalized_g2_segments``.
APS_N_SEGMENTS = 5


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


def _diag_means(m: np.ndarray) -> np.ndarray:
    """Mean of each diagonal of a symmetric (N, N) matrix, lags 0..N − 1 (boost_corr's ``g2full``)."""
    return np.concatenate([[np.mean(np.diagonal(m))], one_time_from_two_time(m)])


def _open_aps(src, f, dataset):
    path = src.path
    src._setup(_node(f, APS_C2_GROUP, path), f"{path}:/{APS_C2_GROUP}", layout="upper")
    src.q, src.phi, bins = _q_of_bins(f, path, src.n_rois, APS_QLIST, APS_BINS, APS_PHILIST, APS_INDEX_MAP,
                                      names=src.names)
    if (raw := _node(f, APS_C2_RAW_GROUP, path)) is not None:
        src._parts["raw"] = _node_getter(raw, path, f"{path}:/{APS_C2_RAW_GROUP}", layout="upper")[2]
    if _node(f, APS_ANOMALY_GROUP, path) is not None:
        src._anomaly_group = APS_ANOMALY_GROUP
    if (tt := _node(f, "xpcs/twotime", path)) is not None:
        src.attrs.update({k: v for k, v in _decode_attrs(tt.attrs).items()})
    _aps_bins_and_time(src, f, bins)


def _open_aps_legacy(src, f, dataset):
    path = src.path
    src._setup(_node(f, LEGACY_C2, path), f"{path}:/{LEGACY_C2}", layout="upper")
    src.q, src.phi, bins = _q_of_bins(f, path, src.n_rois, LEGACY_QLIST, LEGACY_BINS, names=src.names)
    _aps_bins_and_time(src, f, bins)


def _aps_bins_and_time(src, f, bins):
    if bins is not None:
        src.attrs["processed_bins"] = bins.astype(np.int64).tolist()
        if bins.size == src.n_rois:
            src.rois = bins.astype(np.int64)
    src.frame_time = _aps_frame_time(f)
    if src.frame_time is not None:
        src.attrs["frame_time"] = src.frame_time


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

    # source: a formats.C2Source (formats imports this module, so the name is not imported here)
    def __init__(self, source: C2Source, path, *, attrs: dict | None = None, keep_raw: bool = True,  # noqa: F821
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


def _aps_writer(src, path, *, attrs, keep_raw, uncertainty, overwrite):
    return APSResultWriter(src, path, attrs=attrs, keep_raw=keep_raw, overwrite=overwrite)
