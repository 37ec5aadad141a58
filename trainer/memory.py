"""Memory features of the update and the memory model behind the job-start estimate.

Choices:
- Token-budget micro-batching (`optimizer.max_tokens_per_micro_batch`): a micro-batch's cost is
  its padded size, sequences x longest sequence, so sequences are sorted longest first and packed
  greedily while that product stays under the budget. Sorting keeps padding small (neighbours
  have similar lengths); a sequence longer than the budget gets a micro-batch of its own (it has
  to run anyway). Gradients do not change: the loss normaliser is the whole batch's
  (trainer/loss.py), so only the summation order of the micro-batches differs.
- Gradient checkpointing: transformers' own (`gradient_checkpointing_enable`), non-reentrant, so
  LoRA (frozen inputs) needs no `enable_input_require_grads` hack and FSDP2 composes with it.
- Reference offload: the frozen KL reference lives on the CPU and visits the device once per
  step, for all its forward passes together (the loop computes the reference logprobs of every
  micro-batch before the update, while no gradients exist), so the device never holds the
  reference and the gradients at once. Under FSDP the reference is sharded like the policy
  instead (and CPU-offloaded by FSDP itself on GPU).
- The estimate (`estimate_memory`) is a model, not a measurement: parameters counted exactly on
  the meta device (no weights read), then per process and per phase of a step (rollout,
  reference pass, update) the resident terms (fp32 master weights, fp32 gradients, AdamW's two
  fp32 moments, each divided by the number of processes under FSDP) plus the transient ones (KV
  cache of one generate chunk, activations and logits of one micro-batch). Activations per token
  and layer are taken as 10 h + 4 I elements (hidden states, q/k/v/o, norms, SwiGLU's four
  I-wide tensors; flash/SDPA attention, so no seq^2 term); logits as V x (compute bytes + 12)
  bytes per token (the fp32 copy, log-softmax and its gradient). With gradient checkpointing
  only each layer's input (h) is kept, plus one layer's full set during recomputation. The
  figure it prints is checked against torch's peak on CPU in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "MemoryEstimate",
    "check_memory",
    "count_parameters",
    "enable_gradient_checkpointing",
    "estimate_memory",
    "offloaded",
    "plan_micro_batches",
]

GiB = float(1 << 30)


def plan_micro_batches(lengths: Sequence[int], micro_batch_size: int,
                       max_tokens: int | None = None) -> list[list[int]]:
    """Indices of each micro-batch. lengths (n,) tokens per sequence (prompt + response).

    max_tokens None: consecutive chunks of `micro_batch_size` (the order of the batch).
    Otherwise: longest first, each micro-batch's count x longest length <= max_tokens."""
    n = len(lengths)
    if max_tokens is None:
        return [list(range(i, min(i + micro_batch_size, n))) for i in range(0, n, micro_batch_size)]
    order = sorted(range(n), key=lambda i: -lengths[i])
    plan: list[list[int]] = []
    for i in order:
        if plan and (len(plan[-1]) + 1) * lengths[plan[-1][0]] <= max_tokens:
            plan[-1].append(i)
        else:
            plan.append([i])
    return plan


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each decoder layer's activations in the backward (transformers' implementation)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # the name since transformers 5.2x
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.config.use_cache = False  # the cache is useless in training and warns with checkpointing


