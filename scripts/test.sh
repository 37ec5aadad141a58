#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (lint first: it is the cheapest failure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
