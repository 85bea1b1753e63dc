"""Linear and LayerNorm layers whose parameters have AlphaFold's names, shapes and initialisers.

Parameters keep DeepMind's haiku layout (``weights`` is ``[*in_shape, *out_shape]``, LayerNorm has
``scale`` and ``offset``) so that published parameter files load without transposes and our
weights write back to the same layout (see :mod:`fastfold.model.params`).
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

from fastfold.kernels import converted, layer_norm, needs_grad
from fastfold.model.layout import AxialLayout

# Standard deviation of a unit normal truncated to [-2, 2]; dividing by it restores the
# intended spread after truncation (as haiku's TruncatedNormal initialiser is used by AlphaFold).
TRUNCATED_NORMAL_STDDEV_FACTOR = 0.87962566103423978
# The layout of callers that run on one process (it holds no state).
SINGLE_PROCESS = AxialLayout()


def _as_shape(size: int | Sequence[int]) -> tuple:
    return (size,) if isinstance(size, int) else tuple(size)


class Linear(nn.Module):
    """Affine map over the trailing ``len(in_shape)`` dimensions to ``out_shape``.

    x [*, *in_shape] -> [*, *out_shape];  ``weights`` [*in_shape, *out_shape], ``bias`` [*out_shape].

    Initialisers (AlphaFold's names): ``linear`` (LeCun, fan-in), ``relu`` (He, fan-in),
    ``zeros`` (all zero, used for the last layer of residual branches).
    """

    def __init__(self, in_shape: int | Sequence[int], out_shape: int | Sequence[int],
                 initializer: str = "linear", use_bias: bool = True, bias_init: float = 0.0):
        super().__init__()
        self.in_shape = _as_shape(in_shape)
        self.out_shape = _as_shape(out_shape)
        self.weights = nn.Parameter(torch.empty(self.in_shape + self.out_shape))
        self.bias = nn.Parameter(torch.full(self.out_shape, float(bias_init))) if use_bias else None
        self.reset_weights(initializer)

    def reset_weights(self, initializer: str) -> None:
        """Fill ``weights`` with AlphaFold's initialiser of that name."""
        if initializer == "zeros":
            nn.init.zeros_(self.weights)
            return
        if initializer not in ("linear", "relu"):
            raise ValueError(f"unknown initializer {initializer!r}: expected 'linear', 'relu' or 'zeros'")
        gain = 2.0 if initializer == "relu" else 1.0
        std = math.sqrt(gain / math.prod(self.in_shape)) / TRUNCATED_NORMAL_STDDEV_FACTOR
        with torch.no_grad():
            nn.init.trunc_normal_(self.weights, mean=0.0, std=std, a=-2 * std, b=2 * std)

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """x [*, *in_shape] -> [*, *out_shape], followed by a ReLU with ``relu``."""
        num_in = len(self.in_shape)
        batch_shape = x.shape[: x.dim() - num_in]
        flat_in = x.reshape(*batch_shape, math.prod(self.in_shape))
        flat_weights = self.weights.reshape(math.prod(self.in_shape), math.prod(self.out_shape))
        bias = None if self.bias is None else self.bias.reshape(-1)
        return affine(flat_in, flat_weights, bias, relu).reshape(*batch_shape, *self.out_shape)


def affine(x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None,
           relu: bool = False) -> torch.Tensor:
    """``x @ weights + bias`` (then a ReLU with ``relu``) in x's dtype, as one matrix product.

    x [*, K], weights [K, M], bias [M] or None -> [*, M]. The bias is added in the product's epilogue
    (``addmm``; in float32 before a 16-bit result is rounded), and without autograd so is the ReLU:
    no separate passes over the ``[*, M]`` result.
    """
    flat = x.reshape(-1, x.shape[-1])
    weights = converted(weights, x.dtype)
    if bias is None:
        out = flat @ weights
    else:
        bias = converted(bias, x.dtype)
        if relu and not needs_grad(x, weights, bias):
            # The fused ReLU epilogue has no derivative in PyTorch: only without autograd.
            return torch._addmm_activation(bias, flat, weights).view(*x.shape[:-1], weights.shape[-1])
        out = torch.addmm(bias, flat, weights)
    out = out.view(*x.shape[:-1], weights.shape[-1])
    return torch.relu(out) if relu else out


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension with AlphaFold's parameter names (``scale``, ``offset``).

    x [*, C] -> [*, C]; statistics in float32, eps 1e-5 as haiku's LayerNorm.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_channels))
        self.offset = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm(x, self.scale, self.offset, self.eps)


def final_init(global_config) -> str:
    """Initialiser of the last layer of a residual branch: ``zeros`` when ``global_config.zero_init``."""
    return "zeros" if global_config.zero_init else "linear"


def glorot_uniform_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill ``tensor`` with haiku's Glorot-uniform values (``VarianceScaling(1, fan_avg, uniform)``).

    As haiku counts fans: the last two dimensions are (fan-in, fan-out), earlier ones multiply both.
    """
    receptive_field = math.prod(tensor.shape[:-2])
    fan_avg = 0.5 * (tensor.shape[-2] + tensor.shape[-1]) * receptive_field
    limit = math.sqrt(3.0 / fan_avg)
    with torch.no_grad():
        return tensor.uniform_(-limit, limit)


def shared_dropout(update: torch.Tensor, config, global_config, training: bool,
                   layout: AxialLayout = SINGLE_PROCESS, sharded_dim: int = -3) -> torch.Tensor:
    """AlphaFold's dropout of a residual update, with one mask shared along rows or columns.

    Supplement section 1.11.6: with ``config.shared_dropout``, a ``per_row`` module shares its mask
    over all rows (dimension -3 of ``[*, N_rows, N_cols, C]``), a ``per_column`` module over all
    columns (dimension -2). The rate is ``config.dropout_rate`` (0 when
    ``global_config.deterministic``); dropout runs in training, or always with
    ``global_config.eval_dropout``. Kept values are scaled by ``1 / (1 - rate)``.

    Under DAP the update is this process's slice along ``sharded_dim`` (-3 rows, -2 columns) of the
    ``layout``: the mask is drawn for the whole tensor, with the same random state on every process
    of the DAP group, and sliced, so it equals the single-process mask where the sizes are
    multiples of the DAP size (otherwise it is drawn for the padded size).

    update [*, N_rows, N_cols, C] (sliced: [*, N_rows / n, N_cols, C] or [*, N_rows, N_cols / n, C])
    -> same shape.
    """
    return scaled(update, dropout_scale(update, update.shape, config, global_config, training, layout,
                                        sharded_dim))


def scaled(update: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``scale * update``, or ``update`` when ``scale`` is None (no dropout)."""
    return update if scale is None else scale * update


def dropout_scale(like: torch.Tensor, shape, config, global_config, training: bool,
                  layout: AxialLayout = SINGLE_PROCESS, sharded_dim: int = -3) -> torch.Tensor | None:
    """The factor by which :func:`shared_dropout` multiplies an update of (sliced) ``shape``: the kept
    entries' ``1 / (1 - rate)`` and zeros, in ``like``'s dtype and device, broadcastable to ``shape``
    (size 1 along the shared dimension); None when there is no dropout.

    For a residual update formed in pieces (``layout.residual_*``): draw the factor for the whole, then
    slice it with the pieces.
    """
    rate = 0.0 if global_config.deterministic else config.dropout_rate
    if rate == 0.0 or not (training or global_config.eval_dropout):
        return None
    shape = list(shape)
    shape[sharded_dim] *= layout.num_shards
    if config.shared_dropout:
        shape[-3 if config.orientation == "per_row" else -2] = 1
    keep_rate = 1.0 - rate
    keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(keep_rate)
    if keep.shape[sharded_dim] > 1:
        keep = layout.shard(keep, sharded_dim)
    return keep / keep_rate
