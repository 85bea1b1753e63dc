"""The Triton kernels under Triton's CPU interpreter against their PyTorch twins, forward and every gradient.

Triton decides at import time whether its kernels are interpreted (``TRITON_INTERPRET=1``), so each
check runs this file in a fresh subprocess with the variable set and ``FASTFOLD_KERNEL=triton``, going
through the public entry points of :mod:`fastfold.kernels`; no other test module in the pytest process
sees the variable. Shapes are small and odd (19 queries and keys against 16-wide tiles, head sizes 8 and
16) so that every tile edge is exercised; float32 throughout, tolerance 1e-5 relative to the largest
reference value (the interpreter computes the kernels' dots exactly in float32).
The triangle multiplicative update's stages are checked the same way in ``test_kernels_triangle.py``.
"""

import os
import subprocess
import sys

import pytest

TOLERANCE = 1e-5


def _close(name, got, want):
    """Assert ``got`` matches ``want`` to TOLERANCE x max |want|, naming the compared quantity."""
    import torch

    assert got.shape == want.shape and got.dtype == want.dtype, (name, got.shape, want.shape, got.dtype)
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    assert err <= TOLERANCE * max(scale, 1.0), f"{name}: max error {err:.3g} vs max |ref| {scale:.3g}"


def _compare(fn_kernel, fn_ref, inputs, names):
    """Forward and gradients (for a random output gradient) of two functions of the same inputs."""
    import torch

    out, ref = fn_kernel(*inputs), fn_ref(*inputs)
    _close("forward", out, ref)
    grad = torch.randn_like(ref)
    wrt = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    got_grads, want_grads = torch.autograd.grad(out, wrt, grad), torch.autograd.grad(ref, wrt, grad)
    for name, got, want in zip(names, got_grads, want_grads, strict=True):
        _close(f"d{name}", got, want)


def _leaf(*shape):
    import torch

    return torch.randn(*shape, dtype=torch.float32, requires_grad=True)


def check_attention_msa_row(c: int, n: int) -> None:
    """MSA-row-like: pair bias broadcast over rows, a bias broadcast over heads, key mask, gate; ``n`` keys
    (a multiple of the interpreter's 16-key tiles or not: the full-tile code and the bounds-checked one).
    Then with only biases shared by the rows (the dQ kernel's paired rows)."""
    import torch

    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    rows, heads = 3, 2
    q, k, v, gate = _leaf(1, rows, heads, n, c), _leaf(1, rows, heads, n, c), _leaf(1, rows, heads, n, c), \
        _leaf(1, rows, heads, n, c)
    pair_bias, row_bias = _leaf(1, 1, heads, n, n), _leaf(1, rows, 1, n, n)
    mask = torch.rand(1, rows, 1, 1, n) > 0.3
    # every key of row 2 masked: AlphaFold's finite, near-uniform result (row 1, the second row of a pair
    # in the dQ kernel, keeps its keys, so that its bias tiles count)
    mask[0, 2] = False
    _compare(lambda *t: kernels.attention(t[0], t[1], t[2], t[3:5], mask, t[5]),
             lambda *t: attention_torch(t[0], t[1], t[2], t[3:5], mask, t[5]),
             (q, k, v, pair_bias, row_bias, gate), ["q", "k", "v", "pair_bias", "row_bias", "gate"])
    # every bias shared by the rows: the dQ kernel takes the rows in pairs (3 rows: the last one alone)
    shared_bias = _leaf(1, 1, 1, n, n)
    _compare(lambda *t: kernels.attention(t[0], t[1], t[2], t[3:5], mask, t[5]),
             lambda *t: attention_torch(t[0], t[1], t[2], t[3:5], mask, t[5]),
             (q, k, v, pair_bias, shared_bias, gate), ["q", "k", "v", "pair_bias", "shared_bias", "gate"])


