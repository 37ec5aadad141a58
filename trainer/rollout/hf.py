"""`hf` rollout engine: batched `model.generate` on the trainer's own module (CPU or GPU).

Choices:
- Shares the policy module with the trainer, so `sync_weights` is free (returns 0).
- Left padding (decoder-only models continue from the last real token); prompts are repeated n
  times (prompt-major) and generated in chunks of `max_batch_size` sequences
  (`engine_options.max_batch_size`, default 256).
- Sampling logprobs: transformers appends its temperature/top-k/top-p warpers *after* any user
  logits processor, so we pass generate no warper settings and give it our own chain
  [temperature, top-k, top-p, recorder]. The recorder sees the final (warped) scores of each step
  and, one step later, the token that was sampled from them; it keeps only one (B, V) step in memory
  instead of the (T, B, V) of `output_scores`, which matters at a 150k vocabulary.
- Determinism: each call runs under `torch.random.fork_rng` seeded with `params.seed`, so results
  depend on the seed and the inputs only, and the global RNG is untouched.
- The model's own `generation_config.json` (repetition_penalty, min_p, no_repeat_ngram_size,
  min_new_tokens, ... as hub checkpoints ship them) is switched off while we generate: transformers
  fills every setting a call leaves unset from it, and any such processor would change the
  distribution we sample from after the recorder saw it, so the recorded logprobs (and the
  trainer's importance ratios) would no longer describe the sampled tokens. The run's
  SamplingParams are the whole sampling definition.
- Stop at any EOS id of the model's generation config (plus the tokenizer's); `finish_reason` is
  "stop" when one was generated, "length" otherwise.
- Stop: `generate(..., stop=event)` passes transformers a StoppingCriteria that ends every
  sequence once the event is set (checked after each generated token), and the call then raises
  `GenerationInterrupted`; a cancel waits for one token step, not for the whole generation.
- `private_rng=True` (the async rollouts' engine, trainer/offpolicy.py, which generates in a
  thread while the trainer updates): no global RNG is read or reseeded, since another thread's
  draws (LoRA dropout) would race with it. Tokens are drawn by Gumbel-max instead, argmax of the
  warped log-probabilities plus Gumbel noise from a `torch.Generator` seeded with `params.seed`,
  which is an exact sample of the same distribution (generate runs greedy over the noised
  scores; the recorder sees the scores before the noise). The streams differ from
  `torch.multinomial`'s, so the two modes draw different (equally distributed) rollouts.
- In a multi-process job (trainer/distributed.py) generation runs with `synced_gpus`: the
  FSDP-sharded model's forward is a collective, so no rank may stop stepping before the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from trainer.interrupt import GenerationInterrupted
from trainer.rollout import register_engine
from trainer.rollout.base import EngineConfig, Rollout, SamplingParams
from trainer.rollout.options import HfOptions


class _LogprobRecorder(LogitsProcessor):
    """Records log softmax(final scores)[sampled token] per step; (B,) per generated token."""

    def __init__(self) -> None:
        self.prev: torch.Tensor | None = None  # (B, V) log-probs of the previous step
        self.steps: list[torch.Tensor] = []  # each (B,)

    def _take(self, tokens: torch.Tensor) -> None:
        assert self.prev is not None
        self.steps.append(self.prev.gather(-1, tokens[:, None]).squeeze(-1).float().cpu())

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prev is not None:
            self._take(input_ids[:, -1])
        self.prev = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """(B, steps) logprobs once generation ended; `last_tokens` (B,) is the final column."""
        if self.prev is not None:
            self._take(last_tokens)
            self.prev = None
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(0, 0)


class _StopFlag(StoppingCriteria):
    """Ends every sequence once `flag` is set (asked after each generated token)."""

    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool,
                          device=input_ids.device)
        return done


class _GumbelNoise(LogitsProcessor):
    """log softmax(scores) + Gumbel(0, 1) noise from a private generator: the argmax of the result
    is a sample of softmax(scores) (Gumbel-max), drawn without touching the global RNG."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        u = torch.rand(scores.shape, generator=self.generator, device=scores.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
        return torch.log_softmax(scores.float(), dim=-1) + gumbel


