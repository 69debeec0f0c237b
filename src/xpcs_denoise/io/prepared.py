"""Prepared datasets (the layout of the paper's ``cned_train.h5``, see :mod:`xpcs_denoise.core.scaling`): read into
memory with checks, written atomically."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..core.errors import XPCSInputError
from ..core.scaling import PreparedDataset, matrix_to_triu, triu_to_matrix
from .files import atomic_path, file_sha256

__all__ = ["load_prepared", "write_prepared"]


def load_prepared(path: str | Path) -> PreparedDataset:
    """Read a prepared dataset (the ``cned_train.h5`` layout) into memory; checks shapes and values."""
    path = Path(path)
    if not path.is_file():
        raise XPCSInputError(f"prepared dataset {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("inputs_triu", "targets_triu", "target_index") if k not in f]
            if missing:
                raise XPCSInputError(
                    f"{path} lacks dataset(s) {missing}; a prepared dataset needs inputs_triu, targets_triu "
                    "and target_index (see xpcs_denoise.io.prepared)"
                )
            inputs_tri = f["inputs_triu"][...].astype(np.float32)
            targets_tri = f["targets_triu"][...].astype(np.float32)
            target_index = f["target_index"][...].astype(np.int32)
            in_names = [s.decode() for s in f["input_names"][...]] if "input_names" in f else []
            tg_names = [s.decode() for s in f["target_names"][...]] if "target_names" in f else []
    except OSError as exc:
        raise XPCSInputError(f"cannot read {path} as HDF5 ({exc}); is the file complete?") from exc
    if inputs_tri.ndim != 2 or targets_tri.ndim != 2 or inputs_tri.shape[1] != targets_tri.shape[1]:
        raise XPCSInputError(f"{path}: inputs_triu and targets_triu must be 2-D with the same row length")
    if target_index.shape != (inputs_tri.shape[0],) or target_index.min(initial=0) < 0 or (
        target_index.max(initial=0) >= targets_tri.shape[0]
    ):
        raise XPCSInputError(f"{path}: target_index must have one valid target per input")
    if not (np.all(np.isfinite(inputs_tri)) and np.all(np.isfinite(targets_tri))):
        raise XPCSInputError(f"{path} holds NaN or Inf values; prepared data must be finite")
    return PreparedDataset(
        inputs=triu_to_matrix(inputs_tri),
        targets=triu_to_matrix(targets_tri),
        target_index=target_index,
        input_names=in_names,
        target_names=tg_names,
        source_sha256=file_sha256(path),
    )


def write_prepared(path: str | Path, data: PreparedDataset, *, attrs: dict | None = None) -> Path:
    """Write a prepared dataset in the ``cned_train.h5`` layout (atomically: temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp, h5py.File(tmp, "w") as f:
        f["inputs_triu"] = matrix_to_triu(data.inputs).astype(np.float32)
        f["targets_triu"] = matrix_to_triu(data.targets).astype(np.float32)
        f["target_index"] = np.asarray(data.target_index, dtype=np.int32)
        if data.input_names:
            f["input_names"] = np.array([s.encode() for s in data.input_names])
        if data.target_names:
            f["target_names"] = np.array([s.encode() for s in data.target_names])
        f.attrs["size"] = data.size
        f.attrs["layout"] = "upper triangles in numpy.triu_indices(size) order; model units (C2-1)/beta+1"
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path
