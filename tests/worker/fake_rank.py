"""A rank program for the launcher tests: `worker.rank.run_rank` with a hand-written trainer that
follows `trainer.loop.train`'s contract per rank (rank 0 writes and decides when to stop), so
torchrun, the stop file, error records and lease fencing are exercised without a model.

Environment knobs (the worker passes its environment to the ranks): `FAKE_STEPS` (default 3),
`FAKE_STEP_SECONDS` (default 0), `FAKE_FAIL_RANK` (that rank raises at step 2), `FAKE_KILL_RANK`
(that rank dies at step 2 without a word, as an out-of-memory kill does).
"""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

from trainer.sinks import Histogram
from worker.rank import run_rank


def fake_train(config, sink, *, run_dir, should_stop=lambda: False, on_status=lambda s: None,
               on_checkpoint=lambda step, path: None, resume=True, before_checkpoint=None):
    rank = int(os.environ["RANK"])
    steps, pause = int(os.environ.get("FAKE_STEPS", "3")), float(os.environ.get("FAKE_STEP_SECONDS", "0"))
    on_status("running")
    sink.log_event("rank", f"hello from rank {rank}", {"world": int(os.environ["WORLD_SIZE"])})
    done = 0
    for step in range(1, steps + 1):
        if should_stop():
            return SimpleNamespace(steps=done, stopped=True, initial_eval_accuracy=None,
                                   final_eval_accuracy=None, seconds=0.0)
        if step == 2 and os.environ.get("FAKE_FAIL_RANK") == str(rank):
            raise RuntimeError(f"rank {rank} broke at step 2")
        if step == 2 and os.environ.get("FAKE_KILL_RANK") == str(rank):
            os._exit(137)
        sink.log_step(step, {"reward/mean": step / 10, "rank": float(rank)},
                      {"advantage": Histogram([-1.0, 1.0], [step])})
        done = step
        time.sleep(pause)
    return SimpleNamespace(steps=done, stopped=False, initial_eval_accuracy=0.0,
                           final_eval_accuracy=0.5, seconds=0.1)


if __name__ == "__main__":
    run_rank(*sys.argv[1:4], train_fn=fake_train)
