"""How every update kernel reads a gradient element: unscale, clip by value, clip by norm, sign."""

from ..step_plan import CLIP_COEF, UNSCALE
from ._jit import inline


@inline
def grad_coefs(p, ctl, maximize, clip_value):
    """``(unscale, lo, hi, coef)`` for :func:`effective_grad` from this step's plan, in the dtype
    of ``p`` (float64 constants would turn a float32 loop into float64 vectors of half width)."""
    dt = p.dtype.type
    hi = dt(clip_value)
    coef = dt(-ctl[CLIP_COEF] if maximize else ctl[CLIP_COEF])
    return dt(ctl[UNSCALE]), -hi, hi, coef


@inline
def effective_grad(g, unscale, lo, hi, coef):
    """``clamp(g * unscale, lo, hi) * coef``; ``coef`` carries the norm clip and ``-1`` for
    ``maximize``. NaN stays NaN (``max``/``min`` keep their first argument when it is NaN)."""
    return min(max(g * unscale, lo), hi) * coef


@inline
def lerp(a, b, w, one_minus_w):
    """PyTorch's lerp: ``a + w (b - a)`` for ``|w| < 0.5``, else ``b - (b - a)(1 - w)``.

    Both weights come in the parameter dtype (``one_minus_w = dt(1) - w``, rounded as PyTorch
    rounds it): a literal ``1 - w`` would be float64 and make the whole update float64.
    """
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * one_minus_w
