"""Triangle multiplicative update (Algorithms 11, 12) in Triton: the fused stages 1 and 3, forward.

Stage 1, ``_projections_kernel`` (per block of pair positions and of output channels): the input
LayerNorm, the four edge projections ``a W_l, a W_lg, a W_r, a W_rg`` as tile products, the sigmoid gates
and the pair mask, writing the gated left and right edges channel-major, ``[*, c, N_i, N_j]``; programs
past the edge channels compute the output gate's logits ``a W_g + b_g`` ``[*, N_i, N_j, C_z]`` instead.
Stage 2 (:func:`fastfold.kernels.triangle_multiplication.triangle_product`) is cuBLAS on that layout.
Stage 3, ``_output_kernel`` (per block of pair positions): reads the product through its strides (channel-
major from stage 2), applies the centre LayerNorm and the output projection, and writes
``proj * sigmoid(gate)`` ``[*, N_i, N_j, C_z]``.

Everything between loads and stores is float32 (dots on the operands' dtype, accumulating in float32),
rounded once at each store; ``act`` is rounded to the pair's dtype before its projections, as the twin
rounds it. The backward passes are :mod:`fastfold.kernels.ops`' recomputations through the twins.
"""

import torch
import triton
import triton.language as tl

from fastfold.kernels.triangle_multiplication import TriangleOutputWeights, TriangleProjectionWeights
from fastfold.kernels.triton_layout import dot_precision

EPS = 1e-5  # both LayerNorms, as the model's


@triton.jit
def _layer_norm_rows(x, w_ptr, b_ptr, cols, n_cols, eps):
    """LayerNorm of a float32 [BM, BC] tile over its first ``n_cols`` columns (others stay zero)."""
    valid = (cols < n_cols)[None, :]
    mean = tl.sum(x, 1) / n_cols
    centred = tl.where(valid, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 1) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    return centred * rstd[:, None] * w[None, :] + b[None, :]


@triton.jit
def _affine(a, w_ptr, b_ptr, rows_in, n_in, cols_out, n_out, PRECISION: tl.constexpr):
    """``a @ W[:, cols_out] + b[cols_out]`` in float32; W [n_in, n_out] row-major, cast to a's dtype."""
    w = tl.load(w_ptr + rows_in[:, None] * n_out + cols_out[None, :],
                mask=(rows_in < n_in)[:, None] & (cols_out < n_out)[None, :], other=0.0).to(a.dtype)
    b = tl.load(b_ptr + cols_out, mask=cols_out < n_out, other=0.0).to(tl.float32)
    return tl.dot(a, w, input_precision=PRECISION) + b[None, :]


