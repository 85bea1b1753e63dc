#!/usr/bin/env bash
# One batched GPU check of the fused kernels: GPU tests, then the benchmark tables against PyTorch and the
# external peers (DS4Sci_EvoformerAttention, cuEquivariance, trifast). Run from the repository root on the GPU
# machine with .peers/ carried (made here by scripts/fetch_peer_wheels.sh; without it the peers' columns say
# "not installed"); logs and the markdown tables go to ${OUT:-/tmp}. Arguments go to benchmark_kernels.py.
# PEERS=0 skips installing the peers, SKIP_TESTS=1 the GPU tests.
set -o pipefail
out=${OUT:-/tmp}
export PYTHONPATH=. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
peers_dir=${PEERS_DIR:-/tmp/peers}
if [ "${PEERS:-1}" != 0 ]; then
    # never fails; starts DS4Sci's CUDA build in the background, which overlaps the tests
    PEERS_DIR=$peers_dir bash scripts/install_peers.sh 2>&1 | tee "$out/install_peers.log"
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    timeout "${TEST_TIMEOUT:-170}" python3 -m pytest -q -m gpu -n 4 -p no:cacheprovider tests/test_kernels_gpu.py \
        2>&1 | tee "$out/gpu_tests.log" \
        | tail -25
fi
if [ -f "$peers_dir/env.sh" ]; then
    # shellcheck source=/dev/null
    source "$peers_dir/env.sh"  # the benchmark runs its attention table last and waits there for DS4Sci's build
    echo "DS4Sci build so far: $(tail -1 "$out/ds_evoformer_build.log" 2>/dev/null)"
fi
timeout "${BENCH_TIMEOUT:-360}" python3 scripts/benchmark_kernels.py --markdown "$out/benchmarks.md" "$@" \
    2>&1 | tee "$out/benchmark.log"
