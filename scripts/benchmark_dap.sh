#!/usr/bin/env bash
# The whole DAP GPU benchmark in one call on a 2-GPU machine: versions, then torchrun with 2 processes.
# Usage: scripts/benchmark_dap.sh [OUT] [benchmark_dap.py options]; needs ml_collections (carried as a wheel
# in .whl/ when the machine lacks it).
set -euo pipefail
OUT=${1:-${OUT:-/tmp/dap_benchmark}}
shift || true
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
export PYTHONUNBUFFERED=1  # FASTFOLD_KERNEL unset: the default kernels (Triton on CUDA)
if ! python3 -c "import ml_collections" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ml_collections-*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
date -u +%Y-%m-%dT%H:%MZ
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nvidia-smi topo -m | head -4 || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())"
python3 -m torch.distributed.run --standalone --nproc-per-node 2 scripts/benchmark_dap.py --out "$OUT" "$@"
