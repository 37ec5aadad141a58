#!/usr/bin/env bash
# Sets up .venv and runs the platform's main job on the embedded default: `basis up --demo` starts
# the API, a worker and the dashboard (SQLite + the SQLite broker under ./data), builds the demo
# model, submits a BASIS job on the arithmetic task and follows it. Ctrl-C stops everything; a job
# cut off resumes from its last checkpoint at the next `make run`. Extra arguments go to `basis up`
# (e.g. `bash scripts/run.sh --exit-when-done` to stop when the job ends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/basis up --demo "$@"
