"""Issue 16's path on the embedded stack (`basis up`: SQLite, the SQLite broker, one worker), through
the typed client a user's script would use: import the demo task from a local parquet file with a
field mapping, train a short BASIS job on the warm-started demo model, find the job's
`fine_tuned_model` in `GET /v1/models`, evaluate the base and the fine-tuned model on the same rows,
and see the fine-tuned one score higher.

The margin is measured, not hoped for: on the 2-core VM the same 150-step recipe took the demo
model's greedy accuracy on 300 held-out rows from 0.217 to 0.320 (`python -m trainer run`, seed 0);
the evaluations here are greedy (deterministic) on 300 rows, so a fine-tuned model that learned
nothing cannot pass by sampling luck.
"""

from __future__ import annotations

import time

import pytest

from client import BasisClient
from core.status import TERMINAL
from tests.e2e.conftest import REPO, service_env, spawn, stop, wait_until
from tests.e2e.test_embedded import session_scope_for
from tests.net import api_healthy, free_port

pytestmark = pytest.mark.slow

DEMO_PARQUET = REPO / "examples" / "datasets" / "demo_arithmetic.parquet"
# The mapping README.md documents ("Importing a dataset"): the demo dataset, byte for byte.
MAPPING = {"id_field": "uid", "prompt_template": "{expression}=", "answer_field": "solution",
           "answer_preset": "gsm8k"}
# trainer.cli.DEMO_CONFIG shortened to 150 steps (see the module docstring for its measured gain).
TRAIN = {
    "engine": "hf", "reward": "exact", "reward_workers": 0, "estimator": "basis", "batch_size": 256,
    "eval_fraction": 0.1, "eval_size": 100, "eval_every": 150, "max_steps": 150,
    "sampling": {"temperature": 1.0, "max_new_tokens": 8}, "loss": {"aggregation": "seq_mean"},
    "optimizer": {"lr": 5e-4, "micro_batch_size": 256, "grad_clip": 1.0, "warmup_steps": 5},
    "n0": 8, "probe_every": 0, "checkpoint_every": 150, "seed": 0,
}
EVAL = {"reward": "exact", "samples_per_prompt": 1, "temperature": 0.0, "max_new_tokens": 8,
        "max_rows": 300, "seed": 0}


def _finish(api: BasisClient, get, ident: str, *, timeout: float, what: str, up, log):
    def done():
        item = get(ident)
        return item if item.status in TERMINAL else None

    item = wait_until(done, timeout=timeout, what=what, process=up, log=log, interval=2.0)
    assert item.status == "succeeded", f"{what}: {item.status} {item.error}\n{log.read_text()[-3000:]}"
    return item


def test_import_train_export_and_evaluate_on_the_embedded_stack(tmp_path):
    from core.services.keys import create_key
    from trainer.demo_model import ensure_demo_model

    data = tmp_path / "data"
    base = "tiny-arith"
    ensure_demo_model(data / "models" / base)  # the warm-started demo model, as `make run` builds it
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard", "--grace", "30"],
               service_env(data_dir=str(data), api_port=str(port)), log)
    try:
        wait_until(lambda: api_healthy(url), timeout=120, what="the API", process=up, log=log)
        with session_scope_for(data) as session:
            _, key = create_key(session, "lifecycle")
        with BasisClient(url, key, timeout=120) as api:
            dataset = api.import_dataset(file=DEMO_PARQUET.read_bytes(), filename=DEMO_PARQUET.name,
                                         name="arithmetic-demo", **MAPPING)
            assert dataset.rows == 4000
            first = api.dataset_rows(dataset.id, limit=1).data[0]
            assert first["prompt"].endswith("=") and first["answer"].isdigit(), first

            job = api.create_job(dataset_id=dataset.id, model=base, config=TRAIN)
            started = time.monotonic()
            job = _finish(api, api.get_job, job.id, timeout=1200, what="the training job", up=up,
                          log=log)
            train_seconds = time.monotonic() - started
            fine_tuned = job.fine_tuned_model
            assert fine_tuned, f"a succeeded job names its fine-tuned model: {job}"
            listed = {m.id: m for m in api.models()}
            assert fine_tuned in listed and listed[fine_tuned].source == "export", sorted(listed)
            assert base in listed

            evals = {name: api.create_eval(model=name, dataset_id=dataset.id, **EVAL)
                     for name in (base, fine_tuned)}
            results = {name: _finish(api, api.get_eval, e.id, timeout=900, what=f"the eval of {name}",
                                     up=up, log=log).results for name, e in evals.items()}
    finally:
        stop(up, timeout=60)
    before, after = results[base], results[fine_tuned]
    assert before is not None and after is not None
    assert before.rows == after.rows == 300
    print(f"\nFIGURES lifecycle: accuracy {before.accuracy:.3f} (base) -> {after.accuracy:.3f} "
          f"(fine-tuned) on 300 rows, greedy; training {train_seconds:.0f} s")
    assert after.accuracy > before.accuracy, (before, after)
