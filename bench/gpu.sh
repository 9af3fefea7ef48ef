#!/usr/bin/env bash
# On a GPU machine: set up what fastml needs, run the CUDA tests on the real device (simulator
# off), run the GPU benchmarks against PyTorch, and write everything into OUTDIR.
#   bench/gpu.sh OUTDIR [STEP ...]     steps: ptx bench optim metrics report tests (default: all)
# The benchmarks come first: with the 10-minute limit of one device call, a slow test run must
# not cost the numbers (run "tests" in a call of its own when time is short).
# The image's numpy 2.5 breaks numba-cuda 0.30: a numpy 2.4 wheel for the machine's Python is
# carried in .whl/ and installed into .site/ (see ../shared/GPU.md).
set -uo pipefail
out=${1:?usage: bench/gpu.sh OUTDIR [ptx] [bench] [optim] [metrics] [report] [tests]}
shift
steps=" ${*:-ptx bench optim metrics report tests} "
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
# Registers and spills of the main kernels (static; needs ptxas, skipped without it).
if has ptx; then
    timeout 120 python3 bench/ptx_report.py > "$out/ptx.txt" 2>&1 || echo "ptx_report failed (see ptx.txt)"
fi
# Losses and Adam against PyTorch (with the cross-entropy kernel's variants).
has bench && python3 bench/gpu_bench.py --out "$out" 2>&1 | tee "$out/bench.log"
# Optimizers (Adam 128M, guarded Adam, FlatParams 1000 x 100k against torch fused) and metrics.
has optim && python3 bench/gpu_optim.py --out "$out" 2>&1 | tee "$out/optim.log"
has metrics && python3 bench/gpu_metrics.py --out "$out" 2>&1 | tee "$out/metrics.log"
# The report's GPU section (fastml bench, the main job, on the GPU alone).
has report && python3 -m fastml bench --device cuda --no-compile-time --no-plots --out "$out/report" 2>&1 | tail -n 40 | tee "$out/report.log"
# CUDA tests on the real GPU (CPU-only tests are CI's job).
if has tests; then
    FASTML_REAL_GPU=1 timeout "${TEST_TIMEOUT:-300}" python3 -m pytest tests -q --maxfail=20 -k cuda -p no:cacheprovider 2>&1 | tee "$out/tests.log" | tail -n 30
fi
exit 0
