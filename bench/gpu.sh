#!/usr/bin/env bash
# On a GPU machine: set up what fastml needs, run the CUDA tests on the real device (simulator
# off), run the GPU benchmarks against PyTorch, and write everything into OUTDIR.
#   bench/gpu.sh OUTDIR [STEP ...]     steps: ptx bench optim metrics host probe tests report (default: all)
# The benchmarks come first, then the tests, then the report: with the 10-minute limit of one
# device call, a slow step must not cost the numbers (GPU_BUDGET, below, bounds the whole run).
# The image's numpy 2.5 breaks numba-cuda 0.30: a numpy 2.4 wheel for the machine's Python is
# carried in .whl/ and installed into .site/ (see ../shared/GPU.md), with pytest, pytest-xdist and
# hypothesis, whose versions the image does not promise.
set -uo pipefail
out=${1:?usage: bench/gpu.sh OUTDIR [ptx] [bench] [optim] [metrics] [host] [probe] [tests] [report]}
shift
steps=" ${*:-ptx bench optim metrics host probe tests report} "
mkdir -p "$out"
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target .site .whl/*.whl
    export PYTHONPATH=$PWD/.site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import numpy, numba, numba_cuda, torch; print('numpy', numpy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__)" | tee -a "$out/gpu.txt"
has() { [[ $steps == *" $1 "* ]]; }
# One budget for the whole script (GPU_BUDGET seconds), so a device call with a hard limit ends
# with its results written: each step gets what is left.
deadline=$((SECONDS + ${GPU_BUDGET:-540}))
left() { local l=$((deadline - SECONDS)); (( l > ${1:-100000} )) && l=$1; echo $(( l > 1 ? l : 1 )); }
# Registers and spills of the main kernels (static; needs ptxas, skipped without it).
if has ptx; then
    timeout "$(left 90)" python3 bench/ptx_report.py > "$out/ptx.txt" 2>&1 || echo "ptx_report failed (see ptx.txt)"
fi
# Losses and Adam against PyTorch (with the cross-entropy kernel's variants).
has bench && timeout "$(left)" python3 bench/gpu_bench.py --out "$out" 2>&1 | tee "$out/bench.log"
# Optimizers (Adam 128M, guarded Adam, FlatParams 1000 x 100k against torch fused) and metrics.
has optim && timeout "$(left)" python3 bench/gpu_optim.py --out "$out" 2>&1 | tee "$out/optim.log"
has metrics && timeout "$(left)" python3 bench/gpu_metrics.py --out "$out" 2>&1 | tee "$out/metrics.log"
# Host time per call of the main API calls, with a profile of each (bench/gpu_host.py).
has host && timeout "$(left 120)" python3 bench/gpu_host.py --out "$out" 2>&1 | tee "$out/host.log"
# Can a cached launch through cuda.core skip numba-cuda's per-call dispatch? (a probe)
has probe && timeout "$(left 60)" python3 bench/gpu_launch_probe.py --out "$out" 2>&1 | tee "$out/probe.log"
# CUDA tests on the real GPU (CPU-only tests are CI's job).
# The tests are compile-bound (numba-cuda compiles each kernel specialisation): with pytest-xdist
# carried in .whl/, TEST_WORKERS processes share the GPU and compile in parallel.
if has tests; then
    workers=()
    python3 -c "import xdist" 2>/dev/null && workers=(-n "${TEST_WORKERS:-8}")
    FASTML_REAL_GPU=1 timeout "$(left "${TEST_TIMEOUT:-300}")" python3 -m pytest tests -q -rfE --maxfail=20 -k cuda -p no:cacheprovider "${workers[@]}" 2>&1 | tee "$out/tests.log" | tail -n 30
fi
# The report's GPU section (fastml bench, the main job, on the GPU alone); last, with what time is left.
has report && timeout "$(left)" python3 -m fastml bench --device cuda --no-compile-time --no-plots --out "$out/report" 2>&1 | tail -n 40 | tee "$out/report.log"
exit 0
