"""Flash attention with additive biases, a key mask and a sigmoid gate, in Triton.

The forward pass streams key blocks through an online softmax and never writes the ``[*, H, Q, K]``
logits to memory; it keeps the row log-sum-exp for the backward pass, which recomputes the
probabilities tile by tile: one kernel accumulates ``dk, dv`` over query blocks, one accumulates
``dq`` over key blocks, and one per learned bias sums ``d logits`` over the leading dimensions that
bias is broadcast over (the MSA rows for the pair bias) in registers, so its gradient is written once
at its own size. The logits are formed exactly as the PyTorch twin forms them
(:func:`fastfold.kernels.attention.attention_torch`): scaled dot product, then the ``-1e9`` offset of
masked keys, then each bias in order, all in float32; a fully masked row therefore gives the twin's
finite near-uniform result.

Every operand is addressed through three canonical leading strides (see
:mod:`fastfold.kernels.triton_layout`), so broadcast operands are read through stride 0.
"""

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from fastfold.kernels.softmax import MASKED_LOGIT_OFFSET
from fastfold.kernels.triton_layout import canonical_views

MASK_OFFSET = tl.constexpr(MASKED_LOGIT_OFFSET)
MAX_BIASES = 3  # biases handled inside the kernels; further ones are summed beforehand by the caller
_NO_STRIDES = (0, 0, 0, 0, 0)


@triton.jit
def _lead_offset(strides, z1, z2, z3):
    return z1 * strides[0] + z2 * strides[1] + z3 * strides[2]


@triton.jit
def _tile(ptr, strides, z1, z2, z3, rows, cols, valid):
    """Load a [rows, cols] tile (zeros outside ``valid``) of a [Z1, Z2, Z3, R, C] strided operand."""
    offsets = _lead_offset(strides, z1, z2, z3) + rows[:, None] * strides[3] + cols[None, :] * strides[4]
    return tl.load(ptr + offsets, mask=valid, other=0.0)


@triton.jit
def _store_tile(ptr, strides, z1, z2, z3, rows, cols, value, valid):
    """Store a [rows, cols] tile of a [Z1, Z2, Z3, R, C] strided output, cast to its dtype."""
    offsets = _lead_offset(strides, z1, z2, z3) + rows[:, None] * strides[3] + cols[None, :] * strides[4]
    tl.store(ptr + offsets, value.to(ptr.dtype.element_ty), mask=valid)


@triton.jit
def _logits(q, k_t, z1, z2, z3, offs_q, offs_k, LQ, LK, scale,
            m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
            NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
            PRECISION: tl.constexpr):
    """float32 logits tile [BQ, BK]: q k^T * scale, masked-key offset, then each bias; -inf past LK.

    A mask that is the same for every query (``MASK_PER_KEY``) is read as one row of keys.
    """
    s = tl.dot(q, k_t, input_precision=PRECISION) * scale
    k_valid = offs_k < LK
    valid = (offs_q < LQ)[:, None] & k_valid[None, :]
    if HAS_MASK:
        if MASK_PER_KEY:
            keep = tl.load(m_ptr + _lead_offset(m_st, z1, z2, z3) + offs_k * m_st[4], mask=k_valid, other=0)
            s = tl.where(keep[None, :] != 0, s, s - MASK_OFFSET)
        else:
            keep = _tile(m_ptr, m_st, z1, z2, z3, offs_q, offs_k, valid)
            s = tl.where(keep != 0, s, s - MASK_OFFSET)
    if NUM_BIAS >= 1:
        s += _tile(b0_ptr, b0_st, z1, z2, z3, offs_q, offs_k, valid).to(tl.float32)
    if NUM_BIAS >= 2:
        s += _tile(b1_ptr, b1_st, z1, z2, z3, offs_q, offs_k, valid).to(tl.float32)
    if NUM_BIAS >= 3:
        s += _tile(b2_ptr, b2_st, z1, z2, z3, offs_q, offs_k, valid).to(tl.float32)
    return tl.where(k_valid[None, :], s, float("-inf"))


