"""DAP collectives over the DAP group of a :class:`~fastfold.distributed.mesh.ParallelMesh`, as autograd
functions whose backward is the partner collective.

Convention (what makes every parameter gradient right)
------------------------------------------------------
DAP activations are sharded: each of the n ranks of a DAP group holds one contiguous slice of the
sharded dimension (rank r holds slice r). Parameters are replicated. Every backward below is the exact
adjoint of its forward, taken over all ranks together:

=============================  ===========================================================
forward                        backward (adjoint)
=============================  ===========================================================
``scatter`` (keep my slice)    embed my gradient slice in zeros (no communication)
``all_gather``                 ``reduce_scatter`` (sum over ranks, keep my slice)
``reduce_scatter``             ``all_gather``
``all_to_all`` (switch axis)   the inverse ``all_to_all``
=============================  ===========================================================

So backpropagation differentiates the *sum of the per-rank losses*, and the gradient of every
replicated tensor (parameter or replicated input) is the sum over the DAP group of the per-rank
gradients. Why ``all_gather`` needs the reduce: after a gather each rank uses the full tensor for its
own slice of the output (the pair bias of its MSA rows, the "right" projection of its pair rows), so
each rank's gradient of the gathered tensor is a partial sum; keeping only one's own slice would
drop the other ranks' contributions. At the end of the stack the gather is the same operation: each
rank then computes the same loss L, so the objective is n * L, and the training step **averages**
parameter gradients over the DAP group (n * grad / n = grad) and over the DP group - that is, it
averages over all DP x DAP ranks, as DDP over the world group does. (Equivalently: scale each rank's
loss by 1 / n and sum over the DAP group.)

Sizes that are not multiples of n
---------------------------------
The collectives need the sharded dimension divisible by n. Pad it with :func:`pad_to_multiple` and pad
the matching mask the same way (zeros: the padded rows/columns are masked), run the stack, then cut
with :func:`unpad`. The Evoformer modules give masked entries no weight (attention keys get a finite
-1e9 logit, the outer product mean and triangle multiplication multiply by the mask and normalise by
mask counts), so padding never changes the real entries; padded outputs are discarded and get zero
gradient.

Every function is the identity on a mesh with ``dap_size == 1``.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fastfold.distributed.mesh import ParallelMesh

# torch >= 2.13 renames the tensor-in/tensor-out collectives; the GPU machines' torch 2.11 has the old names.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def pad_to_multiple(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Pad ``x`` with zeros at the end of ``dim`` to the next multiple of ``n`` (no copy if it is one).

    ``[..., L, ...] -> [..., ceil(L / n) * n, ...]``. Pad masks the same way (zeros = masked).
    """
    extra = -x.shape[dim] % n
    if extra == 0:
        return x
    dim = dim % x.dim()
    return F.pad(x, [0, 0] * (x.dim() - 1 - dim) + [0, extra])


