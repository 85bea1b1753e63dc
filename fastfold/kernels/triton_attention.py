"""Flash attention with additive biases, a key mask and a sigmoid gate, in Triton: the forward pass.

The forward pass streams key blocks through an online softmax and never writes the ``[*, H, Q, K]``
logits to memory; for the backward pass (:mod:`fastfold.kernels.triton_attention_bwd`) it keeps only
the row statistics, and the backward pass uses the gated output itself (``dO * out`` gives both the
softmax's ``delta`` and the gate gradient), so no ungated copy of the output is stored. The logits are
formed exactly as the PyTorch twin forms them (:func:`fastfold.kernels.attention.attention_torch`):
scaled dot product, then the ``-1e9`` offset of masked keys, then each bias in order, all in float32
(and all times log2 e, so that the softmax takes powers of two: :func:`add_biases`); a fully masked row
therefore gives the twin's finite near-uniform result.

Every operand is addressed through three canonical leading strides (see
:mod:`fastfold.kernels.triton_layout`), so broadcast operands are read through stride 0; the first bias,
where its rows are dense and 16-byte aligned, may instead be read through a TMA descriptor, whose loads
Triton pipelines (a plain load of it is not). On a GPU the 16-bit kernels pick their tiles (and whether
to use TMA) from a small set by timing, once per problem (:class:`~fastfold.kernels.tuning.TiledKernel`);
float32 operands (exact "ieee" dots) and the interpreter use fixed tiles.
"""

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice
from triton.tools.tensor_descriptor import TensorDescriptor

from fastfold.kernels.launch import Slot
from fastfold.kernels.softmax import MASKED_LOGIT_OFFSET
from fastfold.kernels.triton_layout import (
    broadcast_shapes,
    canonical_layout,
    contiguous_strides,
    dot_precision,
)
from fastfold.kernels.tuning import PerTiles, TiledKernel, TiledLaunch, cdiv, next_power_of_2

MAX_BIASES = 3  # biases handled inside the kernels; further ones are summed beforehand by the caller
NO_STRIDES = (0, 0, 0, 0, 0)
LOG2E = tl.constexpr(math.log2(math.e))
# the kernels form the logits in log2 units (times log2 e): softmax weights are then 2^(logit - row maximum)
MASK_OFFSET_LOG2 = tl.constexpr(MASKED_LOGIT_OFFSET * math.log2(math.e))


@triton.jit
def exp2(x, FAST: tl.constexpr):
    """2^x. ``FAST`` (on a GPU) flushes subnormal results to zero: one ``ex2.approx.ftz`` instead of
    five instructions (irrelevant to softmax weights, whose sum is >= 1)."""
    if FAST:
        return libdevice.exp2(x)
    else:
        return tl.exp2(x)


@triton.jit
def lead_offset(strides, z1, z2, z3):
    return z1 * strides[0] + z2 * strides[1] + z3 * strides[2]


