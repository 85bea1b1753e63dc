"""Triangle multiplicative update, Algorithms 11 (outgoing edges) and 12 (incoming edges), in three stages.

The PyTorch twins of the fused kernels, and the only implementation of this maths in the repository
(:class:`fastfold.model.evoformer.TriangleMultiplication` calls the stages through
:mod:`fastfold.kernels`):

1. :func:`triangle_projections_torch`: input LayerNorm, gated and masked left and right edges, and the
   logits of the output gate (Algorithm 11 lines 1-3);
2. :func:`triangle_product`: the edge combination ``ikc,jkc->ijc`` (outgoing) or ``kjc,kic->ijc``
   (incoming), the sum of line 4, channel by channel an ``N x N`` matrix product (by blocks of ``right``
   with :func:`triangle_product_block`, which DAP overlaps with the gathering of ``right``);
3. :func:`triangle_output_torch`: centre LayerNorm, output projection and sigmoid gating (line 4).

Every tensor between the stages is logically ``[*, N_i, N_j, channels]``; its memory layout is the
producer's choice (the Triton stage 1 and the product write channel-major memory, read back through
strides). Under DAP the module gathers ``right`` (channel-major, by rank, never joined) while it forms
the product's block of its own slice, so ``N_i``, ``N_j`` need not be equal. Each stage works in the
input's dtype with the LayerNorms in float32.
"""

from typing import NamedTuple

import torch

from fastfold.kernels.layer_norm import layer_norm


class TriangleProjectionWeights(NamedTuple):
    """Parameters of stage 1; projection weights are ``[in, out]`` as AlphaFold's ``Linear``.

    Shapes: ``input_scale, input_offset`` [C_z]; ``left_w, right_w, left_gate_w, right_gate_w``
    [C_z, c] with biases [c]; ``gating_w`` [C_z, C_z] with bias [C_z].
    """

    input_scale: torch.Tensor
    input_offset: torch.Tensor
    left_w: torch.Tensor
    left_b: torch.Tensor
    right_w: torch.Tensor
    right_b: torch.Tensor
    left_gate_w: torch.Tensor
    left_gate_b: torch.Tensor
    right_gate_w: torch.Tensor
    right_gate_b: torch.Tensor
    gating_w: torch.Tensor
    gating_b: torch.Tensor


class TriangleOutputWeights(NamedTuple):
    """Parameters of stage 3.

    Shapes: ``center_scale, center_offset`` [c]; ``output_w`` [c, C_z] with bias ``output_b`` [C_z].
    """

    center_scale: torch.Tensor
    center_offset: torch.Tensor
    output_w: torch.Tensor
    output_b: torch.Tensor


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """As AlphaFold's ``Linear``: ``x @ weight + bias`` in x's dtype."""
    return x @ weight.to(x.dtype) + bias.to(x.dtype)


def triangle_projections_torch(pair: torch.Tensor, mask: torch.Tensor,
                               weights: TriangleProjectionWeights) -> tuple:
    """Stage 1: gated, masked edges and the output gate's logits (Algorithm 11 lines 1-3).

    Parameters
    ----------
    pair : torch.Tensor
        ``[*, N_i, N_j, C_z]``.
    mask : torch.Tensor
        ``[*, N_i, N_j]`` pair mask (boolean or float), broadcastable to pair's leading shape.
    weights : TriangleProjectionWeights

    Returns
    -------
    tuple of torch.Tensor
        ``left, right`` ``[*, N_i, N_j, c]`` and ``gate`` ``[*, N_i, N_j, C_z]`` (logits: stage 3
        applies the sigmoid), in pair's dtype.
    """
    w = weights
    mask = mask.to(pair.dtype)[..., None]  # [*, N_i, N_j, 1]
    act = layer_norm(pair, w.input_scale, w.input_offset)  # line 1
    left = mask * _linear(act, w.left_w, w.left_b) * torch.sigmoid(_linear(act, w.left_gate_w, w.left_gate_b))
    right = mask * _linear(act, w.right_w, w.right_b) * torch.sigmoid(_linear(act, w.right_gate_w,
                                                                                w.right_gate_b))  # line 2
    return left, right, _linear(act, w.gating_w, w.gating_b)  # line 3, before the sigmoid


def triangle_product_block(left: torch.Tensor, right: torch.Tensor, outgoing: bool) -> torch.Tensor:
    """Stage 2 for one slice of ``right``: the columns (outgoing) or rows (incoming) of line 4's sum that
    it gives, channel-major.

    One batched matrix product per channel on channel-major views (cuBLAS on a GPU); channel-major inputs,
    as the Triton stage 1 writes them, are not copied.

    Parameters
    ----------
    left : torch.Tensor
        ``[*, N_i, K, c]`` (outgoing) or ``[*, K, N_j, c]`` (incoming).
    right : torch.Tensor
        A slice ``[*, n_j, K, c]`` of the outgoing ``right`` ``[*, N_j, K, c]``, or a slice ``[*, K, n_i, c]``
        of the incoming ``right`` ``[*, K, N_i, c]``.
    outgoing : bool

    Returns
    -------
    torch.Tensor
        ``ikc,jkc->cij`` ``[*, c, N_i, n_j]`` (outgoing) or ``kjc,kic->cij`` ``[*, c, n_i, N_j]`` (incoming).
    """
    left_cm, right_cm = left.movedim(-1, -3), right.movedim(-1, -3)  # [*, c, ., .]
    if outgoing:
        return left_cm @ right_cm.transpose(-1, -2)
    return right_cm.transpose(-1, -2) @ left_cm


def join_product_blocks(blocks: list, outgoing: bool) -> torch.Tensor:
    """The product ``[*, N_i, N_j, c]`` (a view of channel-major memory) from the blocks of
    :func:`triangle_product_block` for consecutive slices of ``right``, in order."""
    product = blocks[0] if len(blocks) == 1 else torch.cat(blocks, -1 if outgoing else -2)
    return product.movedim(-3, -1)


def triangle_product(left: torch.Tensor, right: torch.Tensor, outgoing: bool) -> torch.Tensor:
    """Stage 2, line 4's sum: ``ikc,jkc->ijc`` (outgoing, Algorithm 11) or ``kjc,kic->ijc`` (Algorithm 12).

    left ``[*, N_i, K, c]`` / ``[*, K, N_j, c]``, right ``[*, N_j, K, c]`` / ``[*, K, N_i, c]`` (outgoing /
    incoming) -> ``[*, N_i, N_j, c]``, a view of channel-major memory (see :func:`triangle_product_block`).
    """
    return join_product_blocks([triangle_product_block(left, right, outgoing)], outgoing)


def triangle_output_torch(product: torch.Tensor, gate: torch.Tensor,
                          weights: TriangleOutputWeights) -> torch.Tensor:
    """Stage 3: ``Linear(LayerNorm(product)) * sigmoid(gate)`` (Algorithm 11 line 4, with line 3's gate).

    Parameters
    ----------
    product : torch.Tensor
        ``[*, N_i, N_j, c]`` from :func:`triangle_product`.
    gate : torch.Tensor
        ``[*, N_i, N_j, C_z]`` gate logits from stage 1.
    weights : TriangleOutputWeights

    Returns
    -------
    torch.Tensor
        The update ``[*, N_i, N_j, C_z]`` in product's dtype (the residual is added by the caller).
    """
    w = weights
    combined = layer_norm(product, w.center_scale, w.center_offset)
    return _linear(combined, w.output_w, w.output_b) * torch.sigmoid(gate)
