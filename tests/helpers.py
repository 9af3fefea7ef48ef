"""Helpers shared by the tests: moving arrays to a device and back, and comparing results.

``assert_close`` compares a result with a float64 reference elementwise, ``|got - want| <= atol +
rtol |want|``, and on failure says how many elements differ, where, by how much, and which NaN or
Inf do not match. Tolerances are counted in units of the result dtype's machine epsilon
(``tol(dtype)``), so one test body serves float32 and float64.
"""

import math
import os

import numpy as np
import pytest

#: Default relative tolerance, in machine epsilons of the result dtype.
ULPS = 8

#: Devices for tests on large arrays. The simulator runs every CUDA thread as a Python thread
#: over a grid capped at 2 blocks of 32 threads, which arrays of a few hundred elements already
#: cover (several blocks, several grid-stride steps); large arrays there only cost minutes.
LARGE_DEVICES = ["cpu", "cuda"] if os.environ.get("FASTML_REAL_GPU") == "1" else ["cpu"]


def both_ce_kernels(test):
    """Run ``test`` with both CUDA cross-entropy kernels, in the simulator too (the
    ``ce_kernel`` fixture of tests/conftest.py)."""
    both = pytest.mark.parametrize("ce_kernel", ["stream", "rows"], indirect=True)
    return pytest.mark.usefixtures("ce_kernel")(both(test))


def to_device(a, device):
    """A copy of a NumPy array where ``device`` says (None passes through).

    A copy on the CPU too, so an in-place call never changes the test's own data."""
    if a is None:
        return None
    if device == "cpu":
        return np.array(a, copy=True)
    from numba import cuda

    return cuda.to_device(np.array(a, order="C"))  # (ascontiguousarray would make 0-d 1-d)


def to_host(a):
    """A NumPy copy of a CPU array, device array or NumPy scalar."""
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.array(a)


def tol(dtype, ulps=ULPS):
    """``ulps`` machine epsilons of ``dtype``: a relative tolerance a few roundings wide."""
    return ulps * float(np.finfo(dtype).eps)


def sum_tol(dtype, n_terms, ulps=ULPS):
    """Relative tolerance of a float64-accumulated sum of ``n_terms`` terms in ``dtype``.

    The kernels accumulate in float64 (STYLE habit 7), so the summation adds only
    ``~eps64 sqrt(n)`` (a generous multiple of the random-walk growth of rounding errors) to the
    per-term error; a float32 accumulator would blow this bound for float32 inputs.
    """
    return tol(dtype, ulps) + 4.0 * (1.0 + math.sqrt(n_terms)) * float(np.finfo(np.float64).eps)