@triton.jit
def bias_row(b_st, z1, z2, z3, LK, q_start):
    """Row of a bias's TMA descriptor (its rows ``[own leading index x LQ + query]``, each ``LK`` long)
    holding query ``q_start`` at leading index (z1, z2, z3)."""
    return (lead_offset(b_st, z1, z2, z3) // LK + q_start).to(tl.int32)


@triton.jit
def tile_offsets(strides, z1, z2, z3, rows, cols):
    """Element offsets of a [rows, cols] tile of a [Z1, Z2, Z3, R, C] strided operand."""
    return lead_offset(strides, z1, z2, z3) + rows[:, None] * strides[3] + cols[None, :] * strides[4]


@triton.jit
def load_tile(ptr, strides, z1, z2, z3, rows, cols, valid):
    """Load a [rows, cols] tile (zeros outside ``valid``) of a [Z1, Z2, Z3, R, C] strided operand."""
    offsets = tile_offsets(strides, z1, z2, z3, rows, cols)
    return tl.load(ptr + offsets, mask=valid, other=0.0)


@triton.jit
def bounded_tile(ptr, strides, z1, z2, z3, rows, cols, row_valid, col_valid,
                 CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """:func:`load_tile` checking only the bounds asked for: a tile known to be in bounds is read with
    plain vector loads, without per-element predicates."""
    if CHECK_ROWS and CHECK_COLS:
        return load_tile(ptr, strides, z1, z2, z3, rows, cols, row_valid[:, None] & col_valid[None, :])
    elif CHECK_ROWS:
        return load_tile(ptr, strides, z1, z2, z3, rows, cols, row_valid[:, None])
    elif CHECK_COLS:
        return load_tile(ptr, strides, z1, z2, z3, rows, cols, col_valid[None, :])
    else:
        return tl.load(ptr + tile_offsets(strides, z1, z2, z3, rows, cols))


@triton.jit
def store_tile(ptr, strides, z1, z2, z3, rows, cols, value, valid):
    """Store a [rows, cols] tile of a [Z1, Z2, Z3, R, C] strided output, cast to its dtype."""
    offsets = tile_offsets(strides, z1, z2, z3, rows, cols)
    tl.store(ptr + offsets, value.to(ptr.dtype.element_ty), mask=valid)


@triton.jit
def channel_tile(ptr, strides, z1, z2, z3, rows, row_valid, offs_c, C,
                 CHECK_ROWS: tl.constexpr, EVEN_C: tl.constexpr):
    """Load a [rows, channels] tile of q, k, v, dO or the gate (zeros outside), checking the rows only when
    ``CHECK_ROWS`` and the channels only when they are not ``EVEN_C``."""
    return bounded_tile(ptr, strides, z1, z2, z3, rows, offs_c, row_valid, offs_c < C, CHECK_ROWS, not EVEN_C)


@triton.jit
def key_tile(ptr, strides, z1, z2, z3, rows, offs_k, k_valid, FULL: tl.constexpr):
    """Load a [queries, keys] tile of a bias or mask whose query ``rows`` are in bounds (clamped), checking
    the keys unless the block is ``FULL``."""
    return bounded_tile(ptr, strides, z1, z2, z3, rows, offs_k, rows, k_valid, False, not FULL)


@triton.jit
def query_tile(q_ptr, q_st, z1, z2, z3, rows, offs_c, C, scale, EVEN_C: tl.constexpr):
    """The queries' tile [BQ, BC] (zeros past C) times ``scale`` and log2 e, rounded to q's dtype (as the
    twin scales the queries before the product), so that the product gives logits in log2 units.
    ``rows`` must be in bounds (callers clamp them to the last query)."""
    q = channel_tile(q_ptr, q_st, z1, z2, z3, rows, rows, offs_c, C, False, EVEN_C)
    return (q.to(tl.float32) * (scale * LOG2E)).to(q.dtype)


@triton.jit
def key_offsets(m_ptr, m_st, z1, z2, z3, offs_k, LK, HAS_MASK: tl.constexpr, FULL: tl.constexpr = False):
    """[1, BK] float32 logit offsets of a block of keys, in log2 units as every logit in the kernels: 0 for
    a kept key, -1e9 log2 e for a key masked by a mask that is the same for every query (``HAS_MASK``; one
    row of keys is read), -inf past LK unless the caller knows the block is ``FULL`` (every key in
    bounds: no checks, no selections).

    The kernels load these ahead of the block's product (one block ahead in the loops over keys, once
    for a fixed key block): added to the product, the offset becomes its accumulator's initial value, so
    a load issued in the same step would stall the product."""
    k_valid = offs_k[None, :] < LK
    offset = tl.zeros([1, offs_k.shape[0]], tl.float32)
    if HAS_MASK:
        keys = m_ptr + lead_offset(m_st, z1, z2, z3) + offs_k[None, :] * m_st[4]
        keep = tl.load(keys) if FULL else tl.load(keys, mask=k_valid, other=0)
        offset = tl.where(keep != 0, offset, -MASK_OFFSET_LOG2)
    if not FULL:
        offset = tl.where(k_valid, offset, float("-inf"))
    return offset


@triton.jit
def bias_tile(b_ptr, b_st, z1, z2, z3, rows, offs_k, k_valid, FULL: tl.constexpr, b_row, k_start,
              TMA: tl.constexpr, TRANS: tl.constexpr):
    """float32 [BQ, BK] tile of one bias (``TRANS``: its transpose [BK, BQ]): from a TMA descriptor at row
    ``b_row`` (see :func:`bias_row`) and column ``k_start`` (keys past LK read zeros, query rows past LQ the
    next rows or zeros), or through pointers at the clamped query ``rows`` (keys checked unless ``FULL``)."""
    if TMA:
        tile = b_ptr.load([b_row, tl.cast(k_start, tl.int32)]).to(tl.float32)
        if TRANS:
            tile = tl.trans(tile)
    elif TRANS:
        tile = bounded_tile(b_ptr, (b_st[0], b_st[1], b_st[2], b_st[4], b_st[3]), z1, z2, z3, offs_k, rows,
                            k_valid, rows, not FULL, False).to(tl.float32)
    else:
        tile = key_tile(b_ptr, b_st, z1, z2, z3, rows, offs_k, k_valid, FULL).to(tl.float32)
    return tile


@triton.jit
def bias_tiles(z1, z2, z3, offs_q, offs_k, LQ, LK, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
               NUM_BIAS: tl.constexpr, FULL: tl.constexpr, b0_row, k_start, BIAS_TMA: tl.constexpr,
               TRANS: tl.constexpr):
    """The ``NUM_BIAS`` biases' float32 [BQ, BK] tiles (``TRANS``: [BK, BQ]) for :func:`add_biases` (0.0
    for absent ones).

    Query rows past LQ read the last query's bias (finite values, in rows never stored), so the pointer
    loads check only keys, and only in the last, partial, key block (``FULL`` false). With ``BIAS_TMA``
    the first bias is a TMA descriptor (:func:`bias_tile`)."""
    rows = tl.minimum(offs_q, LQ - 1)
    k_valid = offs_k < LK
    b0, b1, b2 = 0.0, 0.0, 0.0
    if NUM_BIAS >= 1:
        b0 = bias_tile(b0_ptr, b0_st, z1, z2, z3, rows, offs_k, k_valid, FULL, b0_row, k_start, BIAS_TMA,
                       TRANS)
    if NUM_BIAS >= 2:
        b1 = bias_tile(b1_ptr, b1_st, z1, z2, z3, rows, offs_k, k_valid, FULL, 0, 0, False, TRANS)
    if NUM_BIAS >= 3:
        b2 = bias_tile(b2_ptr, b2_st, z1, z2, z3, rows, offs_k, k_valid, FULL, 0, 0, False, TRANS)
    return b0, b1, b2


@triton.jit
def scores_tile(q, k_t, offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st, HAS_MASK: tl.constexpr,
                MASK_PER_KEY: tl.constexpr, PRECISION: tl.constexpr, FULL: tl.constexpr):
    """float32 [BQ, BK] tile of q k^T (q already scaled, by log2 e too) plus the masked-key offset (in log2
    units); -inf past LK. The logits are these plus the biases (:func:`add_biases`), read after this
    product is issued.

    Query rows past LQ read the last query's mask (finite values, in rows never stored), so a
    [BQ, BK] mask tile needs bounds checks only on keys, and only in the last, partial, key block
    (``FULL`` false). A mask that is the same for every query (``MASK_PER_KEY``) arrives as the block's
    :func:`key_offsets` (``offset``, loaded by the caller), as do the -inf of keys past LK in a partial
    block: one addition per logit, which Triton folds into the product's accumulator. ``offset`` is
    unused in a full block without such a mask. Key-major callers (the dK/dV kernel) pass k and q^T, keys
    and queries swapped, and a [BK, 1] ``offset``: only with no mask or a mask shared by the queries.
    """
    s = tl.dot(q, k_t, input_precision=PRECISION)
    k_valid = offs_k < LK
    if HAS_MASK and not MASK_PER_KEY:
        keep = key_tile(m_ptr, m_st, z1, z2, z3, tl.minimum(offs_q, LQ - 1), offs_k, k_valid, FULL)
        s = tl.where(keep != 0, s, s - MASK_OFFSET_LOG2)
        if not FULL:
            s = tl.where(k_valid[None, :], s, float("-inf"))
    elif HAS_MASK or not FULL:
        s += offset
    return s


@triton.jit
def add_biases(s, biases, NUM_BIAS: tl.constexpr):
    """Logits in log2 units: the scores tile ``s`` (:func:`scores_tile`) plus each bias tile
    (:func:`bias_tiles`) times log2 e (one fused multiply-add each) in order, in float32, as the PyTorch
    twin adds them (-inf past LK stays -inf: the tiles are 0 there).

    Logits in log2 units make each softmax weight ``2^(logit - row maximum)``: the exponential's scaling
    is folded into q's scale and these additions. Scaling after the subtraction would cost a multiply
    per logit; one fused multiply-add of natural-unit logits (``s log2 e - max log2 e``) would carry the
    rounding error of ``max log2 e`` into every weight of a fully masked row (logits near -1e9), where
    this subtraction is exact."""
    if NUM_BIAS >= 1:
        s += biases[0] * LOG2E
    if NUM_BIAS >= 2:
        s += biases[1] * LOG2E
    if NUM_BIAS >= 3:
        s += biases[2] * LOG2E
    return s


@triton.jit
def logits_tile(q, k_t, offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st,
                b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st, b0_row, k_start,
                NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                PRECISION: tl.constexpr, FULL: tl.constexpr, BIAS_TMA: tl.constexpr, TRANS: tl.constexpr):
    """float32 logits tile in log2 units of queries ``offs_q`` and keys ``offs_k``: :func:`scores_tile`,
    then the biases read after the product is issued (:func:`bias_tiles`, :func:`add_biases`). ``TRANS``:
    key-major ([BK, BQ]; k and q^T passed as ``q`` and ``k_t``)."""
    if TRANS:
        s = scores_tile(q, k_t, offset, z1, z2, z3, offs_k, offs_q, LK, LQ, m_ptr, m_st, HAS_MASK,
                        MASK_PER_KEY, PRECISION, FULL)
    else:
        s = scores_tile(q, k_t, offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st, HAS_MASK,
                        MASK_PER_KEY, PRECISION, FULL)
    biases = bias_tiles(z1, z2, z3, offs_q, offs_k, LQ, LK, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                        NUM_BIAS, FULL, b0_row, k_start, BIAS_TMA, TRANS)
    return add_biases(s, biases, NUM_BIAS)


@triton.jit
def split_pid(pid, Z2, Z3, N_INNER, ROWS_FIRST: tl.constexpr = False):
    """Program id -> (z1, z2, z3, inner block). Inner blocks go fastest, so that the programs running
    together share k and v in cache; then z3 and z2, or with ``ROWS_FIRST`` z2 before z3, so that they
    also share the tiles of biases that are the same for every z2 (see :meth:`Operands.flags`)."""
    inner = pid % N_INNER
    z = pid // N_INNER
    if ROWS_FIRST:
        z2 = (z % Z2).to(tl.int64)
        z3 = ((z // Z2) % Z3).to(tl.int64)
    else:
        z3 = (z % Z3).to(tl.int64)
        z2 = ((z // Z3) % Z2).to(tl.int64)
    z1 = (z // (Z3 * Z2)).to(tl.int64)
    return z1, z2, z3, inner


@triton.jit
def _fwd_step(q, m_i, l_i, acc, offset, start, z1, z2, z3, offs_q, offs_c, offs_cv, LQ, LK, C, CV,
              k_ptr, k_st, v_ptr, v_st, m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
              NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
              BLOCK_K: tl.constexpr, EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr,
              PRECISION: tl.constexpr, FULL: tl.constexpr, b0_row, BIAS_TMA: tl.constexpr):
    """One key block of the online softmax: the updated (row maximum in log2 units, normaliser,
    accumulator)."""
    offs_k = start + tl.arange(0, BLOCK_K)
    k_valid = offs_k < LK
    k_t = bounded_tile(k_ptr, (k_st[0], k_st[1], k_st[2], k_st[4], k_st[3]), z1, z2, z3, offs_c, offs_k,
                       offs_c < C, k_valid, not EVEN_C, not FULL)
    s = logits_tile(q, k_t, offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st, b0_ptr, b0_st, b1_ptr,
                    b1_st, b2_ptr, b2_st, b0_row, start, NUM_BIAS, HAS_MASK, MASK_PER_KEY, PRECISION, FULL,
                    BIAS_TMA, False)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = exp2(m_i - m_new, FAST_EXP)
    p = exp2(s - m_new[:, None], FAST_EXP)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = channel_tile(v_ptr, v_st, z1, z2, z3, offs_k, k_valid, offs_cv, CV, not FULL, EVEN_C)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _fwd_kernel(q_ptr, k_ptr, v_ptr, g_ptr, o_ptr, stats_ptr, q_st, k_st, v_st, g_st, o_st, stats_st,
                m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st, Z2, Z3, LQ, LK, C, CV, scale,
                NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                ROWS_FIRST: tl.constexpr, HAS_GATE: tl.constexpr, SAVE_STATS: tl.constexpr,
                BIAS_TMA: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr, EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr,
                PRECISION: tl.constexpr):
    z1, z2, z3, qb = split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LQ, BLOCK_Q), ROWS_FIRST)
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    q_valid = offs_q < LQ
    q = query_tile(q_ptr, q_st, z1, z2, z3, tl.minimum(offs_q, LQ - 1), offs_c, C, scale, EVEN_C)
    m_i = tl.full([BLOCK_Q], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_CV], tl.float32)
    full_end = LK // BLOCK_K * BLOCK_K  # full key blocks without bounds checks, then the partial one
    per_key = HAS_MASK and MASK_PER_KEY
    b0_row = bias_row(b0_st, z1, z2, z3, LK, qb * BLOCK_Q) if BIAS_TMA else 0
    offset = key_offsets(m_ptr, m_st, z1, z2, z3, tl.arange(0, BLOCK_K), LK, per_key)
    for start in range(0, full_end, BLOCK_K):
        block_offset = offset
        if per_key:  # the next block's offsets, loaded one step ahead
            offset = key_offsets(m_ptr, m_st, z1, z2, z3, start + BLOCK_K + tl.arange(0, BLOCK_K), LK, True)
        m_i, l_i, acc = _fwd_step(q, m_i, l_i, acc, block_offset, start, z1, z2, z3, offs_q, offs_c, offs_cv,
                                  LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st, b0_ptr, b0_st,
                                  b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, BLOCK_K,
                                  EVEN_C, FAST_EXP, PRECISION, True, b0_row, BIAS_TMA)
    if full_end < LK:
        if not per_key:  # (with a per-key mask the loop has loaded this block's offsets)
            offset = key_offsets(m_ptr, m_st, z1, z2, z3, full_end + tl.arange(0, BLOCK_K), LK, False)
        m_i, l_i, acc = _fwd_step(q, m_i, l_i, acc, offset, full_end, z1, z2, z3, offs_q, offs_c, offs_cv,
                                  LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st, b0_ptr, b0_st,
                                  b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, BLOCK_K,
                                  EVEN_C, FAST_EXP, PRECISION, False, b0_row, BIAS_TMA)
    acc = acc / l_i[:, None]
    out_valid = q_valid[:, None] & (offs_cv < CV)[None, :]
    if SAVE_STATS:
        stats_offsets = lead_offset(stats_st, z1, z2, z3) + offs_q * stats_st[3]
        tl.store(stats_ptr + stats_offsets, m_i, mask=q_valid)
        tl.store(stats_ptr + stats_offsets + stats_st[4], tl.log2(l_i), mask=q_valid)
    if HAS_GATE:
        gate = load_tile(g_ptr, g_st, z1, z2, z3, offs_q, offs_cv, out_valid).to(tl.float32)
        acc = acc * tl.sigmoid(gate)
    store_tile(o_ptr, o_st, z1, z2, z3, offs_q, offs_cv, acc, out_valid)


# Tile settings (BLOCK_Q, BLOCK_K, num_warps, num_stages) of the forward kernel on a GPU (16-bit operands,
# or float32 with TF32 products); the fastest is kept per problem. From sweeps of fixed tiles on an H100
# (bf16; fourteenth session, forward ms with the first bias through TMA): 128 x 128 / 4 warps / 2 stages
# is best at head size 32 (MSA 512 x 768 1.79, triangle 768 1.39, MSA 512 x 384 0.56; 64 x 64 / 2 warps
# next, 1.90 / 1.44 / 0.58), 128 x 32 / 4 warps at head size 8 (extra-MSA 1024 x 384 1.08 against 1.17).
# 8 warps, 256-query tiles and 4 stages were slower.
FWD_TILES = [(64, 64, 2, 3), (64, 64, 4, 3), (64, 32, 4, 3), (128, 64, 4, 3), (128, 128, 4, 2),
             (128, 32, 4, 3)]
_fwd_tiled = TiledKernel(_fwd_kernel, FWD_TILES)
FP32_TILES = (32, 32, 4, 2)  # float32 operands with exact ("ieee") dots: fixed tiles
INTERPRETER_TILES = (16, 16)
MAX_PLANS = 1024  # plans kept for each of the forward and backward passes; at this many, all are dropped


def fixed_settings(tiled: TiledKernel, q: torch.Tensor, variants: Sequence[dict]) -> dict | None:
    """Settings of ``tiled`` that are not timed, with the first variant: under the interpreter small
    tiles (where tiles only cost time), for exact float32 products fixed ones; None where the tiles and
    variant are chosen by timing on the GPU (16-bit operands or TF32 products)."""
    if not q.is_cuda:
        return dict(BLOCK_Q=INTERPRETER_TILES[0], BLOCK_K=INTERPRETER_TILES[1], **variants[0])
    if dot_precision(q.dtype) == "ieee":
        bq, bk, warps, stages = FP32_TILES
        return dict(BLOCK_Q=bq, BLOCK_K=bk, num_warps=warps, num_stages=stages, **variants[0])
    return None


def channel_blocks(q: torch.Tensor, c: int, cv: int) -> dict:
    """Channel tile widths (``EVEN_C``: both are the channel counts, so channels need no bounds checks),
    dot precision (:func:`~fastfold.kernels.triton_layout.dot_precision`) and the exponential's flavour
    (``FAST_EXP`` on a GPU; the interpreter has no libdevice)."""
    block_c, block_cv = max(16, next_power_of_2(c)), max(16, next_power_of_2(cv))
    return dict(BLOCK_C=block_c, BLOCK_CV=block_cv, EVEN_C=block_c == c and block_cv == cv,
                PRECISION=dot_precision(q.dtype), FAST_EXP=q.is_cuda)


def grid_over(n_lead: int, length: int, block: str):
    """Launch grid over leading indices x blocks of ``length`` (block size from the launch settings)."""
    return lambda meta: (n_lead * cdiv(length, meta[block]),)


def geometry(t: torch.Tensor | None) -> tuple | None:
    """What a plan depends on in a tensor: shape, strides, dtype and 16-byte alignment."""
    return None if t is None else (t.shape, t.stride(), t.dtype, t.data_ptr() % 16 == 0)


def planned(plans: dict, key: tuple, build):
    """``plans[key]``, made by ``build()`` the first time (all plans dropped once there are MAX_PLANS)."""
    plan = plans.get(key)
    if plan is None:
        if len(plans) >= MAX_PLANS:
            plans.clear()
        plan = plans[key] = build()
    return plan


def _bytes(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(torch.uint8)


class Operands:
    """Attention operands addressed over canonical leading dimensions, planned from one call's inputs
    ``[q, k, v, *biases, mask (if any), gate (if any)]``: each operand as the
    :class:`~fastfold.kernels.launch.Slot` of a call's inputs that the kernels take (``q``, ``k``, ...;
    ``mask`` as bytes) with its strides (``q_st``, ``k_st``, ...), and the extra-argument packing.

    Where the operands' leading dimensions do not fold into three, every call copies them to
    contiguous memory first (:meth:`prepare`, ``copies``)."""

    def __init__(self, inputs: Sequence[torch.Tensor], num_biases: int, has_mask: bool, has_gate: bool):
        if num_biases > MAX_BIASES:
            raise ValueError(f"at most {MAX_BIASES} biases; sum the others first")
        q, k, v = inputs[:3]
        qk = (q.shape[-2], k.shape[-2])
        expanded = [t.expand(*t.shape[:-2], *qk) if 3 <= i < 3 + num_biases + has_mask else t
                    for i, t in enumerate(inputs)]  # biases and mask over every query and key
        self.lead = broadcast_shapes(*(tuple(t.shape[:-2]) for t in expanded))
        self.canon = canonical_layout([(t, 2) for t in expanded], self.lead)
        self.copies = [(i, (*self.lead, *t.shape[-2:])) for i, (t, c) in
                       enumerate(zip(expanded, self.canon.tensors, strict=True)) if c is not t]
        slots, strides = [Slot(i) for i in range(len(inputs))], list(self.canon.strides)
        (self.q, self.k, self.v), (self.q_st, self.k_st, self.v_st) = slots[:3], strides[:3]
        self.biases = list(zip(slots[3:3 + num_biases], strides[3:3 + num_biases], strict=True))
        self.mask, self.mask_st = (Slot(3 + num_biases, _bytes), strides[3 + num_biases]) if has_mask \
            else (None, NO_STRIDES)
        self.gate, self.gate_st = (slots[-1], strides[-1]) if has_gate else (None, NO_STRIDES)
        self.LQ, self.C = q.shape[-2], q.shape[-1]
        self.LK, self.CV = k.shape[-2], v.shape[-1]
        first_bias = self.canon.tensors[3] if num_biases else None
        self.bias_tma = self._bias_descriptor(first_bias)
        self.canon.tensors = []  # this call's tensors: a plan keeps none
        # with a descriptor for the first bias, the kernels may read it through TMA: timed against plain loads
        tma = self.bias_tma is not None
        self.variants = ({"BIAS_TMA": True}, {"BIAS_TMA": False}) if tma else ({"BIAS_TMA": False},)

    def prepare(self, inputs: list) -> None:
        """A call's inputs as the kernels read them: those that cannot be addressed as they are replaced
        (in the list) by contiguous copies."""
        for i, shape in self.copies:
            inputs[i] = inputs[i].expand(shape).contiguous()

    def logit_args(self) -> list:
        """Mask and bias slots with their strides, in the kernels' argument order (the first bias as its
        :class:`~fastfold.kernels.tuning.PerTiles` where it has a TMA descriptor)."""
        args = [self.mask if self.mask is not None else self.q, self.mask_st]
        for i in range(MAX_BIASES):
            args += self.biases[i] if i < len(self.biases) else [self.q, NO_STRIDES]
        if self.bias_tma is not None:
            args[2] = self.bias_tma
        return args

    def _bias_descriptor(self, bias: torch.Tensor | None) -> PerTiles | None:
        """The first bias as a TMA descriptor over its rows, block [BLOCK_Q, BLOCK_K] (where the settings
        say ``BIAS_TMA``; else the bias itself), when its rows are dense (stride 1 along keys, ``LK``
        between rows and a multiple of ``LK`` between its leading indices) and 16-byte aligned as TMA
        needs; else None.

        Pipelined TMA loads of the bias tile paid at N 768 and in the extra-MSA stack (head size 8) on an
        H100, and cost 3-5% at N 256-384 with head size 32: hence a timed choice."""
        if bias is None:
            return None
        slot, st = self.biases[0]
        row_bytes = self.LK * bias.element_size()
        dense = st[4] == 1 and st[3] == self.LK and all(s % self.LK == 0 for s in st[:3])
        if not dense or row_bytes % 16 or bias.data_ptr() % 16:
            return None
        lead3 = self.canon.lead
        rows = sum((z - 1) * s for z, s in zip(lead3, st[:3], strict=True)) // self.LK + self.LQ
        shape, strides = [rows, self.LK], [self.LK, 1]

        def descriptor(settings):
            block = [settings["BLOCK_Q"], settings["BLOCK_K"]]
            return Slot(slot.index, lambda b: TensorDescriptor(b, shape, strides, block))

        return PerTiles(lambda t: descriptor(t) if t["BIAS_TMA"] else slot)

    def flags(self) -> dict:
        """The kernels' constexpr flags of these operands. ``ROWS_FIRST`` where every bias is the same
        for every z2 (the pair bias over MSA rows, the triangle bias over the pair's rows): the programs
        then walk z2 before z3, so that those running together read the same head's bias tiles and add
        to the same head's bias gradient (at N_res 1536 the pair bias is 38 MB in bf16 and its gradient
        75 MB in float32: one head's slice stays in L2, all of them would not)."""
        mask_per_key = self.mask is not None and self.mask_st[3] == 0
        rows_first = bool(self.biases) and self.canon.lead[1] > 1 and all(st[1] == 0 for _, st in self.biases)
        return dict(NUM_BIAS=len(self.biases), HAS_MASK=self.mask is not None, MASK_PER_KEY=mask_per_key,
                    ROWS_FIRST=rows_first)


def plan_key(inputs: Sequence[torch.Tensor], *flags) -> tuple:
    """A plan's key: ``flags``, the device and dot precision, and every input's :func:`geometry`."""
    q = inputs[0]
    return (*flags, q.get_device(), dot_precision(q.dtype), *map(geometry, inputs))


class _ForwardPlan:
    """The forward launch planned for one geometry (:class:`Operands`); a call allocates the output
    (and statistics) and launches."""

    def __init__(self, inputs: Sequence[torch.Tensor], num_biases: int, has_mask: bool, has_gate: bool,
                 save_stats: bool):
        q, v = inputs[0], inputs[2]
        self.ops = ops = Operands(inputs, num_biases, has_mask, has_gate)
        lead3, n = ops.canon.lead, len(inputs)
        self.device, self.dtype = q.device, v.dtype
        self.out_shape = (*ops.lead, ops.LQ, ops.CV)
        self.stats_shape = (*ops.lead, ops.LQ, 2) if save_stats else (0,)
        out, stats = Slot(n), Slot(n + 1)
        flags = ops.flags()
        key = (ops.LQ, ops.LK, ops.C, ops.CV, q.dtype, save_stats, has_gate, len(ops.variants),
               *flags.values())
        self.launch = TiledLaunch(
            _fwd_tiled, grid_over(lead3[0] * lead3[1] * lead3[2], ops.LQ, "BLOCK_Q"), key,
            [ops.q, ops.k, ops.v, ops.gate if has_gate else ops.q, out, stats if save_stats else out,
             ops.q_st, ops.k_st, ops.v_st, ops.gate_st, contiguous_strides((*lead3, ops.LQ, ops.CV)),
             contiguous_strides((*lead3, ops.LQ, 2)) if save_stats else NO_STRIDES, *ops.logit_args(),
             lead3[1], lead3[2], ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5],
            variants=ops.variants, fixed=fixed_settings(_fwd_tiled, q, ops.variants), HAS_GATE=has_gate,
            SAVE_STATS=save_stats, **flags, **channel_blocks(q, ops.C, ops.CV))

    def __call__(self, inputs: list) -> tuple:
        self.ops.prepare(inputs)
        out = torch.empty(self.out_shape, device=self.device, dtype=self.dtype)
        stats = torch.empty(self.stats_shape, device=self.device, dtype=torch.float32)
        self.launch([*inputs, out, stats])
        return out, stats


_forward_plans = {}


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Sequence[torch.Tensor],
                      mask: torch.Tensor | None, gate: torch.Tensor | None, save_stats: bool) -> tuple:
    """Fused attention forward, through the plan for its operands' geometry (made at the first call).

    Parameters
    ----------
    q, k, v, biases, mask, gate
        As :func:`fastfold.kernels.attention.attention_torch` (at most ``MAX_BIASES`` biases).
    save_stats : bool
        Also return the row statistics that the backward pass needs.

    Returns
    -------
    tuple of torch.Tensor
        ``out`` [*, H, Q, c_v] in v's dtype, and when ``save_stats`` the row statistics ``[*, H, Q, 2]``
        (float32, in log2 units: the maximum logit times log2 e and the base-2 log of the softmax
        normaliser, kept apart so that a fully masked row keeps its normaliser), else an empty tensor.
    """
    inputs = [q, k, v, *biases, *(t for t in (mask, gate) if t is not None)]
    flags = (len(biases), mask is not None, gate is not None, save_stats)
    plan = planned(_forward_plans, plan_key(inputs, *flags), lambda: _ForwardPlan(inputs, *flags))
    return plan(inputs)
