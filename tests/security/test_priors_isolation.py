"""Issue 18 item 10: the BASIS priors cache is per owner, so one user's cache hit can never reveal
that another user trained on the same rows, and the trainer's priors events name a cache key,
never a server path."""

from __future__ import annotations

from core.jobs.config import resolve_train_config
from core.models import Dataset, Job


def test_each_owner_has_its_own_priors_cache(world, settings):
    dirs = {}
    with world.app.state.sessionmaker() as session:
        for owner in (world.alice, world.bob):
            job = session.get(Job, owner.ids["job_id"])
            dataset = session.get(Dataset, job.dataset_id)
            config = resolve_train_config(session, settings, job.id, job.model, dataset, job.config)
            dirs[owner.name] = config.priors_cache_dir
            assert config.priors_cache_dir.endswith(f"priors/{dataset.owner_id}")
    assert dirs["alice"] != dirs["bob"]


def test_priors_events_name_no_server_path():
    import inspect

    from trainer import prior_cache

    source = inspect.getsource(prior_cache.cached_priors)
    events = [line for line in source.splitlines() if "log_event" in line]
    assert events and all("path" not in line for line in events), events
