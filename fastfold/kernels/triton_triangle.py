"""Triangle multiplicative update (Algorithms 11, 12) in Triton: fused stages 1 and 3, forward and backward.

Stage 1, ``_projections_kernel`` (one program per block of pair positions): the input LayerNorm, once,
then, ``BLOCK_N`` channels at a time, the four edge projections ``a W_l, a W_lg, a W_r, a W_rg`` as tile
products, the sigmoid gates and the pair mask, writing the gated left and right edges channel-major,
``[*, c, N_i, N_j]``, and the output gate's logits ``a W_g + b_g`` ``[*, N_i, N_j, C_z]``. A launch may
compute a subset (``LEFT``, ``RIGHT``, ``GATE``): DAP inference computes ``right`` first and gathers it
while a second launch computes the rest. The forward kernels read their weight matrices transposed,
``[out, in]`` (``_affine``'s ``W_T``), so that float32 tiles reach shared memory in the K-major order of
TF32 tensor cores with wide copies.
Stage 2 (:func:`fastfold.kernels.triangle_multiplication.triangle_product`) is cuBLAS on that layout.
Stage 3, ``_output_kernel`` (per block of pair positions): reads the product through its strides (channel-
major from stage 2), adding any partial sums given (under DAP, the incoming update's sums from the other
ranks: no separate pass to add them), applies the centre LayerNorm and the output projection, and writes
``proj * sigmoid(gate)`` ``[*, N_i, N_j, C_z]``.

Backward, one program per block of positions, recomputing the stage's forward from its inputs (LayerNorm
statistics stay in registers): ``_output_bwd_kernel`` writes the product's and the gate's gradients, and
``_projections_bwd_kernel`` walks the edge channels and the gate's columns in chunks, accumulating the
gradient of ``act`` in registers, then writes the pair's gradient. A weight's gradient is a sum over all
``M = B N_i N_j`` positions of an outer product, ``input^T @ grad(pre-activation)``: the kernels write the
two factors in the input's dtype (``act`` or the normalised product, and the pre-activations' gradients,
``[M, channels]``) and one cuBLAS product per stage forms the weight gradients with float32 accumulation,
as the twin's backward does; that is tensor-core work at cuBLAS speed without a reduction tree of
``[C_in, C_out]`` float32 tiles across programs, and the factors take less memory than the twin's saved
activations. Vector gradients (biases, LayerNorm scales and offsets) are per-program float32 column sums,
added up by one ``sum`` (deterministic, no atomics).

Everything between loads and stores is float32 (dots on the operands' dtype, accumulating in float32),
rounded once at each store; ``act`` (and the normalised product) is rounded to the input's dtype before its
projections, as the twin rounds it, and so is each gradient before its dot with a weight.
"""

import torch
import triton
import triton.language as tl

from fastfold.kernels.launch import launch
from fastfold.kernels.operands import converted
from fastfold.kernels.triangle_multiplication import TriangleOutputWeights, TriangleProjectionWeights
from fastfold.kernels.triton_layout import dot_precision
from fastfold.kernels.tuning import cdiv, next_power_of_2

EPS = 1e-5  # both LayerNorms, as the model's


@triton.jit
def _normalise(x, cols, n_cols, eps):
    """``((x - mean) * rstd, rstd)`` of a float32 [BM, BC] tile over its first ``n_cols`` columns."""
    valid = (cols < n_cols)[None, :]
    mean = tl.sum(x, 1) / n_cols
    centred = tl.where(valid, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, 1) / n_cols + eps)
    return centred * rstd[:, None], rstd


@triton.jit
def _scale_shift(xhat, w_ptr, b_ptr, cols, n_cols):
    """``xhat * w + b`` per column, the LayerNorm's affine part; columns past ``n_cols`` stay zero."""
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    return xhat * w[None, :] + b[None, :]


