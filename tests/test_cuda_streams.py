"""GPU calls run on the caller's stream (fastml._streams).

In the simulator: which stream each launch and each device read gets, for every API family. On
a real GPU (``FASTML_REAL_GPU=1``, with PyTorch): kernels queue behind PyTorch work on a side
stream, and loss, guarded step and metric launches return before the device gets to them.
"""

import time

import numpy as np
import pytest

import fastml
from fastml import _streams
from fastml.kernels import cuda as K
from fastml.kernels import step_plan as P

from .conftest import REAL_GPU

pytestmark = pytest.mark.cuda


@pytest.fixture
def launches(monkeypatch):
    """Record the ``stream`` every CUDA launcher is called with."""
    seen = []
    for name in K.__all__:
        fn = getattr(K, name)
        if not callable(fn):
            continue

        def spy(*args, _fn=fn, _name=name, stream=0, **kw):
            seen.append((_name, stream))
            return _fn(*args, stream=stream, **kw)

        monkeypatch.setattr(K, name, spy)
    return seen


def dev(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


class FakeStream:
    """A PyTorch-like (``cuda_stream``) or CuPy-like (``ptr``) stream object."""

    def __init__(self, attr, handle):
        setattr(self, attr, handle)


class CaiArray:
    """A producer that names its stream in ``__cuda_array_interface__`` (version 3), as CuPy."""

    def __init__(self, device_array, stream):
        iface = dict(device_array.__cuda_array_interface__) if hasattr(
            device_array, "__cuda_array_interface__") else None
        self.__cuda_array_interface__ = dict(iface or {}, version=3, stream=stream)


@pytest.fixture
def external(monkeypatch):
    """``cuda.external_stream`` (absent from the simulator) as a factory of numba streams."""
    from numba import cuda

    made = {}

    def external_stream(handle):
        made[handle] = cuda.stream()
        return made[handle]

    monkeypatch.setattr(cuda, "external_stream", external_stream)
    monkeypatch.setattr(_streams, "_EXTERNAL", {})
    return made


def test_stream_objects_and_handles(external):
    from numba import cuda

    s = cuda.stream()
    assert _streams.as_numba_stream(s) is s
    assert _streams.as_numba_stream(0) == 0
    torch_like = _streams.as_numba_stream(FakeStream("cuda_stream", 0x1234))
    assert torch_like is external[0x1234]
    assert _streams.as_numba_stream(FakeStream("ptr", 0x1234)) is torch_like  # one per handle
    assert _streams.as_numba_stream(FakeStream("cuda_stream", 0)) == 0
    with pytest.raises(TypeError, match="stream must be"):
        _streams.as_numba_stream(True)
    with pytest.raises(TypeError, match="stream must be .*; got str"):
        _streams.as_numba_stream("0x1234")
    with pytest.raises(TypeError, match="stream must be"):
        with fastml.cuda_stream(1.5):
            pass


def test_stream_resolution_order(external):
    from numba import cuda

    a = dev(np.zeros(4, np.float32))
    assert _streams.for_arrays(a, None, [a, a]) == 0  # numba arrays name no stream
    cai = CaiArray(a, 0xBEEF)
    assert _streams.for_arrays(a, [a, cai]) is external[0xBEEF]
    assert _streams.for_arrays(CaiArray(a, None)) == 0
    mine = cuda.stream()
    with fastml.cuda_stream(mine) as chosen:
        assert chosen is mine
        assert _streams.for_arrays(cai) is mine  # the explicit block wins
        with fastml.cuda_stream(0):
            assert _streams.for_arrays(cai) == 0
        assert _streams.for_arrays(a) is mine
    assert _streams.for_arrays(a) == 0


def test_every_family_launches_on_the_chosen_stream(launches):
    from numba import cuda

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    t = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    s = cuda.stream()
    p = dev(rng.standard_normal(7).astype(np.float32))
    g = dev(rng.standard_normal(7).astype(np.float32))
    with fastml.cuda_stream(s):
        opt = fastml.Adam(p, guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))
    want = {}
    for stream in (0, s):
        launches.clear()
        with fastml.cuda_stream(stream):
            r = [fastml.mse(dev(x), dev(t)), fastml.l1(dev(x), dev(t)),
                 fastml.huber(dev(x), dev(t)), fastml.bce_with_logits(dev(x), dev(t)),
                 fastml.cross_entropy(dev(x), dev(y))]
            info = opt.step(g)
            norm = fastml.global_norm(g)
            f1 = fastml.metrics.f1(dev(y), dev(x), average="macro")
            top = fastml.metrics.top_k_accuracy(dev(y), dev(x), k=2)
        assert launches and [n for n, got in launches if got is not stream] == []
        names = {name for name, _ in launches}
        assert {"mse_fwd_bwd", "cross_entropy_fwd_bwd", "grad_stats",
                "plan_step_snapshot", "adam_step", "confusion_counts_argmax",
                "top_k_hits"} <= names
        want[stream is s] = ([float(v.loss.copy_to_host()) for v in r], norm, f1, top)
        assert info.applied and info.grad_norm * info.scale == pytest.approx(norm)  # unscaled
    assert want[True] == want[False]  # same results on either stream


