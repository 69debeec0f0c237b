"""The one exception type that xpcs-denoise raises for bad input."""


class XPCSInputError(ValueError):
    """Raised for input that xpcs-denoise cannot use: wrong shape, NaN/Inf, too few frames, zero contrast...

    It is a :class:`ValueError`, so ``except ValueError`` also catches it. The message says what is wrong
    and what to do.
    """