@triton.jit
def _layer_norm_grad(dy, xhat, rstd, w_ptr, cols, n_cols):
    """LayerNorm backward of a float32 [BM, BC] tile: dx from dy and the forward's xhat, rstd and w."""
    w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
    dxhat = dy * w[None, :]
    c1 = tl.sum(dxhat * xhat, 1) / n_cols
    c2 = tl.sum(dxhat, 1) / n_cols
    dx = (dxhat - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    return dx


@triton.jit
def _affine(a, w_ptr, b_ptr, rows_in, n_in, cols_out, n_out, PRECISION: tl.constexpr,
            W_T: tl.constexpr = False):
    """``a @ W[:, cols_out] + b[cols_out]`` in float32; W [n_in, n_out] row-major, or stored transposed
    [n_out, n_in] row-major with ``W_T`` (each output's inputs contiguous: the tile lands in shared memory
    K-major, as TF32 tensor cores need it, with wide loads), cast to a's dtype."""
    if W_T:
        offsets = cols_out[None, :] * n_in + rows_in[:, None]
    else:
        offsets = rows_in[:, None] * n_out + cols_out[None, :]
    w = tl.load(w_ptr + offsets, mask=(rows_in < n_in)[:, None] & (cols_out < n_out)[None, :],
                other=0.0).to(a.dtype)
    b = tl.load(b_ptr + cols_out, mask=cols_out < n_out, other=0.0).to(tl.float32)
    return tl.dot(a, w, input_precision=PRECISION) + b[None, :]


@triton.jit
def _affine_grad(d, w_ptr, cols_out, n_out, rows_in, n_in, PRECISION: tl.constexpr):
    """``d @ W[rows_in, cols_out]^T`` in float32, :func:`_affine`'s input gradient; W cast to d's dtype."""
    w = tl.load(w_ptr + rows_in[None, :] * n_out + cols_out[:, None],
                mask=(cols_out < n_out)[:, None] & (rows_in < n_in)[None, :], other=0.0).to(d.dtype)
    return tl.dot(d, w, input_precision=PRECISION)


@triton.jit
def _store_rows(ptr, x, rows, n_rows, cols, n_cols, row_stride):
    """Store a [BM, BC] tile at ``ptr[rows, cols]`` (row-major, ``row_stride``), in ptr's dtype."""
    tl.store(ptr + rows[:, None] * row_stride + cols[None, :], x.to(ptr.dtype.element_ty),
             mask=(rows < n_rows)[:, None] & (cols < n_cols)[None, :])


@triton.jit
def _store_sums(ptr, x, cols, n_cols):
    """Store the column sums of a float32 [BM, BC] tile at ``ptr[cols]`` (one program's partial sums)."""
    tl.store(ptr + cols, tl.sum(x, 0), mask=cols < n_cols)


@triton.jit
def _load_rows(ptr, rows, n_rows, cols, n_cols, row_stride):
    """Load a [BM, BC] tile of ``ptr[rows, cols]`` (row-major, ``row_stride``), zero outside."""
    return tl.load(ptr + rows[:, None] * row_stride + cols[None, :],
                   mask=(rows < n_rows)[:, None] & (cols < n_cols)[None, :], other=0.0)


@triton.jit
def _channel_major(rows, nn, cols, n_cols):
    """Offsets [BM, BC] of positions ``rows`` (``b nn + pos``) and channels ``cols`` in [B, n_cols, nn]."""
    return (rows // nn * n_cols * nn + rows % nn)[:, None] + cols[None, :] * nn


@triton.jit
def _gated_edges(act, mask, w, b, wg, bg, out_ptr, rows, M, NN, cz, CZ, CI, BLOCK_N: tl.constexpr,
                 PRECISION: tl.constexpr):
    """Line 2 for one edge: ``mask * (act W + b) * sigmoid(act W_g + b_g)`` stored channel-major at
    ``out_ptr`` ([B, c, N_i * N_j]), ``BLOCK_N`` channels at a time."""
    for start in range(0, CI, BLOCK_N):
        ci = start + tl.arange(0, BLOCK_N)
        edge = mask * _affine(act, w, b, cz, CZ, ci, CI, PRECISION, W_T=True) * \
            tl.sigmoid(_affine(act, wg, bg, cz, CZ, ci, CI, PRECISION, W_T=True))
        tl.store(out_ptr + _channel_major(rows, NN, ci, CI), edge.to(out_ptr.dtype.element_ty),
                 mask=(rows < M)[:, None] & (ci < CI)[None, :])


@triton.jit
def _projections_kernel(x_ptr, m_ptr, ln_w, ln_b, wl, bl, wr, br, wlg, blg, wrg, brg, wg, bg,
                        left_ptr, right_ptr, gate_ptr, M, NN, CZ, CI, eps, LEFT: tl.constexpr,
                        RIGHT: tl.constexpr, GATE: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_CZ: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cz = tl.arange(0, BLOCK_CZ)
    x = _load_rows(x_ptr, rows, M, cz, CZ, CZ)
    xhat, _ = _normalise(x.to(tl.float32), cz, CZ, eps)
    act = _scale_shift(xhat, ln_w, ln_b, cz, CZ).to(x.dtype)  # [BM, C_z], line 1, once for every part
    mask = tl.load(m_ptr + rows, mask=rows < M, other=0.0).to(tl.float32)[:, None]
    if LEFT:  # gated, masked edges (line 2), stored channel-major [B, c, N_i * N_j]
        _gated_edges(act, mask, wl, bl, wlg, blg, left_ptr, rows, M, NN, cz, CZ, CI, BLOCK_N, PRECISION)
    if RIGHT:
        _gated_edges(act, mask, wr, br, wrg, brg, right_ptr, rows, M, NN, cz, CZ, CI, BLOCK_N, PRECISION)
    if GATE:  # the output gate's logits (line 3), position-major [M, C_z]
        for start in range(0, CZ, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            gate = _affine(act, wg, bg, cz, CZ, cols, CZ, PRECISION, W_T=True)
            _store_rows(gate_ptr, gate, rows, M, cols, CZ, CZ)


@triton.jit
def _edge_backward(act, d_ptr, offsets, valid, mask, w, b, wg, bg, dpre_ptr, sums_ptr, rows, M, cz, CZ, ci,
                   CI, PRECISION: tl.constexpr):
    """Line 2 backward for one edge's channels ``ci``, from the edge's gradient at ``d_ptr + offsets``.

    Stores the gradients [BM, BN] of the value's and of the gate's pre-activations at columns ``ci`` and
    ``2 c + ci`` of ``dpre_ptr`` (rows of ``4 c``) and their column sums at ``sums_ptr`` alike; returns
    their part of the gradient of act, [BM, C_z] float32.
    """
    dedge = mask * tl.load(d_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
    value = _affine(act, w, b, cz, CZ, ci, CI, PRECISION)
    sig = tl.sigmoid(_affine(act, wg, bg, cz, CZ, ci, CI, PRECISION))
    dvalue = dedge * sig
    dlogit = dedge * value * sig * (1.0 - sig)
    _store_rows(dpre_ptr, dvalue, rows, M, ci, CI, 4 * CI)
    _store_rows(dpre_ptr + 2 * CI, dlogit, rows, M, ci, CI, 4 * CI)
    _store_sums(sums_ptr, dvalue, ci, CI)
    _store_sums(sums_ptr + 2 * CI, dlogit, ci, CI)
    return _affine_grad(dvalue.to(act.dtype), w, ci, CI, cz, CZ, PRECISION) + \
        _affine_grad(dlogit.to(act.dtype), wg, ci, CI, cz, CZ, PRECISION)


@triton.jit
def _projections_bwd_kernel(x_ptr, m_ptr, dl_ptr, dr_ptr, dg_ptr, ln_w, ln_b, wl, bl, wr, br, wlg, blg, wrg,
                            brg, wg, bg, act_ptr, dpre_ptr, dx_ptr, sums_ptr, M, NN, CZ, CI, eps,
                            BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_N: tl.constexpr,
                            PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cz = tl.arange(0, BLOCK_CZ)
    x = _load_rows(x_ptr, rows, M, cz, CZ, CZ)
    xhat, _ = _normalise(x.to(tl.float32), cz, CZ, eps)
    act = _scale_shift(xhat, ln_w, ln_b, cz, CZ).to(x.dtype)  # [BM, C_z], line 1
    _store_rows(act_ptr, act, rows, M, cz, CZ, CZ)
    mask = tl.load(m_ptr + rows, mask=rows < M, other=0.0).to(tl.float32)[:, None]
    sums_ptr += tl.program_id(0) * (4 * CI + 3 * CZ)  # this program's column sums, as [4 c | 3 C_z]
    dact = tl.zeros((BLOCK_M, BLOCK_CZ), tl.float32)
    for start in range(0, CI, BLOCK_N):  # line 2, chunk by chunk of edge channels
        ci = start + tl.arange(0, BLOCK_N)
        offsets = _channel_major(rows, NN, ci, CI)
        valid = (rows < M)[:, None] & (ci < CI)[None, :]
        dact += _edge_backward(act, dl_ptr, offsets, valid, mask, wl, bl, wlg, blg, dpre_ptr, sums_ptr,
                               rows, M, cz, CZ, ci, CI, PRECISION)
        dact += _edge_backward(act, dr_ptr, offsets, valid, mask, wr, br, wrg, brg, dpre_ptr + CI,
                               sums_ptr + CI, rows, M, cz, CZ, ci, CI, PRECISION)
    for start in range(0, CZ, BLOCK_N):  # line 3, chunk by chunk of gate logits
        cols = start + tl.arange(0, BLOCK_N)
        dgate = _load_rows(dg_ptr, rows, M, cols, CZ, CZ).to(tl.float32)
        _store_sums(sums_ptr + 4 * CI, dgate, cols, CZ)
        dact += _affine_grad(dgate.to(act.dtype), wg, cols, CZ, cz, CZ, PRECISION)
    # line 1 backward; x reloaded rather than kept live through the loops
    xhat, rstd = _normalise(_load_rows(x_ptr, rows, M, cz, CZ, CZ).to(tl.float32), cz, CZ, eps)
    _store_rows(dx_ptr, _layer_norm_grad(dact, xhat, rstd, ln_w, cz, CZ), rows, M, cz, CZ, CZ)
    _store_sums(sums_ptr + 4 * CI + CZ, dact * xhat, cz, CZ)
    _store_sums(sums_ptr + 4 * CI + 2 * CZ, dact, cz, CZ)


@triton.jit
def _centred_product(p_ptr, rows, M, NN, ci, CI, stride_pb, stride_pc, stride_pp, c_w, c_b, eps, a_ptr,
                     num_addends, stride_ak, stride_ab, stride_ac, stride_ap):
    """The product's tile [BM, c] read through its (batch, channel, position) strides, plus ``num_addends``
    tiles of ``a_ptr`` (its k-th through ``stride_ak`` and its own strides, each sum rounded to the product's
    dtype, as adding them one by one would), and its centre LayerNorm: (normalised float32, 1 / std [BM],
    the LayerNorm's output in the product's dtype)."""
    batch, pos = rows // NN, rows % NN
    valid = (rows < M)[:, None] & (ci < CI)[None, :]
    product = tl.load(p_ptr + batch[:, None] * stride_pb + ci[None, :] * stride_pc + pos[:, None] * stride_pp,
                      mask=valid, other=0.0)
    for k in range(num_addends):
        addend = tl.load(a_ptr + k * stride_ak + batch[:, None] * stride_ab + ci[None, :] * stride_ac +
                         pos[:, None] * stride_ap, mask=valid, other=0.0)
        product = (product.to(tl.float32) + addend.to(tl.float32)).to(product.dtype)
    xhat, rstd = _normalise(product.to(tl.float32), ci, CI, eps)
    return xhat, rstd, _scale_shift(xhat, c_w, c_b, ci, CI).to(product.dtype)


@triton.jit
def _output_kernel(p_ptr, a_ptr, g_ptr, c_w, c_b, wo, bo, out_ptr, M, NN, CZ, CI, stride_pb, stride_pc,
                   stride_pp, num_addends, stride_ak, stride_ab, stride_ac, stride_ap, eps,
                   BLOCK_M: tl.constexpr, BLOCK_CZ: tl.constexpr, BLOCK_CI: tl.constexpr,
                   PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_CI)
    cz = tl.arange(0, BLOCK_CZ)
    _, _, centred = _centred_product(p_ptr, rows, M, NN, ci, CI, stride_pb, stride_pc, stride_pp, c_w, c_b,
                                     eps, a_ptr, num_addends, stride_ak, stride_ab, stride_ac, stride_ap)
    proj = _affine(centred, wo, bo, ci, CI, cz, CZ, PRECISION, W_T=True)  # [BM, C_z], line 4
    gate = _load_rows(g_ptr, rows, M, cz, CZ, CZ).to(tl.float32)
    _store_rows(out_ptr, proj * tl.sigmoid(gate), rows, M, cz, CZ, CZ)


@triton.jit
def _output_bwd_kernel(p_ptr, g_ptr, do_ptr, c_w, c_b, wo, bo, centred_ptr, dproj_ptr, dp_ptr, dg_ptr,
                       sums_ptr, M, NN, CZ, CI, stride_pb, stride_pc, stride_pp, eps, BLOCK_M: tl.constexpr,
                       BLOCK_CZ: tl.constexpr, BLOCK_CI: tl.constexpr, PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.arange(0, BLOCK_CI)
    cz = tl.arange(0, BLOCK_CZ)
    xhat, rstd, centred = _centred_product(p_ptr, rows, M, NN, ci, CI, stride_pb, stride_pc, stride_pp,
                                           c_w, c_b, eps, p_ptr, 0, 0, 0, 0, 0)
    _store_rows(centred_ptr, centred, rows, M, ci, CI, CI)
    proj = _affine(centred, wo, bo, ci, CI, cz, CZ, PRECISION)  # [BM, C_z], line 4
    sig = tl.sigmoid(_load_rows(g_ptr, rows, M, cz, CZ, CZ).to(tl.float32))
    dout = _load_rows(do_ptr, rows, M, cz, CZ, CZ).to(tl.float32)
    dproj = dout * sig
    _store_rows(dg_ptr, dout * proj * sig * (1.0 - sig), rows, M, cz, CZ, CZ)
    _store_rows(dproj_ptr, dproj, rows, M, cz, CZ, CZ)
    dcentred = _affine_grad(dproj.to(centred.dtype), wo, cz, CZ, ci, CI, PRECISION)  # [BM, c]
    dp = _layer_norm_grad(dcentred, xhat, rstd, c_w, ci, CI)
    tl.store(dp_ptr + _channel_major(rows, NN, ci, CI), dp.to(dp_ptr.dtype.element_ty),
             mask=(rows < M)[:, None] & (ci < CI)[None, :])
    sums_ptr += tl.program_id(0) * (2 * CI + CZ)  # this program's column sums, as [c | c | C_z]
    _store_sums(sums_ptr, dcentred * xhat, ci, CI)
    _store_sums(sums_ptr + CI, dcentred, ci, CI)
    _store_sums(sums_ptr + 2 * CI, dproj, cz, CZ)


# Launch settings on a GPU (BLOCK_N: channels per chunk); the interpreter takes 16 for every BLOCK_*.
GPU_PROJECT = dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=1)  # H100: 863 us vs 1062 pipelined
GPU_PROJECT_BWD = dict(BLOCK_M=64, BLOCK_N=64, num_warps=8, num_stages=1)  # pipelined: over shared memory
GPU_OUTPUT = dict(BLOCK_M=64, num_warps=8)
GPU_OUTPUT_BWD = dict(BLOCK_M=64, num_warps=8)


def _launch(x: torch.Tensor, gpu: dict) -> dict:
    precision = dot_precision(x.dtype)
    if not x.is_cuda:
        return {**{k: 16 for k in gpu if k.startswith("BLOCK_")}, "PRECISION": precision}
    return {**gpu, "PRECISION": precision}


def _width(n: int) -> int:
    """A tile's width for ``n`` channels: a power of two, at least 16 (``tl.dot``'s minimum)."""
    return max(16, next_power_of_2(n))


def _flat_mask(mask: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """The pair mask broadcast to pair's positions: [M] in pair's dtype."""
    return mask.expand(pair.shape[:-1]).to(pair.dtype).contiguous().view(-1)


def _dot_operands(weights: tuple, dtype: torch.dtype, transposed: bool = False) -> list:
    """The weights with their matrices in the dots' dtype, as the kernels would cast them, and stored
    ``[out, in]`` (row-major) when ``transposed`` (the forward kernels' ``W_T`` layout).

    Every program reads every matrix, so 16-bit copies halve that traffic; vectors stay float32.
    """
    return [converted(t, dtype, transposed) if t.dim() == 2 else t for t in weights]


def _like(grads, weights) -> list:
    """Each gradient copied into a new tensor like its weight (dtype, layout), owning its memory."""
    return [torch.empty_like(w).copy_(g) for g, w in zip(grads, weights, strict=True)]


PARTS = ("left", "right", "gate")


def projections_forward(pair: torch.Tensor, mask: torch.Tensor, weights: TriangleProjectionWeights,
                        parts: tuple = PARTS) -> tuple:
    """Fused stage 1; as :func:`~fastfold.kernels.triangle_multiplication.triangle_projections_torch`.

    pair [*, N_i, N_j, C_z], mask broadcastable to [*, N_i, N_j] -> (left, right channel-major
    ``[*, c, N_i, N_j]``, gate logits ``[*, N_i, N_j, C_z]``), in pair's dtype; only the ``parts`` named
    are computed (one launch), the others are None.
    """
    *lead, ni, nj, cz = pair.shape
    ci = weights.left_w.shape[-1]
    x = pair.contiguous().view(-1, cz)  # [M, C_z], M = B * N_i * N_j
    left = pair.new_empty(*lead, ci, ni, nj) if "left" in parts else None
    right = pair.new_empty(*lead, ci, ni, nj) if "right" in parts else None
    gate = torch.empty_like(x) if "gate" in parts else None
    cfg = _launch(pair, GPU_PROJECT)
    scratch = next(t for t in (left, right, gate) if t is not None)  # a pointer for the outputs not made
    launch(
        _projections_kernel, (cdiv(x.shape[0], cfg["BLOCK_M"]),),
        x, _flat_mask(mask, pair), *_dot_operands(weights, pair.dtype, transposed=True), *(
            t if t is not None else scratch for t in (left, right, gate)), x.shape[0], ni * nj, cz, ci, EPS,
        LEFT=left is not None, RIGHT=right is not None, GATE=gate is not None, BLOCK_CZ=_width(cz), **cfg)
    return left, right, gate.view(pair.shape) if gate is not None else None


def projections_backward(grad_left: torch.Tensor, grad_right: torch.Tensor, grad_gate: torch.Tensor,
                         pair: torch.Tensor, mask: torch.Tensor, weights: TriangleProjectionWeights) -> tuple:
    """The gradients of :func:`projections_forward`'s pair and weights (the mask gets none).

    grad_left, grad_right ``[*, c, N_i, N_j]``, grad_gate ``[*, N_i, N_j, C_z]``; pair, mask and weights as
    the forward's -> (grad_pair ``[*, N_i, N_j, C_z]``, the weights' gradients as
    :class:`TriangleProjectionWeights`), each in its input's dtype.
    """
    *lead, ni, nj, cz = pair.shape
    ci = weights.left_w.shape[-1]
    x = pair.contiguous().view(-1, cz)  # [M, C_z]
    dgate = grad_gate.contiguous().view(-1, cz)  # [M, C_z]
    act = torch.empty_like(x)  # line 1's act
    dpre = x.new_empty(x.shape[0], 4 * ci)  # [M, 4 c]: pre-activation grads of left, right, their gates
    dx = torch.empty_like(x)
    cfg = _launch(pair, GPU_PROJECT_BWD)
    blocks = cdiv(x.shape[0], cfg["BLOCK_M"])
    sums = x.new_empty(blocks, 4 * ci + 3 * cz, dtype=torch.float32)
    launch(
        _projections_bwd_kernel, (blocks,),
        x, _flat_mask(mask, pair), grad_left.contiguous(), grad_right.contiguous(), dgate,
        *_dot_operands(weights, pair.dtype), act, dpre, dx, sums, x.shape[0], ni * nj, cz, ci, EPS,
        BLOCK_CZ=_width(cz), **cfg)
    dws = [*(act.t() @ dpre).split(ci, dim=1), act.t() @ dgate]  # [C_z, c] x 4, [C_z, C_z]
    *dbs, dscale, doffset = sums.sum(0).split([ci] * 4 + [cz] * 3)
    grads = [dscale, doffset] + [g for dw_db in zip(dws, dbs, strict=True) for g in dw_db]
    return dx.view(pair.shape), TriangleProjectionWeights(*_like(grads, weights))


def _by_channel(product: torch.Tensor) -> torch.Tensor:
    """A product ``[*, N_i, N_j, c]`` as ``[B, c, N_i * N_j]`` (a view where its memory allows)."""
    *_, ni, nj, ci = product.shape
    return product.movedim(-1, -3).reshape(-1, ci, ni * nj)


def output_forward(product: torch.Tensor, gate: torch.Tensor, weights: TriangleOutputWeights,
                   addends: torch.Tensor | None = None) -> torch.Tensor:
    """Fused stage 3; as :func:`~fastfold.kernels.triangle_multiplication.triangle_output_torch`.

    product [*, N_i, N_j, c] (any strides), gate [*, N_i, N_j, C_z] -> [*, N_i, N_j, C_z] in product's dtype;
    ``addends`` ``[P, *, N_i, N_j, c]`` (any strides; the other DAP ranks' partial sums) are added to the
    product, one by one, as it is read (forward only: no autograd through this function).
    """
    *lead, ni, nj, ci = product.shape
    cz = gate.shape[-1]
    p = _by_channel(product)  # [B, c, N_i * N_j]
    # [P, B, c, N_i * N_j], a view where it can be
    a = p[None] if addends is None else addends.movedim(-1, -3).reshape(len(addends), *p.shape)
    g = gate.contiguous().view(-1, cz)
    out = product.new_empty(*lead, ni, nj, cz)
    cfg = _launch(product, GPU_OUTPUT)
    launch(
        _output_kernel, (cdiv(g.shape[0], cfg["BLOCK_M"]),),
        p, a, g, *_dot_operands(weights, product.dtype, transposed=True), out, g.shape[0], ni * nj, cz, ci,
        *p.stride(), 0 if addends is None else len(addends), *a.stride(), EPS, BLOCK_CZ=_width(cz),
        BLOCK_CI=_width(ci), **cfg)
    return out


def output_backward(grad: torch.Tensor, product: torch.Tensor, gate: torch.Tensor,
                    weights: TriangleOutputWeights) -> tuple:
    """The gradients of :func:`output_forward`'s inputs.

    grad ``[*, N_i, N_j, C_z]``; product, gate and weights as the forward's -> (grad_product channel-major
    ``[*, c, N_i, N_j]``, grad_gate ``[*, N_i, N_j, C_z]``, the weights' gradients as
    :class:`TriangleOutputWeights`), each in its input's dtype.
    """
    *lead, ni, nj, ci = product.shape
    cz = gate.shape[-1]
    p = _by_channel(product)  # [B, c, N_i * N_j]
    g = gate.contiguous().view(-1, cz)  # [M, C_z]
    centred = product.new_empty(g.shape[0], ci)  # [M, c], the centre LayerNorm's output
    dproj = product.new_empty(g.shape[0], cz)  # [M, C_z], the output projection's gradient
    dp = product.new_empty(*lead, ci, ni, nj)
    dg = torch.empty_like(g)
    cfg = _launch(product, GPU_OUTPUT_BWD)
    blocks = cdiv(g.shape[0], cfg["BLOCK_M"])
    sums = g.new_empty(blocks, 2 * ci + cz, dtype=torch.float32)
    launch(
        _output_bwd_kernel, (blocks,),
        p, g, grad.contiguous(), *_dot_operands(weights, product.dtype), centred, dproj, dp, dg, sums,
        g.shape[0], ni * nj, cz, ci, *p.stride(), EPS, BLOCK_CZ=_width(cz), BLOCK_CI=_width(ci), **cfg)
    dscale, doffset, dbias = sums.sum(0).split([ci, ci, cz])
    grads = (dscale, doffset, centred.t() @ dproj, dbias)
    return dp, dg.view(gate.shape), TriangleOutputWeights(*_like(grads, weights))
