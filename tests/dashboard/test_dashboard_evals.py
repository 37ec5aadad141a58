"""The Evaluations page under Streamlit's AppTest, against the real API: a user with a base and a
fine-tuned model evaluated on the same dataset (and one evaluation elsewhere) sees them listed and
compared side by side, figures and completions read back from the page's tables and chart."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest

from core.db import session_scope
from core.models import User
from core.services import datasets as dataset_service
from core.services.keys import create_key
from tests.dashboard.dashboard_apptest import app_test, chart_with
from tests.dashboard.dashboard_stack import add_eval

NAN = float("nan")
BASE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, NAN, 0.0]])  # 3 of 12
TUNED = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # 8 of 12


@pytest.fixture(scope="module")
def erin(stack):
    """(key, base eval id, tuned eval id, other eval id, dataset id) of a user with three
    evaluations: base and fine-tuned on one dataset, then one on another dataset."""
    engine = stack.app.state.engine
    with session_scope(engine) as session:
        key, secret = create_key(session, "erin")
        owner_id = key.user_id
    with session_scope(engine) as session:
        other = dataset_service.create_dataset(
            session, stack.settings, session.get(User, owner_id),
            source=BytesIO(b'{"prompt": "1+1=", "answer": "2"}\n'), filename="other.jsonl",
            content_type="application/jsonl", name="other").id
    with session_scope(engine) as session:
        mine = dataset_service.create_dataset(
            session, stack.settings, session.get(User, owner_id),
            source=BytesIO(b'{"prompt": "2+2=", "answer": "4"}\n' * 3), filename="arith.jsonl",
            content_type="application/jsonl", name="arith").id
    other_eval = add_eval(engine, owner_id, other, "tiny-qwen", np.array([[1.0]]), temperature=0.0)
    base = add_eval(engine, owner_id, mine, "tiny-qwen", BASE)
    tuned = add_eval(engine, owner_id, mine, "tiny-qwen-ft", TUNED)
    return secret, base, tuned, other_eval, mine, other


def test_evaluations_are_listed_and_compared_side_by_side(stack, erin):
    key, base, tuned, other_eval, dataset, other = erin
    at = app_test(stack.url, key, "views/evals.py")
    assert not at.exception and not at.error
    assert at.title[0].value == "Evaluations"
    listed = at.dataframe[0].value.set_index("id")
    assert list(listed.index) == [tuned, base, other_eval]  # newest first
    assert listed.loc[tuned, "accuracy"] == pytest.approx(8 / 12)
    assert listed.loc[base, "pass@k"] == pytest.approx((1 + 0 + 1) / 3)  # pass@4
    assert listed.loc[base, "unscorable"] == pytest.approx(1 / 12)

    # The newest evaluated dataset is picked, with the newest evaluation of each model on it.
    assert at.selectbox(key="evals_dataset").value == dataset
    assert at.multiselect(key=f"evals_pick_{dataset}").value == [tuned, base]
    compare = at.dataframe[1].value
    assert list(compare.columns) == ["tiny-qwen-ft", "tiny-qwen"]
    assert compare.loc["accuracy", "tiny-qwen"] == pytest.approx(3 / 12)
    assert compare.loc["accuracy", "tiny-qwen-ft"] == pytest.approx(8 / 12)
    # pass@2 by hand: base rows c = 1, 0, 2 of n = 4 -> (1/2 + 0 + 5/6) / 3.
    assert compare.loc["pass@2", "tiny-qwen"] == pytest.approx((1 / 2 + 0 + 5 / 6) / 3)
    assert compare.loc["response tokens (mean)", "tiny-qwen"] == 3.0
    assert compare.loc["unscorable", "tiny-qwen-ft"] == 0.0
    bars = chart_with(at, "fraction correct")["data"]
    assert set(bars["figure"]) == {"accuracy", "pass@1", "pass@2", "pass@4"}
    assert bars.set_index(["model", "figure"]).loc[("tiny-qwen-ft", "pass@4"), "value"] == 1.0

    samples = at.dataframe[2].value
    assert list(samples["sample"]) == [0, 1, 2, 3]
    assert samples["tiny-qwen-ft"].tolist() == [f"tiny-qwen-ft row 0 sample {j}" for j in range(4)]
    assert samples["tiny-qwen reward"].tolist() == [1.0, 0.0, 0.0, 0.0]
    at.number_input(key="evals_row").set_value(2).run()
    samples = at.dataframe[2].value
    assert samples["tiny-qwen"].tolist() == [f"tiny-qwen row 2 sample {j}" for j in range(4)]
    assert samples["tiny-qwen reward"].isna().tolist() == [False, False, True, False]

    # Another dataset: only its evaluation.
    evaluated = at.selectbox(key="evals_dataset").options
    assert len(evaluated) == 2 and dataset in evaluated[0]
    at.selectbox(key="evals_dataset").set_value(other).run()
    assert not at.exception
    assert list(at.dataframe[1].value.columns) == ["tiny-qwen"]


def test_a_deep_link_opens_the_chosen_comparison(stack, erin):
    key, base, _, _, dataset, _ = erin
    at = app_test(stack.url, key, "views/evals.py", dataset=dataset, evals=base)
    assert not at.exception
    assert at.multiselect(key=f"evals_pick_{dataset}").value == [base]
    assert list(at.dataframe[1].value.columns) == ["tiny-qwen"]


def test_no_evaluations_state(stack):
    at = app_test(stack.url, stack.keys["bob"], "views/evals.py")
    assert not at.exception and not at.error
    assert any("No evaluations yet" in i.value for i in at.info)


def test_the_form_creates_an_evaluation_and_names_a_bad_field(stack):
    engine = stack.app.state.engine
    with session_scope(engine) as session:
        key, secret = create_key(session, "fay")
        owner_id = key.user_id
    with session_scope(engine) as session:
        dataset = dataset_service.create_dataset(
            session, stack.settings, session.get(User, owner_id),
            source=BytesIO(b'{"prompt": "2+2=", "answer": "4"}\n' * 5), filename="fours.jsonl",
            content_type="application/jsonl", name="fours").id
    at = app_test(stack.url, secret, "views/evals.py")
    assert not at.exception and any("No evaluations yet" in i.value for i in at.info)
    assert at.selectbox(key="evals_new_dataset").value == dataset
    at.selectbox(key="evals_new_model").set_value("tiny-qwen")
    at.selectbox(key="evals_new_reward").set_value("exact")
    at.number_input(key="evals_new_k").set_value(4)
    at.button[0].click().run()  # k = 4 at temperature 0: refused, naming the field
    assert not at.exception
    assert any("samples_per_prompt" in e.value and "temperature" in e.value for e in at.error)
    with session_scope(engine) as session:
        from core.models import Job

        assert session.query(Job).filter_by(owner_id=owner_id).count() == 0
    at.number_input(key="evals_new_temperature").set_value(0.8)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert any("queued" in s.value for s in at.success)
    listed = at.dataframe[0].value
    assert listed["status"].tolist() == ["queued"] and listed["k"].tolist() == [4]
    assert listed["model"].tolist() == ["tiny-qwen"]


def _payload(eval_id: str, model: str, **config) -> dict:
    """An evaluation as GET /v1/evals lists it, with results, run with `config`'s settings."""
    return {"id": eval_id, "model": model, "dataset_id": "ds_1", "status": "succeeded",
            "results": {"rows": 3, "accuracy": 0.5, "pass_at_k": {"1": 0.5}},
            "config": {"reward": "exact", "samples_per_prompt": 1, "temperature": 0.0,
                       "max_new_tokens": 8, "max_rows": None, **config}}


