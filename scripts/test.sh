#!/usr/bin/env bash
# Build the test environment (AlphaFold's JAX reference included; Debian's search tools), lint, and run
# the CPU test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/test_config.py, or -m gpu on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh test
scripts/install_tools.sh
.venv/bin/ruff check fastfold tests scripts
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" "$@"