def check_attention_half() -> None:
    """float16 operands (16-bit tiles, float32 bias gradients), against the twin in float32 on the same
    rounded inputs. (float16, not bfloat16: the interpreter mishandles bfloat16 tiles; the GPU tests cover
    bfloat16.)"""
    import torch

    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    rows, heads, n, c = 5, 2, 19, 16
    leaves = [torch.randn(*shape).half().requires_grad_() for shape in
              [(1, rows, heads, n, c)] * 4 + [(1, 1, heads, n, n)]]
    mask = torch.rand(1, rows, 1, 1, n) > 0.3
    out = kernels.attention(*leaves[:3], [leaves[4]], mask, leaves[3])
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, grad)
    ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
    ref = attention_torch(*ref_leaves[:3], [ref_leaves[4]], mask, ref_leaves[3])
    want = torch.autograd.grad(ref, ref_leaves, grad.float())
    for name, g, w in zip(["out", "q", "k", "v", "gate", "bias"], (out, *got), (ref, *want), strict=True):
        assert g.dtype == torch.float16, (name, g.dtype)
        err = ((g.float() - w).norm() / w.norm()).item()
        assert err < 2e-2, (name, err)


def check_attention_shapes() -> None:
    """Q != K, value size != key size, per-query mask (without and with a bias), keys shared by heads."""
    import torch

    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    q, k, v = _leaf(2, 2, 17, 16), _leaf(2, 1, 21, 16), _leaf(2, 1, 21, 8)
    mask = torch.rand(2, 1, 17, 21) > 0.5
    mask[1, 0, 3] = False
    _compare(lambda *t: kernels.attention(*t, mask=mask), lambda *t: attention_torch(*t, mask=mask),
             (q, k, v), ["q", "k", "v"])
    full_bias = _leaf(2, 2, 17, 21)  # a bias needing no reduction, with the per-query mask
    _compare(lambda *t: kernels.attention(t[0], t[1], t[2], [t[3]], mask=mask),
             lambda *t: attention_torch(t[0], t[1], t[2], [t[3]], mask=mask),
             (q, k, v, full_bias), ["q", "k", "v", "bias"])
    q1 = _leaf(3, 2, 1, 8)  # one query (global attention)
    k1, v1 = _leaf(3, 1, 19, 8), _leaf(3, 1, 19, 8)
    key_mask = torch.rand(3, 1, 1, 19) > 0.3
    _compare(lambda *t: kernels.attention(*t, mask=key_mask), lambda *t: attention_torch(*t, mask=key_mask),
             (q1, k1, v1), ["q", "k", "v"])


def check_attention_no_grad() -> None:
    """The forward-only path (no saved statistics) gives the same output."""
    import torch

    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    q, k, v = (torch.randn(1, 2, 2, 19, 8) for _ in range(3))
    bias = torch.randn(1, 1, 2, 19, 19)
    with torch.no_grad():
        _close("forward", kernels.attention(q, k, v, [bias]), attention_torch(q, k, v, [bias]))


def check_attention_far_logits() -> None:
    """A row whose every key is masked and whose bias is -1e9 as well: logits near -2e9 (float32 spacing
    256, 512 in the kernels' log2 units), where the twin gives exactly uniform weights; the kernels
    subtract the row maximum exactly at any magnitude, so they do too (finite, forward and gradients)."""
    import torch

    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    q, k, v = _leaf(1, 3, 2, 19, 8), _leaf(1, 3, 2, 19, 8), _leaf(1, 3, 2, 19, 8)
    bias = torch.randn(1, 3, 1, 19, 19)
    bias[0, 0] -= 1e9
    mask = torch.rand(1, 3, 1, 1, 19) > 0.3
    mask[0, 0] = False
    _compare(lambda *t: kernels.attention(t[0], t[1], t[2], [t[3]], mask),
             lambda *t: attention_torch(t[0], t[1], t[2], [t[3]], mask),
             (q, k, v, bias.requires_grad_()), ["q", "k", "v", "bias"])


