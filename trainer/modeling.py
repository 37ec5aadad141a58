"""Model and tokenizer loading for a training run, and the tokenised prompts it trains on.

Choices:
- Device `auto` means CUDA when present; dtype `auto` means bfloat16 autocast on CUDA and plain
  float32 on the CPU. Trained weights are always float32 (autocast only changes the compute); a
  LoRA job's frozen base is stored in the compute dtype.
- A load failure is a `ModelLoadError` naming the directory and the cause, so a job's stored error
  says which model was broken (a half-copied weights file otherwise reads only
  `SafetensorError: ... invalid header length`).
- An adapter model (`cfg.base_model` set: `model` is a PEFT adapter directory) loads as its base
  with the adapter merged in (`load_causal_lm`), so a job trains on top of it like on any model.
- LoRA: the frozen KL reference is the same module with its adapter disabled (`AdapterOff`), at no
  extra memory; a full fine-tune with a KL term loads a second, frozen copy (kept on the CPU
  between uses with `memory.offload_reference`, trainer/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from trainer.config import ConfigError, EvalConfig, TrainConfig
from trainer.data import Row, render_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Prompts:
    """Tokenised prompts of one split: ids (N,), token ids (N, ragged), answers (N,)."""

    ids: list[str]
    tokens: list[list[int]]
    answers: list[str]


def resolve_device(cfg: TrainConfig | EvalConfig) -> tuple[torch.device, torch.dtype | None]:
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; use 'auto'")
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if want == "cuda" else "float32"
    return torch.device(want), (torch.bfloat16 if dtype == "bfloat16" else None)


class ModelLoadError(RuntimeError):
    """The model directory could not be loaded; the message names the directory and the cause."""


def from_pretrained(loader: Any, model_dir: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained`, with a failure naming the directory (a half-copied weights file
    otherwise reads only `SafetensorError: ... invalid header length`)."""
    try:
        return loader.from_pretrained(model_dir, **kwargs)
    except Exception as exc:  # noqa: BLE001 - re-raised with the directory, cause chained
        text = str(exc).strip()
        cause = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        name = loader.__name__
        what = "tokenizer" if "Tokenizer" in name else "model config" if "Config" in name else "model"
        raise ModelLoadError(f"could not load the {what} from {model_dir}: {cause}") from exc


def load_model(cfg: TrainConfig, device: torch.device,
               ) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, Reference | None]:
    """(policy on `device`, tokenizer with a pad token, frozen KL reference or None)."""
    tokenizer = load_tokenizer(cfg.model)
    torch.manual_seed(cfg.seed)  # LoRA init draws from the global RNG
    # LoRA trains the adapter only: the frozen base is kept in the compute dtype (bf16 halves it,
    # and autocast casts it to bf16 for every matmul anyway) while peft keeps the adapter in fp32
    # (autocast_adapter_dtype), so the optimizer state stays fp32 where it matters.
    base_dtype = resolve_device(cfg)[1] if cfg.lora is not None else None
    model = load_causal_lm(cfg.model, cfg.base_model, dtype=base_dtype or torch.float32)
    reference = None
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM"))
        if cfg.loss.kl_coef > 0:
            reference = AdapterOff(model)
    elif cfg.loss.kl_coef > 0:
        reference = load_causal_lm(cfg.model, cfg.base_model, dtype=torch.float32)
        offload = cfg.memory.offload_reference and cfg.num_processes == 1  # FSDP offloads itself
        reference.requires_grad_(False).eval().to("cpu" if offload else device)
    return model.to(device), tokenizer, reference


def load_tokenizer(model_dir: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (its EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(model_dir: str, device: torch.device, base_dir: str | None = None,
                       ) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """(model in eval mode on `device`, tokenizer): an evaluation's model (an adapter merged into
    `base_dir` when given, as `load_causal_lm` does), float32 weights like a training run's policy
    (autocast decides the compute dtype), without gradients."""
    tokenizer = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, base_dir, dtype=torch.float32)
    model.requires_grad_(False).eval()
    return model.to(device), tokenizer


def load_causal_lm(model_dir: str, base_dir: str | None = None, *,
                   dtype: torch.dtype = torch.float32) -> Any:
    """The causal LM in `model_dir`, or, when `base_dir` is given, the base in `base_dir` with the
    PEFT adapter in `model_dir` merged into it (merged in float32, then cast to `dtype`), a plain
    transformers model either way."""
    from transformers import AutoModelForCausalLM

    if base_dir is None:
        return from_pretrained(AutoModelForCausalLM, model_dir, dtype=dtype)
    from peft import PeftModel

    base = from_pretrained(AutoModelForCausalLM, base_dir, dtype=torch.float32)
    try:
        merged = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
    except Exception as exc:  # noqa: BLE001 - re-raised naming the adapter, cause chained
        raise ModelLoadError(f"could not load the adapter from {model_dir} onto {base_dir}: "
                             f"{type(exc).__name__}: {exc}") from exc
    # peft loads an adapter for inference (frozen); a loaded model trains like a plain one.
    return merged.requires_grad_(True).to(dtype)


class AdapterOff:
    """The LoRA model with its adapter disabled: the frozen reference at no extra memory."""

    def __init__(self, model: Any) -> None:  # a peft model (`disable_adapter`)
        self.model = model

    def __call__(self, **kwargs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(**kwargs)


# What a forward pass for logprobs runs on: the policy, a frozen copy, or the adapter-off view.
Reference: TypeAlias = torch.nn.Module | AdapterOff


def tokenize(rows: list[Row], tokenizer: PreTrainedTokenizerBase) -> Prompts:
    tokens = [tokenizer(render_prompt(r, tokenizer))["input_ids"] for r in rows]
    return Prompts([r.id for r in rows], tokens, [r.answer for r in rows])
