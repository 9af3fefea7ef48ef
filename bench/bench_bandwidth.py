"""The machine's memory bandwidth in this run, through the two floor kernels.

Each loss benchmark times its own floor right before and after itself; these rows show the floor
kernels alone (their ``x_floor`` near 1.0 says how steady the machine was during the run).
"""

import pytest

from fastml.bench import cases as _setup

PATTERNS = {
    "read2_write1": _setup.REGRESSION_N,  # the regression losses
    "read1_write1": _setup.CE_SHAPE[0] * _setup.CE_SHAPE[1],  # cross-entropy
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def bench_bandwidth(measure, pattern):
    kernel = _setup.make_floor(pattern, PATTERNS[pattern])
    floor = _setup.make_floor(pattern, PATTERNS[pattern])  # own arrays: no cache reuse
    case = _setup.Case(pattern, f"{kernel.n:,} float32", kernel.bytes_moved, floor,
                       {"bandwidth": kernel.run})
    measure(case, "bandwidth")
