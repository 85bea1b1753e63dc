"""LayerNorm over the last dimension, in Triton.

Forward: one read of ``x`` and one write of ``y`` per row block, statistics in float32 as
:func:`fastfold.kernels.layer_norm.layer_norm` computes them; the row mean and reciprocal standard
deviation are kept for the backward pass. ``x`` is read through two row strides (its rows indexed as
``[A, B]``), so a transposed view such as the pair around the ending node ``[*, N_j, N_i, C]`` is
normalised without a copy; ``y`` and ``dx`` are contiguous in ``x``'s logical order. Backward: ``dx``
row by row, and each program sums its rows' ``dy * x_hat`` and ``dy`` into one partial row of the weight
and bias gradients, summed afterwards.
"""

import torch
import triton
import triton.language as tl

from fastfold.kernels.launch import launch
from fastfold.kernels.tuning import cdiv, next_power_of_2


@triton.jit
def _row_offsets(rows, B, stride_a, stride_b):
    """The memory offsets of rows ``r = a * B + b`` of an ``[A, B, C]`` view with row strides ``stride_a``,
    ``stride_b`` (channels contiguous)."""
    a = rows // B
    return a.to(tl.int64) * stride_a + (rows - a * B).to(tl.int64) * stride_b


@triton.jit
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, N, C, B, stride_a, stride_b, eps,
                   BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    row_valid = rows < N
    col_valid = cols < C
    valid = row_valid[:, None] & col_valid[None, :]
    offsets = rows.to(tl.int64)[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + _row_offsets(rows, B, stride_a, stride_b)[:, None] + cols[None, :], mask=valid,
                other=0.0).to(tl.float32)
    mean = tl.sum(x, 1) / C
    centred = tl.where(valid, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 1) / C + eps)
    w = tl.load(w_ptr + cols, mask=col_valid, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=col_valid, other=0.0).to(tl.float32)
    y = centred * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(y_ptr + offsets, y.to(y_ptr.dtype.element_ty), mask=valid)
    tl.store(mean_ptr + rows, mean, mask=row_valid)
    tl.store(rstd_ptr + rows, rstd, mask=row_valid)


@triton.jit
def _ln_bwd_kernel(dy_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, dx_ptr, dw_ptr, db_ptr, N, C, B, stride_a,
                   stride_b, ROWS_PER_PROGRAM, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    col_valid = cols < C
    w = tl.load(w_ptr + cols, mask=col_valid, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_C], tl.float32)
    db = tl.zeros([BLOCK_C], tl.float32)
    first = pid * ROWS_PER_PROGRAM
    for start in range(first, first + ROWS_PER_PROGRAM, BLOCK_R):
        rows = start + tl.arange(0, BLOCK_R)
        row_valid = (rows < N) & (rows < first + ROWS_PER_PROGRAM)
        valid = row_valid[:, None] & col_valid[None, :]
        offsets = rows.to(tl.int64)[:, None] * C + cols[None, :]
        x = tl.load(x_ptr + _row_offsets(rows, B, stride_a, stride_b)[:, None] + cols[None, :], mask=valid,
                    other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + rows, mask=row_valid, other=0.0)
        rstd = tl.load(rstd_ptr + rows, mask=row_valid, other=0.0)
        x_hat = tl.where(valid, (x - mean[:, None]) * rstd[:, None], 0.0)
        g = dy * w[None, :]
        dx = rstd[:, None] * (g - (tl.sum(g * x_hat, 1)[:, None] * x_hat + tl.sum(g, 1)[:, None]) / C)
        tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=valid)
        dw += tl.sum(dy * x_hat, 0)
        db += tl.sum(dy, 0)
    tl.store(dw_ptr + pid * C + cols, dw, mask=col_valid)
    tl.store(db_ptr + pid * C + cols, db, mask=col_valid)


def _row_block(c: int) -> tuple:
    block_c = next_power_of_2(c)
    return max(1, min(64, 4096 // block_c)), block_c


def _rows_view(x: torch.Tensor) -> tuple:
    """x [*, C] as an ``[A, B, C]`` view with contiguous channels (copied only if no such view exists) and
    its kernel arguments ``(B, stride_a, stride_b)``."""
    x3 = x.reshape(-1, x.shape[-2] if x.dim() > 1 and x.shape[-2] > 0 else 1, x.shape[-1])
    if x3.stride(-1) != 1:
        x3 = x3.contiguous()
    return x3, (x3.shape[1], x3.stride(0), x3.stride(1))


def layer_norm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> tuple:
    """LayerNorm of x [*, C] with weight, bias [C].

    Returns
    -------
    tuple of torch.Tensor
        ``y`` [*, C] in x's dtype, and the float32 row mean and reciprocal standard deviation [N]
        (N = rows of x).
    """
    c = x.shape[-1]
    x3, strides = _rows_view(x)
    n = x3.shape[0] * x3.shape[1]
    y = x.new_empty(x.shape)  # contiguous
    mean = torch.empty(n, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    block_r, block_c = _row_block(c)
    launch(
        _ln_fwd_kernel, (cdiv(n, block_r),),
        x3, weight.contiguous(), bias.contiguous(), y, mean, rstd, n, c, *strides, eps,
        BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4 if block_r * block_c <= 2048 else 8)
    return y, mean, rstd


def layer_norm_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                        rstd: torch.Tensor) -> tuple:
    """Gradients of :func:`layer_norm_forward`: ``(dx [*, C] in x's dtype, dweight [C], dbias [C])``.

    Both parameter gradients come back in weight's dtype (the op wrapper casts dbias to bias's dtype).
    """
    c = x.shape[-1]
    x3, strides = _rows_view(x)
    dy = grad_y.reshape(-1, c).contiguous()
    n = dy.shape[0]
    block_r, block_c = _row_block(c)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1
    programs = max(1, min(cdiv(n, block_r), 4 * sms))
    rows_per_program = cdiv(cdiv(n, programs), block_r) * block_r
    programs = cdiv(n, rows_per_program)
    dx = x.new_empty(x.shape)  # contiguous
    dw = torch.empty(programs, c, device=x.device, dtype=torch.float32)
    db = torch.empty_like(dw)
    launch(
        _ln_bwd_kernel, (programs,),
        dy, x3, weight.contiguous(), mean, rstd, dx, dw, db, n, c, *strides, rows_per_program,
        BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4 if block_r * block_c <= 2048 else 8)
    return dx, dw.sum(0).to(weight.dtype), db.sum(0).to(weight.dtype)
