#!/usr/bin/env bash
# Creates .venv in the repository root and installs the project with its test tools.
# Idempotent: a second run only installs what changed. torch is pinned to the CPU build in
# pyproject.toml; on a GPU machine install the matching CUDA wheel first or use the worker image.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