def _sharded() -> bool:
    """In a multi-process job the model is FSDP-sharded and every forward is a collective: each
    rank must keep stepping until all ranks' sequences have finished (`synced_gpus`)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@register_engine("hf")
class HFEngine:
    """transformers `generate` over the shared policy module."""

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig | None = None, *,
                 private_rng: bool = False):
        config = config or EngineConfig()
        self.private_rng = private_rng
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = HfOptions.parse(config.engine_options).max_batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id)
        self.eos_ids = self._eos_ids()
        self.autocast_dtype = config.autocast_dtype

    def _eos_ids(self) -> list[int]:
        ids = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams,
                 stop: threading.Event | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[Rollout]:
        """len(prompts) * n rollouts, prompt-major order; GenerationInterrupted once `stop` is set;
        `progress(done, total)` after each batch of `max_batch_size` (outside the random stream:
        it changes nothing that is drawn)."""
        order = [i for i in range(len(prompts)) for _ in range(n)]
        out: list[Rollout] = []
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.model.training
        self.model.eval()
        generator = None
        if self.private_rng:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        rng = contextlib.nullcontext() if self.private_rng else torch.random.fork_rng(devices=devices)
        try:
            with rng, torch.no_grad(), self._autocast():
                if not self.private_rng:
                    torch.manual_seed(params.seed)
                for start in range(0, len(order), self.max_batch_size):
                    chunk = order[start:start + self.max_batch_size]
                    out.extend(self._generate_chunk(prompts, chunk, params, stop, generator))
                    if stop is not None and stop.is_set():
                        raise GenerationInterrupted("stop requested while generating")
                    if progress is not None:
                        progress(len(out), len(order))
        finally:
            self.model.train(was_training)
        return out

    def _autocast(self):
        if self.autocast_dtype is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def _processors(self, params: SamplingParams) -> list[LogitsProcessor]:
        if params.greedy:
            return []
        chain: list[LogitsProcessor] = []
        if params.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            chain.append(TopKLogitsWarper(top_k=params.top_k))
        if params.top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p=params.top_p))
        return chain

    @staticmethod
    def _neutral_warpers(params: SamplingParams) -> dict[str, Any]:
        """Sampling: switch off generate's temperature/top-p/top-k warpers (the model's generation
        config may set them); ours come from `_processors` (module docstring). Greedy builds no
        warpers, and passing these would make transformers warn that they are unused."""
        return {} if params.greedy else {"temperature": 1.0, "top_p": 1.0, "top_k": 0}

    @contextlib.contextmanager
    def _model_generation_defaults_off(self):
        """Swap the checkpoint's generation config for a blank one (module docstring)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        saved = getattr(base, "generation_config", None)
        if saved is None:
            yield
            return
        base.generation_config = GenerationConfig(
            bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id,
            pad_token_id=saved.pad_token_id, decoder_start_token_id=saved.decoder_start_token_id)
        try:
            yield
        finally:
            base.generation_config = saved

    def _generate_chunk(self, prompts, chunk: list[int], params: SamplingParams,
                        stop: threading.Event | None = None,
                        generator: torch.Generator | None = None) -> list[Rollout]:
        seqs = [prompts[i] for i in chunk]
        width = max(map(len, seqs))
        ids = torch.tensor([[self.pad_id] * (width - len(s)) + list(s) for s in seqs])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(s) for s in seqs])[:, None])
        recorder = _LogprobRecorder()
        chain: list[LogitsProcessor] = [*self._processors(params), recorder]
        gumbel = generator is not None and not params.greedy
        if gumbel:
            assert generator is not None
            chain.append(_GumbelNoise(generator))  # then greedy over the noised scores
        stopping = StoppingCriteriaList([_StopFlag(stop)] if stop is not None else [])
        with self._model_generation_defaults_off():
            generated = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.long().to(self.device),
                do_sample=not (params.greedy or gumbel),
                **({} if gumbel else self._neutral_warpers(params)),
                max_new_tokens=params.max_new_tokens,
                logits_processor=LogitsProcessorList(chain),
                stopping_criteria=stopping,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
                synced_gpus=_sharded(),
            )
        new = generated[:, width:].cpu()  # (B, steps)
        logprobs = recorder.finish(new[:, -1]) if new.shape[1] else torch.zeros(len(chunk), 0)
        return [
            self._rollout(prompt_index, seqs[row], new[row].tolist(), logprobs[row].tolist())
            for row, prompt_index in enumerate(chunk)
        ]

    def _rollout(self, prompt_index: int, prompt_ids, tokens: list[int], logprobs) -> Rollout:
        eos = set(self.eos_ids)
        cut = next((i + 1 for i, t in enumerate(tokens) if t in eos), None)
        finish = "stop" if cut is not None else "length"
        cut = len(tokens) if cut is None else cut
        response = tokens[:cut]
        return Rollout(
            prompt_index=prompt_index,
            prompt_ids=list(prompt_ids),
            response_ids=response,
            logprobs=[float(x) for x in logprobs[:cut]],
            text=self.tokenizer.decode(response, skip_special_tokens=True),
            finish_reason=finish,
        )

    def sync_weights(self, model: torch.nn.Module) -> float:
        return 0.0  # same module: nothing to push

    def close(self) -> None:
        pass
