"""The Triton kernels on a GPU in bf16, fp16 and fp32 against a float64 reference, forward and every gradient.

Three-way comparison (STYLE.md item 10): the reference is the PyTorch twin in float64; PyTorch's own
error is the twin run in the test dtype (TF32 off); the kernel's relative error ``|x - ref| / |ref|``
(Frobenius norms) may be at most ``RATIO`` times PyTorch's own, plus a floor ``FLOOR[dtype]`` for
quantities PyTorch happens to get almost exactly. Shapes are Evoformer-like with odd sizes.
Run on a GPU machine with ``pytest -m gpu tests/test_kernels_gpu.py``.
"""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

RATIO = 3.0
FLOOR = {torch.float32: 1e-6, torch.bfloat16: 2e-3, torch.float16: 3e-4}
DTYPES = [torch.bfloat16, torch.float16, torch.float32]

# (name, rows, heads, queries, keys, c): MSA row attention, triangle attention, extra MSA, a 64-wide head
SHAPES = [("msa_row", 17, 8, 131, 131, 32), ("triangle", 67, 4, 67, 67, 32), ("extra_msa", 45, 8, 97, 97, 8),
          ("wide_head", 5, 4, 77, 93, 64), ("narrow_head", 9, 4, 50, 50, 16)]


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _three_way(fn_kernel, fn_torch, inputs, dtype):
    """Relative errors (kernel, torch in dtype) of the output and each gradient vs a float64 run."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    grad_out = None
    results = {}
    runs = (("ref", fn_torch, torch.float64), ("torch", fn_torch, dtype), ("kernel", fn_kernel, dtype))
    for label, fn, cast in runs:
        leaves = [t.detach().to(cast).requires_grad_() if t.is_floating_point() else t for t in inputs]
        out = fn(*leaves)
        if grad_out is None:
            grad_out = torch.randn_like(out, dtype=torch.float64)
        wrt = [t for t in leaves if t.requires_grad]
        grads = torch.autograd.grad(out, wrt, grad_out.to(out.dtype))
        results[label] = [out, *grads]
    return results


def _assert_within(results, names, dtype):
    ref = results["ref"]
    for name, r, t, k in zip(names, ref, results["torch"], results["kernel"], strict=True):
        err_kernel, err_torch = _rel(k, r), _rel(t, r)
        assert torch.isfinite(k).all(), name
        assert err_kernel <= RATIO * err_torch + FLOOR[dtype], \
            f"{name}: kernel error {err_kernel:.3g} vs PyTorch's {err_torch:.3g} in {dtype}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s[0])
def test_attention(shape, dtype, monkeypatch):
    from fastfold import kernels
    from fastfold.kernels.attention import attention_torch

    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "triton")
    _, rows, heads, nq, nk, c = shape
    gen = torch.Generator(device="cuda").manual_seed(0)

    def randn(*s):
        return torch.randn(*s, device="cuda", generator=gen, dtype=torch.float64)

    q, gate = randn(1, rows, heads, nq, c), randn(1, rows, heads, nq, c)
    k, v = randn(1, rows, heads, nk, c), randn(1, rows, heads, nk, c)
    pair_bias = randn(1, 1, heads, nq, nk)
    mask = torch.rand(1, rows, 1, 1, nk, device="cuda", generator=gen) > 0.2
    mask[0, rows // 2] = False
    inputs = (q, k, v, pair_bias, gate, mask)
    results = _three_way(lambda q, k, v, b, g, m: kernels.attention(q, k, v, [b], m, g),
                         lambda q, k, v, b, g, m: attention_torch(q, k, v, [b], m, g), inputs, dtype)
    _assert_within(results, ["out", "dq", "dk", "dv", "dbias", "dgate"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_softmax(dtype, monkeypatch):
    from fastfold import kernels
    from fastfold.kernels.softmax import softmax_torch

    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "triton")
    x = torch.randn(3, 31, 4, 77, 201, device="cuda", dtype=torch.float64)
    bias = torch.randn(3, 1, 4, 77, 201, device="cuda", dtype=torch.float64)
    mask = torch.rand(3, 31, 1, 1, 201, device="cuda") > 0.2
    results = _three_way(lambda x, b, m: kernels.softmax(x, b, m), lambda x, b, m: softmax_torch(x, b, m),
                         (x, bias, mask), dtype)
    _assert_within(results, ["out", "dx", "dbias"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels", [64, 128, 256, 384])
def test_layer_norm(channels, dtype, monkeypatch):
    from fastfold import kernels
    from fastfold.kernels.layer_norm import layer_norm

    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "triton")
    x = torch.randn(7, 131, 129, channels, device="cuda", dtype=torch.float64) * 3 + 1
    weight = torch.randn(channels, device="cuda", dtype=torch.float64)
    bias = torch.randn(channels, device="cuda", dtype=torch.float64)
    results = _three_way(kernels.layer_norm, layer_norm, (x, weight, bias), dtype)
    _assert_within(results, ["out", "dx", "dweight", "dbias"], dtype)


def _triangle_stages(projections, output, outgoing, local):
    """The three stages composed as on DAP rank 0 holding ``local`` of the N rows (outgoing) or columns.

    (pair [B, N, N, C_z], mask [B, N, N], 12 stage-1 weights, 4 stage-3 weights) -> update of the slice;
    the right edges come from the whole pair, as gathered.
    """
    from fastfold import kernels

    def fn(pair, mask, *weights):
        weights_in = kernels.TriangleProjectionWeights(*weights[:12])
        index = (slice(None), slice(0, local)) if outgoing else (slice(None), slice(None), slice(0, local))
        left, right, gate = projections(pair[index], mask[index], weights_in)  # [B, N_i, N_j, .]
        if local < pair.shape[-2]:
            right = projections(pair, mask, weights_in)[1]
        product = kernels.triangle_product(left, right, outgoing)
        return output(product, gate, kernels.TriangleOutputWeights(*weights[12:]))
    return fn


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("outgoing", [True, False], ids=["outgoing", "incoming"])
@pytest.mark.parametrize("shape", [(1, 67, 67, 128, 128), (2, 33, 33, 64, 32), (1, 67, 29, 128, 64)],
                         ids=lambda s: "x".join(map(str, s)))
def test_triangle_multiplication(shape, outgoing, dtype, monkeypatch):
    """The kernels' stages against the twins' (batch, N, local rows or columns, C_z, c); a DAP slice last."""
    from fastfold import kernels
    from fastfold.kernels.triangle_multiplication import triangle_output_torch, triangle_projections_torch

    monkeypatch.setenv(kernels.KERNEL_ENV_VAR, "triton")
    batch, n, local, cz, c = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(cz,), (cz,)] + [(cz, c), (c,)] * 4 + [(cz, cz), (cz,)] + [(c,), (c,), (c, cz), (cz,)]
    weights = [torch.randn(*s, device="cuda", generator=gen, dtype=torch.float64) * s[0] ** -0.5
               for s in shapes]
    pair = torch.randn(batch, n, n, cz, device="cuda", generator=gen, dtype=torch.float64)
    mask = torch.rand(batch, n, n, device="cuda", generator=gen) > 0.1
    results = _three_way(
        _triangle_stages(kernels.triangle_projections, kernels.triangle_output, outgoing, local),
        _triangle_stages(triangle_projections_torch, triangle_output_torch, outgoing, local),
        (pair, mask, *weights), dtype)
    fields = kernels.TriangleProjectionWeights._fields + kernels.TriangleOutputWeights._fields
    _assert_within(results, ["out", "dpair", *(f"d{f}" for f in fields)], dtype)


def test_attention_compiles():
    """torch.compile traces around the custom op, forward and backward."""
    from fastfold.kernels import ops

    q, k, v = (torch.randn(2, 4, 4, 64, 32, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    bias = torch.randn(2, 1, 4, 64, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    fn = torch.compile(lambda q, k, v, b: ops.attention(q, k, v, [b]).float().square().sum(), fullgraph=True)
    fn(q, k, v, bias).backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v, bias))
