"""Vectorizable elementary functions (and two LLVM intrinsics) for the CPU kernels.

Numba calls libm's ``expf`` one element at a time (there is no SVML here), which makes a softmax
compute-bound. ``exp32`` is branch-free float32 arithmetic that LLVM vectorizes: Cody-Waite range
reduction ``x = k ln2 + r`` with ``|r| <= ln2/2``, a degree-6 polynomial for ``exp(r)`` (Cephes
``expf`` coefficients), and ``2^k`` added to the exponent bits. Compiled with the kernels'
``reassoc`` flag, LLVM folds the two-part ``k ln2`` back into one product (measured: at most
1.1 ulp for ``|x| <= 10``, 4.5 ulp near ``|x| = 87``; 1.0 ulp without the flag). Keeping the
split would take an explicit ``llvm.fma`` and cost 14% of the exp's time. The softmax
exponentiates ``x - max <= 0``, where the larger errors sit on terms below ``e^-30`` next to a
denominator >= 1, so the fold stays. Results below FLT_MIN (``x < -87.34``) are
flushed to 0: an absolute error under 1.2e-38, invisible next to a softmax denominator >= 1.
``fast_exp`` picks ``exp32`` for float32 and libm's correctly rounded ``exp`` for float64, where
accuracy matters more than speed.

``exp32_nonpos`` / ``fast_exp_nonpos`` are the same function for arguments in ``[-inf, 0]`` only
(a softmax's ``x - max``): no overflow or NaN to handle, so fewer instructions per element.
``exp32_nonpos_sub`` keeps subnormal results and NaN, and ``log1p32_unit`` is a division-free
``log1p`` on ``[0, 1]``: the two halves of a BCE's ``log1p(exp(-|x|))``.

``maximum`` is IEEE 754-2019 ``maximum`` (NaN if either argument is NaN, +0 above -0) through
LLVM's ``llvm.maximum`` intrinsic. A row max written as ``m = max(m, x[j])`` compiles to a
compare-and-select chain that LLVM refuses to vectorize without the ``nnan`` flag (which we never
set); ``llvm.maximum`` has exact semantics for every input, so its reduction vectorizes as is.

``prefetch_l2(a, i)`` asks the cache for the line holding ``a[i]`` (``llvm.prefetch``, read,
into L2): a kernel that computes on one row for a while can start loading the next one.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._jit import serial


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


@intrinsic
def select(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select``. A conditional expression becomes a branch
    and a phi node in numba's IR, which LLVM must if-convert before it vectorizes the loop; in a
    function numba inlines at two call sites of one kernel, those also trip numba's SSA check (a
    NumbaIRAssumptionWarning at compile time)."""
    if not (isinstance(cond, types.Boolean) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])

    return a(cond, a, b), codegen

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_X_MAX = np.float32(88.72283935546875)  # ln(FLT_MAX): above, exp overflows to inf
_X_MIN = np.float32(-87.33654475)  # ln(FLT_MIN): below, the result is flushed to 0


@serial
def _exp32_scaled(xc, shift):
    """``exp(xc) 2^shift`` for a float32 ``xc`` and an int32 ``shift`` with ``xc + shift ln 2``
    in ``[_X_MIN, _X_MAX]``: the result's exponent stays normal."""
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
    return _bits_float32(np.int32(_float32_bits(p) + ((np.int32(k) + shift) << 23)))


@serial
def _exp32_reduced(xc):
    """``exp(xc)`` for a float32 ``xc`` already clamped to ``[_X_MIN, _X_MAX]``."""
    return _exp32_scaled(xc, np.int32(0))


@serial
def exp32(x):
    """``exp(x)`` for a float32 ``x``; NaN stays NaN, -inf gives 0, +inf gives inf."""
    # The clamp keeps the int conversion in _exp32_reduced defined for any x.
    y = _exp32_reduced(min(max(x, _X_MIN), _X_MAX))
    y = np.float32(0.0) if x < _X_MIN else y
    y = np.float32(np.inf) if x > _X_MAX else y
    return x if x != x else y


@serial
def exp32_nonpos(x):
    """``exp(x)`` for a float32 ``x`` in ``[-inf, 0]`` (not NaN); -inf gives 0."""
    return select(x < _X_MIN, np.float32(0.0), _exp32_reduced(max(x, _X_MIN)))


_SUB_BELOW = np.float32(-80.0)  # below: the scaled path (its 2^-32 is exact down to FLT_MIN)
_SUB_FLOOR = np.float32(-104.0)  # below ln(2^-150): exp rounds to 0
_SUB_SCALE = np.float32(2.0**-32)


