"""Raw detector formats of the beamlines this tool serves, read lazily as (T, H, W) frame stacks for
:func:`~xpcs_denoise.core.correlation.two_time`, one handler per format (as boost_corr keeps one per format):

- **Rigaku sparse** ``.bin`` (APS 8-ID-I): little-endian 64-bit words, one per pixel that saw photons in a frame:
  bits 40–63 the frame, bits 16–36 the pixel (row-major index, ``row × W + column``), bits 0–11 the count
  (boost_corr's ``convert_sparse``). The frame size is not in the file: 512 × 1024 for the Rigaku 500K, or
  ``frame_shape=``. Held as one compressed-sparse-column matrix (12 bytes a photon event); a block of pixels is
  made dense only when read.
- **Eiger master/data** HDF5 (NSLS-II CHX): a master file whose ``entry/data/data_000001…`` are external links to
  data files; the links are followed into the master's own folder only, never elsewhere, and the data files'
  (n, H, W) datasets are read as one stack, block by block.
- **IMM** (legacy APS 8-ID-I, the Madden/XSD-DET layout that boost_corr and pyCHX read): frame after frame, a
  1024-byte little-endian header then the data. Header fields used (byte offsets): compression (4; 6 = sparse),
  rows (108), cols (112), bytes per value (116), elapsed seconds (128, float64), dlen (152, values stored).
  Uncompressed: rows × cols values; sparse: dlen int32 pixel indices (row-major) then dlen values. Frames are
  indexed once by their headers and read when sliced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory

__all__ = ["RigakuSparse", "EigerStack", "ImmStack", "RIGAKU_FRAME", "is_eiger_master"]

#: Frame size (rows, columns) of the Rigaku 500K, the detector that writes the sparse ``.bin`` files.
RIGAKU_FRAME = (512, 1024)


def _row_block(key, shape):
    """(frames, rows, columns) slices of a read ``key`` on a (T, H, W) stack: ``...``, or slices along the axes."""
    if key is Ellipsis or key == ():
        key = (slice(None),)
    if not isinstance(key, tuple):
        key = (key,)
    key = key + (slice(None),) * (3 - len(key))
    if len(key) != 3 or not all(isinstance(k, slice) for k in key):
        raise XPCSInputError(f"detector frames are read by slices along (frames, rows, columns); got {key!r}")
    return tuple(range(*k.indices(n)) for k, n in zip(key, shape, strict=True))


class RigakuSparse:
    """A Rigaku sparse ``.bin`` file as a lazy (T, H, W) uint16 stack (see the module's notes)."""

    def __init__(self, path, frame_shape=RIGAKU_FRAME):
        from scipy import sparse

        path = Path(path)
        h, w = (int(v) for v in frame_shape)
        if h < 1 or w < 1:
            raise XPCSInputError(f"frame_shape must be two sizes >= 1; got {frame_shape}")
        size = path.stat().st_size
        if size == 0 or size % 8:
            raise XPCSInputError(f"{path} is not a Rigaku sparse file: {size} bytes is not a whole number of "
                                 "64-bit words")
        check_memory(size // 8 * 24, f"reading {path} ({size // 8} photon events)")
        words = np.fromfile(path, dtype="<u8")
        frame = (words >> np.uint64(40)).astype(np.int64)
        pixel = ((words >> np.uint64(16)) & np.uint64(2**21 - 1)).astype(np.int64)
        count = (words & np.uint64(2**12 - 1)).astype(np.uint16)
        del words
        if pixel.max() >= h * w:
            raise XPCSInputError(f"{path}: pixel index {int(pixel.max())} is beyond a {h}×{w} frame; give the "
                                 "detector's frame_shape")
        self.shape = (int(frame.max()) + 1, h, w)
        self.dtype = np.dtype(np.uint16)
        self.path = path
        # pixels as columns: a block of pixels is a slice of columns (duplicates, if any, are summed)
        self._m = sparse.csc_matrix((count, (frame, pixel)), shape=(self.shape[0], h * w), dtype=np.uint32)

    def __getitem__(self, key) -> np.ndarray:
        t, r, c = _row_block(key, self.shape)
        h, w = self.shape[1:]
        if not r or r.step != 1:
            raise XPCSInputError("Rigaku frames are read by blocks of consecutive rows")
        block = self._m[:, r.start * w:(r.stop) * w].toarray().reshape(self.shape[0], len(r), w)
        return block[np.asarray(t)][:, :, np.asarray(c)].astype(self.dtype)

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)


def is_eiger_master(f) -> bool:
    """Whether an open HDF5 file is an Eiger master: ``entry/data`` holding ``data_000001``-style links."""
    import h5py

    grp = f.get("entry/data")
    if not isinstance(grp, h5py.Group):
        return False
    names = [n for n in grp if n.startswith("data_")]
    return bool(names) and any(isinstance(grp.get(n, getlink=True), h5py.ExternalLink) for n in names)


class EigerStack:
    """The frames of an Eiger master file as one lazy (T, H, W) stack across its data files (module notes)."""

    def __init__(self, path, f):
        import h5py

        self.path = Path(path)
        folder = self.path.resolve().parent
        grp = f["entry/data"]
        self._files, self._dsets = [], []
        for name in sorted(n for n in grp if n.startswith("data_")):
            link = grp.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                target = (folder / link.filename).resolve()
                if Path(link.filename).name != link.filename or target.parent != folder:
                    raise XPCSInputError(f"{self.path}: {name} links to {link.filename}, outside the master's folder; "
                                         "only data files beside the master are read")
                if not target.is_file():
                    raise XPCSInputError(f"{self.path}: data file {link.filename} of {name} is missing; copy it beside "
                                         "the master")
                try:
                    df = h5py.File(target, "r")
                except OSError as exc:
                    raise XPCSInputError(f"cannot open {target} as HDF5 ({' '.join(str(exc).split())[:120]}); "
                                         "the data file is corrupt or truncated") from exc
                self._files.append(df)
                node = df.get(link.path)
            else:
                node = grp[name]
            if not isinstance(node, h5py.Dataset) or node.ndim != 3:
                self.close()
                raise XPCSInputError(f"{self.path}: {name} is not a (n, H, W) frame dataset")
            self._dsets.append(node)
        if not self._dsets:
            raise XPCSInputError(f"{self.path}: no data_… datasets under entry/data")
        frame = self._dsets[0].shape[1:]
        if any(d.shape[1:] != frame for d in self._dsets):
            self.close()
            raise XPCSInputError(f"{self.path}: the data files hold frames of different sizes")
        self.shape = (sum(d.shape[0] for d in self._dsets), *frame)
        self.dtype = np.dtype(self._dsets[0].dtype)

    def __getitem__(self, key) -> np.ndarray:
        t, r, c = _row_block(key, self.shape)
        if not r or r.step != 1 or not c or c.step != 1:
            raise XPCSInputError("Eiger frames are read by blocks of consecutive rows and columns")
        parts = [np.asarray(d[:, r.start:r.stop, c.start:c.stop]) for d in self._dsets]
        return np.concatenate(parts)[np.asarray(t)]

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def close(self):
        for df in self._files:
            df.close()
        self._files = []


#: IMM: header size, the value of ``compression`` that means sparse, and the value types by byte width.
IMM_HEADER = 1024
IMM_SPARSE = 6
_IMM_TYPES = {1: "<u1", 2: "<u2", 4: "<u4"}


class ImmStack:
    """An IMM file (legacy APS 8-ID-I) as a lazy (T, H, W) stack (see the module's notes); ``elapsed`` holds each
    frame's time stamp (s) from its header."""

    def __init__(self, path):
        self.path = Path(path)
        size = self.path.stat().st_size
        offsets, sparse, lengths, elapsed = [], [], [], []
        shape = dtype = None
        with open(self.path, "rb") as f:
            pos = 0
            while pos < size:
                f.seek(pos)
                head = f.read(IMM_HEADER)
                if len(head) < IMM_HEADER:
                    raise XPCSInputError(f"{self.path}: frame {len(offsets)} has a torn header ({len(head)} of "
                                         f"{IMM_HEADER} bytes): the file is truncated")
                comp, rows, cols, width, dlen = (int(np.frombuffer(head, "<i4", 1, o)[0])
                                                 for o in (4, 108, 112, 116, 152))
                if rows < 1 or cols < 1 or width not in _IMM_TYPES or dlen < 0:
                    raise XPCSInputError(f"{self.path}: frame {len(offsets)}'s header is not an IMM header (rows "
                                         f"{rows}, cols {cols}, {width} bytes per value)")
                if shape is None:
                    shape, dtype = (rows, cols), np.dtype(_IMM_TYPES[width])
                elif (rows, cols) != shape or np.dtype(_IMM_TYPES[width]) != dtype:
                    raise XPCSInputError(f"{self.path}: frame {len(offsets)} is {rows}×{cols} of {width}-byte values,"
                                         f" unlike the first ({shape[0]}×{shape[1]}, {dtype.itemsize})")
                is_sparse = comp == IMM_SPARSE
                n = dlen * (4 + width) if is_sparse else rows * cols * width
                if pos + IMM_HEADER + n > size:
                    raise XPCSInputError(f"{self.path}: frame {len(offsets)} needs {n} bytes of data beyond the "
                                         "end of the file: the file is truncated")
                offsets.append(pos + IMM_HEADER)
                sparse.append(is_sparse)
                lengths.append(dlen)
                elapsed.append(float(np.frombuffer(head, "<f8", 1, 128)[0]))
                pos += IMM_HEADER + n
        if not offsets:
            raise XPCSInputError(f"{self.path} is empty: no IMM frames")
        self.shape = (len(offsets), *shape)
        self.dtype = dtype
        self.elapsed = np.array(elapsed)
        self._offsets, self._sparse, self._dlen = offsets, sparse, lengths

    def _frame(self, f, i) -> np.ndarray:
        h, w = self.shape[1:]
        f.seek(self._offsets[i])
        if not self._sparse[i]:
            return np.fromfile(f, self.dtype, h * w).reshape(h, w)
        n = self._dlen[i]
        idx = np.fromfile(f, "<i4", n)
        val = np.fromfile(f, self.dtype, n)
        if n and (idx.min() < 0 or idx.max() >= h * w):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise XPCSInputError(f"{self.path}: frame {i} holds pixel index {bad} beyond its {h}×{w} frame")
        out = np.zeros(h * w, np.int64)
        np.add.at(out, idx, val)  # a pixel listed twice: its counts add up
        top = np.iinfo(self.dtype).max
        if n and out.max() > top:
            raise XPCSInputError(f"{self.path}: frame {i}'s repeated pixel {int(out.argmax())} sums to "
                                 f"{int(out.max())} counts, more than its {self.dtype.itemsize}-byte values hold "
                                 f"({top}); the file is damaged")
        return out.astype(self.dtype).reshape(h, w)

    def __getitem__(self, key) -> np.ndarray:
        t, r, c = _row_block(key, self.shape)
        check_memory(len(t) * len(r) * len(c) * self.dtype.itemsize, f"reading {self.path}")
        out = np.empty((len(t), len(r), len(c)), self.dtype)
        with open(self.path, "rb") as f:
            for j, i in enumerate(t):
                out[j] = self._frame(f, i)[np.asarray(r)][:, np.asarray(c)]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[...]
        return out if dtype is None else out.astype(dtype)
