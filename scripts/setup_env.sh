#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with the given extras; idempotent.
# Usage: scripts/setup_env.sh [extras]     e.g. scripts/setup_env.sh test
# torch==2.13.0 (CPU) goes in first: any other order pulls the multi-GB CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed${extras:+-$extras}"
wanted="$(cat setup.py requirements/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "Installing FastFold${extras:+ [$extras]} into .venv ..."
    .venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
    .venv/bin/pip install --quiet --disable-pip-version-check -c requirements/constraints.txt \
        -e ".${extras:+[$extras]}"
    echo "$wanted" > "$stamp"
fi

# The test extra also needs AlphaFold's feature pipeline, whose NumPy stand-in for TensorFlow arrived in
# alphafold-colabfold 2.3.20; its model code differs from the 2.3.11 in the venv, so it lives apart in
# .venv/af2320 and is imported only in a child process (tests/af_pipeline_reference.py).
if [ "$extras" = "test" ] && [ ! -d .venv/af2320/alphafold_colabfold-2.3.20.dist-info ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --target .venv/af2320 \
        alphafold-colabfold==2.3.20
fi
