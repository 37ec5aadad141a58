"""The memory benchmarks run (smoke sizes): bench memory, bench scaling, and the GPU check's code
paths on the CPU (scripts/gpu_check.sh runs them at full size on a GPU)."""

from __future__ import annotations

import json

from trainer.bench import gpu_check, memory, scaling


def test_gpu_check_smoke_prints_one_json(capsys):
    assert gpu_check.main(["--smoke", "--skip-demo"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["rollout"]["tokens"] == 4 * 2 * 8  # eos disabled: every sequence runs full length
    assert report["rollout"]["tokens_per_s"] > 0
    plain, ckpt = report["update"]
    assert not plain["gradient_checkpointing"] and ckpt["gradient_checkpointing"]
    assert plain["tokens_per_s"] > 0 and plain["estimate_gib"] > ckpt["estimate_gib"]


def test_memory_bench_variants_run_and_pack_under_the_budget():
    # In this process (main runs each variant in a child of its own, for a clean peak RSS).
    args = memory._parser().parse_args(["--smoke"])
    memory._apply_smoke(args)
    rows = {name: memory._run_variant(args, name) for name in ("one_pass", "checkpointing_budget")}
    assert rows["one_pass"]["micro_batches"] == 1
    packed = rows["checkpointing_budget"]
    assert packed["micro_batches"] > 1 and packed["largest_micro_batch_tokens"] <= args.budget
    assert packed["estimate_mb"] < rows["one_pass"]["estimate_mb"]


def test_scaling_table_marks_what_does_not_fit(capsys):
    assert scaling.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    full_7b = {r["gpus"]: r for r in rows if r["model"] == "Qwen2-7B" and r["mode"] == "full"}
    # 7.6B parameters x 16 bytes (fp32 weights, gradients, AdamW) cannot fit one 80 GB GPU
    assert full_7b[1]["checkpointing"] > 80 and full_7b[8]["checkpointing"] < 80
    lora_05 = [r for r in rows if r["model"] == "Qwen2-0.5B" and r["mode"] == "LoRA"]
    assert all(r["checkpointing"] <= r["plain"] for r in lora_05)
