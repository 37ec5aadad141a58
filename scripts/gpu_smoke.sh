#!/usr/bin/env bash
# GPU smoke test: a short BASIS job on one GPU with the vllm engine and a real Hugging Face model.
#
#   bash scripts/gpu_smoke.sh MODEL_DIR [--lora] [--steps N]
#
# MODEL_DIR is a local HF causal-LM directory (e.g. a Qwen2.5-0.5B-Instruct download); nothing is
# downloaded at run time. Installs the GPU extra `.[vllm]` into .venv-vllm-gpu (CUDA torch 2.13.0
# and vLLM 0.32 from PyPI; apart from .venv-vllm, which may hold the CPU build), writes 200
# arithmetic prompts, trains N steps (default 3) with estimator basis, 1 rollout per prompt, bf16,
# full fine-tune (or LoRA r 16 with --lora, served through vLLM's LoRA support), then checks the
# metrics: every step logged `time/sync`, and the engine's sampling logprobs agree with the
# trainer's (`rollout/logprob_gap`, mean |difference| per token, below 0.1 in bf16), which fails if
# the engine kept generating from stale weights after an update. Prints a per-step table.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bash scripts/gpu_smoke.sh MODEL_DIR [--lora] [--steps N]}
shift
LORA=0
STEPS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --lora) LORA=1 ;;
    --steps) STEPS=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$MODEL/config.json" ] || { echo "$MODEL: not a Hugging Face model directory" >&2; exit 2; }
BASIS_VLLM_EXTRA=vllm BASIS_VLLM_VENV=.venv-vllm-gpu bash scripts/setup_vllm.sh
PY=.venv-vllm-gpu/bin/python
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
OUT=${BASIS_SMOKE_OUT:-runs/gpu-smoke-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
"$PY" - "$MODEL" "$OUT" "$LORA" "$STEPS" <<'EOF'
import sys
from pathlib import Path

import yaml

from trainer.tasks import generate_arithmetic, write_jsonl

model, out, lora, steps = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
data = write_jsonl(generate_arithmetic(200, seed=0), out / "data.jsonl")
config = {
    "model": str(Path(model).resolve()), "dataset": str(data.resolve()),
    "run_dir": str(out.resolve()), "engine": "vllm",
    "engine_options": {"gpu_memory_utilization": 0.3},
    "reward": "math", "estimator": "basis", "rollouts_per_prompt": 1, "batch_size": 16,
    "n0": 2, "sampling": {"temperature": 1.0, "max_new_tokens": 128},
    "optimizer": {"lr": 1e-6, "micro_batch_size": 4}, "max_steps": steps,
    "eval_every": 0, "eval_fraction": 0.1, "checkpoint_every": 0, "device": "cuda", "seed": 0,
    "lora": {"r": 16, "alpha": 32} if lora else None,
}
(out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
EOF
"$PY" -m trainer run "$OUT/config.yaml" --no-resume
"$PY" - "$OUT" "$STEPS" <<'EOF'
import sys
from pathlib import Path

from trainer.sinks import read_jsonl_metrics

out, steps = Path(sys.argv[1]), int(sys.argv[2])
m = read_jsonl_metrics(out / "metrics.jsonl")
print(f"{'step':>4} {'reward':>7} {'rollout s':>10} {'sync s':>8} {'update s':>9} {'logprob gap':>12}")
bad = []
for step in range(1, steps + 1):
    row = m.get(step, {})
    gap, sync = row.get("rollout/logprob_gap", float("nan")), row.get("time/sync", float("nan"))
    print(f"{step:>4} {row.get('reward/mean', float('nan')):>7.3f} "
          f"{row.get('time/rollout', float('nan')):>10.2f} {sync:>8.3f} "
          f"{row.get('time/update', float('nan')):>9.2f} {gap:>12.4f}")
    if not sync > 0 or not gap < 0.1:
        bad.append(step)
if bad:
    sys.exit(f"gpu smoke FAILED at steps {bad}: time/sync must be > 0 and rollout/logprob_gap < 0.1")
print(f"gpu smoke OK: {out}")
EOF
