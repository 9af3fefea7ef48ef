"""The CPU ``*_tensors`` kernels: many arrays in one call (``fastml.kernels.cpu._tensors``).

Each must do to every array what its one-array kernel does, to round-off (the optimizer and
guard tests hold those to the float64 references and to PyTorch), whatever the sizes (empty, one
element, across chunk edges), in float32 and float64, with NaN/Inf in the gradients; and the
optimizers and guards must give the same results through them for lists of mixed dtypes.
"""

import importlib
import math

import numba
import numpy as np
import pytest

import fastml
from fastml.errors import ShapeError
from fastml.kernels import cpu
from fastml.kernels.cpu import _tensors as T
from fastml.kernels.cpu._jit import CHUNK
from fastml.kernels.step_plan import (
    APPLIED,
    C0,
    C1,
    CLIP_COEF,
    CTL_SIZE,
    LR,
    NONFINITE,
    SCALE,
    SUMSQ,
    UNSCALE,
)

from .helpers import assert_bitwise_equal, assert_close

DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 7, CHUNK - 1, CHUNK + 5, 2 * CHUNK + 3]
_grad_stats = importlib.import_module("fastml.kernels.cpu.grad_stats")


def _ctl(scale=1.0, clip_coef=1.0, first=False):
    """A step plan's output for an applied step (unscale, clip, bias corrections)."""
    ctl = np.zeros(CTL_SIZE)
    ctl[APPLIED] = 1.0
    ctl[SCALE] = scale
    ctl[UNSCALE] = 1.0 / scale
    ctl[CLIP_COEF] = clip_coef
    ctl[LR] = 0.01
    ctl[C0] = 1.0 if first else 0.013
    ctl[C1] = 0.21
    return ctl


def _arrays(rng, dtype, sizes=SIZES, scale=1.0):
    return [(scale * rng.standard_normal(n)).astype(dtype) for n in sizes]


def test_chunk_table_covers_every_element_once_in_order():
    sizes = [5, 0, 2 * CHUNK + 3, 1, CHUNK]
    table = T.chunk_table(sizes)
    assert table.dtype == np.int64 and table.shape[1] == 4
    state = np.cumsum([0, *sizes])
    seen = [np.zeros(n, int) for n in sizes]
    for t, start, stop, at in table:
        assert 0 < stop - start <= CHUNK
        assert at == state[t] + start  # the state lies tensor after tensor
        seen[t][start:stop] += 1
    assert all((s == 1).all() for s in seen)
    order = [tuple(r) for r in table[:, :2]]
    assert order == sorted(order)  # tensor after tensor, each from its start
    assert T.chunk_table([]).shape == (0, 4)
    assert T.chunk_table([0, 0]).shape == (0, 4)


def test_addresses_are_the_arrays_first_elements():
    a = np.arange(10.0)
    assert list(T.addresses([a, a[3:]])) == [a.ctypes.data, a.ctypes.data + 24]


