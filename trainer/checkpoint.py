"""Checkpoints: everything a run needs to continue exactly where it stopped.

Layout of `run_dir/checkpoints/step-{N:06d}/`:
  model/            full fine-tune: HF directory (save_pretrained + tokenizer), loadable on its own
  adapter/          LoRA: the peft adapter only (the base model is `config.model`)
  optimizer.pt      AdamW state (torch.save)
  rng.pt            python, numpy, torch (and CUDA) RNG states
  state.json        step, cumulative counters, sampler cursor, estimator state(s), any JSON extras

Choices:
- Written into a hidden temp directory beside the final one and renamed, so a crash never leaves a
  half checkpoint under a `step-*` name; `latest_checkpoint` also requires `state.json`, written
  last inside the temp dir.
- Weights restored with `load_state_dict` from the safetensors file: exact float round trip.
  Tied weights that `save_pretrained` drops are re-tied by the model itself.
- `keep` limits how many checkpoints stay on disk (oldest removed first); None keeps all.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

__all__ = ["checkpoint_dir", "expected_checkpoint_bytes", "latest_checkpoint", "load_checkpoint",
           "save_checkpoint"]

_NAME = re.compile(r"^step-(\d{6,})$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DiskFull(OSError):
    """Too little free space to write a checkpoint; raised before anything is written."""


def _volume(path: Path) -> Path:
    """The mount point holding `path`: what a message may name (not the run dir's full path)."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def expected_checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """What a checkpoint will take: trainable weights (or the whole model) plus the optimizer's
    tensors, with a quarter again for tokenizer, RNG and file overhead."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters()
                  if p.requires_grad or not _is_peft(model))
    moments = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                  if isinstance(t, torch.Tensor))
    return int(1.25 * (weights + moments)) + (1 << 20)


def check_free_space(directory: Path, needed: int) -> None:
    """Raise DiskFull("disk full at <volume>, free N MB ...") when `directory`'s volume cannot
    hold `needed` bytes (issue 18: a half-written checkpoint used to fail deep inside torch)."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DiskFull(f"disk full at {_volume(directory)}, free {free / 2**20:.0f} MB; a checkpoint "
                       f"needs about {needed / 2**20:.0f} MB. Free space (delete old jobs or "
                       "checkpoints) and retry the job")


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
    tokenizer: Any = None,
    keep: int | None = None,
) -> Path:
    """Write checkpoint `step` atomically; returns its directory. `state` must be JSON-able."""
    final = checkpoint_dir(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(final.parent, expected_checkpoint_bytes(model, optimizer))
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        sub = tmp / ("adapter" if _is_peft(model) else "model")
        model.save_pretrained(sub, safe_serialization=True)
        if tokenizer is not None and not _is_peft(model):
            tokenizer.save_pretrained(sub)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, sort_keys=True))
        if final.exists():  # re-saving a step after a resume: replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        _prune(final.parent, keep)
    return final


def _complete(run_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _prune(root: Path, keep: int) -> None:
    for _, path in _complete(root.parent)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of a run, or None."""
    found = _complete(run_dir)
    return found[-1][1] if found else None


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    if _is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter" / "adapter_model.safetensors"))
        return
    weights: dict[str, torch.Tensor] = {}
    for f in sorted((path / "model").glob("*.safetensors")):
        weights.update(load_file(f))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    tied |= {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    bad = [k for k in missing if k not in tied]
    if bad or unexpected:
        raise ValueError(f"{path}: checkpoint does not match the model (missing {bad[:5]}, "
                         f"unexpected {list(unexpected)[:5]})")


def load_checkpoint(
    path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG in place; returns the JSON state (with "step")."""
    path = Path(path)
    _load_weights(model, path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())
