"""Layer 1 — files: the atomic writer and file hashes (:mod:`.files`), one reader/writer per format — 2TCFs, frame
stacks and label maps in ours, APS 8-ID-I, .npy, any HDF5 and TIFF folders — behind the one registry of 2TCF
formats and its entry points (:mod:`.formats`; a module per format: :mod:`.native`, :mod:`.aps`, :mod:`.npy`,
:mod:`.hdf5`, :mod:`.frames` with :mod:`.detectors`, and what they share in :mod:`.c2base`), prepared training
sets (:mod:`.prepared`). Imports only :mod:`xpcs_denoise.core`."""

from .files import atomic_path, file_sha256, write_csv  # noqa: F401
from .formats import *  # noqa: F403  (the public names of xpcs_denoise.io, as documented in the README)
from .formats import __all__ as _formats_all
from .prepared import load_prepared, write_prepared  # noqa: F401

__all__ = [*_formats_all, "file_sha256", "load_prepared", "write_prepared"]
