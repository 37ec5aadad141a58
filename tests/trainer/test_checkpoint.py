"""Checkpoints: exact round trip of weights/optimizer/RNG/state, atomicity, newest complete wins."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from trainer.checkpoint import checkpoint_dir, latest_checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("ck") / "m", layers=1, hidden=64)


def load(model_dir, lora=False):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return model, opt


def one_step(model, opt):
    ids = torch.arange(2, 12)[None]
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("lora", [False, True])
def test_round_trip_is_exact(model_dir, tmp_path, lora):
    model, opt = load(model_dir, lora)
    one_step(model, opt)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path, 1, model=model, optimizer=opt, state={"x": [1, 2]})
    assert (path / ("adapter" if lora else "model")).is_dir()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    one_step(model, opt)
    after = {k: v.clone() for k, v in model.state_dict().items()}

    fresh, fresh_opt = load(model_dir, lora)
    state = load_checkpoint(latest_checkpoint(tmp_path), model=fresh, optimizer=fresh_opt)
    assert state == {"step": 1, "x": [1, 2]}
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    one_step(fresh, fresh_opt)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, after[k]), k


def test_latest_ignores_incomplete_and_temp_dirs(model_dir, tmp_path):
    assert latest_checkpoint(tmp_path) is None
    model, opt = load(model_dir)
    save_checkpoint(tmp_path, 2, model=model, optimizer=opt, state={})
    save_checkpoint(tmp_path, 10, model=model, optimizer=opt, state={})
    checkpoint_dir(tmp_path, 20).mkdir()  # crashed before state.json: not complete
    (tmp_path / "checkpoints" / ".step-000030.tmp-x").mkdir()
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 10)
    save_checkpoint(tmp_path, 12, model=model, optimizer=opt, state={}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-000010", "step-000012", "step-000020"]


def test_failed_save_leaves_no_checkpoint(model_dir, tmp_path):
    model, opt = load(model_dir)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, 3, model=model, optimizer=opt, state={"bad": object()})
    assert latest_checkpoint(tmp_path) is None
    assert not list((tmp_path / "checkpoints").iterdir())
