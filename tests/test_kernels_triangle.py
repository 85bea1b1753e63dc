"""Triangle multiplicative update (Algorithms 11, 12): the fused stages against their PyTorch twins.

Under Triton's interpreter (a subprocess with ``TRITON_INTERPRET=1`` and ``FASTFOLD_KERNEL=triton``, as in
``test_kernels_interpret.py``), float32, batch 2, N 13, C_z 20, c 18 against 16-wide tiles (so that the
backward kernels' chunk loops over edge channels and gate columns run twice, the second chunk partial):
stage 1 (:func:`fastfold.kernels.triangle_projections`, with a mask with zeros broadcast over the batch)
and stage 3 (:func:`fastfold.kernels.triangle_output`), forward and every gradient (the pair's and all 12
weights'; the product's, the gate's and all 4 weights'), on square pairs and on DAP-like slices (13 x 7 and
7 x 13), with stage 3 reading a channel-major product (as stage 2 writes it) and a position-major one
(and, on the 7 x 13 slice, a channel-major one with ``N_i`` and ``N_j`` swapped in memory); then the whole
:class:`~fastfold.model.evoformer.TriangleMultiplication` module (outgoing and incoming) with the kernels
against the module with the twins, its output and the gradients of the pair and of every parameter;
``torch.library.opcheck`` of the four custom ops, forward and backward. In process: stage 2 against the
equations written as einsums, on non-square slices.
"""

import sys

import pytest
import torch
from test_kernels_interpret import _close, _leaf, _run_check

from fastfold import kernels
from fastfold.kernels.triangle_multiplication import (
    triangle_output_torch,
    triangle_projections_torch,
    with_addends,
)
from fastfold.model.evoformer import TriangleMultiplication

CZ, C = 20, 18
SLICES = {"square": (13, 13), "rows": (7, 13), "columns": (13, 7)}
LAYOUTS = ["channel_major", "channel_major_transposed", "position_major"]  # of stage 3's product
OUTPUT_CASES = [(s, layout) for s in range(len(SLICES)) for layout in (0, 2)] + [(1, 1)]  # (slice, layout)


class _Config(dict):
    """The few config fields the module reads, with attribute access."""

    __getattr__ = dict.__getitem__


def _compare_outputs(fn_kernel, fn_ref, inputs, names):
    """Every output, and the gradients of every input needing one for random output gradients."""
    got, want = fn_kernel(*inputs), fn_ref(*inputs)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _close(f"output {i}", g, w)
    grads = [torch.randn_like(w) for w in want]
    wrt = [t for t in inputs if t.requires_grad]
    for name, g, w in zip(names, torch.autograd.grad(got, wrt, grads), torch.autograd.grad(want, wrt, grads),
                          strict=True):
        _close(f"d{name}", g, w)


def check_projections(slice_index: int) -> None:
    """Stage 1 on a pair slice, with a mask broadcast over the batch: left, right, gate and 13 gradients."""
    ni, nj = list(SLICES.values())[slice_index]
    shapes = [(CZ,), (CZ,)] + [(CZ, C), (C,)] * 4 + [(CZ, CZ), (CZ,)]
    inputs = (_leaf(2, ni, nj, CZ), *(_leaf(*s) for s in shapes))
    mask = torch.rand(1, ni, nj) > 0.2
    mask[:, 1] = False  # a whole row masked, besides the random zeros
    left, _, _ = kernels.triangle_projections(inputs[0], mask, kernels.TriangleProjectionWeights(*inputs[1:]))
    assert left.movedim(-1, -3).is_contiguous(), "the kernel's edges are channel-major"

    def run(fn):
        return lambda pair, *w: fn(pair, mask, kernels.TriangleProjectionWeights(*w))

    _compare_outputs(run(kernels.triangle_projections), run(triangle_projections_torch), inputs,
                     ["pair", *kernels.TriangleProjectionWeights._fields])
    with torch.no_grad():  # each part alone (one launch computing only it) is the same as all at once
        weights = kernels.TriangleProjectionWeights(*inputs[1:])
        whole = kernels.triangle_projections(inputs[0], mask, weights)
        for parts in [("right",), ("left", "gate"), ("gate",)]:
            got = kernels.triangle_projection_parts(inputs[0], mask, weights, parts)
            for part, tensor in zip(parts, got, strict=True):
                assert torch.equal(tensor, whole[("left", "right", "gate").index(part)]), parts


