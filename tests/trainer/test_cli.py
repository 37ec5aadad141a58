"""CLI: bad configs and datasets fail before training with the field or line named; demo smoke."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cli import DEMO_CONFIG, demo_config, main

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path, **fields) -> Path:
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(fields))
    return path


def test_bad_config_field_exit_2_naming_it(tmp_path, capsys):
    cfg = write_config(tmp_path, model="m", dataset="d.jsonl", loss={"aggregation": "mean"})
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "loss.aggregation" in err and "token_mean" in err


def test_group_estimator_with_one_rollout_refused(tmp_path, capsys):
    cfg = write_config(tmp_path, model="m", dataset="d.jsonl", estimator="grpo")
    assert main(["run", str(cfg)]) == 2
    assert "rollouts_per_prompt" in capsys.readouterr().err


def test_bad_dataset_line_named_before_model_load(tmp_path, capsys, tiny_model_dir):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": 5, "answer": "2"}\n')
    cfg = write_config(tmp_path, model=str(tiny_model_dir), dataset=str(data), reward="exact",
                       run_dir=str(tmp_path / "run"))
    assert main(["run", str(cfg)]) == 2
    assert "line 2: field 'prompt'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_model_dir_named(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    cfg = write_config(tmp_path, model=str(tmp_path / "nope"), dataset=str(data))
    assert main(["run", str(cfg)]) == 2
    assert "model:" in capsys.readouterr().err


def test_demo_rejects_bad_estimator_before_building(tmp_path, capsys):
    assert main(["demo", "--estimator", "nope", "--cache-dir", str(tmp_path)]) == 2
    assert "estimator: unknown 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "demo-model").exists()


def test_demo_config_and_example_configs_are_valid(tmp_path):
    cfg = demo_config(tmp_path / "m", tmp_path / "d.jsonl", tmp_path / "out", tmp_path)
    assert cfg.estimator == DEMO_CONFIG["estimator"]
    from trainer.config import TrainConfig

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        TrainConfig.from_file(path)


@pytest.mark.slow
def test_demo_smoke_json_last_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "demo", "--json", "--max-steps", "2", "--rows", "400",
         "--warm-steps", "3", "--cache-dir", str(tmp_path / "cache"), "--out",
         str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2
    for key in ("initial_eval_accuracy", "final_eval_accuracy", "seconds"):
        assert key in result
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_configs_demo_yaml_matches_demo_config():
    from trainer.config import TrainConfig

    on_disk = TrainConfig.from_file(ROOT / "configs" / "demo.yaml").model_dump()
    built = demo_config(Path(on_disk["model"]), Path(on_disk["dataset"]),
                        Path(on_disk["run_dir"]), Path(".cache/basis")).model_dump()
    assert on_disk == built
