"""One rank of a test job: `torchrun --nproc-per-node N tests/trainer/dist_job.py CONFIG.json`.

Registers `split_invariant_hf` (below) and calls trainer.loop.train like any program under
torchrun would; rank 0 writes `run_dir/metrics.jsonl`. The 1-process side of a comparison
calls `run(config)` in the test process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import zlib
from pathlib import Path

import torch

from trainer.rollout import ENGINES, register_engine
from trainer.rollout.hf import HFEngine


class SplitInvariantEngine(HFEngine):
    """The hf engine sampling each prompt on its own, seeded by (prompt, rank 0's seed of the
    call): a prompt's rollouts do not depend on its rank, its batch neighbours or a resume, so a
    2-rank run, a 1-rank run and a resumed run see identical rollouts and their updates can be
    compared exactly. (Every rank calls generate in the same order, so the broadcast pairs up.)"""

    def generate(self, prompts, n, params, stop=None, progress=None):
        base = params.seed
        if torch.distributed.is_initialized():
            box = [base]
            torch.distributed.broadcast_object_list(box, src=0)
            base = box[0]
        out = []
        for i, prompt in enumerate(prompts):
            seed = zlib.crc32(repr((list(prompt), base)).encode())
            for r in super().generate([prompt], n, dataclasses.replace(params, seed=seed), stop):
                out.append(dataclasses.replace(r, prompt_index=i))
        return out


def run(config_path: str | Path, resume: bool = True):
    """Train the config with `split_invariant_hf` registered for the duration only (the test
    process's registry is global: /v1/components tests list every registered engine)."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.sinks import JsonlSink, NullSink

    register_engine("split_invariant_hf")(SplitInvariantEngine)
    try:
        config = TrainConfig.from_file(config_path)
        run_dir = Path(config.run_dir)
        main = os.environ.get("RANK", "0") == "0"
        sink = JsonlSink(run_dir / "metrics.jsonl") if main else NullSink()
        try:
            return train(config, sink, run_dir=run_dir, resume=resume)
        finally:
            sink.close()
    finally:
        ENGINES.pop("split_invariant_hf", None)


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1])
