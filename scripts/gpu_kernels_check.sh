#!/usr/bin/env bash
# One batched GPU check of the fused kernels: GPU tests, then the benchmark tables.
# Run from the repository root on the GPU machine; logs and the markdown tables go to ${OUT:-/tmp}.
set -o pipefail
out=${OUT:-/tmp}
export PYTHONPATH=. PYTHONUNBUFFERED=1 TRITON_PRINT_AUTOTUNING=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout "${TEST_TIMEOUT:-170}" python3 -m pytest -q -m gpu -n 4 -p no:cacheprovider tests/test_kernels_gpu.py \
    2>&1 | tee "$out/gpu_tests.log" | grep -v "^Triton autotuning\|^with key\|^finished after\|^best config" | tail -25
timeout "${BENCH_TIMEOUT:-300}" python3 scripts/benchmark_kernels.py --markdown "$out/benchmarks.md" "$@" \
    2>&1 | tee "$out/benchmark.log" | grep -v "^with key\|^finished after"