@triton.jit
def _split_pid(pid, Z2, Z3, N_INNER):
    """Program id -> (z1, z2, z3, inner block), inner blocks fastest so neighbours share k/v in cache."""
    inner = pid % N_INNER
    z = pid // N_INNER
    z3 = (z % Z3).to(tl.int64)
    z2 = ((z // Z3) % Z2).to(tl.int64)
    z1 = (z // (Z3 * Z2)).to(tl.int64)
    return z1, z2, z3, inner


@triton.jit
def _fwd_kernel(q_ptr, k_ptr, v_ptr, g_ptr, o_ptr, op_ptr, stats_ptr,
                q_st, k_st, v_st, g_st, o_st, op_st, stats_st,
                m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st, Z2, Z3, LQ, LK, C, CV, scale,
                NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                HAS_GATE: tl.constexpr, SAVE_AUX: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr,
                PRECISION: tl.constexpr):
    z1, z2, z3, qb = _split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LQ, BLOCK_Q))
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    q_valid = offs_q < LQ
    q = _tile(q_ptr, q_st, z1, z2, z3, offs_q, offs_c, q_valid[:, None] & (offs_c < C)[None, :])
    m_i = tl.full([BLOCK_Q], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_CV], tl.float32)
    for start in range(0, LK, BLOCK_K):
        offs_k = start + tl.arange(0, BLOCK_K)
        k_valid = offs_k < LK
        k_t = _tile(k_ptr, (k_st[0], k_st[1], k_st[2], k_st[4], k_st[3]), z1, z2, z3, offs_c, offs_k,
                    (offs_c < C)[:, None] & k_valid[None, :])
        s = _logits(q, k_t, z1, z2, z3, offs_q, offs_k, LQ, LK, scale, m_ptr, m_st, b0_ptr, b0_st,
                    b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, PRECISION)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _tile(v_ptr, v_st, z1, z2, z3, offs_k, offs_cv, k_valid[:, None] & (offs_cv < CV)[None, :])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    acc = acc / l_i[:, None]
    out_valid = q_valid[:, None] & (offs_cv < CV)[None, :]
    if SAVE_AUX:
        _store_tile(op_ptr, op_st, z1, z2, z3, offs_q, offs_cv, acc, out_valid)
        stats_offsets = _lead_offset(stats_st, z1, z2, z3) + offs_q * stats_st[3]
        tl.store(stats_ptr + stats_offsets, m_i, mask=q_valid)
        tl.store(stats_ptr + stats_offsets + stats_st[4], tl.log(l_i), mask=q_valid)
    if HAS_GATE:
        gate = _tile(g_ptr, g_st, z1, z2, z3, offs_q, offs_cv, out_valid).to(tl.float32)
        acc = acc * tl.sigmoid(gate)
    _store_tile(o_ptr, o_st, z1, z2, z3, offs_q, offs_cv, acc, out_valid)


@triton.jit
def _probabilities(s, stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ):
    """Softmax probabilities of a logits tile from the row statistics, and delta = rowsum(dO * O) [BQ].

    The row maximum and log-normaliser are kept apart: their sum loses the normaliser to rounding in
    a fully masked row (logits near -1e9). Rows past LQ get a +inf maximum, hence zero probability.
    """
    offsets = _lead_offset(stats_st, z1, z2, z3) + offs_q * stats_st[3]
    row_max = tl.load(stats_ptr + offsets, mask=offs_q < LQ, other=float("inf"))
    log_norm = tl.load(stats_ptr + offsets + stats_st[4], mask=offs_q < LQ, other=0.0)
    delta = tl.load(d_ptr + _lead_offset(d_st, z1, z2, z3) + offs_q * d_st[3], mask=offs_q < LQ, other=0.0)
    return tl.exp((s - row_max[:, None]) - log_norm[:, None]), delta


