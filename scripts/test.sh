#!/usr/bin/env bash
# Sets up everything and runs the whole test suite:
#   1. .venv with the project and its test tools (scripts/setup.sh);
#   2. the system tools some tests drive: Debian's chromium (dashboard browser test) and
#      docker-compose (compose file check) — installed when missing and we may use apt;
#   3. ruff, the type check (scripts/typecheck.sh), then pytest in .venv for everything but the
#      vLLM engine;
#   4. the vLLM engine's tests in .venv-vllm (vLLM pins older transformers/fastapi, so it lives in
#      its own venv; scripts/setup_vllm.sh).
# Arguments go to the main pytest run. Without Postgres/Redis/chromium the tests that need them
# skip with a message naming what to start; with CI=true they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
  bash scripts/install_chromium.sh
  bash scripts/install_ci_tools.sh
else
  echo "note: not root and no sudo: chromium/docker-compose not installed; their tests will skip"
fi
.venv/bin/ruff check .
bash scripts/typecheck.sh
.venv/bin/python -m pytest -m "not vllm" "$@"
if [ "${BASIS_SKIP_VLLM:-0}" = 1 ]; then
  echo "BASIS_SKIP_VLLM=1: vLLM engine tests not run"
else
  bash scripts/setup_vllm.sh --test
fi
