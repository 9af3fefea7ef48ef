"""Macro F1 over 10M int64 labels, 10 classes: one confusion-count pass plus O(k^2) on the host.

Floor: read both label arrays once (16 B/sample), timed with ``cases.read2_sum``. Peers:
scikit-learn ``f1_score(average="macro")``, which takes seconds per call, so it runs 2 rounds
after 1 warm-up (``--bench-rounds`` does not apply to it), and plain NumPy (``bincount`` of
``y_true * k + y_pred``).
"""

import pytest

SLOW_PEER_ROUNDS = {"sklearn": 2}


@pytest.mark.parametrize("impl", ["sklearn", "numpy", "fastml"])
def bench_metrics(measure, case_of, impl):
    rounds = SLOW_PEER_ROUNDS.get(impl)
    measure(case_of("f1_macro"), impl, rounds=rounds, warmup=1 if rounds else 3)
