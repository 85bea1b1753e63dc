"""The backward pass of the fused attention (:mod:`fastfold.kernels.triton_attention`), in Triton.

With ``P = softmax(S)``, the gated output ``out = sigmoid(g) * P V`` and ``dO`` its gradient,
``dO_pre = sigmoid(g) dO``, ``delta = rowsum(dO_pre * P V) = rowsum(dO * out)`` and
``dS = P * (dO_pre V^T - delta)``:

- ``_bwd_pre_kernel``: ``delta`` per query and, with a gate, ``dO_pre`` and the gate gradient
  ``d g = dO * out * (1 - sigmoid(g))``; ``dO_pre`` goes into the buffer of ``dQ`` (when they have one
  shape and dtype), which the dQ kernel's programs overwrite only after reading their rows of it;
- ``_bwd_kv_kernel``, over key blocks: recomputes ``S`` and ``P`` tile by tile and accumulates
  ``dV = P^T dO_pre`` and ``dK = dS^T Q`` (4 tile products), with tiles query-major or key-major
  (``S^T = K Q^T``; timed against each other where the biases can be read transposed cheaply);
- ``_bwd_q_kernel``, over query blocks: recomputes ``S``, ``P`` and ``dS`` and accumulates
  ``dQ = dS K`` (3 tile products), and adds each ``dS`` tile to every bias gradient with float32
  atomics, through stride 0 where the bias is broadcast, so the pair bias's gradient is summed over
  the MSA rows in place at the bias's own size; when every bias is shared by the rows, each program
  takes two rows and adds the sum of their ``dS`` tiles (half the atomics).

The gate steps need only the gated output, so the forward pass stores no ungated copy.
"""

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from fastfold.kernels.launch import Planned, Slot
from fastfold.kernels.triton_attention import (
    LOG2E,
    MAX_BIASES,
    NO_STRIDES,
    Operands,
    add_biases,
    bias_row,
    bias_tiles,
    channel_blocks,
    channel_tile,
    exp2,
    fixed_settings,
    grid_over,
    key_offsets,
    lead_offset,
    load_tile,
    logits_tile,
    plan_key,
    planned,
    query_tile,
    scores_tile,
    split_pid,
    store_tile,
    tile_offsets,
)
from fastfold.kernels.triton_layout import contiguous_strides
from fastfold.kernels.tuning import TiledKernel, TiledLaunch, cdiv


@triton.jit
def _row_stats(stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ):
    """(row maximum, log-normaliser, delta) [BQ] of queries ``offs_q``, the first two in log2 units (as
    the kernels' logits); past LQ a +inf maximum (zero probability) and no memory read.

    The row maximum and log-normaliser are kept apart: their sum loses the normaliser to rounding in
    a fully masked row (logits near -1e9). The kernels load these ahead of the products that need them
    (the dQ kernel once, the dK/dV loop one query block ahead), as plain loads are not pipelined.
    """
    offsets = lead_offset(stats_st, z1, z2, z3) + offs_q * stats_st[3]
    row_max = tl.load(stats_ptr + offsets, mask=offs_q < LQ, other=float("inf"))
    log_norm = tl.load(stats_ptr + offsets + stats_st[4], mask=offs_q < LQ, other=0.0)
    delta = tl.load(d_ptr + lead_offset(d_st, z1, z2, z3) + offs_q * d_st[3], mask=offs_q < LQ, other=0.0)
    return row_max, log_norm, delta


@triton.jit
def _softmax_grad(s, dp, stats, FAST_EXP: tl.constexpr, TRANS: tl.constexpr):
    """Softmax probabilities P and ``dS = P * (dP - delta)`` of a logits tile from its rows' statistics
    (:func:`_row_stats`); ``TRANS``: the tiles are key-major ([keys, queries]), the statistics per column."""
    if TRANS:
        row_max, log_norm, delta = stats[0][None, :], stats[1][None, :], stats[2][None, :]
    else:
        row_max, log_norm, delta = stats[0][:, None], stats[1][:, None], stats[2][:, None]
    p = exp2((s - row_max) - log_norm, FAST_EXP)
    return p, p * (dp - delta)


