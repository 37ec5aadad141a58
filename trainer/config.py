"""`TrainConfig`: one validated object per training job, shared by the CLI, the API and the worker.

Choices:
- pydantic v2, `extra="forbid"` at every level, so a typo is an error naming the field, not a
  silently ignored key. Every field carries a description (the API and the docs read them).
- Cross-field rules live in one place, `TrainConfig._cross_check`; each error names the field and
  says what to change. Names of estimators, rewards and rollout engines are checked against their
  registries, estimator/reward options are validated by building the object once and engine
  options against the engine's model (trainer.rollout.options), so a bad option fails here and not
  after the model has loaded.
- Paths are *not* checked for existence by the model itself: the API validates a config before the
  worker has filled `model`, `dataset` and `run_dir`. `check_paths()` does that; `train()` calls
  it first, before loading anything.
- `dtype` is the compute dtype: fp32 master weights always, bf16 autocast on GPU by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "EvalConfig",
    "EvalOptions",
    "LoraConfig",
    "LossConfig",
    "MemoryConfig",
    "OptimizerConfig",
    "SamplingConfig",
    "TrainConfig",
    "format_validation_error",
]


# Absolute bounds, far above any real run and far below int64 (a database column, numpy and torch
# all take these); a deployment sets tighter, admin-chosen limits on top (core/settings.py).
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_COUNT = 10_000_000
Beta = Annotated[float, Field(ge=0, lt=1)]

# trainer/loss.py's modes and KL estimators (it imports these names).
AggregationName = Literal["token_mean", "seq_mean", "constant"]
KlEstimatorName = Literal["k1", "k2", "k3"]


class ConfigError(ValueError):
    """A config (file or object) that cannot be used; the message names the field at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(_Strict):
    temperature: float = Field(1.0, ge=1e-3, le=10, description="sampling temperature (>= 0.001)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1 = off")
    top_k: int = Field(0, ge=0, le=MAX_COUNT, description="keep the k most likely tokens; 0 = off")
    max_new_tokens: int = Field(256, ge=1, le=65536, description="response length cap (tokens)")


class LossConfig(_Strict):
    clip_eps: float = Field(0.2, gt=0, lt=1, description="PPO ratio clip epsilon")
    kl_coef: float = Field(
        0.0, ge=0, le=1e3, description="weight of the KL to the frozen reference; 0 = no reference model"
    )
    kl_in: Literal["loss", "reward"] = Field(
        "loss", description="where the KL goes: 'loss' = kl_coef * kl_estimator per token in the "
        "loss; 'reward' = each sequence's reward minus kl_coef * its log ratio before the "
        "advantages (REINFORCE++/verl), exact reverse-KL gradient (trainer/loss.py)"
    )
    kl_estimator: KlEstimatorName = Field(
        "k2", description="per-token KL estimator in the loss (trainer/loss.py): k2 = (log ratio)^2 "
        "/ 2, whose expected gradient is the reverse-KL gradient; k3 = exp(-r) + r - 1, whose "
        "expected gradient is the *forward* KL(ref || pi)'s; k1 (log ratio) has zero expected "
        "gradient and is refused in the loss"
    )
    aggregation: AggregationName | None = Field(
        None, description="token_mean = sum over tokens / their count; seq_mean = per sequence, "
        "then over sequences; constant = sum over tokens / (sequences x max_new_tokens) (Dr. "
        "GRPO); None = constant for dr_grpo, token_mean otherwise"
    )
    ppo_epochs: int = Field(
        1, ge=1, le=16, description="update passes per batch; 1 = on-policy REINFORCE"
    )
    tis_cap: float | None = Field(
        None, gt=1, le=100,
        description="truncated importance sampling: weight each token by min(pi_trainer / "
        "pi_engine, tis_cap) to correct the engine/trainer logprob mismatch; None = off (2 typical)",
    )


class OptimizerConfig(_Strict):
    lr: float = Field(1e-6, gt=0, le=1, description="AdamW peak learning rate")
    weight_decay: float = Field(0.0, ge=0, le=10, description="AdamW decoupled weight decay")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="AdamW (beta1, beta2), each in [0, 1)")
    grad_clip: float = Field(1.0, ge=0, le=1e6, description="max global grad norm; 0 = no clipping")
    micro_batch_size: int = Field(
        8, ge=1, le=MAX_BATCH,
        description="sequences per forward/backward; gradients accumulate over the batch"
    )
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description="linear LR warmup steps, constant afterwards")
    max_tokens_per_micro_batch: int | None = Field(
        None, ge=1, le=1 << 24,
        description="token budget per forward/backward (prompt + response tokens, padding "
        "included): sequences are sorted by length and packed greedily under it, replacing the "
        "fixed micro_batch_size; None = fixed micro_batch_size chunks")


