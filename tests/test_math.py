"""The CPU kernels' own float32 elementary functions (``fastml/kernels/cpu/_math.py``) against
float64 NumPy, in units in the last place of the float32 result, over dense grids of their
whole domains; and their special values."""

import numpy as np
from numba import njit

from fastml.kernels.cpu._jit import FASTMATH
from fastml.kernels.cpu._math import exp32, exp32_nonpos_sub, log1p32_unit


def _elementwise(fn):
    # Compiled with the kernels' flags, so the test sees the code the kernels run (reassociated
    # and contracted to FMA where LLVM chooses).
    @njit(fastmath=FASTMATH, error_model="numpy")
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = fn(x[i])
        return out

    return apply


def _ulps(got, want):
    """|got - want| in ulps of the float32-rounded ``want`` (subnormal ulps below FLT_MIN)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def _grid(lo, hi, n):
    return np.unique(np.linspace(lo, hi, n).astype(np.float32))


def test_log1p32_unit_is_within_two_ulps_on_all_of_its_domain():
    f = _elementwise(log1p32_unit)
    e = np.unique(np.concatenate([_grid(0.0, 1.0, 200_001),
                                  np.geomspace(1e-45, 1.0, 20_001).astype(np.float32)]))
    err = _ulps(f(e), np.log1p(e.astype(np.float64)))
    assert err.max() <= 2.0, (err.max(), e[err.argmax()])
    tiny = np.array([1e-45, 1e-30, 2**-24, 1e-8], dtype=np.float32)
    np.testing.assert_array_equal(f(tiny), tiny)  # log1p(e) rounds to e there
    special = f(np.array([0.0, np.nan], dtype=np.float32))
    assert special[0] == 0.0 and np.isnan(special[1])


def test_exp32_accuracy_and_special_values():
    f = _elementwise(exp32)
    x = _grid(-10.0, 10.0, 200_001)
    assert _ulps(f(x), np.exp(x.astype(np.float64))).max() <= 2.0
    x = _grid(-87.3, 88.7, 200_001)  # the whole normal range: reassociation costs digits there
    assert _ulps(f(x), np.exp(x.astype(np.float64))).max() <= 5.0
    special = f(np.array([-np.inf, -100.0, 100.0, np.inf, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(special[:4], [0.0, 0.0, np.inf, np.inf])
    assert np.isnan(special[4])


def test_exp32_nonpos_sub_keeps_subnormal_results():
    f = _elementwise(exp32_nonpos_sub)
    x = _grid(-87.0, 0.0, 200_001)  # normal results, both sides of the scaled path's -80
    assert _ulps(f(x), np.exp(x.astype(np.float64))).max() <= 5.0
    # results below FLT_MIN, densely up to it (ln FLT_MIN = -87.336545)
    x = np.concatenate([_grid(-103.9, -87.4, 200_001), _grid(-87.4, -87.3365, 100_001)])
    want = np.exp(x.astype(np.float64))
    below = want < np.finfo(np.float32).tiny
    assert below.sum() > 200_000  # (the second grid is every float32 in its range)
    x, want = x[below], want[below]
    # a few ulp of relative error, then one rounding into the subnormals
    assert np.abs(f(x) - want).max() <= 3 * 2.0**-149
    special = f(np.array([-np.inf, -200.0, 0.0, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(special[:3], [0.0, 0.0, 1.0])
    assert np.isnan(special[3])