def unpad(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """The first ``size`` entries of ``dim``, undoing :func:`pad_to_multiple`.

    ``[..., L', ...] -> [..., size, ...]``.
    """
    return x.narrow(dim, 0, size)


@dataclass
class InFlight:
    """A launched collective: ``result()`` waits for it (when asynchronous) and returns its output.

    ``sent`` keeps the send buffers alive until the collective is done.
    """

    work: dist.Work | None
    finish: Callable[[], torch.Tensor]
    sent: torch.Tensor | list

    def result(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return self.finish()


def _check_divisible(x: torch.Tensor, dim: int, n: int) -> None:
    if x.shape[dim] % n:
        raise ValueError(f"dimension {dim} of shape {tuple(x.shape)} is not a multiple of DAP size {n}: "
                         "pad it with fastfold.distributed.pad_to_multiple (and mask the padding)")


def _slices_first(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Split ``dim`` into n slices and move them to the front: ``[..., L, ...] -> [n, ..., L / n, ...]``."""
    _check_divisible(x, dim, n)
    return x.unflatten(dim, (n, -1)).movedim(dim, 0).contiguous()


def join_ranked(x: torch.Tensor, rank_dim: int, dim: int) -> torch.Tensor:
    """The slices of ``rank_dim`` (rank order) joined along ``dim``, which follows ``rank_dim`` in ``x``'s
    dimensions, removed: ``[..., n, ..., L / n, ...] -> [..., L, ...]`` (a view where memory allows)."""
    rank_dim, dim = rank_dim % x.dim(), dim % x.dim()
    target = dim - 1 if dim > rank_dim else dim
    return x.movedim(rank_dim, target).flatten(target, target + 1)


def launch_all_gather(x: torch.Tensor, dim: int, mesh: ParallelMesh, async_op: bool) -> InFlight:
    """Start gathering every rank's ``x`` along ``dim``: ``[..., L / n, ...] -> [..., L, ...]``."""
    dim = dim % x.dim()
    send = x.contiguous()
    received = send.new_empty((mesh.dap_size, *send.shape))  # [n, ..., L / n, ...]
    work = _all_gather_single(received.view(-1), send.view(-1), group=mesh.dap_group, async_op=async_op)
    return InFlight(work if async_op else None, lambda: join_ranked(received, 0, dim + 1), send)


def launch_reduce_scatter(x: torch.Tensor, dim: int, mesh: ParallelMesh, async_op: bool) -> InFlight:
    """Start summing ``x`` over the ranks, keeping this rank's slice of ``dim``.

    ``[..., L, ...] -> [..., L / n, ...]``.
    """
    dim = dim % x.dim()
    send = _slices_first(x, dim, mesh.dap_size)  # [n, ..., L / n, ...]
    received = send.new_empty(send.shape[1:])
    work = _reduce_scatter_single(received.view(-1), send.view(-1), group=mesh.dap_group, async_op=async_op)
    return InFlight(work if async_op else None, lambda: received, send)


def launch_all_to_all_ranked(x: torch.Tensor, rank_dim: int, mesh: ParallelMesh, async_op: bool) -> InFlight:
    """Start sending slice r of ``x``'s ``rank_dim`` (of size n) to rank r; slice s of the result's
    ``rank_dim`` is what rank s sent here. ``[..., n, ...] -> [..., n, ...]``, its own adjoint.

    Each slice is sent from its own memory (copied only where it is not contiguous) and lands in one
    buffer ``[n, ...]``, of which the result is a view.
    """
    rank_dim = rank_dim % x.dim()
    if x.shape[rank_dim] != mesh.dap_size:
        raise ValueError(f"all-to-all: dimension {rank_dim} of shape {tuple(x.shape)} should be the DAP size "
                         f"{mesh.dap_size}")
    sends = [piece.contiguous() for piece in x.unbind(rank_dim)]
    received = x.new_empty((mesh.dap_size, *sends[0].shape))  # [n, ...], slice s from rank s
    work = dist.all_to_all(list(received.unbind(0)), sends, group=mesh.dap_group, async_op=async_op)
    return InFlight(work if async_op else None, lambda: received.movedim(0, rank_dim), sends)


def launch_all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, mesh: ParallelMesh,
                      async_op: bool) -> InFlight:
    """Start switching the sharded dimension from ``gather_dim`` to ``scatter_dim``.

    Slice r of ``scatter_dim`` goes to rank r; the pieces received are joined along ``gather_dim`` in
    rank order: ``x`` sharded on ``gather_dim`` ``[..., A / n, ..., B, ...]`` ->
    ``[..., A, ..., B / n, ...]`` sharded on ``scatter_dim``.
    """
    scatter_dim, gather_dim = scatter_dim % x.dim(), gather_dim % x.dim()
    _check_divisible(x, scatter_dim, mesh.dap_size)
    ranked = launch_all_to_all_ranked(x.unflatten(scatter_dim, (mesh.dap_size, -1)), scatter_dim, mesh,
                                      async_op)  # [..., n, ..., B / n, ...] at scatter_dim
    gathered = gather_dim + 1 if gather_dim > scatter_dim else gather_dim  # its index after the unflatten
    return InFlight(ranked.work, lambda: join_ranked(ranked.finish(), scatter_dim, gathered), ranked.sent)


def launch_exchange(x: torch.Tensor, mesh: ParallelMesh, async_op: bool) -> InFlight:
    """Start sending ``x[s]`` to the s-th other rank and receiving, in ``result[s]``, what it sends here.

    ``[n - 1, ...] -> [n - 1, ...]``, the other ranks in rank order (this rank skipped: nothing is copied
    to itself). For partial sums that belong to other ranks' slices, such as the incoming triangle
    update's sums over a rank's own rows. The exchange is its own adjoint.
    """
    me, n = mesh.dap_rank, mesh.dap_size
    if x.shape[0] != n - 1:
        raise ValueError(f"exchange: {x.shape[0]} pieces for DAP size {n}, expected {n - 1}")
    send = x.contiguous()
    received = torch.empty_like(send)
    splits = [0 if r == me else 1 for r in range(n)]  # in pieces along dimension 0
    work = dist.all_to_all_single(received, send, splits, splits, group=mesh.dap_group, async_op=async_op)
    return InFlight(work if async_op else None, lambda: received, send)


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, mesh):
        ctx.dim, ctx.mesh, ctx.full_shape = dim, mesh, x.shape
        _check_divisible(x, dim, mesh.dap_size)
        return x.chunk(mesh.dap_size, dim)[mesh.dap_rank].clone()

    @staticmethod
    def backward(ctx, grad):
        full = grad.new_zeros(ctx.full_shape)
        full.chunk(ctx.mesh.dap_size, ctx.dim)[ctx.mesh.dap_rank].copy_(grad)
        return full, None, None


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, mesh):
        ctx.dim, ctx.mesh = dim, mesh
        return launch_all_gather(x, dim, mesh, async_op=False).result()

    @staticmethod
    def backward(ctx, grad):
        return launch_reduce_scatter(grad, ctx.dim, ctx.mesh, async_op=False).result(), None, None


