"""Time planned cases: warm-up, calibration, interleaved rounds, one row per implementation.

Within a case the floor kernel and every implementation run round-robin (the order rotates each
round), so a change of machine load during the case hits all of them alike; warm-up calls (JIT
compile, first touch of buffers) are never timed. A timed sample repeats a call ``number`` times
so that it lasts at least ``Profile.min_sample_s``; rows carry the per-call time of every round.
"""

import gc
import math
import time
import traceback

import numpy as np

from .timing import others_busy


def cpu_clock(fn, number):
    """Seconds per call of ``fn``, over ``number`` back-to-back calls (wall clock)."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def cuda_clock(fn, number):
    """Seconds per call of ``fn`` on the GPU over ``number`` queued calls: one round of
    :func:`fastml.bench.gpu_timing.round_ms` (CUDA events; wall clock in the simulator)."""
    from .gpu_timing import round_ms

    return round_ms(fn, number) / 1e3


#: Fewest calls in a GPU round. With one call a round, a call longer than the sample time
#: (cross-entropy on (8192, 32000), 2 ms) was timed with its host launch time (0.3-0.7 ms in
#: numba-cuda) in front of the device work; bench/gpu_*.py queue 10 calls for the same reason.
cuda_clock.min_calls = GPU_MIN_CALLS = 10


def _error(exc):
    return f"{type(exc).__name__}: {exc}".strip()[:400]


def _calibrate(fn, clock, profile):
    """Warm ``fn`` up (untimed for the result); return (number, estimated s per call)."""
    est = clock(fn, 1)  # the first call compiles / touches memory
    for _ in range(profile.warmup - 1):
        if est > profile.impl_budget_s / 2:  # a slow peer: one warm-up call is enough
            break
        est = clock(fn, 1)
    number = 1
    if profile.min_sample_s > 0:
        number = max(1, min(100_000, math.ceil(profile.min_sample_s / max(est, 1e-7))))
    number = max(number, getattr(clock, "min_calls", 1))
    return number, est


def time_case(case, profile, clock, on_round=None, wait=None):
    """Time the floor and every implementation of ``case``, interleaved.

    ``wait()``, if given, runs before every round (``--quiet``: until the CPUs are idle); the
    floor then runs once untimed, as the first call after an idle wait can be slow.

    Returns ``(timings, failures, busy)``: ``timings[name] = {"times_s": [...], "number": k}``
    with the floor under the name ``"floor"``, ``failures`` maps a name to its error, ``busy``
    is the share of the CPUs other processes used meanwhile (0.0 off Linux).
    """
    fns = {"floor": case.floor.run, **case.impls}
    number, rounds, failures = {}, {}, {}
    for name, fn in list(fns.items()):
        try:
            number[name], est = _calibrate(fn, clock, profile)
        except Exception as exc:  # noqa: BLE001 - one broken peer must not stop the report
            failures[name] = _error(exc)
            del fns[name]
            continue
        if name == "floor":
            rounds[name] = profile.rounds
        else:
            fit = int(profile.impl_budget_s / max(est * number[name], 1e-9))
            rounds[name] = max(profile.min_rounds, min(profile.rounds, fit))
    times = {name: [] for name in fns}

    def interleaved():
        names = list(fns)
        for r in range(max(rounds.values(), default=0)):
            if on_round is not None:
                on_round(r, max(rounds.values()))
            if wait is not None:
                wait()
                if "floor" in fns:
                    fns["floor"]()
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if name in failures or len(times[name]) >= rounds[name]:
                    continue
                try:
                    times[name].append(clock(fns[name], number[name]))
                except Exception as exc:  # noqa: BLE001
                    failures[name] = _error(exc)

    busy = others_busy(interleaved) if fns else 0.0
    timings = {name: {"times_s": t, "number": number[name]} for name, t in times.items()
               if name not in failures and t}
    return timings, failures, busy


def _stats(times_s):
    ms = 1e3 * np.asarray(times_s)
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    return {"times_ms": [round(float(t), 6) for t in ms], "rounds": len(ms),
            "median_ms": float(med), "q1_ms": float(q1), "q3_ms": float(q3),
            "iqr_ms": float(q3 - q1), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def rows_of(case, timings, *, device, family, check_error, busy):
    """One row per implementation and one for the floor, with GB/s, x floor and speed-ups."""
    base = {"device": device, "family": family, "op": case.op, "shape": case.shape,
            "size": int(case.floor.n), "floor_pattern": case.floor.pattern,
            "others_busy": round(busy, 3)}
    floor = timings.get("floor")
    floor_gbs = None
    if floor is not None:
        floor_stats = _stats(floor["times_s"])
        floor_gbs = case.floor.bytes_moved / floor_stats["median_ms"] / 1e6
    rows = []
    for name, t in timings.items():
        stats = _stats(t["times_s"])
        nbytes = case.floor.bytes_moved if name == "floor" else case.bytes_moved
        row = dict(base, impl=name, bytes=int(nbytes), number=t["number"], **stats)
        row["GB_s"] = nbytes / stats["median_ms"] / 1e6
        row["floor_GB_s"] = floor_gbs
        # the floor's time for this row's bytes, at the bandwidth the floor kernel reached
        row["floor_ms"] = nbytes / floor_gbs / 1e6 if floor_gbs else None
        row["x_floor"] = stats["median_ms"] / row["floor_ms"] if floor_gbs else None
        rows.append(row)
    mine = next((r for r in rows if r["impl"] == "fastml"), None)
    if mine is not None:
        mine["check_error"] = check_error
        peers = [r for r in rows if r["impl"] not in ("fastml", "floor")]
        mine["speedup"] = {r["impl"]: r["median_ms"] / mine["median_ms"] for r in peers}
        for r in peers:
            r["fastml_speedup"] = mine["speedup"][r["impl"]]
        if peers:
            best = min(peers, key=lambda r: r["median_ms"])
            mine["best_peer"] = best["impl"]
            mine["speedup_best"] = mine["speedup"][best["impl"]]
    return rows


def run_planned(planned, profile, *, device="cpu", clock=cpu_clock, bar=None, wait=None):
    """Build and time every planned case (:class:`~fastml.bench.plan.Planned`); returns
    ``(rows, failures)``.

    ``failures`` lists ``{"device", "case", "impl", "error"}`` for a factory, a check or an
    implementation that raised (the rest of the run goes on). ``wait``: see :func:`time_case`.
    """
    rows, failures = [], []
    for item in planned:
        label = item.label
        if bar is not None:
            bar.set(f"{device} {label}")
        try:
            case = item.factory(**item.kwargs)
        except Exception as exc:  # noqa: BLE001
            failures.append({"device": device, "case": label, "impl": "(setup)",
                             "error": _error(exc), "trace": traceback.format_exc(limit=3)})
            if bar is not None:
                bar.advance()
            continue
        check_error = None
        if case.check is not None:
            try:
                check_error = float(case.check())
            except Exception as exc:  # noqa: BLE001
                failures.append({"device": device, "case": label, "impl": "fastml (check)",
                                 "error": _error(exc)})

        def on_round(r, total, label=label):
            if bar is not None:
                bar.set(f"{device} {label}: round {r + 1}/{total}")

        timings, failed, busy = time_case(case, profile, clock, on_round, wait)
        failures.extend({"device": device, "case": label, "impl": name, "error": err}
                        for name, err in failed.items())
        rows.extend(rows_of(case, timings, device=device, family=item.family(case),
                            check_error=check_error, busy=busy))
        del case, timings
        gc.collect()
        if bar is not None:
            bar.advance()
    return rows, failures
