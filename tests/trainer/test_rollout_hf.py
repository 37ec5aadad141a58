"""hf rollout engine on the tiny model: shapes, order, logprobs, EOS, determinism, registry."""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import (
    EngineConfig,
    SamplingParams,
    available_engines,
    get_engine,
    register_engine,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.tiny import build_tiny_model

    torch.set_num_threads(1)
    path = build_tiny_model(tmp_path_factory.mktemp("hf") / "m", layers=1, hidden=64)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    return get_engine("hf", model, tok, None), model, tok


def prompts(tok):
    return [tok("12+7=")["input_ids"], tok("3*45+6=")["input_ids"]]  # different lengths


def test_prompt_major_order_and_fields(engine):
    eng, _, tok = engine
    out = eng.generate(prompts(tok), 3, SamplingParams(max_new_tokens=6, seed=0))
    assert [r.prompt_index for r in out] == [0, 0, 0, 1, 1, 1]
    for r in out:
        assert r.prompt_ids == prompts(tok)[r.prompt_index]
        assert 1 <= len(r.response_ids) <= 6 and len(r.logprobs) == len(r.response_ids)
        assert tok.pad_token_id not in r.response_ids
        ends_eos = r.response_ids[-1] in eng.eos_ids
        assert r.finish_reason == ("stop" if ends_eos else "length")
        assert ends_eos or len(r.response_ids) == 6
        assert r.text == tok.decode(r.response_ids, skip_special_tokens=True)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_forward_pass_under_temperature(engine, temperature):
    eng, model, tok = engine
    out = eng.generate(prompts(tok), 2, SamplingParams(temperature=temperature,
                                                       max_new_tokens=6, seed=3))
    for r in out:  # left padding must not change what the model saw
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(r.prompt_ids) - 1:-1] / temperature
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.response_ids)[:, None])
        assert torch.allclose(ref.squeeze(-1), torch.tensor(r.logprobs), atol=1e-4)


def test_top_k_logprobs_are_renormalised(engine):
    eng, _, tok = engine
    out = eng.generate(prompts(tok), 4, SamplingParams(top_k=1, max_new_tokens=4, seed=0))
    # top_k=1 leaves one token with probability 1: every logprob is 0, every sample identical.
    assert all(abs(lp) < 1e-5 for r in out for lp in r.logprobs)
    assert out[0].response_ids == out[1].response_ids


def test_seeded_calls_are_deterministic_and_leave_global_rng(engine):
    eng, _, tok = engine
    params = SamplingParams(max_new_tokens=6, seed=11)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = eng.generate(prompts(tok), 4, params)
    assert torch.equal(before, torch.get_rng_state())
    b = eng.generate(prompts(tok), 4, params)
    c = eng.generate(prompts(tok), 4, SamplingParams(max_new_tokens=6, seed=12))
    assert [r.response_ids for r in a] == [r.response_ids for r in b]
    assert [r.response_ids for r in a] != [r.response_ids for r in c]


def test_progress_comes_per_batch_and_changes_nothing_drawn(engine):
    """The priors phase reports progress through `generate(progress=...)`: between the engine's
    own batches, outside the random stream, so the rollouts are those of a silent call."""
    _, model, tok = engine
    small = get_engine("hf", model, tok, EngineConfig(engine_options={"max_batch_size": 3}))
    params = SamplingParams(max_new_tokens=6, seed=5)
    seen: list[tuple[int, int]] = []
    loud = small.generate(prompts(tok), 4, params, progress=lambda done, total: seen.append((done, total)))
    quiet = small.generate(prompts(tok), 4, params)
    assert seen == [(3, 8), (6, 8), (8, 8)]
    assert [r.response_ids for r in loud] == [r.response_ids for r in quiet]


def test_greedy_and_chunking(engine):
    eng, model, tok = engine
    greedy = SamplingParams(temperature=0, max_new_tokens=5)
    whole = eng.generate(prompts(tok), 3, greedy)
    assert whole[0].response_ids == whole[1].response_ids == whole[2].response_ids
    small = get_engine("hf", model, tok, EngineConfig(engine_options={"max_batch_size": 2}))
    assert [r.response_ids for r in small.generate(prompts(tok), 3, greedy)] == [
        r.response_ids for r in whole]
    assert eng.sync_weights(model) == 0.0


def test_registry():
    assert {"hf", "vllm"} <= set(available_engines())
    with pytest.raises(ValueError, match="valid names"):
        get_engine("nope", None, None, None)
    with pytest.raises(ValueError, match="already registered"):
        register_engine("hf")(object)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_generate_logs_no_generation_flag_warning(engine, temperature):
    """Greedy used to pass top_k=0, which transformers warns is unused without sampling."""
    import logging

    from transformers.utils import logging as hf_logging

    eng, _, tok = engine
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    root = logging.getLogger("transformers")
    hf_logging.warning_once.cache_clear()  # a warning already logged once would be swallowed
    root.addHandler(handler)
    try:
        eng.generate(prompts(tok), 2, SamplingParams(temperature=temperature, max_new_tokens=3))
    finally:
        root.removeHandler(handler)
    assert [r.getMessage() for r in records] == []


def test_checkpoint_generation_config_does_not_change_what_is_sampled(tmp_path):
    """A hub checkpoint's generation_config.json (repetition penalty, min_p, no-repeat n-grams,
    min_new_tokens) would be applied by transformers after our logprob recorder, so the recorded
    logprobs would not describe the sampled tokens. The engine switches it off while generating."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.tiny import build_tiny_model

    path = build_tiny_model(tmp_path / "m", layers=1, hidden=64)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.generation_config
    cfg.repetition_penalty, cfg.min_p, cfg.no_repeat_ngram_size = 50.0, 0.5, 1
    cfg.top_k, cfg.min_new_tokens = 1, 6
    eng = get_engine("hf", model, tok, None)
    out = eng.generate(prompts(tok), 3, SamplingParams(max_new_tokens=6, seed=5))
    for r in out:
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(r.prompt_ids) - 1:-1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.response_ids)[:, None])
        assert torch.allclose(ref.squeeze(-1), torch.tensor(r.logprobs), atol=1e-4)
    greedy = eng.generate(prompts(tok), 1, SamplingParams(temperature=0, max_new_tokens=5))
    for r in greedy:  # plain argmax decoding, no penalty or forced length
        ids = list(r.prompt_ids)
        for token in r.response_ids:
            with torch.no_grad():
                assert int(model(torch.tensor([ids])).logits[0, -1].argmax()) == token
            ids.append(token)
    assert model.generation_config is cfg and cfg.repetition_penalty == 50.0  # restored
