"""BCE-with-logits (mean) loss + gradient over 10M float32 logits with probability targets.

Floor: read 2 arrays + write 1 (12 B/element), timed with ``fastml.bench.cases.read2_write1``.
Peers: PyTorch ``F.binary_cross_entropy_with_logits`` forward + backward (same thread count) and
plain NumPy (the overflow-free form, preallocated buffers).
"""

import pytest


@pytest.mark.parametrize("impl", ["numpy", "torch", "fastml"])
def bench_bce_with_logits(measure, case_of, impl):
    measure(case_of("bce_with_logits"), impl)