def test_optimizer_orders_a_new_stream_after_the_last(monkeypatch):
    from numba import cuda

    waits, reads = [], []
    real_wait, real_host = _streams.wait_for, _streams.to_host
    monkeypatch.setattr(_streams, "wait_for", lambda s, e: (waits.append((s, e)),
                                                            real_wait(s, e)))
    monkeypatch.setattr(_streams, "to_host", lambda a, s=0: (reads.append(s),
                                                             real_host(a, s))[1])
    p, g = dev(np.ones(5, np.float32)), dev(np.full(5, 0.5, np.float32))
    opt = fastml.SGD(p, lr=0.1, momentum=0.9, guard=fastml.Guard())
    a, b = cuda.stream(), cuda.stream()
    with fastml.cuda_stream(a):
        info_a = opt.step(g)
        opt.step(g)
    assert waits == [(a, 0)]  # the first step on a waits for construction's stream
    with fastml.cuda_stream(b):
        info_b = opt.step(g)
    assert waits == [(a, 0), (b, a)]
    reads.clear()
    assert info_a.applied and info_b.step == 3
    assert reads == [a, b]  # each StepInfo reads on the stream its step ran on
    reads.clear()
    state = opt.state_dict()
    assert reads and all(s is b for s in reads)  # checkpoints wait for the last step's stream
    assert state["ctl"][P.STEP] == 3


def test_lr_changes_queue_on_the_steps_stream(monkeypatch):
    from numba import cuda

    s = cuda.stream()
    p, g = dev(np.ones(3)), dev(np.ones(3))
    opt = fastml.SGD(p, lr=0.5)
    with fastml.cuda_stream(s):
        opt.step(g)
        cfg = opt._cfg
        opt.lr = 0.25  # uploaded in place, on s, behind the step that read 0.5
        assert opt._cfg is cfg
        opt.step(g)
    np.testing.assert_allclose(p.copy_to_host(), 1 - 0.5 - 0.25)


# ---------------------------------------------------------------------------------------------
# A real GPU with PyTorch


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch


@pytest.mark.skipif(not REAL_GPU, reason="needs PyTorch tensors on a real GPU")
def test_kernels_queue_behind_torch_work_on_its_current_stream():
    torch = _torch_cuda()
    n, c = 4096, 10
    x = torch.zeros((n, c), device="cuda")
    y = torch.zeros(n, dtype=torch.int64, device="cuda")
    p = torch.zeros(n * c, device="cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        # Non-blocking side stream: work fastml queued on stream 0 would not wait for this.
        torch.cuda._sleep(50_000_000)
        x.fill_(1.0)
        x[:, 3] = 5.0
        y.fill_(3)
        r = fastml.cross_entropy(x, y, reduction="sum")
        m = fastml.mse(x, torch.zeros_like(x), reduction="sum")
        opt = fastml.SGD(p, lr=1.0)
        opt.step(x.reshape(-1))
        f1 = fastml.metrics.f1(y, x, average="macro")
    side.synchronize()
    want = n * -np.log(np.exp(5) / (np.exp(5) + 9 * np.e))
    np.testing.assert_allclose(float(torch.as_tensor(r.loss, device="cuda")), want, rtol=1e-5)
    assert float(torch.as_tensor(m.loss, device="cuda")) == n * (9 + 25)
    assert float(p.sum()) == -n * (9 + 5)
    assert f1 == 1.0


@pytest.mark.skipif(not REAL_GPU, reason="needs PyTorch tensors on a real GPU")
def test_loss_and_guarded_step_return_before_the_device_runs_them():
    torch = _torch_cuda()
    x = torch.randn(2048, 100, device="cuda")
    y = torch.randint(0, 100, (2048,), device="cuda")
    p = torch.randn(1 << 20, device="cuda")
    g = torch.randn(1 << 20, device="cuda")
    grad = torch.empty_like(x)
    opt = fastml.Adam(p, guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))

    def calls():
        fastml.cross_entropy(x, y, out=grad)
        fastml.mse(x, x, out=grad)
        opt.step(g)
        # Results fastml allocates, dropped at once, as a loop drops each step's loss: from
        # PyTorch's caching allocator (fastml._outputs). numba's would cuMemFree every ~10th
        # array, and cuMemFree waits for the device.
        fastml.cross_entropy(x, y)
        fastml.mse(x, x, reduction="none")

    calls()  # compile and allocate scratch
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000)  # about a second of device time queued ahead
    start = time.perf_counter()
    for _ in range(12):  # ~250 launches: well inside the driver's queue of pending launches
        calls()
    host = time.perf_counter() - start
    busy = not torch.cuda.current_stream().query()
    torch.cuda.synchronize()
    assert busy, "the sleep had already finished: the calls waited for the device"
    assert host < 0.25, f"the calls took {host:.3f} s on the host: something waited"