@triton.jit
def _bwd_pre_kernel(do_ptr, o_ptr, g_ptr, dop_ptr, dg_ptr, d_ptr, do_st, o_st, g_st, dop_st, dg_st, d_st,
                    Z2, Z3, LQ, CV, HAS_GATE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_CV: tl.constexpr):
    """delta = rowsum(dO * out) and, with a gate, dO_pre = dO * sigmoid(g) and
    d gate = dO * out * (1 - sigmoid(g)), the same as dO * out_pre * sigmoid'(g)."""
    z1, z2, z3, qb = split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LQ, BLOCK_Q))
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_cv = tl.arange(0, BLOCK_CV)
    valid = (offs_q < LQ)[:, None] & (offs_cv < CV)[None, :]
    do = load_tile(do_ptr, do_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32)
    out = load_tile(o_ptr, o_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32)
    tl.store(d_ptr + lead_offset(d_st, z1, z2, z3) + offs_q * d_st[3], tl.sum(do * out, 1), mask=offs_q < LQ)
    if HAS_GATE:
        sig = tl.sigmoid(load_tile(g_ptr, g_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32))
        store_tile(dop_ptr, dop_st, z1, z2, z3, offs_q, offs_cv, do * sig, valid)
        store_tile(dg_ptr, dg_st, z1, z2, z3, offs_q, offs_cv, do * out * (1.0 - sig), valid)


@triton.jit
def _bwd_kv_loop(k_op, v, offset, dk, dv, z1, z2, z3, offs_k, offs_c, offs_cv, LQ, LK, C, CV, scale,
                 q_ptr, q_st, do_ptr, do_st, stats_ptr, stats_st, d_ptr, d_st,
                 m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                 NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                 BLOCK_Q: tl.constexpr, EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr,
                 PRECISION: tl.constexpr, FULL: tl.constexpr, b0_row, k_start, BIAS_TMA: tl.constexpr,
                 KEY_MAJOR: tl.constexpr):
    """dK and dV of one key block (``FULL``: all its keys in bounds) over every query block.

    ``KEY_MAJOR`` forms the tiles as [keys, queries] (``S^T = K Q^T``), so that ``P^T`` and ``dS^T`` feed
    the dV and dK products from registers; the biases are read transposed (through shared memory with
    TMA). It needs a mask that is the same for every query (``offset`` is then a [BK, 1] column).
    ``k_op`` is the key tile as the first product takes it: k [BK, C] key-major, else k^T [C, BK].
    Query rows past LQ read the last query (clamped: no bounds checks); their +inf row maximum gives
    them zero probability, so they add nothing."""
    stats = _row_stats(stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, tl.arange(0, BLOCK_Q), LQ)
    for start in range(0, LQ, BLOCK_Q):
        offs_q = start + tl.arange(0, BLOCK_Q)
        block_stats = stats
        stats = _row_stats(stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q + BLOCK_Q, LQ)  # next block's
        rows = tl.minimum(offs_q, LQ - 1)
        q = query_tile(q_ptr, q_st, z1, z2, z3, rows, offs_c, C, scale, EVEN_C)
        do = channel_tile(do_ptr, do_st, z1, z2, z3, rows, rows, offs_cv, CV, False, EVEN_C)
        if KEY_MAJOR:
            q_op, k_op_t = k_op, tl.trans(q)
        else:
            q_op, k_op_t = q, k_op
        s = logits_tile(q_op, k_op_t, offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st, b0_ptr, b0_st,
                        b1_ptr, b1_st, b2_ptr, b2_st, b0_row + start, k_start, NUM_BIAS, HAS_MASK,
                        MASK_PER_KEY, PRECISION, FULL, BIAS_TMA, KEY_MAJOR)
        if KEY_MAJOR:
            dp = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            p, ds = _softmax_grad(s, dp, block_stats, FAST_EXP, True)
            dv += tl.dot(p.to(do.dtype), do, input_precision=PRECISION)
            dk += tl.dot(ds.to(q.dtype), q, input_precision=PRECISION)
        else:
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            p, ds = _softmax_grad(s, dp, block_stats, FAST_EXP, False)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    return dk, dv


