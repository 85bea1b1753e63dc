"""The Triton kernels as ``torch.library`` custom ops with registered autograd.

Custom ops are opaque to ``torch.compile``, which traces around them (their fake implementations give
it shapes and dtypes) instead of into the Triton launch code. Each forward op returns what its backward
op needs; the public functions here return only the result. In eager mode the public functions run the
ops' implementations directly, through one plain autograd function (:class:`_Eager`) with the same
backward when a gradient is needed: the dispatcher's share of a small launch's host time is saved.
"""


import torch
from torch import Tensor

from fastfold.kernels import (
    needs_grad,
    triton_attention,
    triton_attention_bwd,
    triton_layer_norm,
    triton_softmax,
    triton_triangle,
)
from fastfold.kernels.triangle_multiplication import (
    TriangleOutputWeights,
    TriangleProjectionWeights,
    with_addends,
)

_IMPLEMENTATIONS = {}  # custom op -> the function it wraps, which eager calls run directly
_AUTOGRAD = {}  # custom op -> (setup_context, backward, materialize_grads), for _Eager


def _custom_op(name: str, impl):
    """A ``torch.library`` custom op wrapping ``impl``; ``impl`` is kept for :func:`_call`."""
    op = torch.library.custom_op(name, mutates_args=())(impl)
    _IMPLEMENTATIONS[op] = impl
    return op


def _register(op, backward, setup, materialize_grads: bool = True) -> None:
    """Register ``op``'s autograd (used under torch.compile) and keep it for eager mode (:class:`_Eager`).

    ``materialize_grads=False``: in eager mode the backward gets ``None``, not a tensor of zeros, for
    outputs without a gradient; for ops whose public function hands out only the first output and whose
    backward ignores the others' gradients (the statistics kept for it), saving a zero fill per call."""
    op.register_autograd(backward, setup_context=setup)
    _AUTOGRAD[op] = (setup, backward, materialize_grads)


def _call(op, *args, grad: bool):
    """``op(*args)`` under ``torch.compile``; in eager mode the op's own implementation, through
    :class:`_Eager` when ``grad`` is needed. The same kernels and backward, without the dispatcher and the
    custom op's autograd wrapping: those cost ~400 us of host time per forward and backward, more than the
    kernels of a small attention or LayerNorm take."""
    if torch.compiler.is_compiling():
        return op(*args)
    if not grad:
        return _IMPLEMENTATIONS[op](*args)
    lengths = tuple(len(a) if isinstance(a, list) else -1 for a in args)  # list arguments are flattened
    flat = [t for a in args for t in (a if isinstance(a, list) else [a])]
    return _Eager.apply(op, lengths, *flat)


def _backward_op(ctx, op, *args):
    """A backward op from a registered backward: its implementation under :class:`_Eager`, the op itself
    when the custom op's own autograd runs it (possibly traced, on fake tensors)."""
    return _IMPLEMENTATIONS[op](*args) if getattr(ctx, "eager", False) else op(*args)


class _Eager(torch.autograd.Function):
    """A registered custom op's forward, setup_context and backward as a plain autograd function."""

    @staticmethod
    def forward(ctx, op, lengths, *flat):
        leaves = iter(flat)
        args = [next(leaves) if length < 0 else [next(leaves) for _ in range(length)] for length in lengths]
        output = _IMPLEMENTATIONS[op](*args)
        setup, _, materialize = _AUTOGRAD[op]
        setup(ctx, tuple(args), output)
        ctx.set_materialize_grads(materialize)
        ctx.eager, ctx.op, ctx.lengths = True, op, lengths
        return output

    @staticmethod
    def backward(ctx, *grads):
        grad_args = _AUTOGRAD[ctx.op][1](ctx, *grads)  # the op's backward
        flat = []
        for length, grad in zip(ctx.lengths, grad_args, strict=True):
            flat += [grad] if length < 0 else list(grad) if grad is not None else [None] * length
        return None, None, *flat


# --- attention ----------------------------------------------------------------------------------------


def _attention_fwd_impl(q: Tensor, k: Tensor, v: Tensor, biases: list[Tensor], mask: Tensor | None,
                   gate: Tensor | None, save_stats: bool) -> tuple[Tensor, Tensor]:
    return triton_attention.attention_forward(q, k, v, biases, mask, gate, save_stats)