@triton.jit
def _bwd_pre_kernel(do_ptr, op_ptr, g_ptr, dop_ptr, dg_ptr, d_ptr, do_st, op_st, g_st, dop_st, dg_st, d_st,
                    Z2, Z3, LQ, CV, HAS_GATE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_CV: tl.constexpr):
    """Through the gate: dO_pre = dO * sigmoid(g), d gate, and delta = rowsum(dO_pre * O_pre)."""
    z1, z2, z3, qb = _split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LQ, BLOCK_Q))
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_cv = tl.arange(0, BLOCK_CV)
    valid = (offs_q < LQ)[:, None] & (offs_cv < CV)[None, :]
    do = _tile(do_ptr, do_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32)
    o = _tile(op_ptr, op_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32)
    if HAS_GATE:
        sig = tl.sigmoid(_tile(g_ptr, g_st, z1, z2, z3, offs_q, offs_cv, valid).to(tl.float32))
        _store_tile(dg_ptr, dg_st, z1, z2, z3, offs_q, offs_cv, do * o * sig * (1.0 - sig), valid)
        do = do * sig
        _store_tile(dop_ptr, dop_st, z1, z2, z3, offs_q, offs_cv, do, valid)
    tl.store(d_ptr + _lead_offset(d_st, z1, z2, z3) + offs_q * d_st[3], tl.sum(do * o, 1), mask=offs_q < LQ)


