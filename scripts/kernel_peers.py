"""The implementations that ``scripts/benchmark_kernels.py`` times, each on its own copy of a case's inputs.

Every entry is a *prepare* function: given a case's inputs in FastFold's layout, it returns a
:class:`Prepared` holding the implementation's own inputs in its native layout (converted once, outside
the timed region), the call to time, and maps of its output and gradients back to FastFold's layout for
the check against the PyTorch twin. A prepare raises :class:`Unsupported` for a case the implementation
cannot run, and :class:`Unavailable` when it cannot run at all (not installed, its op failed to build).
The external peers are imported only here, lazily (trifast's import fails without a GPU).

Attention inputs (FastFold's layout): ``q, k, v, gate`` ``[1, rows, H, N, c]`` bf16, ``bias`` the pair
bias ``[1, 1, H, N, N]`` bf16 (None in MSA column attention), ``mask`` ``[1, rows, 1, 1, N]`` bool
(True = key kept). The result is ``softmax(q k^T / sqrt(c) + mask offset + bias) v * sigmoid(gate)``;
no peer has the gate, so each applies ``* sigmoid(gate)`` outside, in PyTorch, on a gate in its own
layout:

- ``ds4sci``: DeepSpeed's ``DS4Sci_EvoformerAttention(Q, K, V, [mask_bias, pair_bias])``: layout
  ``[B, N_rows, L, H, c]``, biases ``[B, N_rows, 1, 1, L]`` and ``[B, 1, H, L, L]`` in q's dtype
  (the mask as ``-1e9`` offsets), fp16/bf16 only, scale ``c^-0.5`` inside, queries = keys = L > 16,
  ``c <= 64`` for its backward (``kMax``).
- ``cueq``: ``cuequivariance_torch.triangle_attention(q, k, v, bias, mask)``: FastFold's layout
  ``[B, N_rows, H, Q, c]``, bias ``[B, 1, H, Q, K]`` (read as float32 by its Hopper kernel, so given in
  float32), bool mask ``[B, N_rows, 1, 1, K]``; bf16 kernels need ``c % 8 == 0``, ``c <= 128``; it runs
  a PyTorch fallback when ``Q <= 100`` (``<= 200`` for ``c < 32``).
- ``trifast``: ``trifast.triangle_attention(q, k, v, b, mask)``: layout ``[B, H, N, N, c]`` (heads before
  rows, rows = keys = N: triangle attention only), bias ``[B, H, N, N]``, bool mask ``[B, N, N]`` with
  True = masked out; its Triton tiles need ``c >= 16``.

Triangle multiplicative update (outgoing, Algorithm 11), inputs: the bf16 pair ``[N, N, C_z]``, the
pair mask ``[N, N]`` and FastFold's float32 weights. ``cueq_trimul`` is
``cuequivariance_torch.triangle_multiplicative_update``: the same maths (input LayerNorm; gated, masked
``a``/``b`` edges; ``x_ij = sum_k a_ik b_jk``; output LayerNorm, projection and the gate from the
normalised input), with ``[out, in]`` weights packed as ``p_in``/``g_in`` ``[2c, C_z]`` (rows ``[a; b]``),
``p_out`` ``[C_z, c]`` and ``g_out`` ``[C_z, C_z]``, run under bf16 autocast with float32 parameters.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

import torch

from fastfold.kernels.softmax import mask_to_bias
from fastfold.kernels.triangle_multiplication import triangle_product


class Unsupported(Exception):
    """This implementation cannot run this case (the message says why)."""


class Unavailable(Exception):
    """This implementation cannot run at all here (not installed, or its op did not build)."""


class Prepared(NamedTuple):
    """One implementation on its own inputs.

    ``call()`` runs it (the timed part); ``leaves`` are what forward+backward differentiates;
    ``output_as_ours`` maps its output to FastFold's layout; ``grads_as_ours`` maps the gradients of
    ``leaves`` to those of the reference's leaves, in the reference's order.
    """

    call: Callable[[], torch.Tensor]
    leaves: tuple[torch.Tensor, ...]
    output_as_ours: Callable[[torch.Tensor], torch.Tensor]
    grads_as_ours: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]


def _leaf(t: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of ``t`` that is a leaf requiring gradients."""
    return t.detach().contiguous().requires_grad_()


def _same(t):
    return t


def _import(module: str):
    """Import a peer's module; not installed (or broken) -> :class:`Unavailable`."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as error:
        raise Unavailable("not installed") from error


def same_layout(fn):
    """Prepare for an implementation with FastFold's signature ``fn(q, k, v, biases, mask, gate)``."""
    def prepare(q, k, v, bias, mask, gate):
        biases = [] if bias is None else [bias]
        return Prepared(lambda: fn(q, k, v, biases, mask, gate), (q, k, v, *biases, gate), _same, tuple)
    return prepare


_ds_op_loaded = False