def check_output(slice_index: int, layout: int) -> None:
    """Stage 3 on a product slice in one of ``LAYOUTS``: output and 6 gradients."""
    ni, nj = list(SLICES.values())[slice_index]
    if layout == 0:  # [*, c, N_i, N_j] memory, as stage 2 writes it
        product = torch.randn(2, C, ni, nj).movedim(-3, -1).requires_grad_()
    elif layout == 1:  # [*, c, N_j, N_i] memory: the kernel reads a copy
        product = torch.randn(2, C, nj, ni).transpose(-1, -2).movedim(-3, -1).requires_grad_()
    else:
        product = _leaf(2, ni, nj, C)
    shapes = [(C,), (C,), (C, CZ), (CZ,)]
    inputs = (product, _leaf(2, ni, nj, CZ), *(_leaf(*s) for s in shapes))

    def run(fn):
        return lambda p, g, *w: (fn(p, g, kernels.TriangleOutputWeights(*w)),)

    _compare_outputs(run(kernels.triangle_output), run(triangle_output_torch), inputs,
                     ["product", "gate", *kernels.TriangleOutputWeights._fields])


def check_output_addends() -> None:
    """Stage 3 of a product plus partial sums (DAP's incoming update): without autograd the kernel adds them
    as it reads the product, channel-major ones (as the exchange delivers them) and a position-major one;
    with autograd they are added first. Against the twin of ``with_addends``; every gradient too."""
    ni, nj = SLICES["rows"]
    product = torch.randn(2, C, ni, nj).movedim(-3, -1).requires_grad_()
    addends = [torch.randn(2, 2, C, ni, nj).movedim(-3, -1), _leaf(1, 2, ni, nj, C).detach()]
    shapes = [(C,), (C,), (C, CZ), (CZ,)]
    gate, *weights = _leaf(2, ni, nj, CZ), *(_leaf(*s) for s in shapes)
    weights = kernels.TriangleOutputWeights(*weights)
    for received in addends:
        want = triangle_output_torch(with_addends(product, received), gate, weights)
        with torch.no_grad():
            got = kernels.triangle_output(product, gate, weights, received)
        _close(f"addends read by the kernel {tuple(received.shape)}", got, want)
    received = addends[0].clone().requires_grad_()

    def run(fn):
        return lambda p, a, g, *w: (fn(p, a, g, kernels.TriangleOutputWeights(*w)),)

    _compare_outputs(run(lambda p, a, g, w: kernels.triangle_output(p, g, w, a)),
                     run(lambda p, a, g, w: triangle_output_torch(with_addends(p, a), g, w)),
                     (product, received, gate, *weights), ["product", "addends", "gate", *weights._fields])


def test_output_addends():
    _run_check("check_output_addends", script=__file__)


def check_module(outgoing: int) -> None:
    """The module with the kernels (FASTFOLD_KERNEL=triton) against the module with the twins (torch)."""
    import os

    equation = "ikc,jkc->ijc" if outgoing else "kjc,kic->ijc"
    module = TriangleMultiplication(_Config(equation=equation, num_intermediate_channel=C),
                                    _Config(zero_init=False), CZ)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pair, mask = _leaf(2, 13, 13, CZ), torch.rand(2, 13, 13) > 0.2
    names, params = zip(*module.named_parameters(), strict=True)

    def run(setting):
        def fn(pair, *_):
            os.environ[kernels.KERNEL_ENV_VAR] = setting
            return (module(pair, mask),)
        return fn

    _compare_outputs(run("triton"), run("torch"), (pair, *params), ["pair", *names])


def check_opcheck(stage: int) -> None:
    """``torch.library.opcheck`` of a stage's (1 or 3) forward and backward custom ops.

    Schema, fake shapes and strides, autograd and AOT, on 2 x 3 x 5 positions (two programs): each op runs
    many times, and the checks are not of its values.
    """
    from fastfold.kernels import ops

    pair, gate = _leaf(2, 3, 5, CZ), _leaf(2, 3, 5, CZ)
    if stage == 1:
        mask = torch.rand(2, 3, 5) > 0.2
        weights = [_leaf(*s) for s in [(CZ,), (CZ,)] + [(CZ, C), (C,)] * 4 + [(CZ, CZ), (CZ,)]]
        torch.library.opcheck(ops._triangle_projections, (pair, mask, weights))
        grad_edges = torch.randn(2, 2, C, 3, 5)  # left's and right's, channel-major
        args = (*grad_edges, torch.randn_like(gate), pair.detach(), mask, [t.detach() for t in weights])
        torch.library.opcheck(ops._triangle_projections_bwd, args)
    else:
        product = torch.randn(2, C, 3, 5).movedim(1, -1).requires_grad_()
        weights = [_leaf(*s) for s in [(C,), (C,), (C, CZ), (CZ,)]]
        torch.library.opcheck(ops._triangle_output, (product, gate, weights))
        args = (torch.randn_like(gate), product.detach(), gate.detach(), [t.detach() for t in weights])
        torch.library.opcheck(ops._triangle_output_bwd, args)