@triton.jit
def _bwd_kv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, d_ptr, dk_ptr, dv_ptr,
                   q_st, k_st, v_st, do_st, stats_st, d_st, dk_st, dv_st,
                   m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                   Z2, Z3, LQ, LK, C, CV, scale,
                   NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                   BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr,
                   PRECISION: tl.constexpr):
    z1, z2, z3, kb = _split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LK, BLOCK_K))
    offs_k = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    k_valid = offs_k < LK
    c_valid = offs_c < C
    cv_valid = offs_cv < CV
    k = _tile(k_ptr, k_st, z1, z2, z3, offs_k, offs_c, k_valid[:, None] & c_valid[None, :])
    v = _tile(v_ptr, v_st, z1, z2, z3, offs_k, offs_cv, k_valid[:, None] & cv_valid[None, :])
    k_t = tl.trans(k)
    dk = tl.zeros([BLOCK_K, BLOCK_C], tl.float32)
    dv = tl.zeros([BLOCK_K, BLOCK_CV], tl.float32)
    for start in range(0, LQ, BLOCK_Q):
        offs_q = start + tl.arange(0, BLOCK_Q)
        q_valid = offs_q < LQ
        q = _tile(q_ptr, q_st, z1, z2, z3, offs_q, offs_c, q_valid[:, None] & c_valid[None, :])
        do = _tile(do_ptr, do_st, z1, z2, z3, offs_q, offs_cv, q_valid[:, None] & cv_valid[None, :])
        s = _logits(q, k_t, z1, z2, z3, offs_q, offs_k, LQ, LK, scale, m_ptr, m_st, b0_ptr, b0_st,
                    b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, PRECISION)
        p, delta = _probabilities(s, stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    dk *= scale
    _store_tile(dk_ptr, dk_st, z1, z2, z3, offs_k, offs_c, dk, k_valid[:, None] & c_valid[None, :])
    _store_tile(dv_ptr, dv_st, z1, z2, z3, offs_k, offs_cv, dv, k_valid[:, None] & cv_valid[None, :])


@triton.jit
def _bwd_q_kernel(q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, d_ptr, dq_ptr,
                  q_st, k_st, v_st, do_st, stats_st, d_st, dq_st,
                  m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                  Z2, Z3, LQ, LK, C, CV, scale,
                  NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                  BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr,
                  PRECISION: tl.constexpr):
    z1, z2, z3, qb = _split_pid(tl.program_id(0), Z2, Z3, tl.cdiv(LQ, BLOCK_Q))
    offs_q = qb * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    q_valid = offs_q < LQ
    c_valid = offs_c < C
    cv_valid = offs_cv < CV
    q = _tile(q_ptr, q_st, z1, z2, z3, offs_q, offs_c, q_valid[:, None] & c_valid[None, :])
    do = _tile(do_ptr, do_st, z1, z2, z3, offs_q, offs_cv, q_valid[:, None] & cv_valid[None, :])
    dq = tl.zeros([BLOCK_Q, BLOCK_C], tl.float32)
    for start in range(0, LK, BLOCK_K):
        offs_k = start + tl.arange(0, BLOCK_K)
        k_valid = offs_k < LK
        k = _tile(k_ptr, k_st, z1, z2, z3, offs_k, offs_c, k_valid[:, None] & c_valid[None, :])
        v = _tile(v_ptr, v_st, z1, z2, z3, offs_k, offs_cv, k_valid[:, None] & cv_valid[None, :])
        s = _logits(q, tl.trans(k), z1, z2, z3, offs_q, offs_k, LQ, LK, scale, m_ptr, m_st, b0_ptr, b0_st,
                    b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, PRECISION)
        p, delta = _probabilities(s, stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq *= scale
    _store_tile(dq_ptr, dq_st, z1, z2, z3, offs_q, offs_c, dq, q_valid[:, None] & c_valid[None, :])


@triton.jit
def _bwd_bias_kernel(q_ptr, k_ptr, v_ptr, do_ptr, stats_ptr, d_ptr, db_ptr,
                     q_st, k_st, v_st, do_st, stats_st, d_st, db_st,
                     m_ptr, m_st, b0_ptr, b0_st, b1_ptr, b1_st, b2_ptr, b2_st,
                     O2, O3, R1, R2, R3, LQ, LK, C, CV, scale,
                     NUM_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, MASK_PER_KEY: tl.constexpr,
                     BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_CV: tl.constexpr,
                     PRECISION: tl.constexpr):
    """d logits of one bias, summed over the leading dimensions it broadcasts over (sizes R1..R3)."""
    n_k = tl.cdiv(LK, BLOCK_K)
    o1, o2, o3, tile = _split_pid(tl.program_id(0), O2, O3, tl.cdiv(LQ, BLOCK_Q) * n_k)
    offs_q = (tile // n_k) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_k = (tile % n_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_c = tl.arange(0, BLOCK_C)
    offs_cv = tl.arange(0, BLOCK_CV)
    q_valid = offs_q < LQ
    k_valid = offs_k < LK
    c_valid = offs_c < C
    cv_valid = offs_cv < CV
    acc = tl.zeros([BLOCK_Q, BLOCK_K], tl.float32)
    for r in range(0, R1 * R2 * R3):
        z1 = o1 + r // (R2 * R3)
        z2 = o2 + (r // R3) % R2
        z3 = o3 + r % R3
        q = _tile(q_ptr, q_st, z1, z2, z3, offs_q, offs_c, q_valid[:, None] & c_valid[None, :])
        do = _tile(do_ptr, do_st, z1, z2, z3, offs_q, offs_cv, q_valid[:, None] & cv_valid[None, :])
        k_t = _tile(k_ptr, (k_st[0], k_st[1], k_st[2], k_st[4], k_st[3]), z1, z2, z3, offs_c, offs_k,
                    c_valid[:, None] & k_valid[None, :])
        v_t = _tile(v_ptr, (v_st[0], v_st[1], v_st[2], v_st[4], v_st[3]), z1, z2, z3, offs_cv, offs_k,
                    cv_valid[:, None] & k_valid[None, :])
        s = _logits(q, k_t, z1, z2, z3, offs_q, offs_k, LQ, LK, scale, m_ptr, m_st, b0_ptr, b0_st,
                    b1_ptr, b1_st, b2_ptr, b2_st, NUM_BIAS, HAS_MASK, MASK_PER_KEY, PRECISION)
        p, delta = _probabilities(s, stats_ptr, stats_st, d_ptr, d_st, z1, z2, z3, offs_q, LQ)
        dp = tl.dot(do, v_t, input_precision=PRECISION)
        acc += p * (dp - delta[:, None])
    _store_tile(db_ptr, db_st, o1, o2, o3, offs_q, offs_k, acc, q_valid[:, None] & k_valid[None, :])


# GPU tiles per kernel: (BLOCK_Q, BLOCK_K, num_warps, num_stages), for 16-bit operands; float32 operands
# (exact "ieee" dots) take FP32_TILES.
GPU_TILES = {"fwd": (64, 64, 4, 2), "kv": (64, 128, 4, 2), "q": (64, 32, 4, 2), "bias": (64, 64, 4, 2)}
FP32_TILES = (32, 32, 4, 2)


def _blocks(q: torch.Tensor, c: int, cv: int, kernel: str) -> dict:
    """Launch settings of one kernel; small tiles under the interpreter, where they only cost time."""
    block_c = max(16, triton.next_power_of_2(c))
    block_cv = max(16, triton.next_power_of_2(cv))
    precision = "ieee" if q.dtype == torch.float32 else None
    cfg = dict(BLOCK_C=block_c, BLOCK_CV=block_cv, PRECISION=precision)
    if not q.is_cuda:
        return dict(cfg, BLOCK_Q=16, BLOCK_K=16)
    block_q, block_k, warps, stages = FP32_TILES if q.dtype == torch.float32 else GPU_TILES[kernel]
    return dict(cfg, BLOCK_Q=block_q, BLOCK_K=block_k, num_warps=warps, num_stages=stages)


class _Operands:
    """Attention operands viewed over canonical leading dimensions, with the extra-argument packing."""

    def __init__(self, q, k, v, biases, mask, gate):
        if len(biases) > MAX_BIASES:
            raise ValueError(f"at most {MAX_BIASES} biases; sum the others first")
        qk = (q.shape[-2], k.shape[-2])
        biases = [b.expand(*b.shape[:-2], *qk) for b in biases]
        mask = mask.expand(*mask.shape[:-2], *qk) if mask is not None else None
        tensors = [q, k, v, *biases] + [t for t in (mask, gate) if t is not None]
        self.lead = torch.broadcast_shapes(*(t.shape[:-2] for t in tensors))
        self.canon = canonical_views([(t, 2) for t in tensors], self.lead)
        views = list(self.canon.views)
        self.q, self.k, self.v = views[:3]
        self.biases = views[3:3 + len(biases)]
        rest = views[3 + len(biases):]
        self.mask = rest.pop(0).view(torch.uint8) if mask is not None else None
        self.gate = rest.pop(0) if gate is not None else None
        self.LQ, self.C = q.shape[-2], q.shape[-1]
        self.LK, self.CV = k.shape[-2], v.shape[-1]

    def logit_args(self) -> list:
        """Mask and bias pointers with their strides, in the kernels' argument order."""
        args = [self.mask if self.mask is not None else self.q,
                self.mask.stride() if self.mask is not None else _NO_STRIDES]
        for i in range(MAX_BIASES):
            bias = self.biases[i] if i < len(self.biases) else None
            args += [bias if bias is not None else self.q, bias.stride() if bias is not None else _NO_STRIDES]
        return args

    def flags(self) -> dict:
        mask_per_key = self.mask is not None and self.mask.stride(3) == 0
        return dict(NUM_BIAS=len(self.biases), HAS_MASK=self.mask is not None, MASK_PER_KEY=mask_per_key)


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Sequence[torch.Tensor],
                      mask: torch.Tensor | None, gate: torch.Tensor | None, save_aux: bool) -> tuple:
    """Fused attention forward.

    Parameters
    ----------
    q, k, v, biases, mask, gate
        As :func:`fastfold.kernels.attention.attention_torch` (at most ``MAX_BIASES`` biases).
    save_aux : bool
        Also return what the backward pass needs.

    Returns
    -------
    tuple of torch.Tensor
        ``out`` [*, H, Q, c_v] in v's dtype; when ``save_aux``, the ungated output (same shape and dtype)
        and the row statistics ``[*, H, Q, 2]`` (float32 maximum logit and log of the softmax
        normaliser), else two empty tensors.
    """
    ops = _Operands(q, k, v, biases, mask, gate)
    lead3 = ops.canon.lead
    out = torch.empty(*lead3, ops.LQ, ops.CV, device=q.device, dtype=v.dtype)
    o_pre = torch.empty_like(out) if save_aux else q.new_empty(0)
    stats = q.new_empty(*lead3, ops.LQ, 2, dtype=torch.float32) if save_aux else q.new_empty(0)
    cfg = _blocks(q, ops.C, ops.CV, "fwd")
    gate_c = ops.gate if ops.gate is not None else ops.q
    grid = (lead3[0] * lead3[1] * lead3[2] * triton.cdiv(ops.LQ, cfg["BLOCK_Q"]),)
    _fwd_kernel[grid](
        ops.q, ops.k, ops.v, gate_c, out, o_pre if save_aux else out, stats if save_aux else out,
        ops.q.stride(), ops.k.stride(), ops.v.stride(),
        gate_c.stride() if ops.gate is not None else _NO_STRIDES, out.stride(),
        o_pre.stride() if save_aux else _NO_STRIDES,
        stats.stride() if save_aux else _NO_STRIDES, *ops.logit_args(),
        lead3[1], lead3[2], ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5,
        HAS_GATE=ops.gate is not None, SAVE_AUX=save_aux, **ops.flags(), **cfg)
    if save_aux:
        o_pre, stats = o_pre.view(*ops.lead, ops.LQ, ops.CV), stats.view(*ops.lead, ops.LQ, 2)
    return out.view(*ops.lead, ops.LQ, ops.CV), o_pre, stats


def _grad_buffer(operand: torch.Tensor, shape: tuple, operand_full_shape: tuple) -> torch.Tensor:
    """Gradient buffer over canonical ``shape``: the operand's dtype when it is written once per
    element, float32 when it is summed afterwards (operand broadcast beyond its own leading shape)."""
    exact = tuple(operand.shape) == tuple(operand_full_shape)
    return operand.new_empty(shape, dtype=operand.dtype if exact else torch.float32)


def _grad_to(grad: torch.Tensor, like: torch.Tensor, own_lead: tuple) -> torch.Tensor:
    """A gradient over the operand's own canonical shape -> the operand's shape and dtype."""
    inner = grad.shape[-2:]
    return grad.reshape(*own_lead, *inner).sum_to_size(like.shape).to(like.dtype)


def attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       biases: Sequence[torch.Tensor], mask: torch.Tensor | None,
                       gate: torch.Tensor | None, o_pre: torch.Tensor, stats: torch.Tensor) -> tuple:
    """Gradients of the fused attention.

    Parameters
    ----------
    grad_out : torch.Tensor
        ``[*, H, Q, c_v]``, the gradient of the output.
    q, k, v, biases, mask, gate
        The forward's operands.
    o_pre, stats : torch.Tensor
        The forward's ungated output and row statistics (``save_aux=True``).

    Returns
    -------
    tuple
        ``(dq, dk, dv, [d bias for each bias], dgate or None)``, each in its operand's shape and dtype.
    """
    ops = _Operands(q, k, v, biases, mask, gate)
    lead3 = ops.canon.lead
    dout = grad_out.reshape(*lead3, ops.LQ, ops.CV)
    o_pre = o_pre.reshape(*lead3, ops.LQ, ops.CV)
    stats = stats.reshape(*lead3, ops.LQ, 2)
    full = ops.lead
    cfg = _blocks(q, ops.C, ops.CV, "q")
    n_lead = lead3[0] * lead3[1] * lead3[2]
    delta = q.new_empty(*lead3, ops.LQ, dtype=torch.float32)
    d_st = delta.stride() + (0,)
    has_gate = ops.gate is not None
    do_pre = torch.empty_like(dout, dtype=q.dtype) if has_gate else dout
    dgate = _grad_buffer(gate, dout.shape, (*full, ops.LQ, ops.CV)) if has_gate else None
    _bwd_pre_kernel[(n_lead * triton.cdiv(ops.LQ, cfg["BLOCK_Q"]),)](
        dout, o_pre, ops.gate if has_gate else dout, do_pre, dgate if has_gate else dout, delta,
        dout.stride(), o_pre.stride(), ops.gate.stride() if has_gate else _NO_STRIDES, do_pre.stride(),
        dgate.stride() if has_gate else _NO_STRIDES, d_st, lead3[1], lead3[2], ops.LQ, ops.CV,
        HAS_GATE=has_gate, BLOCK_Q=cfg["BLOCK_Q"], BLOCK_CV=cfg["BLOCK_CV"])
    cfg_kv = _blocks(q, ops.C, ops.CV, "kv")
    common = (*ops.logit_args(),)
    dk = _grad_buffer(k, (*lead3, ops.LK, ops.C), (*full, ops.LK, ops.C))
    dv = _grad_buffer(v, (*lead3, ops.LK, ops.CV), (*full, ops.LK, ops.CV))
    _bwd_kv_kernel[(n_lead * triton.cdiv(ops.LK, cfg_kv["BLOCK_K"]),)](
        ops.q, ops.k, ops.v, do_pre, stats, delta, dk, dv,
        ops.q.stride(), ops.k.stride(), ops.v.stride(), do_pre.stride(), stats.stride(), d_st,
        dk.stride(), dv.stride(), *common, lead3[1], lead3[2], ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5,
        **ops.flags(), **cfg_kv)
    dq = _grad_buffer(q, (*lead3, ops.LQ, ops.C), (*full, ops.LQ, ops.C))
    _bwd_q_kernel[(n_lead * triton.cdiv(ops.LQ, cfg["BLOCK_Q"]),)](
        ops.q, ops.k, ops.v, do_pre, stats, delta, dq,
        ops.q.stride(), ops.k.stride(), ops.v.stride(), do_pre.stride(), stats.stride(), d_st, dq.stride(),
        *common, lead3[1], lead3[2], ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5, **ops.flags(), **cfg)
    dbiases = []
    cfg_b = _blocks(q, ops.C, ops.CV, "bias")
    for i, bias in enumerate(biases):
        own = ops.canon.own_shape(3 + i)
        reps = [z // o for z, o in zip(lead3, own, strict=False)]
        own_lead = ops.canon.own_lead[3 + i]
        db = _grad_buffer(bias, (*own, ops.LQ, ops.LK), (*own_lead, ops.LQ, ops.LK))
        n_tiles = triton.cdiv(ops.LQ, cfg_b["BLOCK_Q"]) * triton.cdiv(ops.LK, cfg_b["BLOCK_K"])
        _bwd_bias_kernel[(own[0] * own[1] * own[2] * n_tiles,)](
            ops.q, ops.k, ops.v, do_pre, stats, delta, db,
            ops.q.stride(), ops.k.stride(), ops.v.stride(), do_pre.stride(), stats.stride(), d_st,
            db.stride(), *common, own[1], own[2], *reps, ops.LQ, ops.LK, ops.C, ops.CV, ops.C ** -0.5,
            **ops.flags(), **cfg_b)
        dbiases.append(_grad_to(db, bias, own_lead))
    grads = [_grad_to(g, t, full) for g, t in ((dq, q), (dk, k), (dv, v))]
    dgate = _grad_to(dgate, gate, full) if gate is not None else None
    return (*grads, dbiases, dgate)
