"""The HDF5 helpers every format shares, and the ``hdf5-dataset`` 2TCF format (any dataset named with
``dataset=``). HDF5 through h5py (https://docs.h5py.org), with the beamlines' compression filters (Blosc,
bitshuffle/LZ4, Zstd) registered by hdf5plugin when it is installed: the file's kind from its first bytes, files
opened read-only with clear errors, filters this HDF5 cannot decode named, links resolved with data outside the
file (external links, external raw storage, virtual datasets) refused unless ``allow_external=True``, datasets
found by name or by a list of usual places, attributes encoded and decoded (JSON text for lists, dicts, arrays),
and small files written atomically (:func:`~xpcs_denoise.io.files.atomic_path`).
"""

from __future__ import annotations

import contextvars
import json
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.errors import XPCSInputError
from ..core.validation import check_memory, check_regular_input
from .files import _one_line, atomic_path

_RESERVED = {"format", "format_version", "software", "software_version", "created_utc", "json_attrs"}
_HINT = "give dataset='path/in/file'"


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


def _open_dataset(src, f, dataset):
    """The ``hdf5-dataset`` format of the registry: the (N, N) or (K, N, N) dataset, or group of (N, N) datasets,
    named with ``dataset=``, into the C2Source ``src``."""
    node = _dataset(f, dataset, src.path)
    src.attrs = {**_decode_attrs(node.attrs), **src.attrs, "dataset": node.name}
    src._setup(node, f"{src.path}:{node.name}")
