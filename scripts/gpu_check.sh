#!/usr/bin/env bash
# One GPU check for a machine like one H200 (139 GiB, 16 cores; torch + transformers + peft, no
# vLLM, no downloads): bf16 rollout tokens/s (hf engine), update tokens/s and peak memory with and
# without gradient checkpointing (Qwen2-0.5B shape, random weights) against trainer.memory's
# estimate, and one short BASIS job on the tiny demo on the GPU. Prints one JSON object on the last
# line of stdout; record it in docs/benchmarks.md. Details: trainer/bench/gpu_check.py.
# Usage: scripts/gpu_check.sh [--skip-demo] [--demo-steps N]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check: no CUDA device visible to torch")'
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m trainer.bench gpu-check "$@"
