"""The one number every default window comes from: the window (frames) of the shipped ensemble. Functions that
are given a model take its size (``Denoiser.size``) instead; this is only the default where none is given.
Imports nothing, so that the command line can read it at start-up."""

#: Window n of the shipped CNN-ED ensemble (its card's ``architecture.size``): n×n crops, lags 1..n − 1.
WINDOW = 50
