"""Softmax cross-entropy (mean) loss + gradient on (8192, 1000) float32 logits.

Floor: read 1 array + write 1 of the logits' size (8 B/logit), timed with
``cases.read1_write1``. Peers: PyTorch ``F.cross_entropy`` forward + backward (same thread
count) and plain NumPy.
"""

import pytest


@pytest.mark.parametrize("impl", ["numpy", "torch", "fastml"])
def bench_cross_entropy(measure, case_of, impl):
    measure(case_of("cross_entropy"), impl)
