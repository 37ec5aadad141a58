"""Issue 18, must-show 1: a job whose reward never finishes (the catastrophic regex `(.|.)*\\Z\\A`
scored in-process with `reward_workers: 0`) cannot freeze the worker.

- The `regex` reward refuses the pattern at creation (422 naming `reward_options`).
- Had it got past validation (here: a user reward running the same pattern), every item still ends
  at `reward_timeout`, the job shows `starting`/`running` as soon as the worker claims it, a cancel
  ends it within 10 s, and the same worker then runs the next job.

Nothing is mocked: one real worker process runs the real trainer.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import REPO, make_lab, running

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_catastrophic_regex_is_refused_or_bounded_and_cancel_ends_it(tmp_path, tiny_model,
                                                                     postgres_schema_url, redis_url):
    from tests.reliability import faulty_rewards  # noqa: F401 - the API validates reward names

    lab = make_lab(tmp_path, tiny_model, postgres_schema_url, redis_url)
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text("import tests.reliability.faulty_rewards  # noqa\n")
    env = {**lab.env, "PYTHONPATH": f"{plugin}:{REPO}"}
    with running(lab):
        dataset = lab.upload()
        refused = lab.client.post("/v1/jobs", headers=lab.headers, json={
            "dataset_id": dataset, "model": "tiny", "config": {
                "reward": "regex", "reward_workers": 0,
                "reward_options": {"pattern": r"(.|.)*\Z\A", "dotall": True}}})
        assert refused.status_code == 422, refused.text
        assert "catastrophic backtracking" in refused.json()["error"]["message"]

        worker = lab.start_worker(env=env)
        hostile = lab.submit(dataset_id=dataset, reward="catastrophic_regex", reward_workers=0,
                             reward_timeout=1.0, estimator="reinforce_pp", n0=0, max_steps=100)
        # Claimed -> visible at once; the job never sits `queued` while the worker scores it.
        lab.wait(lambda: lab.db_status(hostile) != "queued", timeout=120, what="the claim")
        assert lab.db_status(hostile) in {"starting", "running"}
        # Scoring: 4 items x 1 s per batch. Each step ends, so items do time out.
        lab.wait(lambda: lab.metric_steps(hostile), timeout=120, what="a step despite the reward")
        unscorable = lab.job(hostile)["latest_metrics"]["reward/unscorable_frac"]
        assert unscorable == 1.0
        time.sleep(1.5)  # well inside the next batch
        cancelled_at = time.monotonic()
        response = lab.client.post(f"/v1/jobs/{hostile}/cancel", headers=lab.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] != "cancelled"  # the worker has it: a request, not a lie
        lab.wait(lambda: lab.db_status(hostile) == "cancelled", timeout=10, what="the cancel",
                 interval=0.05)
        cancel_seconds = time.monotonic() - cancelled_at

        good = lab.submit(dataset_id=dataset, max_steps=2)
        lab.wait(lambda: lab.db_status(good) in {"succeeded", "failed"}, timeout=180,
                 what="the next job")
        assert lab.db_status(good) == "succeeded"
        assert worker.poll() is None
    print(f"\nFIGURES hostile reward: cancel ended the scoring job in {cancel_seconds:.1f} s; "
          f"unscorable_frac {unscorable}; next job succeeded on the same worker")
