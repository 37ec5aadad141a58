"""`python -m trainer.bench study`: statistics by hand, verdicts, the renderer, and the plumbing of
arms x seeds on a one-layer tiny model (the demo-sized `--smoke` is the benchmark's own check)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer.bench import study as st

# ------------------------------------------------------------------------ statistics


def test_t_interval_by_hand():
    ci = st.t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["low"] == pytest.approx(2 - half) and ci["high"] == pytest.approx(2 + half)
    assert st.t_interval([0.5])["low"] is None  # one seed: no interval, not a fake one


def test_paired_difference_pairs_by_seed_and_bootstrap_brackets_the_mean():
    a = {0: 0.50, 1: 0.55, 2: 0.60, 3: 0.40}
    b = {0: 0.45, 1: 0.50, 2: 0.50, 9: 0.0}  # seed 3 and 9 have no partner
    d = st.paired_difference(a, b)
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(np.mean([0.05, 0.05, 0.10]))
    assert 0.05 - 1e-12 <= d["low"] <= d["mean"] <= d["high"] <= 0.10 + 1e-12


def test_ratio_of_means_is_paired_and_exact_for_proportional_errors():
    rng = np.random.default_rng(0)
    errors = {s: (0.3 * y, y) for s in range(3) for y in [rng.uniform(0.01, 0.2, 40)]}
    r = st.ratio_of_means(errors, reps=300)
    assert r["ratio"] == pytest.approx(0.3) and r["n_seeds"] == 3 and r["n_prompts"] == 120
    assert r["low"] == pytest.approx(0.3) and r["high"] == pytest.approx(0.3)


def test_value_at_and_time_to_target_on_a_step_curve():
    curve = [{"step": 0, "rollouts": 100, "train_seconds": 5.0, "eval_accuracy": 0.2},
             {"step": 10, "rollouts": 200, "train_seconds": 9.0, "eval_accuracy": 0.4},
             {"step": 20, "rollouts": 300, "train_seconds": 14.0, "eval_accuracy": 0.35}]
    assert st.value_at(curve, "rollouts", 250) == 0.4  # the last eval at or before x
    assert st.value_at(curve, "train_seconds", 4.0) is None
    assert st.time_to_target(curve, 0.35) == 9.0 and st.time_to_target(curve, 0.5) is None


# -------------------------------------------------------------------- claims and render


def fake_run(arm, seed, accs, per_step, secs_per_step, probe_scale, priors=0):
    curve = [{"step": s, "rollouts": priors + s * per_step, "train_seconds": s * secs_per_step,
              "eval_accuracy": a} for s, a in zip((0, 50, 100), accs, strict=True)]
    truth = np.linspace(0.02, 0.1, 8)
    errors = {name: list(scale * truth) for name, scale in probe_scale.items()}
    return {"arm": arm, "seed": seed, "estimator": st.ARMS[arm].estimator, "budget": "steps:100",
            "prompts_per_step": per_step // st.ARMS[arm].rollouts_per_prompt,
            "rollouts_per_step": per_step, "curve": curve,
            "probes": [{"step": 50, "prompt_ids": [str(i) for i in range(8)], "errors": errors}]}


def fake_study(seeds=(0, 1, 2, 3, 4)):
    scale = {"basis_paper": 0.2, "reinforce_pp": 1.0, "group_mean_8": 0.1}
    runs = []
    for s in seeds:
        jitter = 0.01 * s
        runs.append(fake_run("basis_paper", s, [0.2, 0.4 + jitter, 0.50 + jitter], 256, 0.1,
                             scale, priors=1000))
        runs.append(fake_run("rloo", s, [0.2, 0.3, 0.40 + jitter], 256, 0.1, scale))
        runs.append(fake_run(st.GRPO8, s, [0.2, 0.45, 0.52 + jitter], 2048, 0.8, scale))
    spec = st.Spec(seeds={a: list(seeds) for a in ("basis_paper", "rloo", st.GRPO8)},
                   budgets={a: "steps:100" for a in ("basis_paper", "rloo", st.GRPO8)})
    return st.analyse(runs, spec, "python -m trainer.bench study --fake")


def test_claims_verdicts_follow_their_rules():
    study = fake_study()
    a = next(c for c in study["claims"] if c["id"] == "a")
    assert a["estimate"] == pytest.approx(0.2) and a["verdict"] == "holds"  # 80% lower
    b = next(c for c in study["claims"] if c["id"] == "b")
    assert b["estimate"] == pytest.approx(2.0) and b["verdict"] == "does not hold"
    d = next(c for c in study["claims"] if c["id"] == "d")
    # At rloo's final rollouts BASIS has spent 1000 on priors: its accuracy at step 50 counts.
    assert d["estimate"] == pytest.approx(np.mean([0.4 + 0.01 * s - (0.40 + 0.01 * s)
                                                   for s in range(5)]))
    assert d["verdict"] == "inconclusive" and d["at_matched_steps"]["mean"] == pytest.approx(0.1)
    c_quality, c_wall = (c for c in study["claims"] if c["id"] == "c")
    assert c_quality["estimate"] == pytest.approx(-0.02) and c_quality["verdict"] == "holds"
    assert c_quality["time_ratio"]["mean"] == pytest.approx(0.125)
    assert c_wall["estimate"] == pytest.approx(0.5 - 0.2 + 0.02)  # GRPO-8 at 10 s: step 0 only
    assert study["arms"][st.GRPO8]["final_accuracy"]["n"] == 5
    assert study["arms"]["basis_paper"]["time_to_grpo8_final"][0] is None  # never reached 0.54


def test_render_and_update_docs(tmp_path):
    study = fake_study()
    md = st.render_claims(study)
    for c in study["claims"]:
        assert f"**{c['verdict']}**" in md and c["measure"] in md
    assert "| `basis_paper` | 256 x 1 | 5 | steps:100 |" in md
    assert "python -m trainer.bench study --fake" in md
    doc = tmp_path / "b.md"
    doc.write_text(f"# B\nbefore\n{st.BEGIN}\nSTALE TABLE\n{st.END}\nafter\n")
    st.update_docs(doc, study)
    text = doc.read_text()
    assert "STALE TABLE" not in text and md in text and text.startswith("# B\nbefore\n")
    assert text.endswith(f"{st.END}\nafter\n")
    with pytest.raises(ValueError, match="no generated block"):
        (tmp_path / "c.md").write_text("no block")
        st.update_docs(tmp_path / "c.md", study)


def test_budget_parse_rejects_nonsense():
    assert str(st.Budget.parse("rollouts:1000")) == "rollouts:1000"
    for bad in ("steps", "minutes:3", "steps:0"):
        with pytest.raises(ValueError, match="budget"):
            st.Budget.parse(bad)


# --------------------------------------------------------------------------- plumbing


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    from trainer.tasks import generate_arithmetic, write_jsonl
    from trainer.tiny import build_tiny_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    model = build_tiny_model(root / "model", layers=1, hidden=64, heads=2)
    data = write_jsonl(generate_arithmetic(60, seed=0), root / "data.jsonl")
    arms = ["basis_paper", "rloo", st.GRPO8]
    return st.Spec(seeds={a: [0, 1] for a in arms}, budgets={a: "steps:2" for a in arms},
                   batch_size=8, eval_every_rollouts=8, eval_size=6, probe_every=1,
                   probe_prompts=2, probe_rollouts=10, n0=2, max_new_tokens=4, model=str(model),
                   dataset=str(data), cache_dir=str(root / "cache"),
                   extra={"reward_workers": 0}), root


def test_study_runs_arms_x_seeds_resumes_and_writes_json_and_figures(tiny_spec):
    spec, root = tiny_spec
    out, logs = root / "runs", []
    results = st.run_study(spec, out, jobs=1, log=logs.append)
    assert sorted((r["arm"], r["seed"]) for r in results) == sorted(spec.runs())
    grpo = next(r for r in results if r["arm"] == st.GRPO8)
    assert grpo["rollouts_per_step"] == 64 and grpo["curve"][-1]["step"] == 2
    paper = next(r for r in results if r["arm"] == "basis_paper")
    assert paper["curve"][0]["rollouts"] == paper["priors"]["rollouts"] > 0  # priors counted
    assert {"basis_paper", "reinforce_pp", "rloo_batch"} <= set(paper["probes"][0]["errors"])
    # Same held-out problems for both seeds: the step-0 accuracy of the shared warm start is equal.
    assert len({r["curve"][0]["eval_accuracy"] for r in results}) == 1
    again = st.run_study(spec, out, jobs=1, log=logs.append)
    assert logs[-1] == "study: 6 runs reused, 0 to run with 1 jobs" and len(again) == 6
    study = st.analyse(results, spec, "cmd")
    assert {c["id"] for c in study["claims"]} == {"a", "b", "c", "d"}
    paths = st.figures(study, root)
    assert [p.name for p in paths] == ["accuracy_vs_train_seconds.png",
                                       "accuracy_vs_rollouts.png", "value_mse.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    json.dumps(study)  # the study JSON is plain JSON


def test_rollouts_budget_counts_basis_priors(tiny_spec):
    spec, root = tiny_spec
    spec = st.Spec(**{**spec.__dict__, "budgets": {"basis_paper": "rollouts:200", "rloo": "rollouts:200",
                                                   st.GRPO8: "rollouts:200"}})
    paper, _ = st.run_config(spec, "basis_paper", 0, root / "x")
    rloo, _ = st.run_config(spec, "rloo", 0, root / "x")
    grpo, _ = st.run_config(spec, st.GRPO8, 0, root / "x")
    train_prompts = 54  # 60 rows, 6 held out
    assert rloo.max_steps == 200 // 8 and grpo.max_steps == 200 // 64
    assert paper.max_steps == (200 - 2 * train_prompts) // 8
    with pytest.raises(ValueError, match="priors"):
        st.run_config(st.Spec(**{**spec.__dict__, "budgets": {"basis_paper": "rollouts:50"}}),
                      "basis_paper", 0, root / "x")


def test_eval_cadence_follows_rollouts_with_a_cap_on_evals(tiny_spec):
    spec, root = tiny_spec
    spec = st.Spec(**{**spec.__dict__, "budgets": {"rloo": "steps:300", st.GRPO8: "steps:300"},
                      "eval_every_rollouts": 64})
    assert st.run_config(spec, "rloo", 0, root / "x")[0].eval_every == 10  # the cap: 300 / 30
    spec = st.Spec(**{**spec.__dict__, "eval_every_rollouts": 640})
    assert st.run_config(spec, "rloo", 0, root / "x")[0].eval_every == 80  # 640 rollouts / 8
    assert st.run_config(spec, st.GRPO8, 0, root / "x")[0].eval_every == 10


def test_a_verdict_needs_the_t_interval_as_well_as_the_bootstrap():
    stat = {"mean": 0.02, "low": 0.01, "high": 0.03, "t": {"low": -0.01, "high": 0.05}}
    args = dict(holds=lambda lo, hi: lo > 0, fails=lambda lo, hi: hi < 0, rule="r", command="c")
    assert st._claim("d", "m", "c", "x", stat, "mean", **args)["verdict"] == "inconclusive"
    stat["t"] = {"low": 0.005, "high": 0.035}
    row = st._claim("d", "m", "c", "x", stat, "mean", **args)
    assert row["verdict"] == "holds" and (row["low"], row["t_low"]) == (0.01, 0.005)
