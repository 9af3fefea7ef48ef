"""Timing helpers for the benchmarks: medians without pytest, and a guard against a shared,
noisy machine (wait until other processes leave the CPUs idle; measure how busy they were)."""

import os
import time

import numpy as np

# --- timing without pytest ---------------------------------------------------------------------

def median_ms(fn, rounds=30, warmup=3):
    """Median wall time of ``fn()`` in ms, after ``warmup`` untimed calls (JIT compile, page
    faults of first-touch buffers)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


# --- a shared, noisy machine --------------------------------------------------------------------

def _cpu_jiffies():
    """(busy, total) jiffies of all CPUs since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def _own_jiffies():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def wait_for_quiet(threshold=0.08, interval=0.5, timeout=120.0):
    """Block until other processes kept the CPUs at most ``threshold`` busy over ``interval``
    seconds (Linux only; elsewhere returns at once). Returns False on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        a = _cpu_jiffies()
        if a is None:
            return True
        time.sleep(interval)
        b = _cpu_jiffies()
        if (b[0] - a[0]) <= threshold * max(1, b[1] - a[1]):
            return True
    return False


def others_busy(fn):
    """Run ``fn()``; return the fraction of all CPU time that other processes used meanwhile
    (0.0 off Linux): a round measured while it is high is not a measurement of this code."""
    a, own_a = _cpu_jiffies(), _own_jiffies() if os.path.exists("/proc/self/stat") else 0
    fn()
    b = _cpu_jiffies()
    if a is None or b is None:
        return 0.0
    own_b = _own_jiffies()
    return max(0, (b[0] - a[0]) - (own_b - own_a)) / max(1, b[1] - a[1])
