"""Softmax with an additive bias and a key mask (PyTorch twin of the fused kernel)."""

from collections.abc import Sequence

import torch

# Logit offset of a masked key, as AlphaFold's ``1e9 * (mask - 1)``: large enough that a masked key
# gets exactly zero weight whenever its row has one unmasked key, finite so that a fully masked row
# still gives a finite (near uniform) distribution instead of NaN.
MASKED_LOGIT_OFFSET = 1e9


def mask_to_bias(mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask (True = keep) -> float32 additive bias: 0 where kept, -1e9 where masked."""
    return (mask.to(torch.float32) - 1.0) * MASKED_LOGIT_OFFSET


def biased_softmax_torch(logits: torch.Tensor, biases: Sequence[torch.Tensor] = (),
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension of ``logits + mask bias + sum(biases)``, computed in float32.

    The mask bias is added first and the biases in list order, as AlphaFold adds them, so a row
    with at least one kept key gives AlphaFold's numbers exactly.

    Parameters
    ----------
    logits : torch.Tensor
        ``[*, K]``.
    biases : sequence of torch.Tensor
        Each broadcastable to ``[*, K]``.
    mask : torch.Tensor, optional
        Boolean, broadcastable to ``[*, K]``; False excludes that key.

    Returns
    -------
    torch.Tensor
        ``[*, K]`` in float32.
    """
    logits = logits.float()
    if mask is not None:
        logits = logits + mask_to_bias(mask)
    for bias in biases:
        logits = logits + bias.float()
    return torch.softmax(logits, dim=-1)


def softmax_torch(x: torch.Tensor, bias: torch.Tensor | None = None,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(x + mask bias + bias)`` over the last dimension, in float32, returned in ``x``'s dtype.

    x [*, K]; bias broadcastable to [*, K]; mask boolean broadcastable to [*, K] (False = excluded)
    -> [*, K].
    """
    biases = () if bias is None else (bias,)
    return biased_softmax_torch(x, biases, mask).to(x.dtype)
