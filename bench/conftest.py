"""pytest-benchmark plumbing shared by the ``bench_*.py`` suites.

Every benchmark row gets, in ``benchmark.extra_info``: ``ms`` (median), ``GB_s`` (useful bytes /
median), ``floor_ms`` (the median of a trivial kernel with the same byte pattern, run before
every timed round of the row, so noise hits both alike), ``x_floor`` (ms / floor_ms),
``peer_ms`` (the best peer's median in this run) and ``x_peer``. A table of them is printed at
the end.

Run: ``.venv/bin/python -m pytest bench/ --benchmark-json=out.json`` (see bench/NOTES.md).
"""

import os
import sys
import time

import numpy as np
import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `pytest bench/` without an installed fastml
    sys.path.insert(0, _ROOT)

from fastml.bench import cases as _setup  # noqa: E402
from fastml.bench import optim_cases  # noqa: E402
from fastml.bench.timing import wait_for_quiet  # noqa: E402

_ROWS = []  # one dict per measured row, in run order


def pytest_addoption(parser):
    parser.addoption("--bench-rounds", type=int, default=30,
                     help="timed rounds per benchmark (medians are reported)")
    parser.addoption("--bench-quiet", action="store_true",
                     help="before each round, wait until other processes leave the CPUs idle")


@pytest.fixture(scope="module")
def case_of():
    """``case_of(op)``: the op's Case, built once per module (inputs stay allocated)."""
    built = {}
    all_cases = {**_setup.cases(), **optim_cases.cases()}

    def get(op):
        if op not in built:
            built[op] = all_cases[op]()
        return built[op]

    yield get
    built.clear()


@pytest.fixture
def measure(benchmark, request):
    """``measure(case, impl)``: time ``case.impls[impl]`` and attach the floor and ratios.

    The floor kernel runs (timed here, untimed by pytest-benchmark) before every round of the
    op, so both see the same machine load and both start with the caches cold for their data.
    """
    default_rounds = request.config.getoption("--bench-rounds")
    quiet = request.config.getoption("--bench-quiet")

    def run(case, impl, rounds=None, warmup=3):
        # ``rounds``/``warmup``: fewer for a peer that takes seconds (default: --bench-rounds, 3).
        n_rounds = rounds or default_rounds
        if impl not in case.impls:
            pytest.skip(f"{impl} is not installed")
        fn = case.impls[impl]
        if impl == "fastml" and case.check is not None:
            err = case.check()
            assert err < 1e-4, f"fastml {case.op} differs from the float64 reference: {err:.3g}"
        benchmark.group = f"{case.op} {case.shape}"
        benchmark.name = f"{case.op}[{impl}]"
        floor_s = []

        def time_floor():
            if quiet:
                wait_for_quiet()
                # After an idle wait the worker threads sleep and the clock may be low: the
                # first call after it runs up to 2x slow. Spend that call untimed.
                case.floor.run()
            t0 = time.perf_counter()
            case.floor.run()
            floor_s.append(time.perf_counter() - t0)

        case.floor.run()  # compile outside the clock
        benchmark.pedantic(fn, setup=time_floor, rounds=n_rounds, warmup_rounds=warmup,
                           iterations=1)
        if benchmark.stats is None:  # --benchmark-disable: ran once, nothing to report
            return
        ms = 1e3 * benchmark.stats.stats.median
        floor_ms = 1e3 * float(np.median(floor_s[-n_rounds:]))
        info = benchmark.extra_info
        info.update(
            op=case.op, impl=impl, shape=case.shape, bytes=case.bytes_moved,
            ms=round(ms, 4), GB_s=round(case.bytes_moved / ms / 1e6, 2),
            floor_pattern=case.floor.pattern, floor_ms=round(floor_ms, 4),
            floor_GB_s=round(case.bytes_moved / floor_ms / 1e6, 2),
            x_floor=round(ms / floor_ms, 3), threads=_setup.threads(),
        )
        _ROWS.append(info)

    return run


def _fill_peers():
    """Add the best peer of the same op (measured in this run) to every row."""
    for row in _ROWS:
        if row.get("impl") == "bandwidth":
            continue
        peers = [r for r in _ROWS if r["op"] == row["op"] and r["impl"] not in
                 ("fastml", "bandwidth")]
        if peers:
            best = min(peers, key=lambda r: r["ms"])
            row["peer"] = best["impl"]
            row["peer_ms"] = best["ms"]
            row["x_peer"] = round(row["ms"] / best["ms"], 3)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # Before pytest-benchmark writes --benchmark-json: extra_info is shared with its records.
    _fill_peers()
    yield


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    _fill_peers()
    tr = terminalreporter
    tr.section("fastml benchmarks: medians; floor = same bytes through a trivial kernel")
    head = (f"{'op':<14}{'shape':<20}{'impl':<10}{'ms':>8}{'GB/s':>7}{'floor ms':>10}"
            f"{'floor GB/s':>11}{'x floor':>8}{'best peer':>10}{'peer ms':>9}{'x peer':>7}")
    tr.write_line(head)
    tr.write_line("-" * len(head))
    for r in _ROWS:
        mine = r["impl"] == "fastml"
        peer = r.get("peer", "-") if mine else ""
        peer_ms = f"{r['peer_ms']:.3f}" if mine and "peer_ms" in r else ""
        x_peer = f"{r['x_peer']:.2f}" if mine and "x_peer" in r else ""
        tr.write_line(
            f"{r['op']:<14}{r['shape']:<20}{r['impl']:<10}{r['ms']:>8.3f}{r['GB_s']:>7.1f}"
            f"{r['floor_ms']:>10.3f}{r['floor_GB_s']:>11.1f}{r['x_floor']:>8.2f}{peer:>10}"
            f"{peer_ms:>9}{x_peer:>7}"
        )
    tr.write_line(f"threads: {_ROWS[0]['threads']}  (x peer < 1: fastml is faster)")
