"""Layer 2 — everything that needs torch: the CNN-ED ensemble (model, safetensors, model card), the
:class:`~xpcs_denoise.nn.denoiser.Denoiser`, training with one validated config, fine-tuning, anomaly scores.
Imports :mod:`~xpcs_denoise.core` and :mod:`~xpcs_denoise.io`."""
