"""Registers, spills and shared memory of the main CUDA kernels, compiled for a GPU that is not
there (static: nothing runs).

numba compiles each kernel to PTX for the given compute capability with libNVVM, and ``ptxas
-v`` reports what one thread uses. Registers set occupancy (65536 per SM: 256-thread blocks at
<= 128 registers give 2 blocks per SM, <= 64 give 4), which with the loads each thread keeps in
flight sets how much of the memory bandwidth a kernel can use (bench/NOTES.md).

Needs a CUDA toolkit's libNVVM, libNVRTC and ``ptxas`` (not a GPU), and the simulator off:

    NUMBA_ENABLE_CUDASIM=0 python bench/ptx_report.py [--cc 9.0] [--ptxas PATH]
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ["NUMBA_ENABLE_CUDASIM"] = "0"


def kernels():
    """(name, python function, signature[, register cap]) of the kernels a training step spends
    its time in."""
    from numba import types as T

    def mod(name):
        return importlib.import_module(f"fastml.kernels.cuda.{name}")

    f4, f8, i8, i4 = T.float32[::1], T.float64[::1], T.int64[::1], T.int32[::1]
    m4 = T.float32[:, ::1]
    ce, conf, reg, gs = mod("cross_entropy"), mod("confusion"), mod("regression"), mod("grad_stats")
    adam = mod("adam")
    rows = mod("cross_entropy_rows")
    counts_shared, counts_global = conf._KERNELS["label"][:2]
    ce_args = (m4, f4, i8, f8, m4, i8, f4, T.int64, T.float64, T.float64, T.int64)
    m8 = T.float64[:, ::1]
    ce8_args = (m8, f8, i8, f8, m8, i8, f8, T.int64, T.float64, T.float64, T.int64)

    def row_kernel(c, dtype, args, cap, row_bytes=128):
        """The register kernel (plain: no smoothing, no weights) for rows of c classes, as
        ptxas builds it under ``cap`` registers, lowered to what one block needs to fit."""
        block, group, k = rows.geometry(c, dtype.bitwidth // 8, row_bytes)
        return (f"cross_entropy rows C={c} {dtype} ({block} thr, {group}/row, {k} values)",
                rows._make_row_kernel(block, group, k, dtype, False, False, None).py_func,
                args + (T.boolean,), rows.register_cap(block, cap))

    return [
        ("cross_entropy (256 threads)", ce._make_kernel(256).py_func,
         ce_args + (T.int64, T.boolean)),
        ("cross_entropy (256 threads, cap 80)", ce._make_kernel(256).py_func,
         ce_args + (T.int64, T.boolean), 80),
        row_kernel(1000, T.float32, ce_args, None),
        row_kernel(1000, T.float32, ce_args, 80),
        row_kernel(32000, T.float32, ce_args, None),
        row_kernel(1000, T.float64, ce8_args, 80),
        row_kernel(1000, T.float32, ce_args, 128, row_bytes=256),
        row_kernel(32000, T.float32, ce_args, None, row_bytes=256),
        ("mse", reg._mse_kernel.py_func,
         (f4, f4, f8, f4, f4, T.float32, T.float32, T.float32)),
        ("grad_stats (4 loads)", gs._KERNELS[4].py_func, (f8, f4, f8, T.float32)),
        ("grad_stats (8 loads)", gs._KERNELS[8].py_func, (f8, f4, f8, T.float32)),
        ("adam", adam._adam_step_kernel.py_func,
         (f4, f4, f4, f4, f4, f8, T.float32, T.float32, T.float32, T.float32, T.float32,
          T.float64, T.boolean, T.boolean, T.boolean, T.float32)),
        ("confusion counts (shared)", counts_shared.py_func,
         (i8, i8, i8, i8, T.float64, T.int64)),
        ("confusion counts (global)", counts_global.py_func,
         (i8, i8, i4, i8, T.float64, T.int64)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", default="9.0", help="compute capability, e.g. 9.0 (H100/H200)")
    ap.add_argument("--ptxas", default=None, help="ptxas to run (default: PATH, CUDA_HOME)")
    args = ap.parse_args()
    major, minor = (int(x) for x in args.cc.split("."))
    ptxas = args.ptxas or shutil.which("ptxas") or os.path.join(
        os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "ptxas")
    import numba.cuda.dispatcher as dispatcher

    # Device functions ask the current device for its compute capability; there may be none.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(
        compute_capability=(major, minor))
    from numba import cuda

    print(f"sm_{major}{minor}, {ptxas}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn, sig, *cap in kernels():
            ptx, _ = cuda.compile_ptx(fn, sig, cc=(major, minor))
            cap = [f"-maxrregcount={cap[0]}"] if cap and cap[0] else []
            path = os.path.join(tmp, "k.ptx")
            with open(path, "w") as f:
                f.write(ptx)
            out = subprocess.run([ptxas, f"-arch=sm_{major}{minor}", "-v", *cap, path, "-o",
                                  os.path.join(tmp, "k.cubin")],
                                 capture_output=True, text=True, check=True).stderr
            used = [line.split("info    : ")[-1] for line in out.splitlines()
                    if "registers" in line or "spill" in line]
            print(f"{name:58s} {'; '.join(u.strip() for u in used)}")


if __name__ == "__main__":
    main()