def ds4sci(q, k, v, bias, mask, gate):
    global _ds_op_loaded
    c, n = q.shape[-1], q.shape[-2]
    if c > 64:
        raise Unsupported(f"head dim {c} > 64 unsupported")
    if n <= 16:
        raise Unsupported("sequence length must be > 16")
    evo = _import("deepspeed.ops.deepspeed4science")
    if not _ds_op_loaded:  # JIT build (or wait for install_peers.sh's background one), outside the timing
        start = time.time()
        try:
            _import("deepspeed.ops.op_builder").EvoformerAttnBuilder().load()
        except Exception as error:  # the benchmark then leaves this peer out of every case
            raise Unavailable("op build failed") from error
        print(f"  ds4sci: op loaded after {time.time() - start:.0f} s", flush=True)
        _ds_op_loaded = True
    qd, kd, vd, gd = (_leaf(t.transpose(-2, -3)) for t in (q, k, v, gate))  # [1, rows, N, H, c]
    mask_bias = mask_to_bias(mask).to(q.dtype)  # [1, rows, 1, 1, N]
    pair = [] if bias is None else [bias]

    def call():
        return evo.DS4Sci_EvoformerAttention(qd, kd, vd, [mask_bias, *pair]) * torch.sigmoid(gd)

    def back(t):
        return t.transpose(-2, -3)

    return Prepared(call, (qd, kd, vd, *pair, gd), back,
                    lambda g: (back(g[0]), back(g[1]), back(g[2]), *g[3:-1], back(g[-1])))


def cueq_attention(q, k, v, bias, mask, gate):
    c = q.shape[-1]
    if bias is None:
        raise Unsupported("needs a pair bias")
    if c % 8 or c > 128:
        raise Unsupported(f"head dim {c} unsupported (bf16: multiple of 8, <= 128)")
    _import("cuequivariance_ops_torch")  # the real import error, which cuequivariance_torch would hide
    cuet = _import("cuequivariance_torch")
    bias32 = _leaf(bias.float())

    def call():
        return cuet.triangle_attention(q, k, v, bias32, mask) * torch.sigmoid(gate)

    return Prepared(call, (q, k, v, bias32, gate), _same, tuple)


def trifast(q, k, v, bias, mask, gate):
    rows, n, c = q.shape[1], q.shape[-2], q.shape[-1]
    if rows != n:
        raise Unsupported("triangle only (rows must equal N)")
    if bias is None:
        raise Unsupported("needs a pair bias")
    if c < 16:
        raise Unsupported(f"head dim {c} < 16 unsupported")
    tf = _import("trifast")
    qt, kt, vt, gt = (_leaf(t.transpose(1, 2)) for t in (q, k, v, gate))  # [1, H, rows, N, c]
    bt = _leaf(bias[:, 0])  # [1, H, N, N]
    masked_out = (~mask[:, :, 0, 0, :]).contiguous()  # [1, rows, N]

    def call():
        return tf.triangle_attention(qt, kt, vt, bt, masked_out) * torch.sigmoid(gt)

    def back(t):
        return t.transpose(1, 2)

    return Prepared(call, (qt, kt, vt, bt, gt), back,
                    lambda g: (back(g[0]), back(g[1]), back(g[2]), g[3][:, None], back(g[4])))


# --- triangle multiplicative update ---------------------------------------------------------------------


def triangle_stages(projections, output):
    """Prepare for FastFold's three stages (outgoing edges); reference leaves ``(pair, *w_in, *w_out)``."""
    def prepare(pair, mask, weights_in, weights_out):
        def call():
            left, right, gate = projections(pair, mask, weights_in)
            return output(triangle_product(left, right, True), gate, weights_out)
        return Prepared(call, (pair, *weights_in, *weights_out), _same, tuple)
    return prepare


def cueq_trimul(pair, mask, weights_in, weights_out):
    wi, wo = weights_in, weights_out
    c = wi.left_w.shape[1]
    if c % 32:
        raise Unsupported(f"hidden dim {c} not a multiple of 32")
    ops = _import("cuequivariance_ops_torch")
    cuet = _import("cuequivariance_torch")
    packed = {  # [out, in] weights; rows [a; b] = [left; right]
        "norm_in_weight": wi.input_scale, "norm_in_bias": wi.input_offset,
        "p_in_weight": torch.cat([wi.left_w.T, wi.right_w.T]),
        "p_in_bias": torch.cat([wi.left_b, wi.right_b]),
        "g_in_weight": torch.cat([wi.left_gate_w.T, wi.right_gate_w.T]),
        "g_in_bias": torch.cat([wi.left_gate_b, wi.right_gate_b]),
        "norm_out_weight": wo.center_scale, "norm_out_bias": wo.center_offset,
        "p_out_weight": wo.output_w.T, "p_out_bias": wo.output_b,
        "g_out_weight": wi.gating_w.T, "g_out_bias": wi.gating_b}
    packed = {name: _leaf(t) for name, t in packed.items()}
    pair_mask = mask.to(pair.dtype)
    try:
        owner = ops.triangle_multiplicative_update_is_supported(pair, "outgoing", pair_mask, c_hidden=c)
        print(f"  cueq_trimul N={pair.shape[0]}: fused inference owner for this shape: {owner}", flush=True)
    except Exception:
        pass

    def call():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return cuet.triangle_multiplicative_update(pair, "outgoing", pair_mask, **packed)

    def grads_as_ours(g):
        (d_pair, d_norm_in_w, d_norm_in_b, d_p_in_w, d_p_in_b, d_g_in_w, d_g_in_b, d_norm_out_w, d_norm_out_b,
         d_p_out_w, d_p_out_b, d_g_out_w, d_g_out_b) = g
        d_in = (d_norm_in_w, d_norm_in_b, d_p_in_w[:c].T, d_p_in_b[:c], d_p_in_w[c:].T, d_p_in_b[c:],
                d_g_in_w[:c].T, d_g_in_b[:c], d_g_in_w[c:].T, d_g_in_b[c:], d_g_out_w.T, d_g_out_b)
        return (d_pair, *d_in, d_norm_out_w, d_norm_out_b, d_p_out_w.T, d_p_out_b)

    return Prepared(call, (pair, *packed.values()), _same, grads_as_ours)
