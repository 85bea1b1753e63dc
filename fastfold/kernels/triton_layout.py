"""Broadcast operands addressed through a few canonical leading strides.

The Triton kernels index every operand through three leading strides plus its own trailing strides,
so a broadcast operand (the pair bias shared by all MSA rows, a key mask shared by all heads) is read
through stride 0 and never expanded in memory. :func:`canonical_layout` folds any number of leading
dimensions into three by merging neighbours that every operand can address with one stride. It gives
the strides, not strided views: a kernel takes a tensor's address and the strides apart, and making
views costs host time at every launch.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def dot_precision(dtype: torch.dtype) -> str | None:
    """Triton ``tl.dot`` precision for operands of ``dtype``, following PyTorch's matmul setting.

    Float32 operands use TF32 tensor cores when ``torch.backends.cuda.matmul.allow_tf32`` is on (as
    ``torch.matmul`` does) and exact ``"ieee"`` products otherwise (PyTorch's default); 16-bit operands
    use Triton's default.
    """
    if dtype != torch.float32:
        return None
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def contiguous_strides(shape: Sequence[int]) -> tuple:
    """Strides (in elements) of a contiguous tensor of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


@functools.lru_cache(maxsize=4096)
def broadcast_shapes(*shapes: tuple) -> tuple:
    """``torch.broadcast_shapes`` of shape tuples, cached (kernel launches repeat the same shapes)."""
    return tuple(torch.broadcast_shapes(*shapes))


@dataclass
class Canonical:
    """Operands addressed over the canonical leading shape.

    Attributes
    ----------
    lead : tuple of int
        The canonical leading shape ``(Z1, Z2, Z3)``.
    tensors : list of torch.Tensor
        Each operand (itself, or a contiguous copy where its layout cannot be folded).
    strides : list of tuple of int
        Each operand's strides as a ``[Z1, Z2, Z3, *inner]`` tensor (0 where broadcast).
    reduced : list of tuple of bool
        Per operand and canonical dimension: True where the operand itself has size one there, so that
        its gradient is a sum over that dimension.
    own_lead : list of tuple of int
        Per operand, the full leading shape with ones where the operand broadcasts; a gradient computed
        over the canonical own shape reshapes to ``own_lead + inner``.
    """

    lead: tuple
    tensors: list
    strides: list
    reduced: list
    own_lead: list

    def own_shape(self, index: int) -> tuple:
        """Canonical leading shape of operand ``index`` itself: ones where it broadcasts."""
        return tuple(1 if r else z for r, z in zip(self.reduced[index], self.lead, strict=False))


def canonical_layout(operands: Sequence[tuple], lead: Sequence[int], ndim: int = 3) -> Canonical:
    """Address operands broadcast over ``lead`` as ``[*canonical lead (ndim dims), *inner]`` tensors.

    Parameters
    ----------
    operands : sequence of (torch.Tensor, int)
        Each operand with its number of trailing (non-leading) dimensions; its leading dimensions must
        broadcast to ``lead`` and its trailing ones are kept as they are.
    lead : sequence of int
        The full broadcast leading shape.
    ndim : int
        Number of canonical leading dimensions.

    Returns
    -------
    Canonical
        Tensors and their strides, per-dimension broadcast flags and the operands' own leading shapes
        (the data of operand ``i`` at canonical index ``z, *inner`` is at ``tensors[i].data_ptr()`` plus
        the dot product of ``strides[i]`` with it, in elements). Neighbouring leading
        dimensions merge when every operand addresses them with one stride and broadcasts over both or
        neither; where more than ``ndim`` dimensions remain, operands are copied to contiguous memory.
        The geometry depends only on shapes and strides and is cached (kernel launches repeat them).
    """
    geometry = tuple((tuple(t.shape), t.stride(), n_inner) for t, n_inner in operands)
    plan = _canonical_plan(geometry, tuple(lead), ndim)
    if plan is None:
        dense = [(t.expand(*lead, *t.shape[t.dim() - n_inner:]).contiguous(), n_inner)
                 for t, n_inner in operands]
        return canonical_layout(dense, lead, ndim)
    canon_lead, strides, reduced, own_lead = plan
    return Canonical(canon_lead, [t for t, _ in operands], list(strides), list(reduced), list(own_lead))


@functools.lru_cache(maxsize=4096)
def _canonical_plan(geometry: tuple, lead: tuple, ndim: int) -> tuple | None:
    """:func:`canonical_layout` from shapes and strides alone: ``(canonical lead, strides of each operand,
    reduced flags, own leading shapes)``, or None when the operands must be made contiguous first."""
    strides_of, flags = [], []
    for shape, stride, n_inner in geometry:
        n_lead = len(shape) - n_inner
        own = (1,) * (len(lead) - n_lead) + shape[:n_lead]
        own_strides = (0,) * (len(lead) - n_lead) + stride[:n_lead]
        strides_of.append(tuple(0 if o == 1 else st for o, st in zip(own, own_strides, strict=True)))
        flags.append(tuple(o == 1 and z > 1 for o, z in zip(own, lead, strict=True)))
    groups = []  # [size, [stride per operand], [flag per operand]]
    for d, size in enumerate(lead):
        if size == 1:
            continue
        strides = [st[d] for st in strides_of]
        dim_flags = [f[d] for f in flags]
        if groups and all(gs == s * size and gf == f for gs, s, gf, f in
                          zip(groups[-1][1], strides, groups[-1][2], dim_flags, strict=True)):
            groups[-1][0] *= size
            groups[-1][1] = strides
        else:
            groups.append([size, strides, dim_flags])
    if len(groups) > ndim:
        return None
    groups = [[1, [0] * len(geometry), [False] * len(geometry)]] * (ndim - len(groups)) + groups
    canon_lead = tuple(g[0] for g in groups)
    strides, reduced, own_lead = [], [], []
    for i, (_, stride, n_inner) in enumerate(geometry):
        strides.append(tuple(g[1][i] for g in groups) + stride[len(stride) - n_inner:])
        reduced.append(tuple(g[2][i] for g in groups))
        own_lead.append(tuple(1 if f else z for f, z in zip(flags[i], lead, strict=True)))
    return canon_lead, tuple(strides), tuple(reduced), tuple(own_lead)
