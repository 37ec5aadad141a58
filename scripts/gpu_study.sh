#!/usr/bin/env bash
# The claims study (python -m trainer.bench study) sized for one H200 machine: 16 CPU cores, one
# GPU, at most 10 minutes in all, no downloads, the `hf` engine (no vLLM).
#
#   bash scripts/gpu_study.sh [OUT_DIR]        # default runs/study-gpu; figures in docs/study-gpu
#
# 12 runs at once share the GPU (the demo model is 0.15M parameters: a run is bound by Python and
# kernel launches, not by the GPU, so parallel runs are what fill the machine), one CPU thread each.
# Seeds: 10 for every single-rollout arm and for 32 x 8 GRPO, 5 for 256 x 8 GRPO (the arm that
# costs 8x per step); 400 steps each. The study is cut at 9 minutes whatever it reached (the
# runner is resumable: rerun to finish), and the analysis then uses every finished run, so the
# script stays within 10 minutes even if the sizing guess is wrong. Not run yet: no GPU was
# available when it was written (docs/benchmarks.md, "Study").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study-gpu}
PY=${PYTHON:-.venv/bin/python}
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
ARGS=(--device cuda --jobs 12 --seeds 0 1 2 3 4 5 6 7 8 9
      --seeds-for grpo8_same_prompts=0,1,2,3,4 --budget steps:400
      --out "$OUT" --docs docs/study-gpu)
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
start=$(date +%s)
set -m  # the study gets its own process group, so the cut also stops its worker processes
"$PY" -m trainer.bench study "${ARGS[@]}" &
study=$!
( sleep 540; kill -TERM -- -"$study" 2>/dev/null && echo "study cut at 540 s" >&2 ) &
watchdog=$!
wait "$study" || true
kill "$watchdog" 2>/dev/null || true
set +m
"$PY" -m trainer.bench study "${ARGS[@]}" --no-run --json
echo "gpu_study: $(( $(date +%s) - start )) s in all"
