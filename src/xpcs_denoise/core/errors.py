"""The one exception type that xpcs-denoise raises for bad input, and its warning for skipped 2TCFs."""


class XPCSInputError(ValueError):
    """Raised for input that xpcs-denoise cannot use: wrong shape, NaN/Inf, too few frames, zero contrast...

    It is a :class:`ValueError`, so ``except ValueError`` also catches it. The message says what is wrong
    and what to do.
    """


class XPCSNoContrastWarning(UserWarning):
    """Issued when some 2TCFs of a batch have no contrast and are returned unchanged, not denoised."""