# name: (one-array kernel, number of state buffers, option sets: (state used?, hyper-parameters))
RULES = {
    "sgd": (cpu.sgd_step, cpu.sgd_step_tensors, [
        ((True,), (0.9, 0.1, False, 0.01, False, math.inf)),
        ((True,), (0.9, 0.0, True, 0.0, True, 0.5)),
        ((False,), (0.0, 0.0, False, 0.01, False, math.inf)),
    ]),
    "adam": (cpu.adam_step, cpu.adam_step_tensors, [
        ((True, True, False), (0.9, 0.999, 1e-8, 0.0, False, False, False, math.inf)),
        ((True, True, True), (0.8, 0.99, 1e-6, 0.05, False, True, True, 0.5)),
        ((True, True, True), (0.9, 0.999, 1e-8, 0.05, True, True, False, math.inf)),
    ]),
    "rmsprop": (cpu.rmsprop_step, cpu.rmsprop_step_tensors, [
        ((True, False, False), (0.99, 1e-8, 0.0, 0.0, False, False, math.inf)),
        ((True, True, True), (0.9, 1e-6, 0.01, 0.5, True, True, 0.5)),
    ]),
    "adagrad": (cpu.adagrad_step, cpu.adagrad_step_tensors, [
        ((True,), (1e-10, 0.0, False, math.inf)),
        ((True,), (1e-6, 0.01, True, 0.5)),
    ]),
}
CASES = [(rule, k) for rule, (_, _, options) in RULES.items() for k in range(len(options))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule, k", CASES)
@pytest.mark.parametrize("scale, clip_coef", [(1.0, 1.0), (8.0, 0.3)])
def test_update_over_many_arrays_equals_one_call_per_array(rule, k, dtype, scale, clip_coef):
    """Parameters and every state buffer, after two steps (the first of SGD's momentum
    initialises its buffer), with NaN and Inf among the gradients, to round-off: both kernels
    run the same chunk function, but LLVM compiles it into each on its own and may contract
    ``p - lr d`` into one FMA in one and not in the other. Clean-clone CI runs found SGD with
    weight decay a few ulps of ``lr d`` apart, which is more than a few ulps of a ``p`` near
    0, so the bound is a few ulps of the array's largest entry. A chunk left out, run twice or
    given the wrong state would be off by a whole update, ``lr d``, far outside it."""
    one, many, options = RULES[rule]
    used, hyper = options[k]
    rng = np.random.default_rng(len(CASES) * k + len(rule))
    params = _arrays(rng, dtype)
    grads = _arrays(rng, dtype, scale=scale)
    grads[2][3], grads[4][CHUNK + 1] = np.nan, -np.inf
    states = [_arrays(rng, dtype, scale=0.0) for _ in used]
    for s in states:  # positive second moments, as a run leaves them
        for a in s:
            a[...] = np.abs(rng.standard_normal(a.size)) + 0.5
    mine = [p.copy() for p in params], [[a.copy() for a in s] for s in states]
    flat = [np.concatenate(s) if u else np.zeros(0, dtype)
            for s, u in zip(mine[1], used, strict=True)]
    chunks = T.chunk_table(SIZES)
    for first in (True, False):
        ctl = _ctl(scale, clip_coef, first)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            bufs = [s[i] if u else p[:0] for s, u in zip(states, used, strict=True)]
            one(p, g, *bufs, ctl, *hyper)
        many(chunks, T.addresses(mine[0]), T.addresses(grads), *flat, ctl, *hyper)
    eps = np.finfo(dtype).eps

    def close(got, want, name):
        largest = np.max(np.abs(want[np.isfinite(want)]), initial=0.0)
        assert_close(got, want, rtol=4 * eps, atol=8 * eps * largest, name=name)

    for i, (want, got) in enumerate(zip(params, mine[0], strict=True)):
        close(got, want, f"{rule} params[{i}]")
    bounds = np.cumsum([0, *SIZES])
    for s, f, u in zip(states, flat, used, strict=True):
        if not u:
            continue
        for i, want in enumerate(s):
            close(f[bounds[i]:bounds[i + 1]], want, f"{rule} state[{i}]")


@pytest.mark.parametrize("rule", list(RULES))
def test_a_skipped_step_touches_no_array(rule):
    _, many, options = RULES[rule]
    used, hyper = options[0]
    rng = np.random.default_rng(3)
    params = _arrays(rng, np.float32)
    before = [p.copy() for p in params]
    flat = [np.ones(sum(SIZES), np.float32) if u else np.zeros(0, np.float32) for u in used]
    ctl = _ctl()
    ctl[APPLIED] = 0.0
    many(T.chunk_table(SIZES), T.addresses(params), T.addresses(_arrays(rng, np.float32)),
         *flat, ctl, *hyper)
    for p, b in zip(params, before, strict=True):
        assert_bitwise_equal(p, b, rule)
    assert all((f == 1).all() for f in flat)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale, clip_value", [(1.0, math.inf), (4.0, math.inf), (1.0, 0.5)])
def test_guard_pass_over_many_arrays(dtype, scale, clip_value):
    """The statistics of one call equal those of one call per array: the sum of squares to
    round-off (each kernel's reduction is vectorized on its own), the non-finite count
    exactly; and they do not depend on the thread count."""
    rng = np.random.default_rng(11)
    grads = _arrays(rng, dtype)
    ctl = _ctl(scale)
    chunks, addr = T.chunk_table(SIZES), T.addresses(grads)

    def both():
        one, many = np.zeros(2), np.zeros(2)
        for g in grads:
            cpu.grad_stats(one, g, ctl, clip_value)
        cpu.grad_stats_tensors(many, chunks, addr, ctl, clip_value, grads[0])
        return one, many

    one, many = both()
    want = sum(np.sum(np.clip(g.astype(np.float64) / scale, -clip_value, clip_value) ** 2)
               for g in grads)
    assert_close(many[SUMSQ], want, rtol=1e-13, name="sum of squares")
    assert_close(many[SUMSQ], one[SUMSQ], rtol=1e-14, name="against one call per array")
    assert many[NONFINITE] == one[NONFINITE] == 0
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = np.zeros(2)
        cpu.grad_stats_tensors(single, chunks, addr, ctl, clip_value, grads[0])
    finally:
        numba.set_num_threads(threads)
    assert_bitwise_equal(single, many, "1 thread against all")
    for t, at, bad in [(1, 0, np.nan), (4, CHUNK, np.inf), (5, 2 * CHUNK + 2, -np.inf)]:
        grads[t][at] = bad
        one, many = both()
        assert many[NONFINITE] == one[NONFINITE] >= 1, (t, at)
        grads[t][at] = 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_over_many_arrays_equals_one_call_per_array(dtype):
    rng = np.random.default_rng(5)
    grads = _arrays(rng, dtype)
    mine = [g.copy() for g in grads]
    for g in grads:
        cpu.scale_inplace(g, 0.37)
    cpu.scale_inplace_tensors(T.chunk_table(SIZES), T.addresses(mine), 0.37, mine[0])
    for i, (got, want) in enumerate(zip(mine, grads, strict=True)):
        assert_bitwise_equal(got, want, f"grads[{i}]")


def test_the_kernels_are_exported():
    for name in ("sgd_step", "adam_step", "rmsprop_step", "adagrad_step", "grad_stats",
                 "scale_inplace"):
        assert getattr(cpu, name + "_tensors") is not None
    assert _grad_stats.grad_stats_tensors is cpu.grad_stats_tensors


# Through the API -------------------------------------------------------------------------------

MIXED = [((3, 4), np.float32), ((CHUNK + 9,), np.float64), ((0,), np.float32),
         ((2, CHUNK // 2 + 1), np.float32), ((5,), np.float64)]


@pytest.mark.parametrize("kind, options", [
    ("SGD", {"momentum": 0.9, "nesterov": True}), ("Adam", {"amsgrad": True}),
    ("AdamW", {}), ("RMSprop", {"centered": True, "momentum": 0.3}), ("Adagrad", {}),
])
def test_a_list_of_mixed_dtypes_steps_as_each_array_alone(kind, options):
    """A list of float32 and float64 arrays (one kernel call per dtype) ends where an
    optimizer per array ends, bit for bit, guarded steps and a skipped one included; its state
    buffers are views of one flat buffer per dtype."""
    rng = np.random.default_rng(8)
    params = [rng.standard_normal(s).astype(d) for s, d in MIXED]
    alone = [p.copy() for p in params]
    guard = lambda: fastml.Guard(clip_value=0.8)  # noqa: E731 (a per-array clip, not a norm)
    opt = getattr(fastml, kind)(params, lr=0.01, guard=guard(), **options)
    opts = [getattr(fastml, kind)(a, lr=0.01, guard=guard(), **options) for a in alone]
    for step in range(3):
        grads = [rng.standard_normal(s).astype(d) for s, d in MIXED]
        if step == 1:
            grads[3][0, 5] = np.nan  # the whole step is skipped, in every array
        info = opt.step(grads)
        assert info.applied == (step != 1)
        for o, g in zip(opts, grads, strict=True):
            if step != 1:
                o.step(g)
    for i, (p, a) in enumerate(zip(params, alone, strict=True)):
        assert_bitwise_equal(p, a, f"params[{i}]")
    for name, arrays in opt.state.items():
        for i, (s, o) in enumerate(zip(arrays, opts, strict=True)):
            assert s.shape == (params[i].size,) and s.dtype == params[i].dtype
            assert_bitwise_equal(s, o.state[name][0], f"{name}[{i}]")
            if s.size:
                assert s.base is not None and s.base.size > s.size  # a view of a flat buffer


def test_global_norm_and_clip_over_a_list_of_mixed_dtypes():
    rng = np.random.default_rng(9)
    grads = [rng.standard_normal(s).astype(d) for s, d in MIXED]
    want = math.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    assert_close(fastml.global_norm(grads), want, rtol=1e-13, name="global norm")
    copies = [g.copy() for g in grads]
    norm = fastml.clip_grad_norm(copies, 1.0)
    assert_close(norm, want, rtol=1e-13, name="norm before clipping")
    coef = 1.0 / (norm + 1e-6)  # PyTorch's coefficient, rounded to each gradient's dtype
    for i, (c, g) in enumerate(zip(copies, grads, strict=True)):
        assert_bitwise_equal(c, g * g.dtype.type(coef), f"clipped[{i}]")
    grads[1][CHUNK + 3] = np.inf
    assert fastml.all_finite(grads) is False


def test_clip_grad_norm_refuses_a_read_only_gradient():
    g = np.ones(5)
    h = np.ones(7)
    h.flags.writeable = False
    with pytest.raises(ShapeError, match=r"grads\[1\] must be writeable"):
        fastml.clip_grad_norm([g, h], 0.5)
    assert (g == 1).all() and (h == 1).all()