@triton.jit
def _bwd_kv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, d_ptr, dk_ptr, dv_ptr,
                   q_st, k_st, v_st, do_st, stats_st, d_st, dk_st, dv_st,
                   m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                   Z2, Z3, LQ, LK, C, CV, scale,
                   NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                   ROWS_FIRST: tl.constexpr, BIAS_TMA: tl.constexpr, KEY_MAJOR: tl.constexpr,
                   BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_CV: tl.constexpr, EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr,
                   PRECISION: tl.constexpr):
    # key-major scores take the mask as a per-key column of offsets only (see _kv_variants)
    tl.static_assert(not KEY_MAJOR or not HAS_MASK or MASK_PER_KEY)
    z1, z2, z3, kb = split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LK, BLOCK_K), ROWS_FIRST)
    b0_row = bias_row(b0_st, z1, z2, z3, LK, 0) if BIAS_TMA else 0
    offs_k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    valid_k = offs_k < LK
    valid = valid_k[:, None] & (offs_c < C)[None, :]
    valid_v = valid_k[:, None] & (offs_cv < CV)[None, :]
    k_op = load_tile(k_ptr, k_st, z1, z2, z3, offs_k, offs_c, valid)
    if not KEY_MAJOR:
        k_op = tl.trans(k_op)  # once, not in the loop
    v = load_tile(v_ptr, v_st, z1, z2, z3, offs_k, offs_cv, valid_v)
    dk = tl.zeros([BLOCK_K, BLOCK_C], tl.float32)
    dv = tl.zeros([BLOCK_K, BLOCK_CV], tl.float32)
    offset = key_offsets(m_ptr, m_st, z1, z2, z3, offs_k, LK, HAS_MASK and MASK_PER_KEY)
    if KEY_MAJOR:
        offset = tl.trans(offset)
    if (kb + 1) * BLOCK_K <= LK:
        dk, dv = _bwd_kv_loop(k_op, v, offset, dk, dv, z1, z2, z3, offs_k, offs_c, offs_cv, LQ, LK, C, CV,
                              scale, q_ptr, q_st, do_ptr, do_st, stats_ptr, stats_st, d_ptr, d_st, m_ptr,
                              m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK,
                              MASK_PER_KEY, BLOCK_Q, EVEN_C, FAST_EXP, PRECISION, True, b0_row, kb * BLOCK_K,
                              BIAS_TMA, KEY_MAJOR)
    else:
        dk, dv = _bwd_kv_loop(k_op, v, offset, dk, dv, z1, z2, z3, offs_k, offs_c, offs_cv, LQ, LK, C, CV,
                              scale, q_ptr, q_st, do_ptr, do_st, stats_ptr, stats_st, d_ptr, d_st, m_ptr,
                              m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK,
                              MASK_PER_KEY, BLOCK_Q, EVEN_C, FAST_EXP, PRECISION, False, b0_row, kb * BLOCK_K,
                              BIAS_TMA, KEY_MAJOR)
    # q was scaled by c^-1/2 log2 e (query_tile): dS^T q is dK times log2 e
    store_tile(dk_ptr, dk_st, z1, z2, z3, offs_k, offs_c, dk / LOG2E, valid)
    store_tile(dv_ptr, dv_st, z1, z2, z3, offs_k, offs_cv, dv, valid_v)


@triton.jit
def _add_bias_grad(db_ptr, db_st, z1, z2, z3, rows, offs_k, k_valid, ds, FULL: tl.constexpr):
    """Add a dS tile to a bias gradient with float32 atomics (bounds-checked unless ``FULL``)."""
    offsets = tile_offsets(db_st, z1, z2, z3, rows, offs_k)
    if FULL:
        tl.atomic_add(db_ptr + offsets, ds, sem="relaxed")
    else:
        tl.atomic_add(db_ptr + offsets, ds, mask=k_valid[None, :], sem="relaxed")


