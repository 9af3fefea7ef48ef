"""Optimizer steps over 10M float32 parameters, the guard, FlatParams, a list of 1000 arrays and
clip_grad_norm.

Floors (fastml/bench/cases.py, FLOORS): Adam reads p, g, m, v and writes p, m, v (28 B/param);
guarded Adam reads g once more (32 B/param); SGD with momentum 20 B/param; clip_grad_norm
12 B/element. Peers: ``torch.optim`` with ``fused=True`` and ``foreach=True`` (same thread
count; guarded: ``clip_grad_norm_`` first) and NumPy.
"""

import pytest

IMPLS = ["numpy", "torch_foreach", "torch_fused", "fastml"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", ["adam", "adam_guarded", "adamw", "sgd_momentum", "flat_adam",
                                "list_adam"])
def bench_optim(measure, case_of, op, impl):
    measure(case_of(op), impl)


@pytest.mark.parametrize("impl", ["numpy", "torch", "fastml"])
def bench_clip_grad_norm(measure, case_of, impl):
    measure(case_of("clip_grad_norm"), impl)
