"""Layer 3 — arrays in, arrays out: :func:`~xpcs_denoise.restoration.denoise.denoise` and every method (the
ensemble and its classical peers) behind one registry. Imports core, io, nn."""