class MemoryConfig(_Strict):
    """Memory features (trainer/memory.py); none changes the gradient, only where memory goes."""

    gradient_checkpointing: bool = Field(
        False, description="recompute each layer's activations in the backward pass instead of "
        "keeping them (about 1/3 more update compute, activations ~1 layer instead of all)")
    offload_reference: bool = Field(
        False, description="keep the KL reference model on the CPU and move it to the device only "
        "for its forward passes (full fine-tune with kl_coef > 0; LoRA shares the base already)")
    max_device_memory_gb: float | None = Field(
        None, gt=0, le=1e6, description="refuse the job before loading when the memory estimate exceeds "
        "this many GiB per process; None = the device's total memory (no check on CPU)")


class LoraConfig(_Strict):
    r: int = Field(16, ge=1, le=4096, description="LoRA rank")
    alpha: float = Field(32.0, gt=0, le=1e6, description="LoRA scaling alpha")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or 'all-linear'"
    )


class TrainConfig(_Strict):
    """Everything one training job needs. See docs/architecture.md for who fills which field."""

    model: str = Field(..., description="local Hugging Face model directory (or a PEFT adapter "
                       "directory holding the base's config.json, with `base_model` set)")
    base_model: str | None = Field(
        None, description="base model directory when `model` is a PEFT adapter: the base is loaded "
        "with the adapter merged in, and training continues from that")
    dataset: str = Field(..., description="training JSONL ({'prompt', 'answer', ...} per line)")
    eval_dataset: str | None = Field(
        None, description="held-out JSONL; None = split eval_fraction off the training file"
    )
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of the dataset held out when eval_dataset is None"
    )
    reward: str = Field("math", description="reward name (trainer.rewards registry)")
    reward_options: dict[str, Any] = Field(default_factory=dict, description="reward options")
    reward_timeout: float = Field(10.0, gt=0, le=3600,
                                  description="seconds per reward item before unscorable")
    reward_workers: int = Field(
        2, ge=0, le=64, description="reward processes (per-item timeout); 0 = score in-process"
    )
    estimator: str = Field("basis", description="advantage estimator (trainer.advantages registry)")
    estimator_options: dict[str, Any] = Field(
        default_factory=dict, description="estimator options, e.g. {'normalize': 'batch_std'}"
    )
    rollouts_per_prompt: int = Field(
        1, ge=1, le=256, description="rollouts per prompt per step (k); group estimators need >= 2"
    )
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="prompts per step")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling")
    loss: LossConfig = Field(default_factory=LossConfig, description="policy loss")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="optimizer")
    lora: LoraConfig | None = Field(None, description="LoRA adapter; None = full fine-tune")
    engine: str = Field("hf", description="rollout engine: 'hf' (transformers) or 'vllm'")
    n0: int = Field(
        8, ge=0, le=1024, description="BASIS offline rollouts per training prompt; 0 = no priors"
    )
    checkpoint_every: int = Field(
        50, ge=0, le=MAX_STEPS, description="steps between checkpoints; 0 = only at the end (and on stop)"
    )
    eval_every: int = Field(25, ge=0, le=MAX_STEPS, description="steps between held-out evals; 0 = start/end")
    eval_size: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="held-out prompts per eval (first N of the eval set); None = all"
    )
    probe_every: int = Field(0, ge=0, le=MAX_STEPS, description="steps between value-MSE probes; 0 = off")
    probe_prompts: int = Field(4, ge=1, le=MAX_BATCH, description="prompts of the batch the probe measures")
    probe_rollouts: int = Field(
        16, ge=2, le=1024, description="M: Monte Carlo rollouts per probe prompt (>= 10 for gm8)"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed for data order, sampling and init")
    eval_seed: int = Field(
        0, ge=0, le=2**32 - 1, description="seed of the held-out split (eval_fraction); separate "
        "from `seed` so runs with different training seeds are scored on the same problems and can "
        "be paired"
    )
    max_steps: int = Field(100, ge=1, le=MAX_STEPS, description="training steps")
    samples_per_step: int = Field(
        4, ge=0, le=64,
        description="rollouts of each step kept for reading (prompt, completion, reward, "
                    "advantage); 0 = none")
    unscorable_fail_steps: int = Field(
        10, ge=0, le=MAX_STEPS,
        description="fail the run after this many consecutive steps in which every reward was "
                    "unscorable; 0 = never")
    run_dir: str = Field(
        "runs/default", description="run directory (checkpoints, metrics); `output_dir`, its "
        "former name, is still read", validation_alias=AliasChoices("run_dir", "output_dir"),
    )
    num_processes: int = Field(
        1, ge=1, le=64,
        description="processes (GPUs) of the job: > 1 runs it under torchrun, one rank per GPU "
        "(gloo on CPU), FSDP2 for the update; batch_size must divide evenly among them")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="memory features")
    async_rollouts: bool = Field(
        False, description="one-step off-policy rollouts: step t+1's batch is generated (by a copy "
        "of the policy, in a background thread) while step t updates; the one-update lag is "
        "corrected by loss.tis_cap's importance weights and reported as async/staleness_steps "
        "(trainer/offpolicy.py). Needs loss.tis_cap, engine 'hf' and num_processes 1")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if available")
    cpu_threads: int | None = Field(
        None, ge=1, le=256, description="torch CPU threads for this run; None = torch's default"
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="compute dtype: auto = bfloat16 autocast on GPU, float32 on CPU"
    )
    priors_cache_dir: str | None = Field(
        None, description="BASIS priors cache; None = ~/.cache/basis/priors"
    )
    export_model: bool = Field(
        True, description="platform only (the trainer ignores it): when the job succeeds, export "
        "its final checkpoint as a model (the job's fine_tuned_model)")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the chosen engine, checked against it "
        "(trainer.rollout.options), e.g. {'max_batch_size': 64} for hf"
    )

    @model_validator(mode="after")
    def _cross_check(self) -> TrainConfig:
        from trainer.advantages import ESTIMATORS, get_estimator
        from trainer.rollout import available_engines
        from trainer.rollout.options import validate_engine_options

        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"estimator: unknown {self.estimator!r}; choose one of {sorted(ESTIMATORS)}"
            )
        need = ESTIMATORS[self.estimator].min_rollouts
        if self.rollouts_per_prompt < need:
            raise ValueError(
                f"rollouts_per_prompt: estimator {self.estimator!r} needs >= {need} rollouts per "
                f"prompt, got {self.rollouts_per_prompt}; set rollouts_per_prompt: 8 (say), or "
                f"use a single-rollout estimator ('basis', 'reinforce_pp')"
            )
        try:
            get_estimator(self.estimator, **self.estimator_options)
        except ValueError as e:
            raise ValueError(f"estimator_options: {e}") from None
        _check_reward(self.reward, self.reward_options)
        engines = available_engines()
        if self.engine not in engines:
            raise ValueError(f"engine: unknown {self.engine!r}; choose one of {engines}")
        validate_engine_options(self.engine, self.engine_options)  # names engine_options.<key>
        if self.engine == "vllm" and self.engine_options.get("tensor_parallel_size", 1) > 1 \
                and self.device == "cpu":
            raise ValueError("engine_options.tensor_parallel_size: vLLM tensor parallelism needs "
                             "GPUs; set device 'cuda' (or 'auto' on a GPU machine) or size 1")
        if self.eval_dataset is None and self.eval_fraction == 0 and self.eval_every > 0:
            raise ValueError(
                "eval_fraction: 0 leaves no held-out prompts; set eval_fraction > 0, give "
                "eval_dataset, or set eval_every: 0"
            )
        if self.probe_every and self.probe_prompts > self.batch_size:
            raise ValueError(
                f"probe_prompts: {self.probe_prompts} exceeds batch_size {self.batch_size}; the "
                f"probe measures prompts of the batch, so set probe_prompts <= batch_size"
            )
        if self.loss.kl_coef > 0 and self.loss.kl_in == "loss" and self.loss.kl_estimator == "k1":
            raise ValueError(
                "loss.kl_estimator: 'k1' in the loss has an expected gradient of exactly 0 (it "
                "regularises nothing, it only adds noise); use kl_estimator 'k2' (reverse-KL "
                "gradient) or 'k3' (forward-KL gradient), or kl_in: 'reward' (the log ratio in "
                "the reward, REINFORCE++/verl)"
            )
        if self.num_processes > 1:
            _check_distributed(self)
        if self.async_rollouts:
            _check_async(self)
        if self.lora is not None and self.lora.target_modules == []:
            raise ValueError("lora.target_modules: empty list; name modules or use 'all-linear'")
        return self

    # ------------------------------------------------------------------- helpers

    @property
    def loss_aggregation(self) -> AggregationName:
        """`loss.aggregation`, with None resolved: Dr. GRPO's constant normaliser for `dr_grpo`
        (its paper's loss), token_mean for every other estimator."""
        if self.loss.aggregation is not None:
            return self.loss.aggregation
        return "constant" if self.estimator == "dr_grpo" else "token_mean"

    @property
    def sampling_dict(self) -> dict[str, Any]:
        return self.sampling.model_dump()

    def check_paths(self) -> None:
        """Raise ConfigError if `model`, `dataset` or `eval_dataset` do not exist (no loading)."""
        model = Path(self.model)
        if not (model / "config.json").is_file():
            raise ConfigError(
                f"model: {self.model!r} is not a Hugging Face model directory (no config.json)"
            )
        for name in ("dataset", "eval_dataset"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"{name}: file {value!r} does not exist")
        if self.base_model is not None:
            if not (Path(self.base_model) / "config.json").is_file():
                raise ConfigError(f"base_model: {self.base_model!r} is not a Hugging Face model "
                                  "directory (no config.json)")
            if not (model / "adapter_config.json").is_file():
                raise ConfigError(f"model: {self.model!r} has no adapter_config.json, but base_model "
                                  "is set (only an adapter has a base)")
            if self.engine == "vllm":
                raise ConfigError("model: an adapter model loads only with engine 'hf'; export the "
                                  "checkpoint merged (merge_lora) to roll out with vLLM")
        tp = self.engine_options.get("tensor_parallel_size", 1) if self.engine == "vllm" else 1
        heads = json.loads((model / "config.json").read_text()).get("num_attention_heads")
        if tp > 1 and isinstance(heads, int) and heads % tp:
            raise ConfigError(
                f"engine_options.tensor_parallel_size: {tp} does not divide the model's {heads} "
                f"attention heads; choose a divisor of {heads}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> TrainConfig:
        """Validate a mapping; a bad field raises ConfigError naming it."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, source)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Load a YAML (.yaml/.yml) or JSON file. Relative paths inside stay as written."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {e}") from None
        return cls.from_dict(data, source=str(path))


# An evaluation's size: rows x samples per prompt is what it generates, scores and stores.
MAX_EVAL_ROWS = 1_000_000
MAX_EVAL_SAMPLES_PER_PROMPT = 256


class EvalOptions(_Strict):
    """What a user may set on an evaluation (`POST /v1/evals`, `basis evals create`): how many
    completions of each row to sample, how, and which reward scores them (trainer/evaluate.py)."""

    reward: str = Field("math", description="reward name (trainer.rewards registry)")
    reward_options: dict[str, Any] = Field(default_factory=dict, description="reward options")
    reward_timeout: float = Field(10.0, gt=0, le=3600,
                                  description="seconds per reward item before unscorable")
    reward_workers: int = Field(
        2, ge=0, le=64, description="reward processes (per-item timeout); 0 = score in-process")
    samples_per_prompt: int = Field(
        1, ge=1, le=MAX_EVAL_SAMPLES_PER_PROMPT,
        description="completions sampled per row (n of pass@k); > 1 needs temperature > 0")
    temperature: float = Field(0.0, ge=0, le=10, description="sampling temperature; 0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass; 1 = off")
    top_k: int = Field(0, ge=0, le=MAX_COUNT, description="keep the k most likely tokens; 0 = off")
    max_new_tokens: int = Field(256, ge=1, le=65536, description="response length cap (tokens)")
    max_rows: int | None = Field(
        None, ge=1, le=MAX_EVAL_ROWS,
        description="evaluate the dataset's first N rows; None = every row")
    batch_rows: int = Field(
        16, ge=1, le=MAX_BATCH,
        description="rows per generation call; each call is one progress step (and cancel point)")
    engine: str = Field("hf", description="rollout engine: 'hf' (transformers) or 'vllm'")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the chosen engine, checked against it")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the sampling")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if available")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="compute dtype: auto = bfloat16 on GPU, float32 on CPU")
    cpu_threads: int | None = Field(
        None, ge=1, le=256, description="torch CPU threads for this run; None = torch's default")


class EvalConfig(EvalOptions):
    """One evaluation: `EvalOptions` plus the two paths the server fills (core/jobs/evals.py)."""

    model: str = Field(..., description="local Hugging Face model directory (or a PEFT adapter "
                       "directory, with `base_model` set)")
    base_model: str | None = Field(
        None, description="base model directory when `model` is a PEFT adapter (merged in to load)")
    dataset: str = Field(..., description="JSONL ({'prompt', 'answer', ...} per line)")

    @model_validator(mode="after")
    def _cross_check(self) -> EvalConfig:
        from trainer.rollout import available_engines
        from trainer.rollout.options import validate_engine_options

        _check_reward(self.reward, self.reward_options)
        engines = available_engines()
        if self.engine not in engines:
            raise ValueError(f"engine: unknown {self.engine!r}; choose one of {engines}")
        validate_engine_options(self.engine, self.engine_options)
        if self.samples_per_prompt > 1 and self.temperature == 0:
            raise ValueError(
                f"samples_per_prompt: {self.samples_per_prompt} samples at temperature 0 (greedy) "
                "are one completion repeated; set temperature > 0 (say 0.8) or samples_per_prompt 1")
        return self

    def check_paths(self) -> None:
        """Raise ConfigError if `model` or `dataset` does not exist (no loading)."""
        if not (Path(self.model) / "config.json").is_file():
            raise ConfigError(
                f"model: {self.model!r} is not a Hugging Face model directory (no config.json)")
        if not Path(self.dataset).is_file():
            raise ConfigError(f"dataset: file {self.dataset!r} does not exist")
        if self.base_model is not None:
            if not (Path(self.base_model) / "config.json").is_file():
                raise ConfigError(f"base_model: {self.base_model!r} is not a Hugging Face model "
                                  "directory (no config.json)")
            if self.engine == "vllm":
                raise ConfigError("model: an adapter model loads only with engine 'hf'; export the "
                                  "checkpoint merged (merge_lora) to evaluate it with vLLM")


def _check_distributed(cfg: TrainConfig) -> None:
    """What a multi-process job needs: equal shards and an engine that can run sharded."""
    n = cfg.num_processes
    if cfg.batch_size % n:
        raise ValueError(
            f"num_processes: batch_size {cfg.batch_size} does not split evenly over {n} "
            f"processes; make batch_size a multiple of {n}")
    if cfg.engine == "vllm":
        raise ValueError(
            "num_processes: engine 'vllm' runs in one process only here; use engine 'hf' for "
            "a multi-process job")


def _check_async(cfg: TrainConfig) -> None:
    """What one-step off-policy rollouts need (trainer/offpolicy.py)."""
    if cfg.num_processes > 1:
        raise ValueError(
            f"async_rollouts: not supported with num_processes {cfg.num_processes} (the generating "
            "copy of the policy would have to be sharded like the policy); set num_processes 1 or "
            "async_rollouts false")
    if cfg.engine != "hf":
        raise ValueError(
            f"async_rollouts: runs on engine 'hf' only (engine {cfg.engine!r} shares no thread-safe "
            "copy of the weights here); set engine 'hf' or async_rollouts false")
    if cfg.loss.tis_cap is None:
        raise ValueError(
            "async_rollouts: needs loss.tis_cap (2.0 is typical): each batch comes from the policy "
            "one update behind the trainer, and the truncated importance weights are what correct "
            "that; set loss.tis_cap or async_rollouts false")


def _check_reward(name: str, options: dict[str, Any]) -> None:
    """Reward name must be registered and its options valid (trainer.rewards does both)."""
    from trainer.rewards import REWARDS, validate_reward_options

    if name not in REWARDS:
        raise ValueError(f"reward: unknown {name!r}; choose one of {sorted(REWARDS)}")
    try:
        validate_reward_options(name, options)
    except ValueError as e:
        raise ValueError(f"reward_options: {e}") from None


def format_validation_error(err: ValidationError, source: str = "config") -> str:
    """One line per problem: `source: field.path: message`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (remove it or check its spelling)"
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)
