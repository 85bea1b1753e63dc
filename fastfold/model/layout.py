"""Layout hooks of the axial stacks (Evoformer, extra MSA, template pair stack); identity on one process.

Under Dynamic Axial Parallelism (DAP) the n processes of a DAP group each hold one slice of the MSA
``[*, N_seq, N_res, C_m]`` and of the pair ``[*, N_res, N_res, C_z]`` activations, along the rows
(dimension -3) or along the columns (dimension -2). A module works on the slice that its axis of
attention or contraction does not cross, and the stack moves the slicing between the axes with the
hooks below. :class:`AxialLayout` is the single-process layout: every hook is the identity (n = 1), so
the model runs unchanged without DAP and never imports ``torch.distributed``;
``fastfold.distributed.layout.DapLayout`` implements the same methods with collectives.

Conventions for callers
-----------------------
- Between modules the MSA and the pair are row-sharded: ``[*, N_seq / n, N_res, C_m]`` and
  ``[*, N_res / n, N_res, C_z]``, after :meth:`AxialLayout.enter`.
- Masks stay whole on every process (they are small); take the slice a module needs with
  :meth:`AxialLayout.shard`, for example ``shard(msa_mask, -2)`` for row-sharded MSA rows.
- A gathered tensor is the whole tensor on every process; use it for this process's slice of the
  output only (its gradient is summed over the processes by the DAP backward).
- ``start_*`` returns an opaque pending object; pass it to :meth:`AxialLayout.wait` exactly once, and
  put independent computation in between so that it overlaps the communication (in the backward pass
  too). Do not modify the input in place before the wait. Wait inside the function that a
  rematerialisation recomputes, so that the recomputation waits too.
- Sizes are padded to a multiple of n by :meth:`AxialLayout.enter` (with the masks padded by zeros),
  so every ``N / n`` above is exact; :meth:`AxialLayout.leave` removes the padding.
"""

import torch


class AxialLayout:
    """The single-process layout: every hook returns its input (n = 1).

    Modules of the axial stacks hold one in their ``layout`` attribute;
    ``fastfold.distributed.parallelize`` replaces it with the DAP layout after the model is built.
    """

    num_shards = 1  # n: the number of slices of every sharded activation
    shard_index = 0  # which slice this process holds
    gather_groups = 1  # the groups of channels in which the triangle update gathers `right`, one by one

    def enter(self, act: torch.Tensor, mask: torch.Tensor) -> tuple:
        """Pad and slice an activation for the stack.

        act ``[*, A, B, C]``, mask ``[*, A, B]`` -> (act ``[*, A' / n, B', C]`` row-sharded, mask
        ``[*, A', B']`` whole), with ``A'``, ``B'`` the sizes padded to a multiple of n and the mask
        zero on the padding. For the MSA ``A, B = N_seq, N_res``; for the pair ``A = B = N_res``.
        """
        return act, mask

    def leave(self, act: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
        """Undo :meth:`enter`: act ``[*, A' / n, B', C]`` row-sharded -> ``[*, rows, columns, C]`` whole."""
        return act

    def shard(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This process's slice of a whole tensor (a mask) along ``dim``.

        ``[..., L, ...] -> [..., L / n, ...]``; no communication.
        """
        return x

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The whole tensor from the slices along ``dim``: ``[..., L / n, ...] -> [..., L, ...]``.

        Used for the pair bias of MSA row attention and of triangle attention (``dim=-2`` of
        ``[*, H, N_res / n, N_res]``), the "right" projection of the triangle multiplication and of the
        outer product mean.
        """
        return x

    def start_gather(self, x: torch.Tensor, dim: int):
        """Start :meth:`gather`; the result comes from :meth:`wait`."""
        return x

    def start_exchange(self, x: torch.Tensor):
        """Start sending ``x[s]`` to the s-th other process and receiving its piece for this one.

        ``[n - 1, ...] -> [n - 1, ...]`` at :meth:`wait`, the other processes in order: partial results
        that belong to other slices, such as the incoming triangle update's sums over this slice's rows.
        """
        return x

    def rows_to_columns(self, x: torch.Tensor) -> torch.Tensor:
        """Row-sharded ``[*, A / n, B, C]`` -> column-sharded ``[*, A, B / n, C]`` (MSA or pair)."""
        return x

    def columns_to_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Column-sharded ``[*, A, B / n, C]`` -> row-sharded ``[*, A / n, B, C]`` (MSA or pair)."""
        return x

    def start_columns_to_rows(self, x: torch.Tensor):
        """Start :meth:`columns_to_rows`; the result comes from :meth:`wait`."""
        return x

    def residual_columns_to_rows(self, fn, x: torch.Tensor, args=(), dims=(),
                                 pointwise: bool = False) -> torch.Tensor:
        """``y + fn(y, *args)``, ``y = columns_to_rows(x)``: a residual update by an ``fn`` treating each row
        on its own.

        x column-sharded ``[*, A, B / n, C]`` -> row-sharded ``[*, A / n, B, C]``. ``args`` are tensors of
        the row-sharded layout (mask slices, a dropout factor) or None, and ``dims`` give, for each, its
        dimension over the ``A / n`` rows (``None`` or size 1: passed whole). Under DAP the rows come in a few
        pieces, whole ones, and ``fn`` on each overlaps the all-to-all of the next; each piece's sum is
        written in place into the result (no copy of the moved activation or of the update is kept). An
        ``fn`` that is ``pointwise`` (acts on each position alone, as a transition) may get its pieces in
        any layout of the same positions and need not see whole rows: under DAP, without autograd, the
        pieces are never joined.
        """
        return x + fn(x, *args)

    def residual_rows_to_columns(self, fn, x: torch.Tensor, args=(), dims=()) -> torch.Tensor:
        """``y + fn(y, *args)``, ``y = rows_to_columns(x)``: a residual update by an ``fn`` treating each
        column on its own.

        x row-sharded ``[*, A / n, B, C]`` -> column-sharded ``[*, A, B / n, C]``; ``args`` and ``dims`` as
        in :meth:`residual_columns_to_rows`, over the ``B / n`` columns (triangle attention around the
        ending node).
        """
        return x + fn(x, *args)

    def wait(self, pending) -> torch.Tensor:
        """The result of a ``start_*`` call, once its communication is done."""
        return pending