@triton.jit
def _bwd_q_step(q, do, dq, stats, offset, biases, offs_k, z1, z2, z3, offs_q, offs_c, offs_cv, LQ, LK, C,
                CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st,
                NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr, PRECISION: tl.constexpr, FULL: tl.constexpr):
    """dQ's share of the key block ``offs_k`` (``FULL``: all its keys in bounds) for one row, given the
    block's bias tiles and its rows' statistics, and its dS tile."""
    k_valid = offs_k < LK
    k = channel_tile(k_ptr, k_st, z1, z2, z3, offs_k, k_valid, offs_c, C, not FULL, EVEN_C)
    v = channel_tile(v_ptr, v_st, z1, z2, z3, offs_k, k_valid, offs_cv, CV, not FULL, EVEN_C)
    s = scores_tile(q, tl.trans(k), offset, z1, z2, z3, offs_q, offs_k, LQ, LK, m_ptr, m_st, HAS_MASK,
                    MASK_PER_KEY, PRECISION, FULL)
    s = add_biases(s, biases, NUM_BIAS)
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    _, ds = _softmax_grad(s, dp, stats, FAST_EXP, False)
    dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    return dq, ds


@triton.jit
def _bwd_q_block(q, do, dq, stats, offset, q_b, do_b, dq_b, stats_b, offset_b, weight_b, z2_b, b0_row, kb,
                 z1, z2, z3, offs_q, offs_c, offs_cv, LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st,
                 b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                 db0_ptr, db0_st, db1_ptr, db1_st, db2_ptr, db2_st,
                 NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                 ROWS: tl.constexpr, BLOCK_K: tl.constexpr, EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr,
                 PRECISION: tl.constexpr, FULL: tl.constexpr, BIAS_TMA: tl.constexpr):
    """Key block ``kb`` of the program's ``ROWS`` rows (z2 and, with ``ROWS`` 2, ``z2_b`` weighted by
    ``weight_b``: 0 for the copy of z2 past the last row): their dQ shares, and the sum of their dS tiles
    added once to each bias gradient. With ``ROWS`` 2 every bias is broadcast over z2, so both rows use
    the bias tiles read once."""
    offs_k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    k_valid = offs_k < LK
    biases = bias_tiles(z1, z2, z3, offs_q, offs_k, LQ, LK, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                        NUM_BIAS, FULL, b0_row, kb * BLOCK_K, BIAS_TMA, False)
    dq, ds = _bwd_q_step(q, do, dq, stats, offset, biases, offs_k, z1, z2, z3, offs_q, offs_c, offs_cv, LQ,
                         LK, C, CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY,
                         EVEN_C, FAST_EXP, PRECISION, FULL)
    if ROWS == 2:
        dq_b, ds_b = _bwd_q_step(q_b, do_b, dq_b, stats_b, offset_b, biases, offs_k, z1, z2_b, z3, offs_q,
                                 offs_c, offs_cv, LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st, m_ptr, m_st,
                                 NUM_BIAS, HAS_MASK, MASK_PER_KEY, EVEN_C, FAST_EXP, PRECISION, FULL)
        ds += ds_b * weight_b
    # rows past LQ have dS = 0 exactly: adding them to the clamped row changes nothing
    rows = tl.minimum(offs_q, LQ - 1)
    if NUM_BIAS >= 1:
        _add_bias_grad(db0_ptr, db0_st, z1, z2, z3, rows, offs_k, k_valid, ds, FULL)
    if NUM_BIAS >= 2:
        _add_bias_grad(db1_ptr, db1_st, z1, z2, z3, rows, offs_k, k_valid, ds, FULL)
    if NUM_BIAS >= 3:
        _add_bias_grad(db2_ptr, db2_st, z1, z2, z3, rows, offs_k, k_valid, ds, FULL)
    return dq, dq_b