class _ReduceScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, mesh):
        ctx.dim, ctx.mesh = dim, mesh
        return launch_reduce_scatter(x, dim, mesh, async_op=False).result()

    @staticmethod
    def backward(ctx, grad):
        return launch_all_gather(grad, ctx.dim, ctx.mesh, async_op=False).result(), None, None


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scatter_dim, gather_dim, mesh):
        ctx.scatter_dim, ctx.gather_dim, ctx.mesh = scatter_dim, gather_dim, mesh
        return launch_all_to_all(x, scatter_dim, gather_dim, mesh, async_op=False).result()

    @staticmethod
    def backward(ctx, grad):
        inverse = launch_all_to_all(grad, ctx.gather_dim, ctx.scatter_dim, ctx.mesh, async_op=False)
        return inverse.result(), None, None, None


class _Exchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mesh):
        ctx.mesh = mesh
        return launch_exchange(x, mesh, async_op=False).result()

    @staticmethod
    def backward(ctx, grad):
        return launch_exchange(grad, ctx.mesh, async_op=False).result(), None


def scatter(x: torch.Tensor, dim: int, mesh: ParallelMesh) -> torch.Tensor:
    """This rank's slice of a replicated tensor: ``[..., L, ...] -> [..., L / n, ...]``.

    No communication either way; the backward embeds the gradient slice in zeros (see the module
    docstring for why this, not a gather, is the adjoint).
    """
    return x if mesh.dap_size == 1 else _Scatter.apply(x, dim, mesh)


def all_gather(x: torch.Tensor, dim: int, mesh: ParallelMesh) -> torch.Tensor:
    """The whole tensor from the slices of ``dim`` on the DAP ranks: ``[..., L / n, ...] -> [..., L, ...]``.

    Backward: reduce-scatter of the gradient.
    """
    return x if mesh.dap_size == 1 else _AllGather.apply(x, dim, mesh)


def reduce_scatter(x: torch.Tensor, dim: int, mesh: ParallelMesh) -> torch.Tensor:
    """Sum of ``x`` over the DAP ranks, this rank's slice of ``dim``: ``[..., L, ...] -> [..., L / n, ...]``.

    Backward: all-gather of the gradient.
    """
    return x if mesh.dap_size == 1 else _ReduceScatter.apply(x, dim, mesh)


def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, mesh: ParallelMesh) -> torch.Tensor:
    """Move the sharding of ``x`` from ``gather_dim`` to ``scatter_dim`` (see :func:`launch_all_to_all`).

    For example rows to columns of an MSA, ``scatter_dim=-2, gather_dim=-3``:
    ``[*, N_seq / n, N_res, C] -> [*, N_seq, N_res / n, C]``. Backward: the inverse all-to-all.
    """
    return x if mesh.dap_size == 1 else _AllToAll.apply(x, scatter_dim, gather_dim, mesh)


def exchange(x: torch.Tensor, mesh: ParallelMesh) -> torch.Tensor:
    """Piece s of ``x`` to the s-th other rank, its piece for this rank back (see :func:`launch_exchange`).

    ``[n - 1, ...] -> [n - 1, ...]``. Backward: the same exchange of the gradient.
    """
    return x if mesh.dap_size == 1 else _Exchange.apply(x, mesh)