_attention_fwd = _custom_op("fastfold::attention_fwd", _attention_fwd_impl)


@_attention_fwd.register_fake
def _(q, k, v, biases, mask, gate, save_stats):
    shapes = [q.shape[:-2], k.shape[:-2], v.shape[:-2], *(b.shape[:-2] for b in biases)]
    shapes += [t.shape[:-2] for t in (mask, gate) if t is not None]
    lead = torch.broadcast_shapes(*shapes)
    out = q.new_empty(*lead, q.shape[-2], v.shape[-1], dtype=v.dtype)
    if not save_stats:
        return out, q.new_empty(0)
    return out, q.new_empty(*lead, q.shape[-2], 2, dtype=torch.float32)


def _attention_bwd_impl(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, biases: list[Tensor],
                        mask: Tensor | None, gate: Tensor | None, out: Tensor, stats: Tensor) -> list[Tensor]:
    dq, dk, dv, dbiases, dgate = triton_attention_bwd.attention_backward(
        grad_out, q, k, v, biases, mask, gate, out, stats)
    return [dq, dk, dv, *dbiases] + ([dgate] if dgate is not None else [])


_attention_bwd = _custom_op("fastfold::attention_bwd", _attention_bwd_impl)


@_attention_bwd.register_fake
def _(grad_out, q, k, v, biases, mask, gate, out, stats):
    return [torch.empty_like(t) for t in (q, k, v, *biases, *([gate] if gate is not None else []))]


def _attention_setup(ctx, inputs, output):
    q, k, v, biases, mask, gate, _ = inputs
    out, stats = output
    ctx.num_biases = len(biases)
    ctx.has_gate = gate is not None
    ctx.save_for_backward(q, k, v, mask, gate, out, stats, *biases)


def _attention_backward(ctx, grad_out, _grad_stats):
    q, k, v, mask, gate, out, stats, *biases = ctx.saved_tensors
    grads = _backward_op(ctx, _attention_bwd, grad_out, q, k, v, biases, mask, gate, out, stats)
    dq, dk, dv = grads[:3]
    dbiases = grads[3:3 + ctx.num_biases]
    dgate = grads[-1] if ctx.has_gate else None
    return dq, dk, dv, dbiases, None, dgate, None


_register(_attention_fwd, _attention_backward, _attention_setup, materialize_grads=False)


def attention(q: Tensor, k: Tensor, v: Tensor, biases=(), mask: Tensor | None = None,
              gate: Tensor | None = None) -> Tensor:
    """Fused attention; arguments and result as :func:`fastfold.kernels.attention.attention_torch`.

    Biases beyond the kernel's ``MAX_BIASES`` are added to the last one beforehand. Without a gradient
    to compute, the forward pass keeps nothing for a backward pass.
    """
    biases = list(biases)
    if len(biases) > triton_attention.MAX_BIASES:
        keep = triton_attention.MAX_BIASES - 1
        tail = biases[keep].float()
        for bias in biases[keep + 1:]:
            tail = tail + bias.float()
        biases = biases[:keep] + [tail]
    save_stats = needs_grad(q, k, v, gate, *biases)
    return _call(_attention_fwd, q, k, v, biases, mask, gate, save_stats, grad=save_stats)[0]


# --- softmax ------------------------------------------------------------------------------------------


def _softmax_fwd_impl(x: Tensor, bias: Tensor | None, mask: Tensor | None) -> Tensor:
    return triton_softmax.softmax_forward(x, bias, mask)


_softmax_fwd = _custom_op("fastfold::softmax_fwd", _softmax_fwd_impl)


@_softmax_fwd.register_fake
def _(x, bias, mask):
    return torch.empty_like(x)


def _softmax_bwd_impl(grad_y: Tensor, y: Tensor) -> Tensor:
    return triton_softmax.softmax_backward(grad_y, y)


_softmax_bwd = _custom_op("fastfold::softmax_bwd", _softmax_bwd_impl)


@_softmax_bwd.register_fake
def _(grad_y, y):
    return torch.empty_like(y)


def _softmax_setup(ctx, inputs, output):
    x, bias, _ = inputs
    ctx.x_dtype = x.dtype
    ctx.bias_shape = bias.shape if bias is not None else None
    ctx.bias_dtype = bias.dtype if bias is not None else None
    ctx.save_for_backward(output)