@triton.jit
def _bwd_q_kernel(q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, d_ptr, dq_ptr,
                  q_st, k_st, v_st, do_st, stats_st, d_st, dq_st,
                  m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                  db0_ptr, db0_st, db1_ptr, db1_st, db2_ptr, db2_st,
                  Z2, Z3, LQ, LK, C, CV, scale,
                  NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                  ROWS_FIRST: tl.constexpr, ROWS: tl.constexpr, BIAS_TMA: tl.constexpr,
                  BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr,
                  EVEN_C: tl.constexpr, FAST_EXP: tl.constexpr, PRECISION: tl.constexpr):
    """dQ and the bias gradients of ``ROWS`` consecutive rows (z2) for one query block: with 2, both rows'
    dS tiles are summed before the atomics (half of them)."""
    z1, z2, z3, qb = split_pid(tl.program_id(0), tl.cdiv(Z2, ROWS), Z3, tl.cdiv(LQ, BLOCK_Q), ROWS_FIRST)
    z2 *= ROWS
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    rows = tl.minimum(offs_q, LQ - 1)  # rows past LQ: the last query again, zero probability, not stored
    q = query_tile(q_ptr, q_st, z1, z2, z3, rows, offs_c, C, scale, EVEN_C)
    do = channel_tile(do_ptr, do_st, z1, z2, z3, rows, rows, offs_cv, CV, False, EVEN_C)
    dq = tl.zeros([BLOCK_Q, BLOCK_C], tl.float32)
    stats = _row_stats(stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ)  # once, outside the loop
    q_b, do_b, dq_b, stats_b, weight_b, z2_b = q, do, dq, stats, 0.0, z2
    if ROWS == 2:
        # the second row, or past the last one a copy of the first that adds nothing (weight 0, not stored)
        weight_b = (z2 + 1 < Z2).to(tl.float32)
        z2_b = tl.minimum(z2 + 1, Z2 - 1)
        q_b = query_tile(q_ptr, q_st, z1, z2_b, z3, rows, offs_c, C, scale, EVEN_C)
        do_b = channel_tile(do_ptr, do_st, z1, z2_b, z3, rows, rows, offs_cv, CV, False, EVEN_C)
        stats_b = _row_stats(stats_ptr, stats_st, d_ptr, d_st, z1, z2_b, z3, offs_q, LQ)
    b0_row = bias_row(b0_st, z1, z2, z3, LK, qb * BLOCK_Q) if BIAS_TMA else 0
    n_full = LK // BLOCK_K
    shift = z1 + z2 + z3  # programs of different rows start at different key blocks: fewer atomic collisions
    per_key = HAS_MASK and MASK_PER_KEY
    keys = tl.arange(0, BLOCK_K)
    first_keys = shift % tl.maximum(n_full, 1) * BLOCK_K + keys
    offset = key_offsets(m_ptr, m_st, z1, z2, z3, first_keys, LK, per_key)
    offset_b = key_offsets(m_ptr, m_st, z1, z2_b, z3, first_keys, LK, per_key and ROWS == 2)
    for i in range(0, n_full):
        kb = (i + shift) % n_full
        block_offset, block_offset_b = offset, offset_b
        if per_key:  # the next block's offsets, loaded one step ahead
            next_keys = (kb + 1) % n_full * BLOCK_K + keys
            offset = key_offsets(m_ptr, m_st, z1, z2, z3, next_keys, LK, True, True)
            if ROWS == 2:
                offset_b = key_offsets(m_ptr, m_st, z1, z2_b, z3, next_keys, LK, True, True)
        dq, dq_b = _bwd_q_block(q, do, dq, stats, block_offset, q_b, do_b, dq_b, stats_b, block_offset_b,
                                weight_b, z2_b, b0_row, kb,
                                z1, z2, z3, offs_q, offs_c, offs_cv, LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st,
                                m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                                db0_ptr, db0_st, db1_ptr, db1_st, db2_ptr, db2_st, NUM_BIAS,
                                HAS_MASK, MASK_PER_KEY, ROWS, BLOCK_K, EVEN_C, FAST_EXP, PRECISION, True,
                                BIAS_TMA)
    if n_full * BLOCK_K < LK:
        partial_keys = n_full * BLOCK_K + keys
        offset = key_offsets(m_ptr, m_st, z1, z2, z3, partial_keys, LK, per_key)
        offset_b = key_offsets(m_ptr, m_st, z1, z2_b, z3, partial_keys, LK, per_key and ROWS == 2)
        dq, dq_b = _bwd_q_block(q, do, dq, stats, offset, q_b, do_b, dq_b, stats_b, offset_b, weight_b,
                                z2_b, b0_row, n_full,
                                z1, z2, z3, offs_q, offs_c, offs_cv, LQ, LK, C, CV, k_ptr, k_st, v_ptr, v_st,
                                m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                                db0_ptr, db0_st, db1_ptr, db1_st, db2_ptr, db2_st, NUM_BIAS,
                                HAS_MASK, MASK_PER_KEY, ROWS, BLOCK_K, EVEN_C, FAST_EXP, PRECISION, False,
                                BIAS_TMA)
    valid = (offs_q < LQ)[:, None] & (offs_c < C)[None, :]
    store_tile(dq_ptr, dq_st, z1, z2, z3, offs_q, offs_c, dq * scale, valid)
    if ROWS == 2:
        store_tile(dq_ptr, dq_st, z1, z2_b, z3, offs_q, offs_c, dq_b * scale, valid & (z2 + 1 < Z2))


