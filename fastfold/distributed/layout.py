"""The DAP implementation of the axial stacks' layout hooks.

It has the methods of :class:`fastfold.model.layout.AxialLayout` (documented there, with the shapes)
without importing the model package: ``distributed`` and ``model`` stay independent of each other.
"""

import torch

from fastfold.distributed import async_comm, comm
from fastfold.distributed.mesh import ParallelMesh

ROWS, COLUMNS = -3, -2  # the sharded dimensions of [*, A, B, C] activations


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
        The pieces of the local columns that :meth:`map_columns_to_rows` pipelines.
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

    def map_columns_to_rows(self, fn, x: torch.Tensor) -> torch.Tensor:
        n = self.mesh.dap_size
        if n == 1:
            return fn(x)
        pieces = x.tensor_split(min(self.pieces, x.shape[COLUMNS]), COLUMNS)  # [*, A, w_k, C]
        pending = [self.start_columns_to_rows(fn(piece)) for piece in pieces]  # fn(k + 1) overlaps k
        # Piece k brings, from every rank r, the w_k columns of piece k of r's slice: [*, A / n, n, w_k, C]
        received = [self.wait(p).unflatten(COLUMNS, (n, -1)) for p in pending]
        return torch.cat(received, COLUMNS).flatten(COLUMNS - 1, COLUMNS)  # [*, A / n, B, C]

    def wait(self, pending: async_comm.Pending) -> torch.Tensor:
        return async_comm.wait(pending)
