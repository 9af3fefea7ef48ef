"""Vectorizable elementary functions for the CPU kernels.

Numba calls libm's ``expf`` one element at a time (there is no SVML here), which makes a softmax
compute-bound. ``exp32`` is branch-free float32 arithmetic that LLVM vectorizes: Cody-Waite range
reduction ``x = k ln2 + r`` with ``|r| <= ln2/2``, a degree-6 polynomial for ``exp(r)`` (Cephes
``expf`` coefficients; within 3 ulp of the exact result), and ``2^k`` added to the exponent
bits. Results below FLT_MIN (``x < -87.34``) are flushed to 0: an absolute error under 1.2e-38,
invisible next to a softmax denominator >= 1. ``fast_exp`` picks ``exp32`` for float32 and libm's
correctly rounded ``exp`` for float64, where accuracy matters more than speed.
"""

import math

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from ._jit import inline


def _bitcast(src, dst):
    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    return cast


# Reinterpret the bits (no conversion).
_float32_bits = _bitcast(types.float32, types.int32)
_bits_float32 = _bitcast(types.int32, types.float32)

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_X_MAX = np.float32(88.72283935546875)  # ln(FLT_MAX): above, exp overflows to inf
_X_MIN = np.float32(-87.33654475)  # ln(FLT_MIN): below, the result is flushed to 0


@inline
def exp32(x):
    """``exp(x)`` for a float32 ``x``; NaN stays NaN, -inf gives 0, +inf gives inf."""
    xc = min(max(x, _X_MIN), _X_MAX)  # keeps the int conversion below defined for any x
    k = np.floor(xc * _LOG2E + np.float32(0.5))
    r = xc - k * _LN2_HI - k * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    # Multiply by 2^k by adding k to the exponent field: an integer add, so no reassociation
    # can fold it into an overflowing 2^k product. Within [_X_MIN, _X_MAX] the sum stays a normal
    # exponent. numba widens int32 arithmetic to int64: narrow back before reinterpreting.
    y = _bits_float32(np.int32(_float32_bits(p) + (np.int32(k) << 23)))
    y = np.float32(0.0) if x < _X_MIN else y
    y = np.float32(np.inf) if x > _X_MAX else y
    return x if x != x else y


def fast_exp(x):
    """``exp(x)``: ``exp32`` for float32, ``math.exp`` otherwise (usable in ``@njit`` code)."""
    return math.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)
