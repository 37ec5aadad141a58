"""Multi-process jobs on torch.distributed: one rank per GPU (or CPU process), launched by torchrun.

How a job of N processes runs (`TrainConfig.num_processes = N`):
- Launch: `torchrun --standalone --nproc-per-node N -m trainer run CONFIG` (what
  `launch_command` returns; `python -m trainer run` re-launches itself that way when N > 1).
  Any program that calls `trainer.loop.train` under torchrun works the same: `train` reads the
  torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), joins the process group (NCCL on GPU, gloo
  on CPU) and leaves it on return.
- Rollouts: the step's prompts are split into N equal contiguous blocks; rank r generates block r.
  Rewards, prompt ids and response lengths are all-gathered in rank order, which is the
  single-process order, so every rank runs the estimator on the whole batch (BASIS fits its
  calibration across the batch) and gets the same advantages; each keeps its block's slice.
- Update: FSDP2 (`fully_shard` per decoder layer, then the root). The loss normaliser (tokens or
  sequences) is the global batch's, and the loss is multiplied by N because FSDP averages the
  ranks' gradients: the summed gradient equals the single-process one, so 2 ranks == 1 rank on
  the same global batch (tests/trainer/test_distributed.py). Every rank runs the same number of
  forward/backward passes (FSDP's all-gathers and reduce-scatters are collectives): a rank with
  fewer micro-batches runs zero-weight ones.
- Generation under FSDP: every forward is a collective, so `generate` runs with `synced_gpus`
  (each rank keeps stepping until all have finished) and every rank makes the same number of
  generate calls (eval and prior prompts are split into equal padded blocks).
- Metrics, events, status and checkpoint callbacks come from rank 0 only; other ranks log to a
  NullSink. A stop request is read on rank 0 and broadcast, so all ranks stop at the same step;
  it is honoured between steps only (a single-process job also interrupts reward scoring, which
  polls from a thread at arbitrary moments and so cannot take part in a collective).
- Checkpoints: torch.distributed.checkpoint (DCP), sharded (`dcp/`), plus rank 0's HF `model/`
  (or `adapter/`) directory gathered from the shards so a checkpoint stays exportable; RNG per
  rank. DCP reshards on load, so a run resumes on the same or another number of processes
  (including 1).
- Teardown: the sharded model and optimizer must be garbage-collected before
  `destroy_process_group`, or gloo ranks abort at exit ("terminate called without an active
  exception"); `process_group` collects before destroying.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SINGLE",
    "Dist",
    "env_world_size",
    "launch_command",
    "load_sharded_checkpoint",
    "process_group",
    "save_sharded_checkpoint",
    "shard_model",
]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; `SINGLE` (rank 0 of 1) makes every collective a no-op."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def block(self, n: int) -> range:
        """This rank's contiguous block of `n` items; n must split evenly (the batch does)."""
        if n % self.world:
            raise ValueError(f"{n} items do not split evenly over {self.world} processes")
        size = n // self.world
        return range(self.rank * size, (self.rank + 1) * size)

    def padded_block(self, n: int) -> tuple[list[int], int]:
        """(indices, valid) for `n` items split into equal blocks: the same length on every rank
        (so generate calls match under FSDP), padded by repeating the last item; only the first
        `valid` indices are real."""
        size = -(-n // self.world)
        start = min(self.rank * size, n)
        real = list(range(start, min(start + size, n)))
        pad = [n - 1] * (size - len(real)) if n else []
        return real + pad, len(real)

    def gather(self, items: Sequence[Any]) -> list[Any]:
        """Concatenation of every rank's `items`, in rank order (picklable objects)."""
        if not self.enabled:
            return list(items)
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, list(items))
        return [x for part in out for x in part]

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Element-wise sum over ranks of a dict of floats (every rank passes the same keys)."""
        if not self.enabled or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return dict(zip(keys, t.tolist(), strict=True))

    def max(self, value: int) -> int:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


SINGLE = Dist()


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun, 1 when not launched by it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def process_group(num_processes: int, device_type: str) -> Iterator[Dist]:
    """Join the torchrun job (when num_processes > 1) for the duration of the block.

    Refuses a mismatch between the config and the launch: a 2-process config run as one plain
    process would silently train on half the data per step, and vice versa.
    """
    world = env_world_size()
    if world != num_processes:
        from trainer.config import ConfigError

        how = ("launch it with trainer.distributed.launch_command (torchrun)" if world == 1
               else f"it was launched with {world}")
        raise ConfigError(f"num_processes: the config asks for {num_processes} processes but "
                          f"{how}")
    if world == 1:
        yield SINGLE
        return
    dist = Dist(rank=int(os.environ["RANK"]), world=world,
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device_type == "cuda":
        torch.cuda.set_device(dist.local_rank)
    torch.distributed.init_process_group("nccl" if device_type == "cuda" else "gloo")
    try:
        yield dist
    except BaseException as exc:
        # The traceback's frames hold the sharded model; free them before the group goes.
        traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        gc.collect()
        torch.distributed.destroy_process_group()


def launch_command(num_processes: int, args: Sequence[str], *, module: bool = True,
                   python: str = sys.executable) -> list[str]:
    """argv running `python -m <args>` (or the script `args[0]` when module=False) as
    `num_processes` ranks on this machine: torchrun's elastic launcher with a standalone
    rendezvous on a free port; e.g. `launch_command(2, ["trainer", "run", "config.yaml"])`."""
    return [python, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={num_processes}", *(["-m"] if module else []), *args]


# ================================================================================== FSDP2


def _layer_classes(model: torch.nn.Module) -> set[str]:
    """Decoder-layer class names: transformers lists them as `_no_split_modules`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or [])