@contextlib.contextmanager
def offloaded(module: Any, device: torch.device, enabled: bool) -> Iterator[None]:
    """Move a CPU-resident `module` to `device` for the block and back afterwards."""
    if not enabled or not isinstance(module, torch.nn.Module) or device.type == "cpu":
        yield
        return
    module.to(device)
    try:
        yield
    finally:
        module.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ============================================================================ the estimate


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs of a decoder-only transformer (from its config.json)."""

    params: int  # all parameters (tied ones once)
    lora_params: int  # trainable parameters of the job's LoRA adapter; 0 = full fine-tune
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    kv_dim: int  # key/value width per token and layer (kv heads x head dim)
    embed_params: int  # parameters outside the decoder layers (embeddings, head, final norm)


@dataclass
class MemoryEstimate:
    """Bytes per process; `phases` are the peaks of each part of a step, `peak` the largest."""

    terms: dict[str, float]
    phases: dict[str, float]
    shape: ModelShape
    tokens_per_micro_batch: int
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> float:
        return max(self.phases.values())

    def summary(self) -> str:
        parts = ", ".join(f"{k} {_size(v)}" for k, v in self.terms.items() if v)
        phases = ", ".join(f"{k} {_size(v)}" for k, v in self.phases.items())
        return (f"memory estimate per process: peak {_size(self.peak)} ({phases}); terms: "
                f"{parts}; {self.shape.params / 1e6:.1f}M parameters, "
                f"{self.tokens_per_micro_batch} tokens per micro-batch")


def _size(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def count_parameters(model_config: Any, lora: Any = None) -> tuple[int, int, int]:
    """(all parameters, LoRA adapter parameters, parameters outside decoder layers), counted on
    the meta device from a transformers config (no weights allocated)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    total = sum(p.numel() for p in model.parameters())
    layer_names = set(getattr(model, "_no_split_modules", None) or [])
    in_layers = {id(p) for m in model.modules() if type(m).__name__ in layer_names
                 for p in m.parameters()}
    outside = sum(p.numel() for p in model.parameters() if id(p) not in in_layers)
    adapter = 0
    if lora is not None:
        targets = lora.target_modules
        for name, m in model.named_modules():
            if not isinstance(m, torch.nn.Linear) or id(m.weight) not in in_layers:
                continue  # peft's all-linear leaves the output head alone
            if targets == "all-linear" or name.rsplit(".", 1)[-1] in targets:
                adapter += lora.r * (m.in_features + m.out_features)
    return total, adapter, outside


def model_shape(model_config: Any, lora: Any = None) -> ModelShape:
    total, adapter, outside = count_parameters(model_config, lora)
    c = model_config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    return ModelShape(params=total, lora_params=adapter, hidden=c.hidden_size,
                      intermediate=c.intermediate_size, layers=c.num_hidden_layers,
                      vocab=c.vocab_size, kv_dim=kv_heads * head_dim, embed_params=outside)


def estimate_memory(shape: ModelShape, *, world: int = 1, max_seq: int,
                    micro_batch_size: int = 8, max_tokens_per_micro_batch: int | None = None,
                    rollout_batch: int = 256, compute_bytes: int = 2,
                    gradient_checkpointing: bool = False, lora: bool = False,
                    reference: str = "none", async_copy: bool = False) -> MemoryEstimate:
    """Per-process bytes of one step (module docstring). reference: none | resident | offloaded
    (a separate full model; LoRA's reference is the base itself and costs nothing). async_copy:
    async rollouts' second copy of the weights, generating (its KV cache and logits) while the
    update runs (trainer/offpolicy.py)."""
    p, h, layers = shape.params, shape.hidden, shape.layers
    trainable = shape.lora_params if lora else p
    shard = 1 if world == 1 else world
    # LoRA: the frozen base in the compute dtype, the adapter in fp32 (trainer/modeling.py)
    weights = (p * compute_bytes + shape.lora_params * 4) / shard if lora else p * 4 / shard
    # FSDP gathers one unit at a time in the compute dtype; the root (embeddings, head) stays
    # gathered through the forward.
    gathered = 0.0 if world == 1 else (shape.embed_params + (p - shape.embed_params) / layers
                                       ) * compute_bytes
    grads = trainable * 4 / shard
    optimizer = trainable * 8 / shard
    ref = p * 4 / shard if reference != "none" and not lora else 0.0
    tokens = max_tokens_per_micro_batch or micro_batch_size * max_seq
    per_layer = 10 * h + 4 * shape.intermediate  # elements per token
    kept = layers * h + per_layer if gradient_checkpointing else layers * per_layer
    activations = tokens * kept * compute_bytes
    logits = tokens * shape.vocab * (compute_bytes + 12)
    kv = rollout_batch * max_seq * layers * 2 * shape.kv_dim * compute_bytes
    resident = weights + optimizer + (ref if reference == "resident" else 0.0)
    terms = {"weights": weights, "gathered_unit": gathered, "gradients": grads,
             "optimizer": optimizer, "reference": ref, "kv_cache": kv,
             "activations": activations, "logits": logits}
    rollout = kv + rollout_batch * shape.vocab * 8
    if async_copy:
        terms["async_copy"] = weights
        resident += weights
    phases = {
        "rollout": resident + gathered + rollout,
        "reference": resident + gathered + (ref if reference == "offloaded" else 0.0)
        + tokens * shape.vocab * (compute_bytes + 8),
        "update": resident + gathered + grads + activations + logits
        + (rollout if async_copy else 0.0),
    }
    return MemoryEstimate(terms=terms, phases=phases, shape=shape, tokens_per_micro_batch=tokens)