@triton.jit
def _projections_kernel(x_ptr, m_ptr, ln_w, ln_b, wl, bl, wr, br, wlg, blg, wrg, brg, wg, bg,
                        left_ptr, right_ptr, gate_ptr, M, NN, CZ, CI, EDGE_BLOCKS, eps,
                        BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_N: tl.constexpr,
                        PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    block = tl.program_id(1)
    cz = tl.arange(0, BLOCK_CZ)
    x = tl.load(x_ptr + rows[:, None] * CZ + cz[None, :], mask=(rows < M)[:, None] & (cz < CZ)[None, :],
                other=0.0)
    act = _layer_norm_rows(x.to(tl.float32), ln_w, ln_b, cz, CZ, eps).to(x.dtype)  # [BM, C_z], line 1
    if block < EDGE_BLOCKS:  # gated, masked edges (line 2), stored channel-major [B, c, N_i * N_j]
        ci = block * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = tl.load(m_ptr + rows, mask=rows < M, other=0.0).to(tl.float32)[:, None]
        left = mask * _affine(act, wl, bl, cz, CZ, ci, CI, PRECISION) * \
            tl.sigmoid(_affine(act, wlg, blg, cz, CZ, ci, CI, PRECISION))
        right = mask * _affine(act, wr, br, cz, CZ, ci, CI, PRECISION) * \
            tl.sigmoid(_affine(act, wrg, brg, cz, CZ, ci, CI, PRECISION))
        batch, pos = rows // NN, rows % NN
        offsets = batch[:, None] * CI * NN + ci[None, :] * NN + pos[:, None]
        valid = (rows < M)[:, None] & (ci < CI)[None, :]
        tl.store(left_ptr + offsets, left.to(left_ptr.dtype.element_ty), mask=valid)
        tl.store(right_ptr + offsets, right.to(right_ptr.dtype.element_ty), mask=valid)
    else:  # the output gate's logits (line 3), position-major [M, C_z]
        cols = (block - EDGE_BLOCKS) * BLOCK_N + tl.arange(0, BLOCK_N)
        gate = _affine(act, wg, bg, cz, CZ, cols, CZ, PRECISION)
        tl.store(gate_ptr + rows[:, None] * CZ + cols[None, :], gate.to(gate_ptr.dtype.element_ty),
                 mask=(rows < M)[:, None] & (cols < CZ)[None, :])


@triton.jit
def _output_kernel(p_ptr, g_ptr, c_w, c_b, wo, bo, out_ptr, M, NN, CZ, CI, stride_pb, stride_pc, stride_pp,
                   eps, BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_CI: tl.constexpr,
                   PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_CI)
    cz = tl.arange(0, BLOCK_CZ)
    batch, pos = rows // NN, rows % NN
    product = tl.load(p_ptr + batch[:, None] * stride_pb + ci[None, :] * stride_pc + pos[:, None] * stride_pp,
                      mask=(rows < M)[:, None] & (ci < CI)[None, :], other=0.0)  # [BM, c]
    centred = _layer_norm_rows(product.to(tl.float32), c_w, c_b, ci, CI, eps).to(product.dtype)
    proj = _affine(centred, wo, bo, ci, CI, cz, CZ, PRECISION)  # [BM, C_z], line 4
    valid = (rows < M)[:, None] & (cz < CZ)[None, :]
    gate = tl.load(g_ptr + rows[:, None] * CZ + cz[None, :], mask=valid, other=0.0).to(tl.float32)
    out = proj * tl.sigmoid(gate)
    tl.store(out_ptr + rows[:, None] * CZ + cz[None, :], out.to(out_ptr.dtype.element_ty), mask=valid)


# (BLOCK_M, num_warps) of the two kernels on a GPU; the interpreter takes 16 positions per program.
GPU_PROJECT = (64, 4)
GPU_OUTPUT = (64, 8)


def _launch(x: torch.Tensor, gpu: tuple) -> dict:
    precision = dot_precision(x.dtype)
    if not x.is_cuda:
        return dict(BLOCK_M=16, PRECISION=precision)
    return dict(BLOCK_M=gpu[0], num_warps=gpu[1], PRECISION=precision)


def projections_forward(pair: torch.Tensor, mask: torch.Tensor, weights: TriangleProjectionWeights) -> tuple:
    """Fused stage 1; as :func:`~fastfold.kernels.triangle_multiplication.triangle_projections_torch`.

    pair [*, N_i, N_j, C_z], mask broadcastable to [*, N_i, N_j] -> (left, right channel-major
    ``[*, c, N_i, N_j]``, gate logits ``[*, N_i, N_j, C_z]``), in pair's dtype.
    """
    w = weights
    *lead, ni, nj, cz = pair.shape
    ci = w.left_w.shape[-1]
    x = pair.contiguous().view(-1, cz)  # [M, C_z], M = B * N_i * N_j
    m = mask.expand(*lead, ni, nj).to(pair.dtype).contiguous().view(-1)
    left = pair.new_empty(*lead, ci, ni, nj)
    right = torch.empty_like(left)
    gate = torch.empty_like(x)
    block_n = min(64, max(16, triton.next_power_of_2(max(ci, cz))))
    edge_blocks = triton.cdiv(ci, block_n)
    cfg = _launch(pair, GPU_PROJECT)
    grid = (triton.cdiv(x.shape[0], cfg["BLOCK_M"]), edge_blocks + triton.cdiv(cz, block_n))
    _projections_kernel[grid](x, m, *w, left, right, gate, x.shape[0], ni * nj, cz, ci, edge_blocks, EPS,
                              BLOCK_CZ=max(16, triton.next_power_of_2(cz)), BLOCK_N=block_n, **cfg)
    return left, right, gate.view(pair.shape)


def output_forward(product: torch.Tensor, gate: torch.Tensor, weights: TriangleOutputWeights) -> torch.Tensor:
    """Fused stage 3; as :func:`~fastfold.kernels.triangle_multiplication.triangle_output_torch`.

    product [*, N_i, N_j, c] (any strides), gate [*, N_i, N_j, C_z] -> [*, N_i, N_j, C_z] in product's dtype.
    """
    w = weights
    *lead, ni, nj, ci = product.shape
    cz = gate.shape[-1]
    p = product.movedim(-1, -3).reshape(-1, ci, ni * nj)  # [B, c, N_i * N_j], a view where it can be
    g = gate.contiguous().view(-1, cz)
    out = product.new_empty(*lead, ni, nj, cz)
    cfg = _launch(product, GPU_OUTPUT)
    _output_kernel[(triton.cdiv(g.shape[0], cfg["BLOCK_M"]),)](
        p, g, *w, out, g.shape[0], ni * nj, cz, ci, *p.stride(), EPS,
        BLOCK_CZ=max(16, triton.next_power_of_2(cz)), BLOCK_CI=max(16, triton.next_power_of_2(ci)), **cfg)
    return out
