"""`engine_options` checked against the engine (trainer.rollout.options): in TrainConfig, so a bad
option fails at submission, and in the engines, which read the same models; the module stays light
enough for the API image (no torch, transformers or vllm)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from trainer.config import ConfigError, TrainConfig
from trainer.rollout.options import (
    ENGINE_OPTIONS,
    EngineOptionsError,
    HfOptions,
    VllmOptions,
    validate_engine_options,
)

BASE = {"model": "m", "dataset": "d.jsonl"}

BAD = [  # (engine, options, key named, what the message says is accepted)
    ("hf", {"max_batch_sise": 8}, "max_batch_sise", "it accepts: max_batch_size"),
    ("hf", {"max_batch_size": "lots"}, "max_batch_size", "valid integer"),
    ("hf", {"max_batch_size": 2.5}, "max_batch_size", "valid integer"),
    ("hf", {"max_batch_size": 0}, "max_batch_size", "greater than or equal to 1"),
    ("vllm", {"max_batch_size": 8}, "max_batch_size", "it accepts: gpu_memory_utilization, "),
    ("vllm", {"enforce_eager": "maybe"}, "enforce_eager", "valid boolean"),
    ("vllm", {"lora_sync": "fused"}, "lora_sync", "'adapter' or 'merged'"),
    ("vllm", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization", "less than or equal to 1"),
    ("vllm", {"kv_cache_gb": 0}, "kv_cache_gb", "greater than 0"),
    ("vllm", {"max_model_len": 8}, "max_model_len", "greater than or equal to 16"),
]

GOOD = [
    ("hf", {}, {"max_batch_size": 256}),
    ("hf", {"max_batch_size": 64}, {"max_batch_size": 64}),
    ("vllm", {"gpu_memory_utilization": 0.5, "max_model_len": 512, "lora_sync": "merged",
              "enforce_eager": True},
     {"gpu_memory_utilization": 0.5, "max_model_len": 512, "lora_sync": "merged",
      "enforce_eager": True, "kv_cache_gb": None, "max_num_seqs": None,
      "enable_prefix_caching": True, "tensor_parallel_size": 1}),
]


@pytest.mark.parametrize(("engine", "options", "key", "needle"), BAD)
def test_bad_option_names_its_key_in_the_config_error(engine, options, key, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_dict({**BASE, "engine": engine, "engine_options": options})
    message = str(e.value)
    assert message.startswith(f"config: engine_options.{key}: "), message
    assert needle in message and f"engine {engine!r}" in message


@pytest.mark.parametrize(("engine", "options", "key", "needle"), BAD)
def test_validate_engine_options_refuses_the_same(engine, options, key, needle):
    with pytest.raises(EngineOptionsError, match=f"^engine_options\\.{key}: "):
        validate_engine_options(engine, options)


@pytest.mark.parametrize(("engine", "options", "full"), GOOD)
def test_good_options_pass_and_fill_defaults(engine, options, full):
    config = TrainConfig.from_dict({**BASE, "engine": engine, "engine_options": options})
    assert config.engine_options == options  # stored as given: a job's config round-trips
    assert validate_engine_options(engine, options) == full


def test_every_problem_is_named():
    with pytest.raises(EngineOptionsError) as e:
        validate_engine_options("vllm", {"gpu_memory_utilization": 2, "foo": 1})
    assert "engine_options.gpu_memory_utilization: " in str(e.value)
    assert "engine_options.foo: unknown option" in str(e.value)


def test_registry_covers_the_builtin_engines_and_documents_every_option():
    assert ENGINE_OPTIONS == {"hf": HfOptions, "vllm": VllmOptions}
    for model in ENGINE_OPTIONS.values():
        missing = [n for n, f in model.model_fields.items() if not f.description]
        assert not missing, f"{model.__name__}: {missing}"


def test_an_engine_without_an_options_model_is_left_to_check_its_own(monkeypatch):
    from trainer import rollout

    monkeypatch.setitem(rollout.ENGINES, "custom", object)
    config = TrainConfig.from_dict({**BASE, "engine": "custom", "engine_options": {"x": 1}})
    assert config.engine_options == {"x": 1}
    assert validate_engine_options("custom", {"x": 1}) == {"x": 1}


def test_hf_engine_reads_the_same_model():
    from trainer.rollout import EngineConfig, get_engine

    with pytest.raises(EngineOptionsError, match="engine_options.max_batch_sise: unknown option"):
        get_engine("hf", None, None, EngineConfig(engine_options={"max_batch_sise": 8}))
    with pytest.raises(EngineOptionsError, match="engine_options.max_batch_size: .*greater"):
        get_engine("hf", None, None, EngineConfig(engine_options={"max_batch_size": 0}))


def _run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_validates_engine_options_without_the_ml_stack():
    """The API image has no torch/transformers/vllm: make them unimportable, then validate."""
    _run("""
        import sys
        BLOCKED = ("torch", "transformers", "vllm", "peft", "safetensors")
        for name in BLOCKED:
            sys.modules[name] = None  # `import name` now raises ImportError
        from trainer.config import ConfigError, TrainConfig
        base = {"model": "m", "dataset": "d.jsonl"}
        TrainConfig.from_dict({**base, "engine": "vllm", "engine_options": {"lora_sync": "merged"}})
        TrainConfig.from_dict({**base, "engine_options": {"max_batch_size": 8}})
        try:
            TrainConfig.from_dict({**base, "engine": "vllm", "engine_options": {"nope": 1}})
        except ConfigError as e:
            assert "engine_options.nope" in str(e), e
        else:
            raise AssertionError("bad vllm option accepted")
        leaked = sorted(m for m in sys.modules
                        if m.split(".")[0] in BLOCKED and sys.modules[m] is not None)
        assert not leaked, leaked
    """)


def test_vllm_module_reexports_the_options_and_its_engine_reads_them():
    """vLLM is not installed here: a stub lets trainer.rollout.vllm import (it only touches vllm
    inside the engine), so the re-export and the engine's use of the shared model can be checked."""
    _run("""
        import sys, types
        stub = types.ModuleType("vllm")
        stub.LLM = object
        platforms = types.ModuleType("vllm.platforms")
        platforms.current_platform = None
        sys.modules.update({"vllm": stub, "vllm.platforms": platforms})
        from trainer.rollout import options
        from trainer.rollout.base import EngineConfig
        from trainer.rollout.vllm import VllmEngine, VllmOptions
        assert VllmOptions is options.VllmOptions
        try:
            VllmEngine(None, None, EngineConfig(engine_options={"lora_sync": "fused"}))
        except options.EngineOptionsError as e:
            assert str(e).startswith("engine_options.lora_sync: "), e
        else:
            raise AssertionError("bad vllm option accepted by the engine")
    """)