@serial
def exp32_nonpos_sub(x):
    """``exp(x)`` for a float32 ``x`` in ``[-inf, 0]`` or NaN, subnormal results included.

    Below -80 it computes ``exp(x) 2^32`` (32 added to the result's exponent, a normal number)
    and multiplies by ``2^-32``: exact while the result is normal, one rounding into the
    subnormals below FLT_MIN, instead of a flush to 0. The argument reduction sees ``x`` itself,
    so the relative error before that rounding is the exp's own (a few ulp this far out).
    Measured on every float32 in [-87.4, ln FLT_MIN] and 2e5 points below: at most 2.8
    subnormal steps (3.9e-45) from float64 ``exp``, the most near FLT_MIN. (Shifting the
    argument instead, ``exp(x + 32 ln 2)``, rounded ``x + 32 ln 2`` in float32 and was 22 steps
    off there.) A BCE needs these results: its loss at a confident right logit is
    ``pos_weight exp(-|x|)``, which a weight can lift back above FLT_MIN. NaN
    stays NaN.
    """
    small = x < _SUB_BELOW
    y = _exp32_scaled(max(x, _SUB_FLOOR), select(small, np.int32(32), np.int32(0)))
    y = select(small, y * _SUB_SCALE, y)
    return select(x != x, x, y)


# log1p(e) / e = 1 + e Q(e) on [0, 1]: Q of degree 8, fitted to the relative error of
# log1p(e) / e (iteratively reweighted least squares on Chebyshev nodes; largest relative error
# of the float64 fit 3.3e-8). Leading coefficient first.
_LOG1P_Q = (np.float32(0.0053647528402507305), np.float32(-0.030065514147281647),
            np.float32(0.07920409739017487), np.float32(-0.1375376582145691),
            np.float32(0.19153638184070587), np.float32(-0.24857158958911896),
            np.float32(0.333213210105896), np.float32(-0.49999648332595825))
_Q8, _Q7, _Q6, _Q5, _Q4, _Q3, _Q2, _Q1 = _LOG1P_Q


@serial
def log1p32_unit(e):
    """``log1p(e)`` for a float32 ``e`` in ``[0, 1]`` (a BCE's ``exp(-|x|)``), vectorizable.

    ``e (1 + e Q(e))`` with a degree-8 polynomial ``Q``: nine multiply-adds and no division.
    Measured over every float32 in [0, 1] on a grid of 4e5 points and 4e4 geometric points
    down to 1e-45, against float64 ``log1p``: at most 1.50 ulp, 0.32 on average (the
    ``atanh`` series it replaced, with its division ``e / (2 + e)``: 2.60 and 0.51, and 20%
    slower in a BCE). The product form keeps a tiny ``e``'s digits: ``log1p(e)`` rounds to ``e``
    there. NaN stays NaN.
    """
    p = _Q8
    p = p * e + _Q7
    p = p * e + _Q6
    p = p * e + _Q5
    p = p * e + _Q4
    p = p * e + _Q3
    p = p * e + _Q2
    p = p * e + _Q1
    return e + e * (e * p)


def _float32_or_libm(name, float32_fn, libm_fn, doc):
    """A function usable in ``@njit`` code that compiles to ``float32_fn`` for a float32
    argument and to ``libm_fn`` (correctly rounded, scalar) for anything else."""

    def stub(x):
        return libm_fn(x)

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub, inline="always")
    def _impl(x):
        if x == types.float32:
            return lambda x: float32_fn(x)
        return lambda x: libm_fn(x)

    return stub


fast_exp = _float32_or_libm(
    "fast_exp", exp32, math.exp, "``exp(x)``: ``exp32`` for float32, ``math.exp`` otherwise.")
fast_exp_nonpos = _float32_or_libm(
    "fast_exp_nonpos", exp32_nonpos, math.exp,
    "``exp(x)`` for ``x`` in ``[-inf, 0]``: ``exp32_nonpos`` for float32, else ``math.exp``.")
fast_exp_nonpos_sub = _float32_or_libm(
    "fast_exp_nonpos_sub", exp32_nonpos_sub, math.exp,
    "``exp(x)`` for ``x`` in ``[-inf, 0]`` or NaN, subnormals kept: ``exp32_nonpos_sub`` for "
    "float32, else ``math.exp``.")
fast_log1p_unit = _float32_or_libm(
    "fast_log1p_unit", log1p32_unit, math.log1p,
    "``log1p(e)`` for ``e`` in ``[0, 1]``: ``log1p32_unit`` for float32, else ``math.log1p``.")


@intrinsic
def maximum(typingctx, a, b):
    """IEEE 754-2019 ``maximum(a, b)`` of two floats of one type: NaN if either is NaN."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, sig, args):
        lty = context.get_value_type(sig.return_type)
        name = "llvm.maximum.f32" if lty == ir.FloatType() else "llvm.maximum.f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty, lty]),
                                            name)
        return builder.call(fn, args)

    return a(a, b), codegen


def make_prefetch(rw, locality):
    """An intrinsic ``prefetch(arr, idx)``: ``llvm.prefetch`` of the cache line of ``arr[idx]``
    (a 1-D array, an integer index); ``rw`` 0 to read, 1 to write; ``locality`` 3 keeps it in
    L1, 2 in L2. A hint with no effect on results, and no fault for any address."""

    @intrinsic
    def prefetch(typingctx, arr, idx):
        if not (isinstance(arr, types.Array) and arr.ndim == 1
                and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            aty = sig.args[0]
            ary = context.make_array(aty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, [args[1]],
                                           wraparound=False, boundscheck=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                "llvm.prefetch.p0")
            # (address, rw, locality, cache type = 1 data)
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, rw),
                              ir.Constant(i32, locality), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    return prefetch


#: Read-prefetch into L2 (the kernels' only use).
prefetch_l2 = make_prefetch(0, 2)