def shard_model(model: torch.nn.Module, compute_dtype: torch.dtype | None, *,
                offload: bool = False) -> torch.nn.Module:
    """FSDP2 in place: each decoder layer its own unit, the rest (embeddings, head) the root's.

    With a bf16 compute dtype the shards stay fp32 (the optimizer's master weights and state)
    and are all-gathered in bf16, gradients reduced in fp32 (MixedPrecisionPolicy). `offload`
    keeps the shards in CPU memory between uses (GPU only; used for the frozen reference)."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    mp = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32) \
        if compute_dtype is not None else MixedPrecisionPolicy()
    on_gpu = next(model.parameters()).device.type == "cuda"
    policy = CPUOffloadPolicy() if offload and on_gpu else OffloadPolicy()
    names = _layer_classes(model)
    for module in model.modules():
        if type(module).__name__ in names:
            fully_shard(module, mp_policy=mp, offload_policy=policy)
    # The root is the transformers model, not peft's wrapper: peft's generate calls the inner
    # model directly, and the root's hooks (which gather the embeddings) must run on every path.
    root = model.get_base_model() if hasattr(model, "get_base_model") else model
    fully_shard(root, mp_policy=mp, offload_policy=policy)
    return model


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP2's parameters, gradient norms) gathered whole; a plain tensor unchanged."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


# ============================================================================ checkpoints


def save_sharded_checkpoint(run_dir: Path, step: int, *, dist: Dist, model: torch.nn.Module,
                            optimizer: torch.optim.Optimizer, state: dict[str, Any],
                            tokenizer: Any = None) -> Path:
    """Every rank calls this; returns `run_dir/checkpoints/step-N` once it is complete.

    Written into a temp directory named by rank 0 and renamed by it after a barrier, so a crash
    never leaves a half checkpoint (as trainer.checkpoint.save_checkpoint)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
    )

    from trainer.checkpoint import _is_peft, _rng_state, checkpoint_dir

    final = checkpoint_dir(run_dir, step)
    name = None
    if dist.is_main:
        final.parent.mkdir(parents=True, exist_ok=True)
        name = tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-")
    tmp = Path(dist.broadcast(name))
    try:
        msd, osd = get_state_dict(model, optimizer)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / "dcp"))
        full = get_model_state_dict(model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))  # collective: every rank takes part
        # A tied parameter (lm_head = embed_tokens) comes back under both names, as two copies;
        # keep the names `named_parameters` keeps, as save_pretrained of the unsharded model does.
        kept = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
        full = {k: v for k, v in full.items() if k in kept}
        torch.save(_rng_state(), tmp / f"rng-rank{dist.rank}.pt")
        if dist.is_main:
            peft = _is_peft(model)
            sub = tmp / ("adapter" if peft else "model")
            model.save_pretrained(sub, state_dict=full, safe_serialization=True)
            if tokenizer is not None and not peft:
                tokenizer.save_pretrained(sub)
            (tmp / "state.json").write_text(json.dumps(
                {"step": step, "world_size": dist.world, **state}, sort_keys=True))
        del full
        dist.barrier()
        if dist.is_main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        dist.barrier()
    except BaseException:
        if dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_sharded_checkpoint(path: Path, *, dist: Dist, model: torch.nn.Module,
                            optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore a `dcp/` checkpoint into this run's (sharded or plain) model and optimizer, on any
    number of processes; returns the JSON state. RNG: this rank's file, else rank 0's."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from trainer.checkpoint import _set_rng_state

    path = Path(path)
    msd, osd = get_state_dict(model, optimizer)  # also creates empty optimizer state to fill
    target = {"model": msd, "optim": osd}
    dcp.load(target, checkpoint_id=str(path / "dcp"), no_dist=not dist.enabled)
    set_state_dict(model, optimizer, model_state_dict=target["model"],
                   optim_state_dict=target["optim"])
    rng = path / f"rng-rank{dist.rank}.pt"
    _set_rng_state(torch.load(rng if rng.is_file() else path / "rng-rank0.pt", weights_only=False))
    return json.loads((path / "state.json").read_text())
