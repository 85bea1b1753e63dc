"""The DAP implementation of the axial stacks' layout hooks.

It has the methods of :class:`fastfold.model.layout.AxialLayout` (documented there, with the shapes)
without importing the model package: ``distributed`` and ``model`` stay independent of each other.
"""

import torch

from fastfold.distributed import async_comm, comm
from fastfold.distributed.mesh import ParallelMesh

ROWS, COLUMNS = -3, -2  # the sharded dimensions of [*, A, B, C] activations


def _by_rank(x: torch.Tensor, dim: int, rank_dim: int, n: int) -> torch.Tensor:
    """A view of ``x`` with ``dim`` split into n slices along a new ``rank_dim`` (of the split tensor's
    dimensions; a size-1 ``dim`` broadcasts): ``[*, l, B, C] -> [*, n, l, B / n, C]`` for ``dim`` COLUMNS,
    ``rank_dim`` -4."""
    if x.shape[dim] == 1:
        return x.unsqueeze(rank_dim)
    split = x.unflatten(dim, (n, -1))
    return split.movedim(dim - 1 if dim < 0 else dim, rank_dim)


def _done(result: torch.Tensor) -> async_comm.Pending:
    """A pending collective that has already finished (``overlap=False``): ``wait`` returns ``result``."""
    return async_comm.Pending(None, None, result)


