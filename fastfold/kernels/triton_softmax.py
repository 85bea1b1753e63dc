"""Softmax over the last dimension with an additive bias and a key mask, in Triton.

Forward: one pass per row block, ``x + mask offset + bias`` in float32 exactly as
:func:`fastfold.kernels.softmax.softmax_torch` forms it, bias and mask read through broadcast strides.
Backward: ``dx = y * (dy - sum(dy * y))``; the bias gradient is ``dx`` summed over the dimensions the
bias broadcasts over (done by the op wrapper).
"""


import torch
import triton
import triton.language as tl

from fastfold.kernels.launch import launch
from fastfold.kernels.softmax import MASKED_LOGIT_OFFSET
from fastfold.kernels.triton_attention import load_tile, split_pid, store_tile
from fastfold.kernels.triton_layout import broadcast_shapes, canonical_layout
from fastfold.kernels.tuning import cdiv, next_power_of_2

MASK_OFFSET = tl.constexpr(MASKED_LOGIT_OFFSET)

MAX_ROW = 32768  # longest row held in one tile


@triton.jit
def _softmax_fwd_kernel(x_ptr, b_ptr, m_ptr, y_ptr, x_st, b_st, m_st, y_st, Z2, Z3, R, K,
                        HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    z1, z2, z3, rb = split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(R, BLOCK_R))
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_K)
    valid = (rows < R)[:, None] & (cols < K)[None, :]
    x = load_tile(x_ptr, x_st, z1, z2, z3, rows, cols, valid).to(tl.float32)
    if HAS_MASK:
        keep = load_tile(m_ptr, m_st, z1, z2, z3, rows, cols, valid)
        x = tl.where(keep != 0, x, x - MASK_OFFSET)
    if HAS_BIAS:
        x += load_tile(b_ptr, b_st, z1, z2, z3, rows, cols, valid).to(tl.float32)
    x = tl.where((cols < K)[None, :], x, float("-inf"))
    e = tl.exp(x - tl.max(x, 1)[:, None])
    y = e / tl.sum(e, 1)[:, None]
    store_tile(y_ptr, y_st, z1, z2, z3, rows, cols, y, valid)


@triton.jit
def _softmax_bwd_kernel(dy_ptr, y_ptr, dx_ptr, N, K, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_K)
    valid = (rows < N)[:, None] & (cols < K)[None, :]
    offsets = rows.to(tl.int64)[:, None] * K + cols[None, :]
    dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
    dx = y * (dy - tl.sum(dy * y, 1)[:, None])
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=valid)


def _row_blocks(k: int) -> tuple:
    if k > MAX_ROW:
        raise ValueError(f"softmax rows longer than {MAX_ROW} are not supported by the Triton kernel")
    block_k = next_power_of_2(k)
    return max(1, min(16, 2048 // block_k)), block_k


def softmax_forward(x: torch.Tensor, bias: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(x + mask offset + bias)`` over the last dimension.

    x [*, K]; bias broadcastable to [*, K]; mask boolean broadcastable to [*, K] (False = excluded)
    -> [*, K] in x's dtype, contiguous.
    """
    k = x.shape[-1]
    operands = [t.expand(*t.shape[:-1], k) for t in (x, bias, mask) if t is not None]
    lead = broadcast_shapes(*(tuple(t.shape[:-1]) for t in operands))
    canon = canonical_layout([(t, 1) for t in operands], lead, ndim=4)
    tensors, strides = list(canon.tensors), list(canon.strides)
    x_c, x_st = tensors.pop(0), strides.pop(0)
    b_c, b_st = (tensors.pop(0), strides.pop(0)) if bias is not None else (x_c, x_st)
    m_c, m_st = (tensors.pop(0).view(torch.uint8), strides.pop(0)) if mask is not None else (x_c, x_st)
    z1, z2, z3, rows = canon.lead
    y = torch.empty(*canon.lead, k, device=x.device, dtype=x.dtype)
    block_r, block_k = _row_blocks(k)
    launch(
        _softmax_fwd_kernel, (z1 * z2 * z3 * cdiv(rows, block_r),),
        x_c, b_c, m_c, y, x_st, b_st, m_st, y.stride(),
        z2, z3, rows, k, HAS_BIAS=bias is not None, HAS_MASK=mask is not None,
        BLOCK_R=block_r, BLOCK_K=block_k)
    return y.view(*lead, k)


def softmax_backward(grad_y: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dx = y * (dy - sum(dy * y))`` over the last dimension; grad_y, y [*, K] -> dx [*, K]."""
    k = y.shape[-1]
    dy = grad_y.contiguous()
    dx = torch.empty_like(y)
    n = y.numel() // k
    block_r, block_k = _row_blocks(k)
    launch(_softmax_bwd_kernel, (cdiv(n, block_r),), dy, y, dx, n, k, BLOCK_R=block_r, BLOCK_K=block_k)
    return dx