def _softmax_backward(ctx, grad_y):
    (y,) = ctx.saved_tensors
    dx = _backward_op(ctx, _softmax_bwd, grad_y, y)
    dbias = None
    if ctx.bias_shape is not None:
        dbias = dx.float().sum_to_size(ctx.bias_shape).to(ctx.bias_dtype)
    return dx, dbias, None


_register(_softmax_fwd, _softmax_backward, _softmax_setup)


def softmax(x: Tensor, bias: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Fused ``softmax(x + mask bias + bias)``; as :func:`fastfold.kernels.softmax.softmax_torch`."""
    return _call(_softmax_fwd, x, bias, mask, grad=needs_grad(x, bias))


# --- layer norm ---------------------------------------------------------------------------------------


def _layer_norm_fwd_impl(x: Tensor, weight: Tensor, bias: Tensor,
                         eps: float) -> tuple[Tensor, Tensor, Tensor]:
    return triton_layer_norm.layer_norm_forward(x, weight, bias, eps)


_layer_norm_fwd = _custom_op("fastfold::layer_norm_fwd", _layer_norm_fwd_impl)


@_layer_norm_fwd.register_fake
def _(x, weight, bias, eps):
    rows = x.numel() // x.shape[-1]
    stats = x.new_empty(rows, dtype=torch.float32)
    return x.new_empty(x.shape), stats, torch.empty_like(stats)  # y contiguous, whatever x's strides


def _layer_norm_bwd_impl(grad_y: Tensor, x: Tensor, weight: Tensor, mean: Tensor,
                         rstd: Tensor) -> list[Tensor]:
    return list(triton_layer_norm.layer_norm_backward(grad_y, x, weight, mean, rstd))


_layer_norm_bwd = _custom_op("fastfold::layer_norm_bwd", _layer_norm_bwd_impl)


@_layer_norm_bwd.register_fake
def _(grad_y, x, weight, mean, rstd):
    return [x.new_empty(x.shape), torch.empty_like(weight), torch.empty_like(weight)]


def _layer_norm_setup(ctx, inputs, output):
    x, weight, bias, _ = inputs
    _, mean, rstd = output
    ctx.bias_dtype = bias.dtype
    ctx.save_for_backward(x, weight, mean, rstd)


def _layer_norm_backward(ctx, grad_y, _grad_mean, _grad_rstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dweight, dbias = _backward_op(ctx, _layer_norm_bwd, grad_y, x, weight, mean, rstd)
    return dx, dweight, dbias.to(ctx.bias_dtype), None


_register(_layer_norm_fwd, _layer_norm_backward, _layer_norm_setup, materialize_grads=False)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Fused LayerNorm over the last dimension; as :func:`fastfold.kernels.layer_norm.layer_norm`."""
    return _call(_layer_norm_fwd, x, weight, bias, eps,
                 grad=needs_grad(x, weight, bias))[0]


# --- triangle multiplicative update, stages 1 and 3 ------------------------------------------------------
# The forward ops keep no intermediate; the backward ops (Triton kernels plus cuBLAS for the weights'
# gradients, see :mod:`fastfold.kernels.triton_triangle`) recompute each stage from its saved inputs.


def _triangle_projections_impl(pair: Tensor, mask: Tensor,
                               weights: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return triton_triangle.projections_forward(pair, mask, TriangleProjectionWeights(*weights))


_triangle_projections = _custom_op("fastfold::triangle_projections", _triangle_projections_impl)


@_triangle_projections.register_fake
def _(pair, mask, weights):
    *lead, ni, nj, _ = pair.shape
    edge = pair.new_empty(*lead, weights[2].shape[-1], ni, nj)
    return edge, torch.empty_like(edge), torch.empty_like(pair)


def _triangle_projections_bwd_impl(grad_left: Tensor, grad_right: Tensor, grad_gate: Tensor, pair: Tensor,
                                   mask: Tensor, weights: list[Tensor]) -> list[Tensor]:
    grad_pair, grad_weights = triton_triangle.projections_backward(
        grad_left, grad_right, grad_gate, pair, mask, TriangleProjectionWeights(*weights))
    return [grad_pair, *grad_weights]


_triangle_projections_bwd = _custom_op("fastfold::triangle_projections_bwd", _triangle_projections_bwd_impl)


@_triangle_projections_bwd.register_fake
def _(grad_left, grad_right, grad_gate, pair, mask, weights):
    return [pair.new_empty(pair.shape), *(torch.empty_like(w) for w in weights)]


def _triangle_projections_setup(ctx, inputs, output):
    pair, mask, weights = inputs
    ctx.save_for_backward(pair, mask, *weights)


def _triangle_projections_backward(ctx, grad_left, grad_right, grad_gate):
    pair, mask, *weights = ctx.saved_tensors
    grads = _backward_op(ctx, _triangle_projections_bwd, grad_left, grad_right, grad_gate, pair, mask,
                         weights)
    grad_pair, *grad_weights = grads
    return grad_pair, None, grad_weights


_register(_triangle_projections, _triangle_projections_backward, _triangle_projections_setup)


def triangle_projections(pair: Tensor, mask: Tensor, weights: TriangleProjectionWeights,
                         parts: tuple = triton_triangle.PARTS) -> tuple:
    """Fused stage 1; as :func:`triangle_projections_torch` (left and right are channel-major views).

    In eager mode without a gradient only ``parts`` are computed (the others are None): DAP inference
    starts gathering ``right`` before ``left`` and the gate exist.
    """
    weights = [t.contiguous() for t in weights]
    grad = needs_grad(pair, *weights)
    if grad or torch.compiler.is_compiling():
        left, right, gate = _call(_triangle_projections, pair, mask, weights, grad=grad)
    else:
        left, right, gate = triton_triangle.projections_forward(
            pair, mask, TriangleProjectionWeights(*weights), parts)
    return *(t.movedim(-3, -1) if t is not None else None for t in (left, right)), gate


def _triangle_output_impl(product: Tensor, gate: Tensor, weights: list[Tensor]) -> Tensor:
    return triton_triangle.output_forward(product, gate, TriangleOutputWeights(*weights))


_triangle_output = _custom_op("fastfold::triangle_output", _triangle_output_impl)


@_triangle_output.register_fake
def _(product, gate, weights):
    return product.new_empty(*product.shape[:-1], gate.shape[-1])


def _triangle_output_bwd_impl(grad: Tensor, product: Tensor, gate: Tensor,
                              weights: list[Tensor]) -> list[Tensor]:
    grad_product, grad_gate, grad_weights = triton_triangle.output_backward(
        grad, product, gate, TriangleOutputWeights(*weights))
    return [grad_product, grad_gate, *grad_weights]


_triangle_output_bwd = _custom_op("fastfold::triangle_output_bwd", _triangle_output_bwd_impl)


@_triangle_output_bwd.register_fake
def _(grad, product, gate, weights):
    *lead, ni, nj, ci = product.shape
    grad_weights = [torch.empty_like(w) for w in weights]
    return [product.new_empty(*lead, ci, ni, nj), gate.new_empty(gate.shape), *grad_weights]


def _triangle_output_setup(ctx, inputs, output):
    product, gate, weights = inputs
    ctx.save_for_backward(product, gate, *weights)


def _triangle_output_backward(ctx, grad):
    product, gate, *weights = ctx.saved_tensors
    grad_product, grad_gate, *grad_weights = _backward_op(ctx, _triangle_output_bwd, grad, product, gate,
                                                          weights)
    return grad_product.movedim(-3, -1), grad_gate, grad_weights  # channel-major, as stage 2 consumes it


_register(_triangle_output, _triangle_output_backward, _triangle_output_setup)


def triangle_output(product: Tensor, gate: Tensor, weights: TriangleOutputWeights,
                    addends: Tensor | None = None) -> Tensor:
    """Fused stage 3; as :func:`triangle_output_torch` of ``with_addends(product, addends)``.

    In eager mode without a gradient the kernel adds ``addends`` as it reads the product (DAP inference:
    no pass over the product to add the other ranks' partial sums); otherwise they are added first.
    """
    weights = [t.contiguous() for t in weights]
    grad = needs_grad(product, gate, addends, *weights)
    if addends is not None and not grad and not torch.compiler.is_compiling():
        return triton_triangle.output_forward(product, gate, TriangleOutputWeights(*weights), addends)
    return _call(_triangle_output, with_addends(product, addends), gate, weights, grad=grad)
