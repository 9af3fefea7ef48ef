"""How every update kernel reads a gradient element: unscale, clip by value, clip by norm, sign."""

from ._jit import inline


@inline
def effective_grad(g, unscale, lo, hi, coef):
    """``clamp(g * unscale, lo, hi) * coef``; ``coef`` carries the norm clip and ``-1`` for
    ``maximize``. NaN stays NaN (``max``/``min`` keep their first argument when it is NaN)."""
    return min(max(g * unscale, lo), hi) * coef


@inline
def lerp(a, b, w):
    # PyTorch's lerp, which Adam's first moment uses: the form depends on |w| < 0.5.
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1 - w)