# Tile settings (BLOCK_Q, BLOCK_K, num_warps, num_stages) of the two kernels for 16-bit operands on a
# GPU; the dQ kernel's bias gradients are zeroed before each timed trial and before the chosen run. From
# a sweep of fixed tiles on an H100 (bf16; thirteenth session, kernel ms with / without TMA bias reads):
# dK/dV 64 x 64 / 4 warps best at head size 32 (MSA 512 x 768 3.18 / 3.46, triangle 768 2.40 / 2.60),
# 32 x 64 / 2 warps at head size 8 (extra-MSA 1024 x 384 1.41 / 1.83); dQ 64 x 32 / 4 warps at head size
# 32 (3.32 / 3.14, 2.45 / 2.35), 128 x 32 / 4 warps at head size 8 (1.92 / 1.99 against 2.14 for the
# next best). The others tried (2-warp dQ, dK/dV 64 x 64 with 2 warps, 4 stages, 8 warps) were slower
# or within 2%. Key-major dK/dV (through TMA) is best at 32 x 128 / 4 warps: 2.83 ms at MSA 512 x 768,
# 2.14 at triangle 768 (64 x 128 with 4 or 8 warps: 4.1-8.0; 16 x 128: 3.03).
KV_TILES = [(64, 64, 4, 3), (32, 64, 2, 3), (32, 128, 4, 3), (128, 128, 8, 2)]
Q_TILES = [(64, 32, 4, 3), (128, 32, 4, 3), (64, 64, 4, 3), (64, 128, 4, 2)]
_kv_tiled = TiledKernel(_bwd_kv_kernel, KV_TILES)
_q_tiled = TiledKernel(_bwd_q_kernel, Q_TILES)
_ELEMENTWISE_BLOCK_Q = 32


def _kv_variants(variants: Sequence[dict], flags: dict) -> list:
    """The dK/dV kernel's timed variants: each of the operands' (bias through TMA or not), key-major
    first where it can win. Key-major tiles need a mask shared by the queries, and read the biases
    transposed: cheaply through TMA's shared-memory copy, slowly through pointers (H100, MSA 512 x 768:
    4.10 against 3.43 ms), so they are offered with TMA or without any bias."""
    per_key = not flags["HAS_MASK"] or flags["MASK_PER_KEY"]
    out = []
    for variant in variants:
        if per_key and (variant["BIAS_TMA"] or not flags["NUM_BIAS"]):
            out.append({**variant, "KEY_MAJOR": True})
        out.append({**variant, "KEY_MAJOR": False})
    return out


