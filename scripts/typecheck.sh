#!/usr/bin/env bash
# Static type check (mypy, config in pyproject.toml [tool.mypy]) of the typed seams: the trainer
# package, the REST client (client/), the service (core/, api/, worker/), the CLI (cli/) and the
# dashboard, strict for the modules the config lists. trainer/bench (research benchmarks, not the
# library's surface) is left out. Run by scripts/test.sh after ruff; ~50 s of CPU cold
# (docs/benchmarks.md, "Type check"), a few seconds with the cache. Arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m mypy --exclude '^trainer/bench/' "$@" trainer client core api worker cli dashboard