def estimate_for_job(config: Any, max_prompt_tokens: int, *, compute_bytes: int) -> MemoryEstimate:
    """`estimate_memory` for a TrainConfig, the model's config.json read from `config.model`."""
    from transformers import AutoConfig

    from trainer.modeling import from_pretrained
    from trainer.rollout.options import HfOptions

    model_config = from_pretrained(AutoConfig, config.model)
    lora = config.lora is not None
    reference = "none"
    if config.loss.kl_coef > 0 and not lora:
        reference = "offloaded" if config.memory.offload_reference else "resident"
    rollout_batch = HfOptions.parse(config.engine_options).max_batch_size \
        if config.engine == "hf" else 0  # vLLM sizes its own KV cache (gpu_memory_utilization)
    local = config.batch_size * config.rollouts_per_prompt // config.num_processes
    return estimate_memory(
        model_shape(model_config, config.lora), world=config.num_processes,
        max_seq=max_prompt_tokens + config.sampling.max_new_tokens,
        micro_batch_size=config.optimizer.micro_batch_size,
        max_tokens_per_micro_batch=config.optimizer.max_tokens_per_micro_batch,
        rollout_batch=min(rollout_batch, max(local, 1)), compute_bytes=compute_bytes,
        gradient_checkpointing=config.memory.gradient_checkpointing, lora=lora,
        reference=reference, async_copy=config.async_rollouts)


def check_memory(config: Any, prompts: Sequence[Any], device: torch.device,
                 compute_bytes: int) -> MemoryEstimate:
    """The job's estimate for its training prompts (rows or strings, the longest sets the
    sequence length); raises ConfigError when it exceeds `memory.max_device_memory_gb` or the
    device's memory (CUDA). Reads the tokenizer and config.json only, no weights."""
    from transformers import AutoTokenizer

    from trainer.config import ConfigError
    from trainer.data import render_prompt
    from trainer.modeling import from_pretrained

    tokenizer = from_pretrained(AutoTokenizer, config.model)
    longest = max((len(tokenizer(render_prompt(p, tokenizer))["input_ids"]) for p in prompts),
                  default=0)
    est = estimate_for_job(config, longest, compute_bytes=compute_bytes)
    limit = config.memory.max_device_memory_gb
    limit = limit * GiB if limit is not None else (
        torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None)
    if limit is not None and est.peak > limit:
        raise ConfigError(
            f"memory.max_device_memory_gb: the job needs about {est.peak / GiB:.1f} GiB per "
            f"process but {limit / GiB:.1f} GiB are available ({est.summary()}); lower it with "
            f"memory.gradient_checkpointing, optimizer.max_tokens_per_micro_batch, lora, "
            f"memory.offload_reference or more num_processes")
    return est