class _Gradient:
    """A gradient buffer of a backward plan: the operand's own shape and dtype where the kernels write
    each element once, else float32 over the canonical shape (always where the kernels accumulate into
    it with atomics), summed over the operand's broadcast dimensions afterwards (:meth:`of`)."""

    def __init__(self, operand: torch.Tensor, canonical: tuple, full: tuple, own_lead: tuple,
                 accumulated: bool = False):
        dtype = torch.float32 if accumulated else operand.dtype
        self.exact = tuple(operand.shape) == tuple(full) and operand.dtype == dtype
        self.shape = tuple(operand.shape) if self.exact else canonical
        self.dtype = dtype if self.exact else torch.float32
        self.zeroed = accumulated
        self.strides = contiguous_strides(canonical)
        self.summed = (*own_lead, *canonical[-2:])  # the float32 buffer as the operand's own lead x inner
        self.operand_shape, self.operand_dtype = tuple(operand.shape), operand.dtype

    def of(self, buffer: torch.Tensor) -> torch.Tensor:
        """The operand's gradient from its buffer."""
        if self.exact:
            return buffer
        return buffer.view(self.summed).sum_to_size(self.operand_shape).to(self.operand_dtype)


class _BackwardPlan:
    """The backward pass's launches planned for one geometry (:class:`Operands` of the forward's inputs
    and the gradient of the output); a call allocates the buffers and launches the three kernels."""

    def __init__(self, inputs: Sequence[torch.Tensor], num_biases: int, has_mask: bool, has_gate: bool):
        q, k, v = inputs[:3]
        biases = inputs[3:3 + num_biases]
        self.ops = ops = Operands(inputs[:-3], num_biases, has_mask, has_gate)
        lead3, full, n = ops.canon.lead, ops.lead, len(inputs)
        n_lead = lead3[0] * lead3[1] * lead3[2]
        self.device, self.buffers = q.device, []  # (shape, dtype, zeroed) of each buffer, after the inputs
        dout, out, stats = Slot(n - 3), Slot(n - 2), Slot(n - 1)

        def buffer(shape, dtype, zeroed=False) -> Slot:
            self.buffers.append((shape, dtype, zeroed))
            return Slot(n + len(self.buffers) - 1)

        def gradient(operand, canonical, own_lead=full, accumulated=False) -> tuple:
            grad = _Gradient(operand, canonical, (*full, *canonical[-2:]), own_lead, accumulated)
            return buffer(grad.shape, grad.dtype, grad.zeroed), grad

        out_st = contiguous_strides((*lead3, ops.LQ, ops.CV))
        delta = buffer((*lead3, ops.LQ), torch.float32)
        d_st = contiguous_strides((*lead3, ops.LQ)) + (0,)
        dq, dq_grad = gradient(q, (*lead3, ops.LQ, ops.C))
        dk, dk_grad = gradient(k, (*lead3, ops.LK, ops.C))
        dv, dv_grad = gradient(v, (*lead3, ops.LK, ops.CV))
        self.gradients = [(dq, dq_grad), (dk, dk_grad), (dv, dv_grad)]
        do_pre, gate_args = dout, (dout, NO_STRIDES) * 2
        if has_gate:  # dO_pre in dQ's buffer where it fits
            dgate, dgate_grad = gradient(inputs[n - 4], (*lead3, ops.LQ, ops.CV))
            self.gradients.append((dgate, dgate_grad))
            fits = ops.C == ops.CV and dq_grad.exact
            do_pre = dq if fits else buffer((*lead3, ops.LQ, ops.CV), q.dtype)
            gate_args = (ops.gate, ops.gate_st, dgate, out_st)
        blocks = channel_blocks(q, ops.C, ops.CV)
        self.pre = Planned(
            _bwd_pre_kernel, (n_lead * cdiv(ops.LQ, _ELEMENTWISE_BLOCK_Q),),
            [dout, out, gate_args[0], do_pre, gate_args[2], delta, out_st, out_st, gate_args[1], out_st,
             gate_args[3], d_st, lead3[1], lead3[2], ops.LQ, ops.CV],
            dict(HAS_GATE=has_gate, BLOCK_Q=_ELEMENTWISE_BLOCK_Q, BLOCK_CV=blocks["BLOCK_CV"]))

        common = ops.logit_args()
        dims = (lead3[1], lead3[2], ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5)
        flags = ops.flags()
        key = (ops.LQ, ops.LK, ops.C, ops.CV, q.dtype, len(ops.variants), *flags.values())
        stats_st = contiguous_strides((*lead3, ops.LQ, 2))
        kv_variants = _kv_variants(ops.variants, flags)
        self.kv = TiledLaunch(
            _kv_tiled, grid_over(n_lead, ops.LK, "BLOCK_K"), key,
            [ops.q, ops.k, ops.v, do_pre, stats, delta, dk, dv, ops.q_st, ops.k_st, ops.v_st, out_st,
             stats_st, d_st, dk_grad.strides, dv_grad.strides, *common, *dims],
            variants=kv_variants, fixed=fixed_settings(_kv_tiled, q, kv_variants), **flags, **blocks)

        dbias_args, dbias_zero = [], []
        for i in range(MAX_BIASES):
            if i < num_biases:
                own = ops.canon.own_shape(3 + i)
                db, db_grad = gradient(biases[i], (*own, ops.LQ, ops.LK), ops.canon.own_lead[3 + i], True)
                self.gradients.append((db, db_grad))
                dbias_zero.append(db)
                strides = tuple(0 if z == 1 else st for z, st in zip(own, db_grad.strides, strict=False))
                dbias_args += [db, strides + db_grad.strides[-2:]]
            else:  # unused (never dereferenced)
                dbias_args += [delta, NO_STRIDES]
        # pairs of rows per program when every bias is the same for every row (z2, ROWS_FIRST): half the
        # bias-gradient atomics
        rows_per_program = 2 if flags["ROWS_FIRST"] else 1
        self.q = TiledLaunch(
            _q_tiled, grid_over(lead3[0] * cdiv(lead3[1], rows_per_program) * lead3[2], ops.LQ, "BLOCK_Q"),
            (*key, rows_per_program),
            [ops.q, ops.k, ops.v, do_pre, stats, delta, dq, ops.q_st, ops.k_st, ops.v_st, out_st, stats_st,
             d_st, dq_grad.strides, *common, *dbias_args, *dims],
            variants=ops.variants, zero=dbias_zero, restore=[dq] if do_pre is dq else [],
            fixed=fixed_settings(_q_tiled, q, ops.variants), **flags, ROWS=rows_per_program, **blocks)

    def __call__(self, inputs: list) -> list:
        self.ops.prepare(inputs)
        values = inputs + [torch.zeros(shape, device=self.device, dtype=dtype) if zeroed else
                           torch.empty(shape, device=self.device, dtype=dtype)
                           for shape, dtype, zeroed in self.buffers]
        self.pre(values)
        self.kv(values)
        self.q(values)
        return [grad.of(slot(values)) for slot, grad in self.gradients]


