"""Triangle multiplicative update, Algorithms 11 (outgoing edges) and 12 (incoming edges): PyTorch twin.

Computes exactly what :class:`fastfold.model.evoformer.TriangleMultiplication` computes (DeepMind's
unfused variant), step by step in the input's dtype with the LayerNorms in float32.
"""

from typing import NamedTuple

import torch

from fastfold.kernels.layer_norm import layer_norm


class TriangleMultiplicationWeights(NamedTuple):
    """The module's parameters; projection weights are ``[in, out]`` as AlphaFold's ``Linear``.

    Shapes: ``input_scale, input_offset`` [C_z]; ``left_w, right_w, left_gate_w, right_gate_w``
    [C_z, c] with biases [c]; ``center_scale, center_offset`` [c]; ``output_w`` [c, C_z] and
    ``gating_w`` [C_z, C_z] with biases [C_z].
    """

    input_scale: torch.Tensor
    input_offset: torch.Tensor
    left_w: torch.Tensor
    left_b: torch.Tensor
    right_w: torch.Tensor
    right_b: torch.Tensor
    left_gate_w: torch.Tensor
    left_gate_b: torch.Tensor
    right_gate_w: torch.Tensor
    right_gate_b: torch.Tensor
    center_scale: torch.Tensor
    center_offset: torch.Tensor
    output_w: torch.Tensor
    output_b: torch.Tensor
    gating_w: torch.Tensor
    gating_b: torch.Tensor


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """As AlphaFold's ``Linear``: ``x @ weight + bias`` in x's dtype."""
    return x @ weight.to(x.dtype) + bias.to(x.dtype)


def triangle_multiplication_torch(pair: torch.Tensor, mask: torch.Tensor,
                                  weights: TriangleMultiplicationWeights, outgoing: bool) -> torch.Tensor:
    """Triangle multiplicative update of the pair representation (the update only, not the residual).

    Parameters
    ----------
    pair : torch.Tensor
        ``[*, N, N, C_z]``.
    mask : torch.Tensor
        ``[*, N, N]`` pair mask (boolean or float).
    weights : TriangleMultiplicationWeights
        The module's parameters.
    outgoing : bool
        True: edges ``ikc,jkc->ijc`` (Algorithm 11); False: ``kjc,kic->ijc`` (Algorithm 12).

    Returns
    -------
    torch.Tensor
        ``[*, N, N, C_z]`` in pair's dtype.
    """
    w = weights
    mask = mask.to(pair.dtype)[..., None]  # [*, N, N, 1]
    act = layer_norm(pair, w.input_scale, w.input_offset)  # Algorithm 11 line 1
    left = mask * _linear(act, w.left_w, w.left_b) * torch.sigmoid(_linear(act, w.left_gate_w, w.left_gate_b))
    right = mask * _linear(act, w.right_w, w.right_b) * torch.sigmoid(_linear(act, w.right_gate_w,
                                                                                w.right_gate_b))  # line 2
    equation = "...ikc,...jkc->...ijc" if outgoing else "...kjc,...kic->...ijc"
    combined = layer_norm(torch.einsum(equation, left, right), w.center_scale, w.center_offset)  # line 4
    return _linear(combined, w.output_w, w.output_b) * torch.sigmoid(_linear(act, w.gating_w, w.gating_b))
