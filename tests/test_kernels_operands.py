"""Parameters converted once for 16-bit inference (fastfold.kernels.operands.converted)."""

import pickle

import torch
from torch import nn

from fastfold.kernels import converted


def test_kept_while_unchanged():
    weight = nn.Parameter(torch.randn(6, 5))
    with torch.no_grad():
        first = converted(weight, torch.bfloat16)
        assert first.dtype == torch.bfloat16
        torch.testing.assert_close(first, weight.to(torch.bfloat16), rtol=0, atol=0)
        assert converted(weight, torch.bfloat16) is first
        # views are keyed by their shape and strides; the transposed layout is its own copy
        flat = converted(weight.flatten(), torch.bfloat16)
        assert flat is not first and converted(weight.flatten(), torch.bfloat16) is flat
        torch.testing.assert_close(flat, weight.flatten().to(torch.bfloat16), rtol=0, atol=0)
        transposed = converted(weight, torch.bfloat16, transposed=True)
        assert transposed.shape == (5, 6) and transposed.is_contiguous()
        torch.testing.assert_close(transposed, weight.t().to(torch.bfloat16), rtol=0, atol=0)
        # the same dtype without a layout change is the parameter itself; a permuted view is kept contiguous
        assert converted(weight, torch.float32) is weight
        permuted = converted(weight.t(), torch.float32)
        assert permuted.is_contiguous() and converted(weight.t(), torch.float32) is permuted
        torch.testing.assert_close(permuted, weight.t(), rtol=0, atol=0)


def test_reconverted_after_in_place_update_or_new_storage():
    weight = nn.Parameter(torch.randn(6, 5))
    with torch.no_grad():
        before = converted(weight, torch.float16)
        weight.mul_(2)  # an optimiser step or load_state_dict: the version changes
        after = converted(weight, torch.float16)
        torch.testing.assert_close(after, weight.to(torch.float16), rtol=0, atol=0)
        assert not torch.equal(after, before)
        weight.data = torch.randn(6, 5)  # moving the module: a new storage
        torch.testing.assert_close(converted(weight, torch.float16), weight.to(torch.float16), rtol=0, atol=0)
    # what is kept stays beside the parameter: a module that used it still pickles
    module = nn.Linear(5, 6)
    with torch.no_grad():
        converted(module.weight, torch.bfloat16)
    torch.testing.assert_close(pickle.loads(pickle.dumps(module)).weight, module.weight)


def test_converted_afresh_with_autograd_and_for_other_tensors():
    weight = nn.Parameter(torch.randn(4, 3))
    x = torch.randn(2, 4, dtype=torch.bfloat16)
    out = x @ converted(weight, torch.bfloat16)
    out.float().sum().backward()
    torch.testing.assert_close(weight.grad, x.float().sum(0)[:, None].expand(4, 3), rtol=1e-2, atol=1e-2)
    activation = torch.randn(4, 3)
    with torch.no_grad():
        assert converted(activation, torch.bfloat16) is not converted(activation, torch.bfloat16)
        assert converted(weight, torch.bfloat16) is converted(weight, torch.bfloat16)
    assert converted(weight, torch.bfloat16).requires_grad  # with autograd: a fresh, differentiable copy
