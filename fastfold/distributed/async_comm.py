"""Duality-async DAP collectives: start in one place, wait in another, in forward and in backward.

``pending = start_all_gather(x, dim, mesh)`` launches the collective and returns at once;
``y = wait(pending)`` blocks until it is done and returns the same tensor as the synchronous
:func:`~fastfold.distributed.comm.all_gather`. Computation placed between the two, that does not need
``y``, overlaps the communication. In the backward pass the roles swap: the backward of ``wait``
launches the partner collective on the gradient of ``y`` (reduce-scatter, or the inverse all-to-all)
and the backward of ``start`` waits for it, so the backward of the computation placed between them
(which autograd runs in between, newest node first) overlaps that communication.

The two halves are autograd functions linked by a zero-size token tensor; a :class:`_Flight` that
both autograd nodes hold carries the in-flight work handle in both directions. Nothing in it points
back at the token or the :class:`Pending`: a reference cycle through the autograd graph would keep
the graph, and the activations a rematerialised block recomputes, alive after the backward pass (the
garbage collector cannot break cycles through C++ autograd nodes). Each ``start_*`` must be followed
by exactly one :func:`wait`, in the same order on every rank of the DAP group, also in the part of a
block that a rematerialisation recomputes; the input must not be modified in place before the wait.
Backwards are the adjoints of :mod:`fastfold.distributed.comm` (same gradient convention).
"""

from collections.abc import Callable

import torch

from fastfold.distributed.comm import (
    InFlight,
    launch_all_gather,
    launch_all_to_all,
    launch_all_to_all_ranked,
    launch_exchange,
    launch_reduce_scatter,
)
from fastfold.distributed.mesh import ParallelMesh

# (tensor, async_op) -> InFlight
Launcher = Callable[[torch.Tensor, bool], InFlight]


class _Flight:
    """The collectives of one :class:`Pending`: the forward one until :func:`wait`, the backward one
    from the backward of ``wait`` to the backward of ``start``."""

    def __init__(self, forward: Launcher, backward: Launcher):
        self.forward, self.backward = forward, backward
        self.in_flight: InFlight | None = None
        self.gradient_in_flight: InFlight | None = None


class Pending:
    """A DAP collective between its start and its :func:`wait`.

    Parameters
    ----------
    forward : callable
        Launches the forward collective on a tensor; ``None`` for the identity (DAP size 1).
    backward : callable
        Launches the adjoint collective on the gradient of the result.
    x : torch.Tensor
        The input.
    """

    def __init__(self, forward: Launcher | None, backward: Launcher | None, x: torch.Tensor):
        self.identity = x if forward is None else None
        self.flight = None if forward is None else _Flight(forward, backward)
        self.token = None if forward is None else _Start.apply(x, self.flight)


class _Start(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, flight):
        ctx.flight = flight
        flight.in_flight = flight.forward(x, True)
        return x.new_empty(0)  # token: links the start to the wait in the autograd graph

    @staticmethod
    def backward(ctx, token_grad):
        in_flight, ctx.flight.gradient_in_flight = ctx.flight.gradient_in_flight, None
        return in_flight.result(), None


class _Wait(torch.autograd.Function):
    @staticmethod
    def forward(ctx, token, flight):
        ctx.flight = flight
        in_flight, flight.in_flight = flight.in_flight, None
        return in_flight.result()

    @staticmethod
    def backward(ctx, grad):
        ctx.flight.gradient_in_flight = ctx.flight.backward(grad, True)
        return grad.new_zeros(0), None


def wait(pending: Pending) -> torch.Tensor:
    """Wait for a started collective and return its result (the tensor the synchronous call returns)."""
    if pending.flight is None:
        return pending.identity
    if pending.flight.in_flight is None:
        raise RuntimeError("wait() called twice on the same pending collective")
    return _Wait.apply(pending.token, pending.flight)


def start_all_gather(x: torch.Tensor, dim: int, mesh: ParallelMesh) -> Pending:
    """Start :func:`~fastfold.distributed.comm.all_gather`: ``[..., L / n, ...] -> [..., L, ...]`` at
    :func:`wait`; its backward reduce-scatters."""
    if mesh.dap_size == 1:
        return Pending(None, None, x)
    return Pending(lambda t, async_op: launch_all_gather(t, dim, mesh, async_op),
                   lambda g, async_op: launch_reduce_scatter(g, dim, mesh, async_op), x)


def start_all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, mesh: ParallelMesh) -> Pending:
    """Start :func:`~fastfold.distributed.comm.all_to_all` (sharding moves from ``gather_dim`` to
    ``scatter_dim``); its backward is the inverse all-to-all."""
    if mesh.dap_size == 1:
        return Pending(None, None, x)
    return Pending(lambda t, async_op: launch_all_to_all(t, scatter_dim, gather_dim, mesh, async_op),
                   lambda g, async_op: launch_all_to_all(g, gather_dim, scatter_dim, mesh, async_op), x)


def start_all_to_all_ranked(x: torch.Tensor, rank_dim: int, mesh: ParallelMesh) -> Pending:
    """Start :func:`~fastfold.distributed.comm.launch_all_to_all_ranked`: slice r of ``rank_dim`` (size n)
    to rank r, ``[..., n, ...] -> [..., n, ...]`` at :func:`wait`; its own adjoint."""
    if mesh.dap_size == 1:
        return Pending(None, None, x)

    def launch(t: torch.Tensor, async_op: bool) -> InFlight:
        return launch_all_to_all_ranked(t, rank_dim, mesh, async_op)

    return Pending(launch, launch, x)


def start_exchange(x: torch.Tensor, mesh: ParallelMesh) -> Pending:
    """Start :func:`~fastfold.distributed.comm.exchange`: ``[n - 1, ...]`` pieces for the other ranks ->
    theirs for this rank at :func:`wait`; its backward is the same exchange."""
    if mesh.dap_size == 1:
        return Pending(None, None, x)

    def launch(t: torch.Tensor, async_op: bool) -> InFlight:
        return launch_exchange(t, mesh, async_op)

    return Pending(launch, launch, x)
