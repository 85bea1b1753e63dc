#!/usr/bin/env bash
# The main job on bundled real data. Today it builds the environment and prints the configuration
# the demo runs (configs/demo.yaml on the model_1_ptm preset); training and inference join it as
# they land. Extra arguments are dotted config overrides, e.g. model.num_recycle=2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
.venv/bin/python -m fastfold.config configs/demo.yaml "$@"
