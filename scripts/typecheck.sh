#!/usr/bin/env bash
# Static type check (mypy, config in pyproject.toml [tool.mypy]) of the typed seams: the trainer
# package, the REST client (client/) and the service (core/, api/, worker/), strict for the modules
# the config lists. trainer/bench (research benchmarks, not the library's surface) is left out. Run by scripts/test.sh after ruff;
# ~8 s of CPU cold (docs/benchmarks.md), a few seconds with the cache. Arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m mypy --exclude '^trainer/bench/' "$@" trainer client core api worker
