"""Turn a training checkpoint into a model directory that loads on its own (or on its base).

`export_checkpoint(checkpoint, out_dir, base=..., merge_lora=...)` writes into `out_dir` (which the
caller creates empty and moves into place afterwards; nothing here is atomic on its own):
- full fine-tune: the checkpoint's `model/` as it is (safetensors, config, generation config,
  tokenizer), copied byte for byte, so the weights are exactly the checkpoint's;
- LoRA, `merge_lora`: the base with the adapter merged in (`peft`'s `merge_and_unload`, in float32,
  stored in the base's own dtype), plus the base's tokenizer;
- LoRA, not merged: the adapter (`adapter_config.json`, `adapter_model.safetensors`) with the
  base's config.json and tokenizer beside it, `base_model_name_or_path` set to `base_name` (a
  catalogue name, not this machine's path). `trainer.modeling.load_causal_lm(out_dir, base_dir)`
  loads it.

Choices:
- Only the merge needs torch and peft; the copies need neither, so a server without the ML stack
  can export a full fine-tune or an adapter (`MergeUnavailable` says so for a merge).
- The base of a LoRA checkpoint is what the job trained on: `base.path`, itself an adapter when
  `base.base` is set (then merged first, and the result can only be exported merged).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BaseModelDirs", "ExportError", "MergeUnavailable", "checkpoint_kind", "export_checkpoint"]

# Files of a model directory that are weights (or their index), never copied as "tokenizer files".
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")


class ExportError(ValueError):
    """The checkpoint cannot be exported as asked; the message says why and what to do."""


class MergeUnavailable(ExportError):
    """Merging needs torch and peft, which this process cannot import."""


@dataclass(frozen=True)
class BaseModelDirs:
    """The model a LoRA job trained on: `path`, and `base` when that model is itself an adapter."""

    path: Path
    base: Path | None = None


def checkpoint_kind(checkpoint: Path) -> str:
    """"full" (a `model/` directory) or "lora" (an `adapter/` one); ExportError otherwise."""
    if (checkpoint / "model" / "config.json").is_file():
        return "full"
    if (checkpoint / "adapter" / "adapter_config.json").is_file():
        return "lora"
    raise ExportError(f"checkpoint {checkpoint.name} holds neither model/ nor adapter/ weights")


def _is_weights(path: Path) -> bool:
    return path.name.endswith(WEIGHT_SUFFIXES) or path.name.endswith(".index.json") \
        or path.name.startswith("adapter_")


def _copy_side_files(source: Path, out_dir: Path) -> None:
    """Config, generation config and tokenizer files of `source` not yet in `out_dir` (no weights)."""
    for file in sorted(source.iterdir()):
        if file.is_file() and not _is_weights(file) and not (out_dir / file.name).exists():
            shutil.copy2(file, out_dir / file.name)


def export_checkpoint(checkpoint: Path, out_dir: Path, *, base: BaseModelDirs | None = None,
                      merge_lora: bool = True, base_name: str | None = None) -> str:
    """Write the checkpoint's model into the existing empty `out_dir`; returns its format,
    "full" or "adapter". `base` is required for a LoRA checkpoint."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if checkpoint_kind(checkpoint) == "full":
        shutil.copytree(checkpoint / "model", out_dir, dirs_exist_ok=True)
        return "full"
    if base is None:
        raise ExportError("a LoRA checkpoint needs the model it was trained on to be exported")
    if merge_lora:
        _merge(checkpoint / "adapter", base, out_dir)
        _copy_side_files(base.path, out_dir)
        return "full"
    if base.base is not None:
        raise ExportError("merge_lora: the job trained on an adapter model, so its adapter only "
                          "makes sense merged; export with merge_lora true")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        if not (checkpoint / "adapter" / name).is_file():
            raise ExportError(f"checkpoint {checkpoint.name}: adapter/{name} is missing")
        shutil.copy2(checkpoint / "adapter" / name, out_dir / name)
    config = json.loads((out_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_name  # a catalogue name: this machine's path means nothing
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    _copy_side_files(base.path, out_dir)
    return "adapter"


def _stored_dtype(model_dir: Path) -> str:
    """The dtype the base's weights are stored in (config.json), "float32" when it says nothing."""
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"


def _merge(adapter_dir: Path, base: BaseModelDirs, out_dir: Path) -> None:
    try:
        import torch
        from peft import PeftModel

        from trainer.modeling import load_causal_lm
    except ImportError as exc:
        raise MergeUnavailable(f"merge_lora: merging an adapter needs torch and peft, which this "
                               f"server lacks ({exc}); export with merge_lora false (an adapter "
                               "model), or let the worker export the job's final checkpoint") from None
    source = base.base or base.path  # the stored dtype of the weights the job started from
    model = load_causal_lm(str(base.path), str(base.base) if base.base else None, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged = merged.to(getattr(torch, _stored_dtype(source)))
    merged.save_pretrained(out_dir, safe_serialization=True)