_backward_plans = {}


def attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       biases: Sequence[torch.Tensor], mask: torch.Tensor | None,
                       gate: torch.Tensor | None, out: torch.Tensor, stats: torch.Tensor) -> tuple:
    """Gradients of the fused attention, through the plan for its operands' geometry (made at the first
    call).

    Parameters
    ----------
    grad_out : torch.Tensor
        ``[*, H, Q, c_v]``, the gradient of the output.
    q, k, v, biases, mask, gate
        The forward's operands (at most ``MAX_BIASES`` biases).
    out, stats : torch.Tensor
        The forward's (gated) output and row statistics.

    Returns
    -------
    tuple
        ``(dq, dk, dv, [d bias for each bias], dgate or None)``, each in its operand's shape and dtype.
    """
    inputs = [q, k, v, *biases, *(t for t in (mask, gate) if t is not None),
              *(t if t.is_contiguous() else t.contiguous() for t in (grad_out, out, stats))]
    flags = (len(biases), mask is not None, gate is not None)
    plan = planned(_backward_plans, plan_key(inputs, *flags), lambda: _BackwardPlan(inputs, *flags))
    dq, dk, dv, *rest = plan(inputs)
    dgate = rest.pop(0) if gate is not None else None
    return dq, dk, dv, rest, dgate