def test_the_default_pick_compares_evaluations_run_alike():
    """Newest first: the fine-tuned model's k=4 run is newest, but base and fine-tuned were both
    evaluated greedily with exact match: those two are compared, not greedy vs sampled."""
    from dashboard import evaluations

    evals = [_payload("e5", "tuned", samples_per_prompt=4, temperature=0.8),
             _payload("e4", "tuned"), _payload("e3", "base", reward="math", max_new_tokens=256),
             _payload("e2", "base"), _payload("e1", "tuned")]
    assert evaluations.default_pick(evals, "ds_1") == ["e4", "e2"]
    assert evaluations.differences([evals[1], evals[3]]) == []
    assert evaluations.differences(evals[:3]) == [
        "reward (exact, math)", "samples per prompt (4, 1)", "temperature (0.8, 0.0)",
        "max new tokens (8, 256)"]
    assert evaluations.differences([evals[1], _payload("e6", "base", max_rows=100)]) == [
        "max rows (all, 100)"]
    # One model per settings: the newest settings win.
    assert evaluations.default_pick(evals[:1] + evals[2:3], "ds_1") == ["e5"]
    assert evaluations.default_pick(evals, "ds_other") == []


def test_a_comparison_of_evaluations_run_differently_is_flagged(stack):
    engine = stack.app.state.engine
    with session_scope(engine) as session:
        key, secret = create_key(session, "gil")
        owner_id = key.user_id
    with session_scope(engine) as session:
        dataset = dataset_service.create_dataset(
            session, stack.settings, session.get(User, owner_id),
            source=BytesIO(b'{"prompt": "2+2=", "answer": "4"}\n' * 3), filename="arith.jsonl",
            content_type="application/jsonl", name="arith").id
    sampled = add_eval(engine, owner_id, dataset, "tiny-qwen", BASE)  # k = 4, temperature 1
    greedy = add_eval(engine, owner_id, dataset, "tiny-qwen-ft", TUNED[:, :1], temperature=0.0)
    at = app_test(stack.url, secret, "views/evals.py")
    assert not at.exception
    assert at.multiselect(key=f"evals_pick_{dataset}").value == [greedy]  # not greedy vs sampled
    assert not at.warning
    at = app_test(stack.url, secret, "views/evals.py", dataset=dataset, evals=f"{greedy},{sampled}")
    assert not at.exception
    [warning] = at.warning
    assert "samples per prompt (1, 4)" in warning.value and "temperature (0.0, 1.0)" in warning.value
