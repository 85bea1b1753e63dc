"""Triangle multiplicative update, Algorithms 11 (outgoing edges) and 12 (incoming edges), in three stages.

The PyTorch twins of the fused kernels, and the only implementation of this maths in the repository
(:class:`fastfold.model.evoformer.TriangleMultiplication` calls the stages through
:mod:`fastfold.kernels`):

1. :func:`triangle_projections_torch`: input LayerNorm, gated and masked left and right edges, and the
   logits of the output gate (Algorithm 11 lines 1-3);
2. :func:`triangle_product`: the edge combination ``ikc,jkc->ijc`` (outgoing) or ``kjc,kic->ijc``
   (incoming), the sum of line 4, channel by channel an ``N x N`` matrix product (under DAP formed block
   by block, a slice of ``right`` and a group of channels at a time, with :class:`ProductBlocks`, so that
   it overlaps the gathering of ``right``);
3. :func:`triangle_output_torch`: centre LayerNorm, output projection and sigmoid gating (line 4).

Every tensor between the stages is logically ``[*, N_i, N_j, channels]``; its memory layout is the
producer's choice (the Triton stage 1 and the product write channel-major memory, read back through
strides). Under DAP the module gathers ``right`` (channel-major, by rank, never joined, in groups of
channels) while it forms the product's block of its own slice, so ``N_i``, ``N_j`` need not be equal.
Each stage works in the input's dtype with the LayerNorms in float32.
"""

from typing import NamedTuple

import torch

from fastfold.kernels.layer_norm import layer_norm
from fastfold.kernels.operands import converted


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
    return x @ converted(weight, x.dtype) + converted(bias, x.dtype)


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


def triangle_product_block(left: torch.Tensor, right: torch.Tensor, outgoing: bool,
                           out: torch.Tensor | None = None) -> torch.Tensor:
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
    out : torch.Tensor, optional
        Where to write the block (a strided view of a larger product is fine); no autograd through it.

    Returns
    -------
    torch.Tensor
        ``ikc,jkc->cij`` ``[*, c, N_i, n_j]`` (outgoing) or ``kjc,kic->cij`` ``[*, c, n_i, N_j]`` (incoming).
    """
    left_cm, right_cm = left.movedim(-1, -3), right.movedim(-1, -3)  # [*, c, ., .]
    if outgoing:
        return torch.matmul(left_cm, right_cm.transpose(-1, -2), out=out)
    return torch.matmul(right_cm.transpose(-1, -2), left_cm, out=out)


def channel_groups(channels: int, groups: int) -> list:
    """The sizes of ``min(groups, channels)`` consecutive groups of ``channels``, as equal as they can be."""
    groups = max(1, min(groups, channels))
    return [channels * (k + 1) // groups - channels * k // groups for k in range(groups)]


class ProductBlocks:
    """Line 4's sum ``[*, N_i, N_j, c]`` formed block by block, in any order, as parts of ``right`` arrive.

    A block is :func:`triangle_product_block` of ``left`` with slice ``r`` of ``right`` (its columns
    ``j`` outgoing, rows ``i`` incoming; DAP rank r's piece), for one group of channels. Without
    autograd each block is written straight into its place in one channel-major product (no join);
    with autograd the blocks are joined by one copy, whose backward hands each block its gradient as
    a view (no copy).

    Parameters
    ----------
    left : torch.Tensor
        ``[*, N_i, K, c]`` (outgoing) or ``[*, K, N_j, c]`` (incoming).
    num_slices, slice_size : int
        n and the size of every slice of ``right`` (``n_j`` outgoing, ``n_i`` incoming).
    outgoing : bool
    """

    def __init__(self, left: torch.Tensor, num_slices: int, slice_size: int, outgoing: bool):
        *lead, rows, columns, channels = left.shape
        length = num_slices * slice_size
        self.shape = (*lead, channels, rows, length) if outgoing else (*lead, channels, length, columns)
        self.left, self.slice_size, self.outgoing = left, slice_size, outgoing
        self.product = None if torch.is_grad_enabled() else left.new_empty(self.shape)  # [*, c, N_i, N_j]
        self.blocks = []  # with autograd: (index into the product, block)

    def add(self, index: int, right: torch.Tensor, channels: slice = slice(None)) -> None:
        """Form the block of slice ``index`` of ``right`` for ``channels``.

        right ``[*, n_j, K, c_g]`` (outgoing) or ``[*, K, n_i, c_g]`` (incoming): those channels of the slice.
        """
        span = slice(index * self.slice_size, (index + 1) * self.slice_size)
        place = (..., channels, slice(None), span) if self.outgoing else (..., channels, span, slice(None))
        left = self.left[..., channels]
        if self.product is not None:
            triangle_product_block(left, right, self.outgoing, out=self.product[place])
        else:
            self.blocks.append((place, triangle_product_block(left, right, self.outgoing)))

    def result(self) -> torch.Tensor:
        """The product ``[*, N_i, N_j, c]`` (a view of channel-major memory), once every block is formed."""
        if self.product is not None:
            product = self.product
        elif len(self.blocks) == 1:  # one slice and all channels: the block is the product
            product = self.blocks[0][1]
        else:
            places, blocks = zip(*self.blocks, strict=True)
            product = _JoinBlocks.apply(self.shape, places, *blocks)
        return product.movedim(-3, -1)


class _JoinBlocks(torch.autograd.Function):
    """``blocks`` copied to their ``places`` in a new tensor of ``shape``; the backward gives each block
    the view of the gradient at its place."""

    @staticmethod
    def forward(ctx, shape, places, *blocks):
        ctx.places = places
        joined = blocks[0].new_empty(shape)
        for place, block in zip(places, blocks, strict=True):
            joined[place] = block
        return joined

    @staticmethod
    def backward(ctx, grad):
        return None, None, *(grad[place] for place in ctx.places)


def triangle_product(left: torch.Tensor, right: torch.Tensor, outgoing: bool) -> torch.Tensor:
    """Stage 2, line 4's sum: ``ikc,jkc->ijc`` (outgoing, Algorithm 11) or ``kjc,kic->ijc`` (Algorithm 12).

    left ``[*, N_i, K, c]`` / ``[*, K, N_j, c]``, right ``[*, N_j, K, c]`` / ``[*, K, N_i, c]`` (outgoing /
    incoming) -> ``[*, N_i, N_j, c]``, a view of channel-major memory (see :func:`triangle_product_block`).
    """
    return triangle_product_block(left, right, outgoing).movedim(-3, -1)


def with_addends(product: torch.Tensor, addends: torch.Tensor | None) -> torch.Tensor:
    """``product`` plus each of ``addends`` in turn (the partial sums of line 4 from the other DAP ranks).

    product ``[*, N_i, N_j, c]``, addends ``[P, *, N_i, N_j, c]`` or None -> ``[*, N_i, N_j, c]``.
    """
    for addend in addends if addends is not None else ():
        product = product + addend
    return product


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
