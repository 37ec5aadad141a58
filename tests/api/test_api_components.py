"""GET /v1/components lists what a job may name, straight from the trainer's registries."""

from __future__ import annotations

from trainer.advantages import ESTIMATORS, Estimator
from trainer.rewards import REWARDS
from trainer.rollout import available_engines


def test_components_need_a_key(client):
    assert client.get("/v1/components").status_code == 401


def test_components_mirror_the_registries(client, alice):
    body = client.get("/v1/components", headers=alice).json()
    estimators = {e["name"]: e for e in body["estimators"]}
    assert set(estimators) == set(ESTIMATORS)
    assert set(r["name"] for r in body["rewards"]) == set(REWARDS)
    assert [e["name"] for e in body["engines"]] == available_engines()
    assert estimators["basis"]["min_rollouts"] == 1 and estimators["grpo"]["min_rollouts"] == 2
    # Options are the JSON Schema TrainConfig validates against, defaults included.
    basis = estimators["basis"]["options"]["properties"]
    assert basis["history"]["default"] is True and "history_drift" in basis
    assert all(e["description"] for e in body["estimators"] + body["rewards"] + body["engines"])
    engines = {e["name"]: e for e in body["engines"]}
    assert engines["hf"]["options"]["properties"]["max_batch_size"]["default"] == 256
    assert "lora_sync" in engines["vllm"]["options"]["properties"]


def test_a_newly_registered_estimator_is_listed(client, alice, monkeypatch):
    class Custom(Estimator):
        """Custom: a plug-in estimator."""

        min_rollouts = 4

    monkeypatch.setitem(ESTIMATORS, "custom", Custom)
    body = client.get("/v1/components", headers=alice).json()
    custom = next(e for e in body["estimators"] if e["name"] == "custom")
    assert custom == {"name": "custom", "description": "Custom: a plug-in estimator.",
                      "min_rollouts": 4, "options": custom["options"]}
    assert custom["options"]["properties"] == {}
