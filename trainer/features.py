"""Prompt features for estimators that share information across prompts (BASIS's cross-prompt term).

`prompt_features(model, prompts, pad_id)` -> (B, d) float64: the mean over prompt tokens of the
policy's last hidden state, from one no-grad forward over the batch's prompts.

Choices:
- The *current* policy's representation, not a fixed embedding: prompts that the policy represents
  alike are the ones its updates move alike (the premise of kernel-smoothed advantages, KAE,
  arXiv:2604.28005).
- Mean-pooled rather than last-token: short arithmetic prompts and long chat prompts both get a
  summary of every token, and the pooled vector does not depend on the chat template's tail.
- Prompts only (no response): the features describe x, so they are the same for all k rollouts of
  a prompt and never carry information about a sample's own reward r_i (leave-one-out stays exact).
- Right padding with an attention mask: causal attention never lets a real token see a pad, so the
  pooled states equal those of unpadded single-prompt forwards.
- `output_hidden_states` keeps one code path for plain, LoRA (peft) and autocast models; the
  logits it also computes are thrown away (on the demo the pass costs a few ms a step,
  docs/benchmarks.md "Estimator cost").
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

__all__ = ["prompt_features"]


def prompt_features(model, prompts: list[list[int]], pad_id: int, device: torch.device | str = "cpu",
                    autocast: contextlib.AbstractContextManager | None = None) -> np.ndarray:
    """(B, d) mean-pooled last hidden state of each prompt's tokens; prompts: B token-id lists."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompt_features needs at least one prompt and no empty prompt")
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p)
        mask[i, : len(p)] = 1
    was_training = model.training
    model.eval()  # no dropout: the features describe the prompt, not a dropout draw
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                        output_hidden_states=True)
    finally:
        model.train(was_training)
    h = out.hidden_states[-1].float()  # (B, L, d)
    m = mask.to(h.device, h.dtype)[:, :, None]
    return ((h * m).sum(dim=1) / m.sum(dim=1)).cpu().double().numpy()