def _where(mask, limit=5):
    idx = np.argwhere(mask)
    shown = [tuple(int(k) for k in row) if len(row) != 1 else int(row[0]) for row in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{shown}{more}"


def assert_close(got, want, *, rtol, atol=0.0, name="result"):
    """Assert ``|got - want| <= atol + rtol |want|`` elementwise, NaN and Inf matching exactly.

    Parameters
    ----------
    got : array or scalar
        The result under test (any float dtype; CPU arrays, device arrays via ``to_host``).
    want : array or scalar
        The float64 reference. It is first rounded to ``got``'s dtype, so a float32 result is
        measured against the float32 value nearest the exact one (an overflow to Inf included).
    rtol : float
        Relative tolerance, usually ``tol(dtype)``.
    atol : float or array broadcastable to ``want``
        Absolute tolerance; an array gives each element its own (an error bound that depends on
        the magnitude of intermediate terms, not only on the result). The smallest normal number
        of ``got``'s dtype is always added, so results that underflow to subnormals or zero pass.
    name : str
        Named in the failure message.
    """
    got = to_host(got)
    dtype = got.dtype if got.dtype.kind == "f" else np.dtype(np.float64)
    want64 = np.asarray(want, dtype=np.float64)
    with np.errstate(over="ignore"):
        want_r = want64.astype(dtype).astype(np.float64)
    got64 = got.astype(np.float64)
    if got64.shape != want_r.shape:
        raise AssertionError(f"{name}: shape {got64.shape}, want {want_r.shape}")
    atol = np.broadcast_to(np.asarray(atol, dtype=np.float64), want_r.shape)
    atol = atol + float(np.finfo(dtype).tiny)

    problems = []
    nan_got, nan_want = np.isnan(got64), np.isnan(want_r)
    if (nan_got != nan_want).any():
        problems.append(
            f"NaN mismatch at {int((nan_got != nan_want).sum())} elements: "
            f"NaN where finite wanted at {_where(nan_got & ~nan_want)}, "
            f"finite where NaN wanted at {_where(nan_want & ~nan_got)}"
        )
    inf_got, inf_want = np.isinf(got64), np.isinf(want_r)
    inf_bad = (inf_got | inf_want) & ~nan_got & ~nan_want & (got64 != want_r)
    if inf_bad.any():
        problems.append(f"Inf mismatch at {int(inf_bad.sum())} elements: {_where(inf_bad)}")

    finite = np.isfinite(got64) & np.isfinite(want_r)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(got64 - want_r), 0.0)
    bad = finite & (err > atol + rtol * np.abs(want_r))
    if bad.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(bad, err / np.abs(want_r), 0.0)
        worst = np.unravel_index(np.argmax(np.where(bad, err - atol, -np.inf)), err.shape)
        worst_t = tuple(int(k) for k in worst)
        problems.append(
            f"{int(bad.sum())} of {err.size} elements differ beyond atol + rtol|want| "
            f"(rtol {rtol:.3g}) at {_where(bad)}; worst at {worst_t}: got {got64[worst]!r}, "
            f"want {want_r[worst]!r}, abs err {err[worst]:.3g} (atol {atol[worst]:.3g}), "
            f"max rel err {np.nanmax(rel):.3g}"
        )
    if problems:
        raise AssertionError(f"{name} ({dtype}): " + "; ".join(problems))


def assert_bitwise_equal(got, want, name="result"):
    """Assert the very same bits (so 0.0 and -0.0 differ, and so do two NaN payloads)."""
    got, want = to_host(got), to_host(want)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, want {want.dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape}, want {want.shape}"
    bits = np.dtype(f"u{got.dtype.itemsize}")
    diff = got.view(bits) != want.view(bits)
    if diff.any():
        first = tuple(int(k) for k in np.argwhere(diff)[0])
        raise AssertionError(
            f"{name}: {int(diff.sum())} of {diff.size} elements differ at {_where(diff)}; "
            f"first at {first}: got {got[first]!r}, want {want[first]!r}"
        )


# Optimizer trajectories --------------------------------------------------------------------------

#: Odd parameter shapes: one element, a non-power-of-two matrix, a prime, a size-1 axis.
PARAM_SHAPES = [(1,), (7, 5), (13,), (3, 1, 2)]


def make_trajectory(shapes, steps, dtype, seed=0, drift=0.5):
    """Initial parameters and ``steps`` gradients: lists of ``dtype`` arrays of ``shapes``.

    Each gradient is a fixed per-element drift plus unit noise, so first moments do not cancel
    to zero and centered second moments stay well away from zero. The gradients do not depend
    on the parameters: every implementation sees the very same values.
    """
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    mean = [drift * rng.standard_normal(s) for s in shapes]
    grads = [[(m + rng.standard_normal(m.shape)).astype(dtype) for m in mean]
             for _ in range(steps)]
    return params, grads


def assert_trajectory_close(got, want, bound, *, implementations=1, name="params"):
    """Arrays at the end of an optimizer trajectory against the float64 reference.

    ``bound`` is the reference's per-element error scale (``tests/reference/optim.py``: the sum
    over steps of ``|x_t| + |x_t - x_{t-1}|``); each step adds at most a few roundings of that
    size, so ``|got - want| <= tol(dtype) * bound``. ``implementations=2`` when ``want`` is
    another rounded implementation (PyTorch) rather than the float64 reference: both errors add.
    """
    assert len(got) == len(want), f"{name}: {len(got)} arrays, want {len(want)}"
    for i, (g, w, b) in enumerate(zip(got, want, bound, strict=True)):
        g, w = to_host(g), np.asarray(w)
        assert_close(g.reshape(w.shape), w, rtol=0.0, atol=implementations * tol(g.dtype) * b,
                     name=f"{name}[{i}]")