class DapLayout:
    """Layout hooks over the DAP group of ``mesh``: n = ``mesh.dap_size`` slices of every activation.

    See :mod:`fastfold.model.layout` for the shapes and conventions, and
    :mod:`fastfold.distributed.comm` for the gradient convention (average parameter gradients over all
    DP x DAP processes).

    Parameters
    ----------
    mesh : ParallelMesh
        The process mesh; a mesh with ``dap_size == 1`` makes every hook the identity.
    overlap : bool
        ``start_*`` launch their collective and return at once, so that the computation placed
        before the matching ``wait`` overlaps it (default). ``False`` makes them synchronous (for
        measuring what the overlap saves); the results are the same.
    pieces : int
        The pieces in which :meth:`residual_columns_to_rows` and :meth:`residual_rows_to_columns` move an
        activation (the all-to-all of each overlaps ``fn`` on the pieces already arrived).
    gather_groups : int
        The groups of channels in which the triangle multiplicative update gathers ``right``, each its
        own collective, so that the product of one group overlaps the gathering of the next (1: one
        gather, the default); at most the number of channels is used. On 2 H200s (N_res 1024, inference)
        4 groups left 16.5 ms of NCCL time exposed against 19.1 ms, but the step was no faster.
    """

    def __init__(self, mesh: ParallelMesh, overlap: bool = True, pieces: int = 4, gather_groups: int = 1):
        if pieces < 1 or gather_groups < 1:
            raise ValueError(f"DapLayout: pieces {pieces} and gather_groups {gather_groups} must be >= 1")
        self.mesh = mesh
        self.overlap = overlap
        self.pieces = pieces
        self.gather_groups = gather_groups

    @property
    def num_shards(self) -> int:
        return self.mesh.dap_size

    @property
    def shard_index(self) -> int:
        return self.mesh.dap_rank

    def enter(self, act: torch.Tensor, mask: torch.Tensor) -> tuple:
        n = self.mesh.dap_size
        act = comm.pad_to_multiple(comm.pad_to_multiple(act, ROWS, n), COLUMNS, n)
        mask = comm.pad_to_multiple(comm.pad_to_multiple(mask, -2, n), -1, n)
        return comm.scatter(act, ROWS, self.mesh), mask

    def leave(self, act: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
        whole = comm.all_gather(act, ROWS, self.mesh)
        return comm.unpad(comm.unpad(whole, ROWS, rows), COLUMNS, columns)

    def shard(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return comm.scatter(x, dim, self.mesh)

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return comm.all_gather(x, dim, self.mesh)

    def start_gather(self, x: torch.Tensor, dim: int) -> async_comm.Pending:
        if not self.overlap:
            return _done(self.gather(x, dim))
        return async_comm.start_all_gather(x, dim, self.mesh)

    def start_exchange(self, x: torch.Tensor) -> async_comm.Pending:
        if not self.overlap:
            return _done(comm.exchange(x, self.mesh))
        return async_comm.start_exchange(x, self.mesh)

    def rows_to_columns(self, x: torch.Tensor) -> torch.Tensor:
        return comm.all_to_all(x, COLUMNS, ROWS, self.mesh)

    def columns_to_rows(self, x: torch.Tensor) -> torch.Tensor:
        return comm.all_to_all(x, ROWS, COLUMNS, self.mesh)

    def start_columns_to_rows(self, x: torch.Tensor) -> async_comm.Pending:
        if not self.overlap:
            return _done(self.columns_to_rows(x))
        return async_comm.start_all_to_all(x, ROWS, COLUMNS, self.mesh)

    def residual_columns_to_rows(self, fn, x: torch.Tensor, args=(), dims=(),
                                 pointwise: bool = False) -> torch.Tensor:
        return self._residual_moved(fn, x, args, dims, ROWS, pointwise)

    def residual_rows_to_columns(self, fn, x: torch.Tensor, args=(), dims=()) -> torch.Tensor:
        return self._residual_moved(fn, x, args, dims, COLUMNS, False)

    def _start_ranked(self, x: torch.Tensor, rank_dim: int) -> async_comm.Pending:
        if not self.overlap:
            return _done(async_comm.wait(async_comm.start_all_to_all_ranked(x, rank_dim, self.mesh)))
        return async_comm.start_all_to_all_ranked(x, rank_dim, self.mesh)

    def _residual_moved(self, fn, x: torch.Tensor, args, dims, dim: int, pointwise: bool) -> torch.Tensor:
        """``y + fn(y, *args)`` with ``y`` the all-to-all that slices ``dim`` (ROWS or COLUMNS) and joins the
        other one, moved in pieces, ``fn`` on each.

        x ``[*, A, B / n, C]`` (``dim`` ROWS) or ``[*, A / n, B, C]`` (COLUMNS) -> the result sliced along
        ``dim``. Slice r of ``dim`` goes to rank r; piece k sends positions ``[s_k, s_k + l_k)`` of every
        such slice, each straight from its memory, and brings this rank's positions ``[s_k, s_k + l_k)``,
        whole along the other axis: ``fn`` on it overlaps the later pieces. Without a gradient to record,
        each piece's sum is written into its place in the result (one pass over the moved pair and the
        update instead of three: joining the moved pieces, joining the updates, adding); a ``pointwise``
        ``fn`` (one acting on each position alone) then takes the piece as it arrives, ``[*, n, l_k, B / n,
        C]`` by source rank, and its sum goes to the ranks' places through a strided view: not joined at all.
        """
        n = self.mesh.dap_size
        if n == 1:
            return x + fn(x, *args)
        other = COLUMNS if dim == ROWS else ROWS  # the dimension joined
        by_rank = x.unflatten(dim, (n, -1))  # [*, n, A / n, B / n, C] or [*, A / n, n, B / n, C]
        rank_dim, size = dim - 1, by_rank.shape[dim]
        joined = other - 1 if other < dim else other  # the other dimension's index in by_rank
        pieces = min(self.pieces, size)
        bounds = [size * k // pieces for k in range(pieces + 1)]
        spans = [(begin, end - begin) for begin, end in zip(bounds[:-1], bounds[1:], strict=True)]
        pending = [self._start_ranked(by_rank.narrow(dim, begin, length), rank_dim)
                   for begin, length in spans]
        in_place = not torch.is_grad_enabled()
        ranked = pointwise and in_place  # fn on the pieces by source rank, [*, n, l_k, B / n, C] (ROWS)
        sums, result = [], None
        for (begin, length), piece in zip(spans, pending, strict=True):
            moved = self.wait(piece)  # by source rank, slices of the other dimension
            if not ranked:
                moved = comm.join_ranked(moved, rank_dim, joined)  # [*, l_k, B, C] or [*, A, l_k, C]
            sliced = [a if a is None or d is None or a.shape[d] == 1 else a.narrow(d, begin, length)
                      for a, d in zip(args, dims, strict=True)]
            if ranked:
                sliced = [a if a is None else _by_rank(a, other, rank_dim, n) for a in sliced]
            update = fn(moved, *sliced)
            if not in_place:
                sums.append(moved + update)
                continue
            if result is None:
                shape = list(x.shape)
                shape[dim], shape[other] = size, x.shape[other] * n
                result = x.new_empty(shape, dtype=torch.promote_types(moved.dtype, update.dtype))
            place = result.narrow(dim, begin, length)
            torch.add(moved, update, out=_by_rank(place, other, rank_dim, n) if ranked else place)
        return torch.cat(sums, dim) if sums else result

    def wait(self, pending: async_comm.Pending) -> torch.Tensor:
        return async_comm.wait(pending)
