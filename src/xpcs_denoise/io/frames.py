"""Raw frame stacks for :func:`~xpcs_denoise.core.correlation.two_time` and their ROI label maps: HDF5 (NeXus /
APS-U ``entry/data/data``, APS data exchange ``exchange/data``...), ``.npy``, multi-page TIFF and folders of TIFFs
(tifffile, else Pillow); the raw detector formats (Rigaku ``.bin``, Eiger master files, IMM) are read by
:mod:`xpcs_denoise.io.detectors`. Label maps: APS q-maps (``dynamic_roi_map``) or any integer map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory, is_real_dtype
from .detectors import RIGAKU_FRAME, EigerStack, ImmStack, RigakuSparse, is_eiger_master
from .hdf5 import (
    _check_filters,
    _check_local_dataset,
    _dataset,
    _external,
    _file_kind,
    _h5py,
    _natural_key,
    _open_h5,
    _OpenFile,
    _read,
)
from .npy import _load_npy

#: Frame stacks tried in order when no dataset is named: NeXus / APS-U detector data, APS data exchange.
FRAME_DATASETS = ("entry/data/data", "exchange/data", "entry/instrument/detector/data", "data")
#: ROI maps tried in order: APS-U result and qmap files, legacy qmap files (boost_corr), legacy result files.
LABEL_DATASETS = ("xpcs/qmap/dynamic_roi_map", "qmap/dynamic_roi_map", "data/dynamicMap", "xpcs/dqmap")


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
