"""Tiny model builder: HF-loadable, character-level tokenizer, deterministic, demo model atomicity."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from trainer.demo_model import DEMO_MARKER, demo_recipe, ensure_demo_model, is_demo_model
from trainer.tiny import build_tiny_model


def test_model_loads_with_auto_classes_and_meets_vllm_constraints(tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert config.hidden_size // config.num_attention_heads >= 32
    assert config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert config.vocab_size == len(tiny_tokenizer)
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tiny_tokenizer.eos_token_id,
                                          tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ids = torch.tensor([tiny_tokenizer("12+7=")["input_ids"]])
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (1, ids.shape[1] + 3) or out.shape[1] < ids.shape[1] + 3


@pytest.mark.parametrize("loader", [AutoTokenizer, PreTrainedTokenizerFast])
def test_tokenizer_is_one_token_per_character_whichever_class_loads_it(tiny_model_dir, loader):
    tokenizer = loader.from_pretrained(tiny_model_dir)
    text = "12+7= 19\n\tAnswer: (B) ~{x}"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == len(text) + 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer("1", add_special_tokens=False)["input_ids"] == [6 + ord("1")]
    for special in ("<eos>", "<pad>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer(special, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.decode(tokenizer("héllo €")["input_ids"], skip_special_tokens=True) == "héllo €"


def test_chat_template(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2="}],
        tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2=<|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_build_is_deterministic_under_a_seed(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3, hidden=64, layers=1)
    b = build_tiny_model(tmp_path / "b", seed=3, hidden=64, layers=1)
    c = build_tiny_model(tmp_path / "c", seed=4, hidden=64, layers=1)
    weights = [(d / "model.safetensors").read_bytes() for d in (a, b, c)]
    assert weights[0] == weights[1] != weights[2]
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()


def test_bad_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="head_dim >= 32"):
        build_tiny_model(tmp_path / "m", hidden=64, heads=4)
    with pytest.raises(ValueError, match="kv_heads"):
        build_tiny_model(tmp_path / "m", hidden=128, heads=2, kv_heads=3)


def test_ensure_demo_model_is_idempotent_atomic_and_safe(tmp_path):
    target = tmp_path / "models" / "demo"
    assert ensure_demo_model(target, warm_steps=2) == target
    assert is_demo_model(target)
    marker = json.loads((target / DEMO_MARKER).read_text())
    assert marker["recipe"] == demo_recipe(0, 2) and marker["report"]["steps"] == 2
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_model(target, warm_steps=2) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in target.parent.iterdir()] == ["demo"]  # no temp dirs left
    AutoModelForCausalLM.from_pretrained(target)

    assert ensure_demo_model(target, warm_steps=3) == target  # another recipe: rebuilt in place
    assert json.loads((target / DEMO_MARKER).read_text())["report"]["steps"] == 3
    assert [p.name for p in target.parent.iterdir()] == ["demo"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a demo model"):
        ensure_demo_model(other, warm_steps=1)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]

    half = tmp_path / "half"  # a model without the marker (e.g. an interrupted copy) is refused
    shutil.copytree(target, half)
    (half / DEMO_MARKER).unlink()
    assert not is_demo_model(half)


def test_the_demo_model_carries_its_training_defaults(tmp_path):
    """Written with the model, and added in place to a demo model built before the sidecar."""
    from trainer.demo_model import TRAINING_DEFAULTS
    from trainer.model_defaults import DEFAULTS_FILE, read_model_defaults

    target = ensure_demo_model(tmp_path / "demo", warm_steps=2)
    assert read_model_defaults(target) == TRAINING_DEFAULTS
    (target / DEFAULTS_FILE).unlink()
    marker = (target / DEMO_MARKER).stat().st_mtime_ns
    assert ensure_demo_model(target, warm_steps=2) == target
    assert read_model_defaults(target) == TRAINING_DEFAULTS
    assert (target / DEMO_MARKER).stat().st_mtime_ns == marker  # not rebuilt