def check_attention_plans() -> None:
    """Calls of one geometry reuse its plans (forward, backward), each with its own tensors; operands whose
    leading dimensions do not fold into three are copied at every call; a bias 4 bytes past a 16-byte
    boundary (no TMA descriptor) gets plans of its own."""
    import gc
    import weakref

    import torch

    from fastfold import kernels
    from fastfold.kernels import triton_attention, triton_attention_bwd
    from fastfold.kernels.attention import attention_torch

    def plans():
        return len(triton_attention._forward_plans), len(triton_attention_bwd._backward_plans)

    def compare(lead, bias_lead, bias=None):
        q, k, v, gate = (_leaf(*lead, 19, 8) for _ in range(4))
        bias = _leaf(*bias_lead, 19, 19) if bias is None else bias
        mask = torch.rand(*lead[:-1], 1, 1, 19) > 0.3
        _compare(lambda *t: kernels.attention(t[0], t[1], t[2], [t[3]], mask, t[4]),
                 lambda *t: attention_torch(t[0], t[1], t[2], [t[3]], mask, t[4]),
                 (q, k, v, bias, gate), ["q", "k", "v", "bias", "gate"])
        return [weakref.ref(t) for t in (q, k, v, bias, gate, mask)]

    before = plans()
    first = compare((1, 3, 2), (1, 1, 2))  # makes the plans
    for _ in range(2):
        compare((1, 3, 2), (1, 1, 2))
    assert plans() == (before[0] + 1, before[1] + 1), (before, plans())
    gc.collect()
    assert all(ref() is None for ref in first), "a plan keeps the tensors of the call that made it"
    # leading [2, 3, 2, 2], the bias shared by the first and third: four groups, copied at every call
    for _ in range(2):
        compare((2, 3, 2, 2), (1, 3, 1, 2))
    assert plans() == (before[0] + 2, before[1] + 2), (before, plans())
    assert [plan.ops.copies != [] for plan in triton_attention._forward_plans.values()][-1]
    storage = torch.randn(2 * 19 * 19 + 1, requires_grad=True)
    compare((1, 3, 2), (1, 1, 2), storage[1:].view(1, 1, 2, 19, 19))
    assert plans() == (before[0] + 3, before[1] + 3), (before, plans())


def check_softmax() -> None:
    """softmax(x, bias, mask): bias broadcast over rows, mask over heads and queries, a fully masked row."""
    import torch

    from fastfold import kernels
    from fastfold.kernels.softmax import softmax_torch

    x, bias = _leaf(2, 3, 2, 5, 19), _leaf(2, 1, 2, 5, 19)
    mask = torch.rand(2, 3, 1, 1, 19) > 0.3
    mask[0, 1] = False
    _compare(lambda *t: kernels.softmax(*t, mask=mask), lambda *t: softmax_torch(*t, mask=mask),
             (x, bias), ["x", "bias"])


def check_layer_norm() -> None:
    """LayerNorm over an odd channel count, with weight and bias gradients; then on views read through
    their strides (the transposed pair of the ending node, a channel slice, a batch of transposed pairs),
    whose results come back contiguous."""
    from fastfold import kernels
    from fastfold.kernels.layer_norm import layer_norm

    _compare(lambda *t: kernels.layer_norm(*t), lambda *t: layer_norm(*t),
             (_leaf(3, 7, 37), _leaf(37), _leaf(37)), ["x", "weight", "bias"])
    for view in (lambda x: x.transpose(-2, -3)[..., 3:], lambda x: x[..., 3:],
                 lambda x: x.transpose(-2, -3)[1:, ..., 3:]):
        _compare(lambda x, *t, view=view: kernels.layer_norm(view(x), *t),
                 lambda x, *t, view=view: layer_norm(view(x), *t),
                 (_leaf(2, 5, 11, 40), _leaf(37), _leaf(37)), ["x", "weight", "bias"])
        y = kernels.layer_norm(view(_leaf(2, 5, 11, 40)), _leaf(37), _leaf(37))
        assert y.is_contiguous(), y.stride()
    for empty in ((3, 0, 37), (0, 5, 37)):
        assert kernels.layer_norm(_leaf(*empty), _leaf(37), _leaf(37)).shape == empty


def _run_check(name: str, *args: str, script: str = __file__) -> None:
    """Run the check ``name(*args)`` of ``script`` (this file by default) in a subprocess, interpreted."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", FASTFOLD_KERNEL="triton", PYTHONPATH=path)
    result = subprocess.run([sys.executable, script, name, *args], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("c, n", [(8, 19), (16, 19), (16, 32)])
def test_attention_msa_row(c, n):
    _run_check("check_attention_msa_row", str(c), str(n))


def test_attention_half():
    _run_check("check_attention_half")


def test_attention_shapes():
    _run_check("check_attention_shapes")


def test_attention_no_grad():
    _run_check("check_attention_no_grad")


def test_attention_far_logits():
    _run_check("check_attention_far_logits")


def test_attention_plans():
    _run_check("check_attention_plans")


def test_softmax():
    _run_check("check_softmax")


def test_layer_norm():
    _run_check("check_layer_norm")


if __name__ == "__main__":
    import torch

    torch.manual_seed(0)
    globals()[sys.argv[1]](*(int(a) for a in sys.argv[2:]))
