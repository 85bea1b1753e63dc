#!/usr/bin/env bash
# Every GPU test (`pytest -m gpu`: kernels in bf16/fp16/fp32, the model in bf16 vs fp32) in one call on a
# GPU machine, from the repository root. Packages the GPU machine lacks (ml_collections, biopython) travel
# as wheels in .whl/ (carry it), e.g. fetched here with:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       ml_collections==1.1.0 biopython==1.88
set -o pipefail
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install --quiet --no-deps --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=".:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -m pytest -q -m gpu -p no:cacheprovider -rA tests/test_kernels_gpu.py tests/test_model_bf16_gpu.py "$@" \
    2>&1 | tail -80
