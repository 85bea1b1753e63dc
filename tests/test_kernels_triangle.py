"""The triangle multiplicative update's PyTorch twin computes exactly what the model's module computes."""

import pytest
import torch

from fastfold.kernels import TriangleMultiplicationWeights
from fastfold.kernels.triangle_multiplication import triangle_multiplication_torch
from fastfold.model.evoformer import TriangleMultiplication

EQUATIONS = {True: "ikc,jkc->ijc", False: "kjc,kic->ijc"}


class _Config(dict):
    """The few config fields the module reads, with attribute access."""

    __getattr__ = dict.__getitem__


def module_weights(module: TriangleMultiplication) -> TriangleMultiplicationWeights:
    """The module's parameters in the kernel's order."""
    linears = [module.left_projection, module.right_projection, module.left_gate, module.right_gate]
    return TriangleMultiplicationWeights(
        module.layer_norm_input.scale, module.layer_norm_input.offset,
        *(t for linear in linears for t in (linear.weights, linear.bias)),
        module.center_layer_norm.scale, module.center_layer_norm.offset,
        module.output_projection.weights, module.output_projection.bias,
        module.gating_linear.weights, module.gating_linear.bias)


@pytest.mark.parametrize("outgoing", [True, False])
def test_twin_is_the_module(outgoing, monkeypatch):
    monkeypatch.setenv("FASTFOLD_KERNEL", "torch")
    torch.manual_seed(0)
    config = _Config(equation=EQUATIONS[outgoing], num_intermediate_channel=8)
    module = TriangleMultiplication(config, _Config(zero_init=False), 12)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pair = torch.randn(2, 13, 13, 12)
    mask = torch.rand(2, 13, 13) > 0.2
    want = module(pair, mask)
    got = triangle_multiplication_torch(pair, mask, module_weights(module), outgoing)
    assert torch.equal(got, want)
