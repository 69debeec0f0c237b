"""Layer 4 — what the 2TCFs mean: fits with honest errors (uncertainty), q-dependence, ageing, evaluation
metrics, the latent study, plots. Imports core, io, nn, restoration."""
