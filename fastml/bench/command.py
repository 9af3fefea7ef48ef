"""``fastml bench``: run every kernel family against its peers and write a report folder.

    fastml bench [--quick] [--out DIR] [--device cpu|cuda|all] [--only OPS]

writes ``DIR/report.md``, ``DIR/results.json`` and PNG plots. This module only wires the
pieces: :mod:`.plan` (what runs), :mod:`.runner` (timing), :mod:`.compile_time`,
:mod:`.gpu_cases`, :mod:`.report` and :mod:`.plots`. Nothing heavy is imported until the
command runs, so ``fastml --help`` stays fast.
"""

import argparse
import dataclasses
import os
import sys
import time


def add_parser(sub):
    """Add the ``bench`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "bench", help="benchmark every kernel family against its peers; write a report",
        description="Time every fastml kernel family (losses, optimizers, guards, metrics) at "
                    "several sizes against a bandwidth floor measured in the same run and "
                    "against NumPy, PyTorch and scikit-learn where installed; write "
                    "report.md, results.json and PNG plots into --out.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few rounds (a few minutes on 2 cores)")
    p.add_argument("--out", default="fastml-report",
                   help="report folder, created if needed (default: ./fastml-report)")
    p.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                   help="where to run (default: all = the CPU, and the GPU if there is one)")
    p.add_argument("--only", default=None,
                   help="comma-separated op names to run (e.g. mse,cross_entropy,Adam)")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per implementation (default: 25; --quick: 7)")
    p.add_argument("--quiet", action="store_true",
                   help="on a shared machine: before every round wait (up to 60 s) until "
                        "other processes leave the CPUs idle")
    p.add_argument("--no-compile-time", action="store_true",
                   help="skip the numba compile-time measurement (two fresh interpreters)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    # Tests only: tiny sizes, seconds in all, numbers meaningless.
    p.add_argument("--sizes", choices=("tiny",), default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run)
    return p


def _profile(args):
    from .plan import PROFILES

    profile = PROFILES[args.sizes or ("quick" if args.quick else "full")]
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit("fastml bench: --rounds must be >= 1; got " + str(args.rounds))
        profile = dataclasses.replace(profile, rounds=args.rounds,
                                      min_rounds=min(profile.min_rounds, args.rounds))
    return profile


def _gpu_plan(profile, only, device):
    """``(gpu info, planned GPU cases)``."""
    from . import gpu_cases
    from .plan import plan

    info = {"requested": device in ("cuda", "all")}
    if not info["requested"]:
        return info, []
    ok, what = gpu_cases.available()
    info["available"] = ok
    if not ok:
        info["reason"] = what
        return info, []
    info["device"] = what
    from numba import config

    if config.ENABLE_CUDASIM and profile.name != "tiny":
        info["skipped"] = "the numba-cuda simulator runs only with the test sizes"
        return info, []
    planned, _ = plan(profile, only, sizes=profile.gpu_sizes,
                      sources=[("gpu_cases", gpu_cases.cases())])
    return info, planned


def _command_line(args):
    """The command, rebuilt from the parsed options (for the report's first line)."""
    parts = ["fastml bench"]
    parts += ["--quick"] if args.quick else []
    parts += [f"--sizes {args.sizes}"] if args.sizes else []
    parts += [f"--out {args.out}", f"--device {args.device}"]
    parts += [f"--only {args.only}"] if args.only else []
    parts += [f"--rounds {args.rounds}"] if args.rounds is not None else []
    parts += [opt for opt, on in (("--quiet", args.quiet),
                                  ("--no-compile-time", args.no_compile_time),
                                  ("--no-plots", args.no_plots)) if on]
    return " ".join(parts)


def run(args):
    """Run the benchmark described by parsed ``args``; returns the exit status."""
    from .._progress import Progress
    from . import machine, report
    from .plan import plan
    from .runner import cuda_clock, run_planned

    t_start = time.perf_counter()
    profile = _profile(args)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    os.makedirs(args.out, exist_ok=True)
    meta = {"command": _command_line(args),
            "profile": dataclasses.asdict(profile), "quiet": args.quiet,
            "load_before": machine.load_average()}
    meta["machine"] = machine.describe()

    cpu_planned, notes = ([], []) if args.device == "cuda" else plan(profile, only)
    gpu, gpu_planned = _gpu_plan(profile, only, args.device)
    if only:
        known = {p.op for p in cpu_planned} | {p.op for p in gpu_planned}
        unknown = sorted(set(only) - known)
        if unknown:
            notes.append(f"--only names ops that did not run here: {unknown}")
    do_compile = profile.compile_time and not args.no_compile_time
    total = len(cpu_planned) + len(gpu_planned) + (1 if do_compile else 0)
    print(f"fastml bench: {len(cpu_planned)} CPU cases, {len(gpu_planned)} GPU cases"
          f"{', numba compile time' if do_compile else ''}; profile {profile.name}; "
          f"writing {args.out}", file=sys.stderr)

    wait = None
    if args.quiet:
        from .timing import wait_for_quiet

        def wait():
            wait_for_quiet(timeout=60.0)

    rows, failures = [], []
    with Progress(total, "fastml bench") as bar:
        r, f = run_planned(cpu_planned, profile, device="cpu", bar=bar, wait=wait)
        rows += r
        failures += f
        if gpu_planned:
            if gpu.get("device", "").startswith("numba-cuda simulator"):
                gpu["copy_GB_s"] = None
            else:
                from .gpu_cases import copy_bandwidth_gbs

                gpu["copy_GB_s"] = copy_bandwidth_gbs()
            r, f = run_planned(gpu_planned, profile, device="cuda", clock=cuda_clock, bar=bar)
            rows += r
            failures += f
        compile_info = {"skipped": "--no-compile-time" if args.no_compile_time else
                        f"profile {profile.name}"}
        if do_compile:
            from . import compile_time

            bar.set("numba compile time: cold, then cached (2 fresh interpreters)")
            try:
                compile_info = compile_time.measure()
            except Exception as exc:  # noqa: BLE001 - the rest of the report still counts
                compile_info = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            bar.advance()

    meta["load_after"] = machine.load_average()
    result = {"meta": meta, "rows": rows, "failures": failures, "compile": compile_info,
              "gpu": gpu, "notes": notes, "plots": {"files": []}}
    if args.no_plots:
        result["plots"]["skipped"] = "--no-plots"
    else:
        try:
            from .plots import make_plots

            result["plots"]["files"] = make_plots(rows, args.out)
        except ImportError as exc:
            result["plots"]["skipped"] = (
                f"matplotlib is not installed ({exc.name or exc}); "
                "`pip install matplotlib` (or the package's `bench` extra) adds them")
    meta["wall_s"] = time.perf_counter() - t_start
    report.write_json(result, os.path.join(args.out, "results.json"))
    report.write_markdown(result, os.path.join(args.out, "report.md"))

    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    if cpu_rows:
        print("\n".join(report.summary_lines(cpu_rows)))
    print(f"\nfastml bench: {meta['wall_s']:.0f} s; report: "
          f"{os.path.join(args.out, 'report.md')}"
          + (f"; {len(failures)} failures (see the report)" if failures else ""))
    return 0