@pytest.mark.parametrize("stage", [1, 3])
def test_opcheck(stage):
    _run_check("check_opcheck", str(stage), script=__file__)


@pytest.mark.parametrize("slice_index", range(len(SLICES)), ids=list(SLICES))
def test_projections(slice_index):
    _run_check("check_projections", str(slice_index), script=__file__)


@pytest.mark.parametrize("slice_index, layout", OUTPUT_CASES,
                         ids=[f"{list(SLICES)[s]}-{LAYOUTS[layout]}" for s, layout in OUTPUT_CASES])
def test_output(slice_index, layout):
    _run_check("check_output", str(slice_index), str(layout), script=__file__)


@pytest.mark.parametrize("outgoing", [1, 0], ids=["outgoing", "incoming"])
def test_module(outgoing):
    _run_check("check_module", str(outgoing), script=__file__)


@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
def test_product_is_the_equation(outgoing):
    """Stage 2 on a DAP slice (7 local rows or columns) against the supplement's sum as an einsum."""
    left, right, equation = _product_inputs(outgoing)
    want = torch.einsum(equation, left, right)
    torch.testing.assert_close(kernels.triangle_product(left, right, outgoing), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True], ids=["in-place", "autograd"])
@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
def test_product_by_blocks_is_the_product(outgoing, grad):
    """As DAP forms it: the own slice of right (rank 1 of 2) whole, then the other in 4 channel groups (C = 18
    not a multiple of 4), against the product at once; with autograd also the gradients."""
    left, right, _ = _product_inputs(outgoing)
    left.requires_grad_(grad)
    right.requires_grad_(grad)
    sliced = -3 if outgoing else -2
    with torch.set_grad_enabled(grad):
        blocks = kernels.ProductBlocks(left, 2, 7, outgoing)
        pieces = right.split(7, sliced)
        blocks.add(1, pieces[1])
        sizes = kernels.channel_groups(C, 4)
        assert sizes == [4, 5, 4, 5]
        for start, group in zip((0, 4, 9, 13), pieces[0].split(sizes, -1), strict=True):
            blocks.add(0, group, slice(start, start + group.shape[-1]))
        got = blocks.result()
    want = kernels.triangle_product(left, right, outgoing)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # BLAS blocks smaller products differently
    if grad:
        weight = torch.randn(want.shape)
        expected = torch.autograd.grad((want * weight).sum(), (left, right))
        for a, e in zip(torch.autograd.grad((got * weight).sum(), (left, right)), expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)


def _product_inputs(outgoing: bool) -> tuple:
    """(left, right, the einsum of line 4): left a DAP slice of 7 rows (outgoing) or columns (incoming),
    right gathered (14 = 2 x 7)."""
    torch.manual_seed(0)
    if outgoing:  # left [*, i, k, c] local rows, right [*, j, k, c] gathered
        return torch.randn(2, 7, 13, C), torch.randn(2, 14, 13, C), "...ikc,...jkc->...ijc"
    return torch.randn(2, 13, 7, C), torch.randn(2, 13, 14, C), "...kjc,...kic->...ijc"  # [*, k, j, c]


if __name__ == "__main__":
    torch.manual_seed(0)
    globals()[sys.argv[1]](*(int(a) for a in sys.argv[2:]))


def test_float32_dot_precision_follows_pytorch_matmul_setting():
    """Float32 Triton products are exact unless PyTorch allows TF32 for matmuls; 16-bit use the default."""
    from fastfold.kernels.triton_layout import dot_precision

    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        assert dot_precision(torch.float32) == "ieee"
        matmul.allow_tf32 = True
        assert dot_precision(torch.float32) == "tf32"
    finally:
        matmul.allow_tf32 = saved
    assert dot_precision(torch.bfloat16) is None and dot_precision(torch.float16) is None
