"""MSE, L1 and Huber (mean) loss + gradient over 10M float32 elements.

Floor: read 2 arrays + write 1 (12 B/element), timed with ``cases.read2_write1``. Peers:
PyTorch ``F.mse_loss`` / ``l1_loss`` / ``huber_loss`` forward + backward (same thread count) and
plain NumPy.
"""

import pytest


@pytest.mark.parametrize("impl", ["numpy", "torch", "fastml"])
@pytest.mark.parametrize("op", ["mse", "l1", "huber"])
def bench_regression(measure, case_of, op, impl):
    measure(case_of(op), impl)
