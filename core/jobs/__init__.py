"""The job domain, in one place for the API and the worker.

- `service`: what the API does to jobs (create, list, get, cancel, retry, delete, events, metrics).
- `config`: what a user may set and the one resolution of a job into the `TrainConfig` it runs.
- `lifecycle`: the status machine (`core.status.TRANSITIONS`), claims, leases and fencing,
  heartbeats, release, the user's cancel and retry, checkpoint rows.
- `events`: the one way a `job_events` row is written.
- `evals`: evaluations, jobs of kind "eval" on the same lifecycle (create, get, list, results, samples).
Transactions with retries and upserts are `core.db`'s; sending a job to the workers is `core.queue`'s.
"""
