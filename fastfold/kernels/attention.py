"""Multi-head attention with additive biases, a key mask and a sigmoid gate (PyTorch twin).

One kernel serves every attention of the Evoformer family: MSA row attention with pair bias
(Algorithm 7), MSA column attention (Algorithm 8), global column attention (Algorithm 19),
triangle attention (Algorithms 13, 14) and template pointwise attention (Algorithm 17).
"""

from collections.abc import Sequence

import torch

from fastfold.kernels.softmax import biased_softmax_torch


def attention_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: Sequence[torch.Tensor] = (),
                    mask: torch.Tensor | None = None, gate: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(c) + mask bias + sum(biases)) v``, times ``sigmoid(gate)``.

    As AlphaFold, the queries are scaled by ``c ** -0.5`` before the dot product (``c`` = q's last
    dimension, the per-head key size) and masked keys get a ``-1e9`` logit offset; the softmax runs
    in float32 and the result comes back in ``v``'s dtype.

    Parameters
    ----------
    q : torch.Tensor
        ``[*, H, Q, c]``, unscaled.
    k : torch.Tensor
        ``[*, H, K, c]`` (any dimension of size one broadcasts, e.g. keys shared by all heads).
    v : torch.Tensor
        ``[*, H, K, c_v]`` (broadcasts like ``k``).
    biases : sequence of torch.Tensor
        Each broadcastable to ``[*, H, Q, K]``.
    mask : torch.Tensor, optional
        Boolean, broadcastable to ``[*, H, Q, K]``; False excludes that key. A row with every key
        excluded gives a finite result.
    gate : torch.Tensor, optional
        ``[*, H, Q, c_v]`` gate logits: the output is multiplied by ``sigmoid(gate)``.

    Returns
    -------
    torch.Tensor
        ``[*, H, Q, c_v]``.
    """
    q = q * q.shape[-1] ** -0.5
    logits = q @ k.transpose(-1, -2)  # [*, H, Q, K]
    weights = biased_softmax_torch(logits, biases, mask).to(v.dtype)
    out = weights @ v  # [*, H, Q, c_v]
    if gate is not None:
        out = out * torch.sigmoid(gate)
    return out
