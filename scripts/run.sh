#!/usr/bin/env bash
# Sets up .venv and runs the platform's main job on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m trainer demo "$@"
