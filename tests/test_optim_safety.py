"""Optimizer inputs that cannot go wrong quietly: a loaded state whose hyper-parameters need a
buffer the optimizer lacks is refused (the kernels would index an empty buffer), parameters that
would train a private copy are refused, steps of one optimizer from several threads lose no
update, and one LossScaler holds one scale for every optimizer using it (on the CPU and in the
CUDA simulator)."""

import array
import json
import threading

import numpy as np
import pytest

import fastml
from fastml.kernels import step_plan as P

from .helpers import to_device, to_host


def _snapshot(opt, params):
    sd = opt.state_dict()
    return [to_host(p).copy() for p in params], sd["ctl"], sd["state"], sd["hyper"]


def _assert_unchanged(before, after):
    (pa, ca, sa, ha), (pb, cb, sb, hb) = before, after
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(ca, cb)
    assert sa.keys() == sb.keys() and ha == hb
    for name in sa:
        for x, y in zip(sa[name], sb[name], strict=True):
            np.testing.assert_array_equal(x, y)


# 1. A loaded state whose hyper-parameters need buffers the optimizer does not have ------------

@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("kind, edit", [
    ("SGD", {"momentum": 0.9}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True}),
    ("Adam", {"amsgrad": True}),
])
def test_a_state_that_needs_a_missing_buffer_is_refused(device, kind, edit):
    n = 100_000 if device == "cpu" else 1000
    p = to_device(np.ones(n, np.float32), device)
    opt = getattr(fastml, kind)(p, lr=0.1)
    sd = opt.state_dict()
    sd["hyper"].update(edit)
    before = _snapshot(opt, [p])
    with pytest.raises(ValueError, match="state"):
        opt.load_state_dict(sd)
    _assert_unchanged(before, _snapshot(opt, [p]))
    g = to_device(np.ones(n, np.float32), device)
    assert opt.step(g).applied
    want = np.ones(n, np.float32)
    fresh = getattr(fastml, kind)(want, lr=0.1)
    fresh.step(np.ones(n, np.float32))
    np.testing.assert_array_equal(to_host(p), want)


def test_an_edited_checkpoint_file_that_needs_a_missing_buffer_is_refused(tmp_path):
    p = np.ones(100_000, np.float32)
    opt = fastml.SGD(p, lr=0.1)
    path = tmp_path / "ck.npz"
    fastml.save(path, opt)
    with np.load(path) as f:
        entries = {k: f[k] for k in f.files}
    meta = json.loads(str(entries["meta"]))
    meta["hyper"]["momentum"] = 0.9
    entries["meta"] = np.array(json.dumps(meta))
    np.savez(path, **entries)
    before = _snapshot(opt, [p])
    with pytest.raises(ValueError, match="need"):
        fastml.load(path, opt)
    _assert_unchanged(before, _snapshot(opt, [p]))
    opt.step(np.ones_like(p))
    np.testing.assert_array_equal(p, np.float32(0.9))


# 2. Parameters the optimizer could not update in place --------------------------------------

