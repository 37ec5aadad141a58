#!/usr/bin/env bash
# Creates .venv in the repository root and installs the project with its test tools.
# Idempotent: a second run only installs what changed. torch is pinned to the CPU build in
# pyproject.toml; on a GPU machine install the matching CUDA wheel first or use the worker image.
# Says what it does and how long it took; pip's own lines (Collecting / Downloading / Installing)
# are the progress, and the "Requirement already satisfied" ones of a re-run are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
start=$(date +%s)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
  echo "setup: installing the project and its dependencies into .venv: the first time fetches" \
       "about 1 GB (torch CPU, transformers, streamlit, ...): 1-3 minutes on an idle machine," \
       "up to 20 on a busy one (pip's lines below show where it is)"
else
  echo "setup: checking .venv is up to date (a few seconds; longer if pyproject.toml changed)"
fi
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]' \
  | { grep --line-buffered -v -e '^Requirement already satisfied' -e '^Obtaining file:' || true; }
echo "setup: .venv ready in $(( $(date +%s) - start )) s"
