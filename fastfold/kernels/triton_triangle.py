"""Triangle multiplicative update (Algorithms 11, 12) in Triton: the forward pass.

Three launches, with no ``[*, N, N, c]`` intermediate in the twin's position-major layout:

1. ``_project_kernel`` (per block of pair positions and of intermediate channels): the input
   LayerNorm, the four projections ``a W_l, a W_lg, a W_r, a W_rg`` as tile products, the sigmoid
   gates and the pair mask, writing the gated left and right edges channel-major, ``[*, c, N, N]``;
2. the triangle product, channel by channel a plain ``N x N`` matrix product on that layout
   (``L R^T`` for outgoing edges, ``R^T L`` for incoming ones), left to cuBLAS;
3. ``_output_kernel`` (per block of pair positions): reads the product channel-major, applies the
   centre LayerNorm, the output projection, recomputes the input LayerNorm and the gating projection,
   and writes ``proj * sigmoid(gate)`` ``[*, N, N, C_z]``.

Everything between loads and stores is float32 (dots on the operands' dtype, accumulating in float32),
rounded once at each store. The backward pass is :func:`fastfold.kernels.ops`' recomputation through
the PyTorch twin.
"""

import torch
import triton
import triton.language as tl

from fastfold.kernels.triangle_multiplication import TriangleMultiplicationWeights

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
def _input_act(x_ptr, ln_w, ln_b, rows, M, cz, CZ, eps):
    """LayerNorm of pair rows [BM, C_z], cast to the pair's dtype (the twin's ``act``)."""
    x = tl.load(x_ptr + rows[:, None] * CZ + cz[None, :], mask=(rows < M)[:, None] & (cz < CZ)[None, :],
                other=0.0)
    return _layer_norm_rows(x.to(tl.float32), ln_w, ln_b, cz, CZ, eps).to(x.dtype)


@triton.jit
def _project_kernel(x_ptr, m_ptr, ln_w, ln_b, wl, bl, wr, br, wlg, blg, wrg, brg, left_ptr, right_ptr,
                    M, NN, CZ, CI, eps, BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_CI: tl.constexpr,
                    PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.program_id(1) * BLOCK_CI + tl.arange(0, BLOCK_CI)
    cz = tl.arange(0, BLOCK_CZ)
    act = _input_act(x_ptr, ln_w, ln_b, rows, M, cz, CZ, eps)  # [BM, C_z]
    mask = tl.load(m_ptr + rows, mask=rows < M, other=0.0).to(tl.float32)[:, None]
    left = mask * _affine(act, wl, bl, cz, CZ, ci, CI, PRECISION) * \
        tl.sigmoid(_affine(act, wlg, blg, cz, CZ, ci, CI, PRECISION))
    right = mask * _affine(act, wr, br, cz, CZ, ci, CI, PRECISION) * \
        tl.sigmoid(_affine(act, wrg, brg, cz, CZ, ci, CI, PRECISION))
    batch, pos = rows // NN, rows % NN
    offsets = batch[:, None] * CI * NN + ci[None, :] * NN + pos[:, None]  # channel-major [*, c, N, N]
    valid = (rows < M)[:, None] & (ci < CI)[None, :]
    tl.store(left_ptr + offsets, left.to(left_ptr.dtype.element_ty), mask=valid)
    tl.store(right_ptr + offsets, right.to(right_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _output_kernel(x_ptr, p_ptr, ln_w, ln_b, c_w, c_b, wo, bo, wg, bg, out_ptr, M, NN, CZ, CI, eps,
                   BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_CI: tl.constexpr,
                   PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_CI)
    cz = tl.arange(0, BLOCK_CZ)
    batch, pos = rows // NN, rows % NN
    product = tl.load(p_ptr + batch[:, None] * CI * NN + ci[None, :] * NN + pos[:, None],
                      mask=(rows < M)[:, None] & (ci < CI)[None, :], other=0.0)  # [BM, c]
    centred = _layer_norm_rows(product.to(tl.float32), c_w, c_b, ci, CI, eps).to(product.dtype)
    proj = _affine(centred, wo, bo, ci, CI, cz, CZ, PRECISION)  # [BM, C_z]
    act = _input_act(x_ptr, ln_w, ln_b, rows, M, cz, CZ, eps)
    gate = _affine(act, wg, bg, cz, CZ, cz, CZ, PRECISION)
    out = proj * tl.sigmoid(gate)
    tl.store(out_ptr + rows[:, None] * CZ + cz[None, :], out.to(out_ptr.dtype.element_ty),
             mask=(rows < M)[:, None] & (cz < CZ)[None, :])


# (BLOCK_M, num_warps) of the two kernels on a GPU; the interpreter takes 16 positions per program.
GPU_PROJECT = (64, 4)
GPU_OUTPUT = (64, 8)


def _launch(x: torch.Tensor, gpu: tuple) -> dict:
    precision = "ieee" if x.dtype == torch.float32 else None
    if not x.is_cuda:
        return dict(BLOCK_M=16, PRECISION=precision)
    return dict(BLOCK_M=gpu[0], num_warps=gpu[1], PRECISION=precision)


def triangle_multiplication_forward(pair: torch.Tensor, mask: torch.Tensor,
                                    weights: TriangleMultiplicationWeights, outgoing: bool) -> torch.Tensor:
    """Fused forward pass; arguments and result as :func:`triangle_multiplication_torch`.

    pair [*, N, N, C_z], mask [*, N, N] -> [*, N, N, C_z].
    """
    w = weights
    *lead, n, n2, cz = pair.shape
    if n != n2:
        raise ValueError(f"pair must be [*, N, N, C_z], got {tuple(pair.shape)}")
    ci = w.left_w.shape[-1]
    x = pair.contiguous().view(-1, cz)  # [M, C_z], M = B * N * N
    m = mask.expand(*lead, n, n).to(pair.dtype).contiguous().view(-1)
    rows, batch = x.shape[0], x.shape[0] // (n * n)
    left = pair.new_empty(batch, ci, n, n)  # channel-major edges
    right = torch.empty_like(left)
    blocks = dict(BLOCK_CZ=max(16, triton.next_power_of_2(cz)))
    block_ci = max(16, triton.next_power_of_2(ci))
    cfg = _launch(pair, GPU_PROJECT)
    grid = (triton.cdiv(rows, cfg["BLOCK_M"]), triton.cdiv(ci, min(block_ci, 64)))
    _project_kernel[grid](x, m, w.input_scale, w.input_offset, w.left_w, w.left_b, w.right_w, w.right_b,
                          w.left_gate_w, w.left_gate_b, w.right_gate_w, w.right_gate_b, left, right,
                          rows, n * n, cz, ci, EPS, BLOCK_CI=min(block_ci, 64), **blocks, **cfg)
    product = left @ right.transpose(-1, -2) if outgoing else right.transpose(-1, -2) @ left  # [B, c, N, N]
    del left, right
    out = torch.empty_like(x)
    cfg = _launch(pair, GPU_OUTPUT)
    _output_kernel[(triton.cdiv(rows, cfg["BLOCK_M"]),)](
        x, product, w.input_scale, w.input_offset, w.center_scale, w.center_offset, w.output_w, w.output_b,
        w.gating_w, w.gating_b, out, rows, n * n, cz, ci, EPS, BLOCK_CI=block_ci, **blocks, **cfg)
    return out.view(pair.shape)