@pytest.mark.parametrize("params", [
    [1.0, 2.0, 3.0], 2.0, np.float64(1.5), [[1.0, 2.0], [3.0, 4.0]], (1.0, 2.0),
    [np.ones(3), 2.0], (np.ones(3), [1.0, 2.0]),
], ids=["list", "float", "np.float64", "nested", "tuple", "array-and-float", "array-and-list"])
@pytest.mark.parametrize("kind", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_parameters_that_would_train_a_copy_are_refused(kind, params):
    with pytest.raises(fastml.DTypeError, match="updated in place"):
        getattr(fastml, kind)(params, lr=0.1)


@pytest.mark.parametrize("grads", [[3.0, 4.0], 5.0, [np.ones(3), [3.0]]],
                         ids=["list", "float", "array-and-list"])
def test_gradients_that_would_be_clipped_as_a_copy_are_refused(grads):
    with pytest.raises(fastml.DTypeError, match="updated in place"):
        fastml.clip_grad_norm(grads, 1.0)


def test_objects_that_share_their_memory_are_trained_in_place():
    buf = array.array("d", [1.0, 2.0, 3.0])  # the buffer protocol: a view, not a copy
    sub = np.ones(4).view(np.recarray).view(np.ndarray)[1:]  # an ndarray view of another
    opt = fastml.SGD([buf, sub], lr=0.5)
    opt.step([np.ones(3), np.ones(3)])
    assert list(buf) == [0.5, 1.5, 2.5]
    np.testing.assert_array_equal(sub, 0.5)


def test_a_pytorch_tensor_is_trained_in_place():
    torch = pytest.importorskip("torch")
    t = torch.ones(5, dtype=torch.float32)
    fastml.SGD(t, lr=0.25).step(np.ones(5, np.float32))
    assert torch.equal(t, torch.full((5,), 0.75))


# 5. Several threads stepping one optimizer ---------------------------------------------------

@pytest.mark.parametrize("n, steps", [(1 << 18, 400), (1 << 20, 150)])
def test_steps_of_one_optimizer_from_two_threads_lose_no_update(n, steps):
    """Each step subtracts exactly 1 (lr 1, gradient 1): 2 x ``steps`` steps end at exactly
    -2 ``steps`` (large arrays run the parallel kernels, which release the GIL)."""
    p = np.zeros(n, np.float32)
    opt = fastml.SGD(p, lr=1.0)
    g = np.ones(n, np.float32)
    start = threading.Barrier(2)

    def work():
        start.wait()
        for _ in range(steps):
            opt.step(g)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert opt.state_dict()["ctl"][P.STEP] == 2 * steps
    np.testing.assert_array_equal(p, np.float32(-2 * steps))


def test_a_checkpoint_saved_while_another_thread_steps_holds_one_step(tmp_path):
    """SGD with lr 1 and gradient 1 moves every parameter to exactly -step: each file saved
    while a thread steps must hold parameters, momentum and step counter of the same step."""
    p = np.zeros(1 << 16, np.float64)
    opt = fastml.SGD(p, lr=1.0, momentum=0.5)
    g = np.ones_like(p)
    done = threading.Event()

    def work():
        try:
            for _ in range(3000):
                opt.step(g)
        finally:
            done.set()

    t = threading.Thread(target=work)
    t.start()
    seen = 0
    try:
        while not done.is_set() or seen < 5:
            fastml.save(tmp_path / "ck.npz", opt)
            with np.load(tmp_path / "ck.npz") as f:
                step = f["ctl"][P.STEP]
                params, buf = f["param/0"], f["state/momentum_buffer/0"]
            # buf_t = 0.5 buf_{t-1} + 1 from buf_1 = 1: 2 - 2^(1-t); p_t = p_{t-1} - buf_t.
            want_buf = 2.0 - 2.0 ** (1 - step) if step else 0.0
            want_p = -(2.0 * step - want_buf)  # the sum of buf_1 .. buf_t
            assert params.min() == params.max() == pytest.approx(want_p, rel=1e-12, abs=0)
            assert buf.min() == buf.max() == pytest.approx(want_buf, rel=1e-12, abs=0)
            seen += 1
    finally:
        t.join(timeout=120)
    assert seen >= 5


def test_the_guard_is_fixed_at_construction():
    opt = fastml.SGD(np.zeros(3), lr=0.1, guard=fastml.Guard(clip_norm=1.0))
    with pytest.raises(AttributeError):
        opt.guard = fastml.Guard(scaler=fastml.LossScaler())


# 6. One LossScaler, several optimizers -------------------------------------------------------

@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # simulator NaN
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_one_scaler_holds_one_scale_for_two_optimizers(device):
    sc = fastml.LossScaler(init_scale=4.0, growth_interval=1000)
    a = to_device(np.zeros(8), device)
    b = to_device(np.zeros(8), device)
    o1 = fastml.SGD(a, lr=1.0, guard=fastml.Guard(scaler=sc))
    o2 = fastml.SGD(b, lr=1.0, guard=fastml.Guard(scaler=sc))
    info = o1.step(to_device(np.full(8, np.nan), device))
    assert not info.applied and info.scale == 4.0
    assert sc.scale == 2.0  # the backoff o1 decided is the scaler's
    # The next losses are scaled by sc.scale: both optimizers divide by the same 2.
    info1 = o1.step(to_device(np.full(8, sc.scale), device))
    info2 = o2.step(to_device(np.full(8, sc.scale), device))
    assert info1.scale == info2.scale == 2.0
    np.testing.assert_array_equal(to_host(a), -1.0)
    np.testing.assert_array_equal(to_host(b), -1.0)
    # o2's backoff is seen by o1.
    o2.step(to_device(np.full(8, np.inf), device))
    assert sc.scale == 1.0
    assert o1.step(to_device(np.full(8, 1.0), device)).scale == 1.0
    np.testing.assert_array_equal(to_host(a), -2.0)


def test_growth_counts_the_clean_steps_of_every_optimizer_sharing_the_scaler():
    sc = fastml.LossScaler(init_scale=8.0, growth_interval=4)
    opts = [fastml.Adam(np.zeros(3), lr=0.1, guard=fastml.Guard(scaler=sc)) for _ in range(2)]
    scales = []
    for _ in range(3):
        for opt in opts:
            opt.step(np.full(3, sc.scale))
            scales.append(sc.scale)
    assert scales == [8.0, 8.0, 8.0, 16.0, 16.0, 16.0]
    for opt in opts:  # every checkpoint records the live scale
        ctl = opt.state_dict()["ctl"]
        assert (ctl[P.SCALE], ctl[P.GROWTH]) == (16.0, 2.0)


def test_loading_a_checkpoint_sets_the_shared_scale(tmp_path):
    sc = fastml.LossScaler(init_scale=8.0)
    o1 = fastml.SGD(np.zeros(3), lr=0.1, guard=fastml.Guard(scaler=sc))
    o2 = fastml.SGD(np.zeros(3), lr=0.1, guard=fastml.Guard(scaler=sc))
    sd = o1.state_dict()
    o1.step(np.full(3, np.nan))
    assert sc.scale == 4.0
    o1.load_state_dict(sd)
    assert sc.scale == 8.0
    assert o2.step(np.full(3, 8.0)).scale == 8.0


def test_a_copy_of_a_scaler_is_its_configuration():
    import copy
    import pickle

    sc = fastml.LossScaler(init_scale=8.0, growth_interval=7)
    fastml.SGD(np.zeros(3), lr=0.1, guard=fastml.Guard(scaler=sc)).step(np.full(3, np.nan))
    assert sc.scale == 4.0
    for twin in (copy.deepcopy(sc), pickle.loads(pickle.dumps(fastml.Guard(scaler=sc))).scaler):
        assert (twin.scale, twin.growth_interval) == (8.0, 7)
        opt = fastml.SGD(np.zeros(3), lr=0.1, guard=fastml.Guard(scaler=twin))
        opt.step(np.full(3, np.nan))
        assert (twin.scale, sc.scale) == (4.0, 4.0)


@pytest.mark.cuda
def test_a_scaler_serves_one_device():
    from numba import cuda

    sc = fastml.LossScaler()
    fastml.SGD(np.zeros(4), lr=0.1, guard=fastml.Guard(scaler=sc))
    with pytest.raises(fastml.DeviceError, match="one device"):
        fastml.SGD(cuda.to_device(np.zeros(4)), lr=0.1, guard=fastml.Guard(scaler=sc))


@pytest.mark.cuda
def test_a_shared_scaler_serves_optimizers_on_two_streams():
    """o1 backs off on one stream; o2, on another, divides by the backed-off scale (the
    simulator runs launches in order, so the event between the streams is exercised only on a
    real GPU)."""
    from numba import cuda

    sc = fastml.LossScaler(init_scale=4.0)
    a, b = cuda.to_device(np.zeros(8)), cuda.to_device(np.zeros(8))
    o1 = fastml.SGD(a, lr=1.0, guard=fastml.Guard(scaler=sc))
    o2 = fastml.SGD(b, lr=1.0, guard=fastml.Guard(scaler=sc))
    s1, s2 = cuda.stream(), cuda.stream()
    with fastml.cuda_stream(s1):
        o1.step(cuda.to_device(np.full(8, np.nan)))
    with fastml.cuda_stream(s2):
        info = o2.step(cuda.to_device(np.full(8, 2.0)))
    assert info.scale == 2.0
    np.testing.assert_array_equal(b.copy_to_host(), -1.0)
