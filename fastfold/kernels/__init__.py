"""Fused Evoformer kernels behind one small dispatch API.

Each operation has one autograd-aware entry point that runs the fused Triton kernel on CUDA
tensors and its plain PyTorch twin elsewhere. The Triton kernels (``triton_*.py``) run through the
``torch.library`` custom ops of :mod:`fastfold.kernels.ops`, imported on first use so that Triton
stays an optional dependency.

Which implementation runs is one setting, :class:`Kernel` (``auto``, ``triton`` or ``torch``),
read at every call (so a test or a run can change it without re-importing anything): the environment
variable ``FASTFOLD_KERNEL`` when it is set, else the process default that :func:`set_default_kernel`
sets (the model sets it from its config, ``model.global_config.kernel``), else ``auto``. ``auto``
picks Triton on CUDA tensors where a kernel exists and PyTorch elsewhere; ``triton`` runs the Triton
kernel on any tensor (on CPU tensors this needs ``TRITON_INTERPRET=1``, which is how CI tests the
kernels) and fails loudly rather than falling back silently.

The triangle multiplicative update is three entry points, so that a DAP hook can gather ``right``
between them: :func:`triangle_projections` and :func:`triangle_output` dispatch as above;
:func:`triangle_product` (and :class:`ProductBlocks`, the same product formed block by block for DAP) is
one implementation everywhere (batched matrix products, cuBLAS on a GPU).
"""

import enum
import os
from collections.abc import Sequence

import torch

from fastfold.kernels.attention import attention_torch
from fastfold.kernels.layer_norm import layer_norm as layer_norm_torch
from fastfold.kernels.operands import converted, needs_grad
from fastfold.kernels.softmax import softmax_torch
from fastfold.kernels.triangle_multiplication import (
    ProductBlocks,
    TriangleOutputWeights,
    TriangleProjectionWeights,
    channel_groups,
    triangle_output_torch,
    triangle_product,
    triangle_product_block,
    triangle_projections_torch,
    with_addends,
)

KERNEL_ENV_VAR = "FASTFOLD_KERNEL"


class Kernel(enum.StrEnum):
    """Which implementation of a kernel to run."""

    AUTO = "auto"
    TRITON = "triton"
    TORCH = "torch"


_default = Kernel.AUTO


def _parse(value: str, source: str) -> Kernel:
    try:
        return Kernel(value.strip().lower())
    except ValueError:
        choices = ", ".join(kind.value for kind in Kernel)
        raise ValueError(f"{source}={value!r}: expected one of {choices}") from None


def set_default_kernel(value: str) -> None:
    """Set the process's default setting (``auto``, ``triton`` or ``torch``); ``FASTFOLD_KERNEL``, when
    set, still wins."""
    global _default
    _default = _parse(value, "kernel")


def kernel_setting() -> Kernel:
    """The current setting: ``FASTFOLD_KERNEL`` if set, else the process default; read at call time."""
    value = os.environ.get(KERNEL_ENV_VAR)
    return _default if value is None else _parse(value, KERNEL_ENV_VAR)


def _use_triton(x: torch.Tensor) -> bool:
    """Whether the current setting runs the Triton kernel on ``x``: ``auto`` on CUDA, ``triton`` always."""
    setting = kernel_setting()
    if setting is Kernel.TRITON and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"{KERNEL_ENV_VAR}=triton on a CPU tensor needs Triton's interpreter: set "
                           "TRITON_INTERPRET=1 before importing Triton")
    return setting is Kernel.TRITON or (setting is Kernel.AUTO and x.is_cuda)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Sequence[torch.Tensor] = (),
              mask: torch.Tensor | None = None, gate: torch.Tensor | None = None) -> torch.Tensor:
    """Biased, masked, gated multi-head attention; see :func:`attention_torch` for the maths.

    q [*, H, Q, c] (unscaled), k [*, H, K, c], v [*, H, K, c_v], biases broadcastable to
    [*, H, Q, K], mask boolean broadcastable to [*, H, Q, K] (False = key excluded), gate logits
    [*, H, Q, c_v] (sigmoid applied here) -> [*, H, Q, c_v].
    """
    if _use_triton(q):
        from fastfold.kernels import ops
        return ops.attention(q, k, v, biases, mask, gate)
    return attention_torch(q, k, v, biases, mask, gate)


def softmax(x: torch.Tensor, bias: torch.Tensor | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension of ``x + mask bias + bias``; see :func:`softmax_torch`.

    x [*, K]; bias broadcastable to [*, K]; mask boolean broadcastable to [*, K] -> [*, K].
    """
    if _use_triton(x):
        from fastfold.kernels import ops
        return ops.softmax(x, bias, mask)
    return softmax_torch(x, bias, mask)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm of x [*, C] over C with weight, bias [C], in float32, returned in x's dtype.

    See :func:`fastfold.kernels.layer_norm.layer_norm` for the maths.
    """
    if _use_triton(x):
        from fastfold.kernels import ops
        return ops.layer_norm(x, weight, bias, eps)
    return layer_norm_torch(x, weight, bias, eps)


def triangle_projections(pair: torch.Tensor, mask: torch.Tensor, weights: TriangleProjectionWeights) -> tuple:
    """Triangle update stage 1 (Algorithms 11, 12 lines 1-3); see :func:`triangle_projections_torch`.

    pair [*, N_i, N_j, C_z], mask [*, N_i, N_j] -> (left, right [*, N_i, N_j, c] (channel-major memory
    from the kernel), gate logits [*, N_i, N_j, C_z]).
    """
    if _use_triton(pair):
        from fastfold.kernels import ops
        return ops.triangle_projections(pair, mask, weights)
    return triangle_projections_torch(pair, mask, weights)


def triangle_projection_parts(pair: torch.Tensor, mask: torch.Tensor, weights: TriangleProjectionWeights,
                              parts: tuple) -> tuple:
    """The ``parts`` (names among "left", "right", "gate") of :func:`triangle_projections`, in that order.

    Without a gradient to compute, the Triton kernel computes only those (see
    :func:`fastfold.kernels.ops.triangle_projections`); otherwise all three are computed, the others dropped.
    """
    if _use_triton(pair):
        from fastfold.kernels import ops
        left, right, gate = ops.triangle_projections(pair, mask, weights, parts)
    else:
        left, right, gate = triangle_projections_torch(pair, mask, weights)
    named = dict(left=left, right=right, gate=gate)
    return tuple(named[part] for part in parts)


def triangle_output(product: torch.Tensor, gate: torch.Tensor, weights: TriangleOutputWeights,
                    addends: torch.Tensor | None = None) -> torch.Tensor:
    """Triangle update stage 3 (Algorithm 11 line 4); see :func:`triangle_output_torch`.

    product [*, N_i, N_j, c] (from :func:`triangle_product`), gate logits [*, N_i, N_j, C_z], addends
    [P, *, N_i, N_j, c] partial sums to add to the product first (:func:`with_addends`; the Triton kernel
    adds them as it reads the product, without autograd) -> update [*, N_i, N_j, C_z].
    """
    if _use_triton(product):
        from fastfold.kernels import ops
        return ops.triangle_output(product, gate, weights, addends)
    return triangle_output_torch(with_addends(product, addends), gate, weights)


__all__ = ["Kernel", "KERNEL_ENV_VAR", "ProductBlocks", "TriangleOutputWeights", "TriangleProjectionWeights",
           "attention", "channel_groups", "converted", "kernel_setting", "layer_norm", "needs_grad",
           "set_default_kernel", "softmax", "triangle_output", "triangle_product", "triangle_product_block",
           "triangle_projection_parts", "triangle_projections", "with_addends"]
