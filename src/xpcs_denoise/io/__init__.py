"""Layer 1 — files: the atomic writer and one reader/writer per format (ours, APS 8-ID-I, .npy, any HDF5, TIFF
frame folders, prepared training sets). Imports only :mod:`xpcs_denoise.core`."""

from .formats import *  # noqa: F403  (the public names of xpcs_denoise.io, as documented in the README)
from .formats import __all__  # noqa: F401
