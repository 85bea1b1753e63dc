"""Apply Dynamic Axial Parallelism to a built model, and the gradient averaging of the training step.

``parallelize(model, mesh)`` gives every module of the axial stacks (Evoformer, extra MSA, template
pair stack) the DAP layout of ``mesh`` in place of the single-process one; nothing else changes, so
parameters, their names and the state dict are the same on every mesh (checkpoints are
mesh-independent) and the same forward runs on one process or many. Every process of a DAP group
must see the same inputs and the same random state (dropout masks are drawn whole and sliced).

:func:`average_gradients` is the one place where the gradient convention of
:mod:`fastfold.distributed.comm` is applied: after ``loss.backward()`` on every process, it averages
each parameter gradient over all DP x DAP processes.
"""

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from fastfold.distributed.layout import DapLayout
from fastfold.distributed.mesh import ParallelMesh


def _check_mesh(mesh: ParallelMesh) -> None:
    """Raise ``ValueError`` unless ``mesh`` describes the running process group (before any work)."""
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if mesh.world_size != world_size:
        raise ValueError(f"mesh of world size {mesh.world_size} (DP {mesh.data_parallel_size} x DAP "
                         f"{mesh.dap_size}) does not match the {world_size} running processes")


def parallelize(model: nn.Module, mesh: ParallelMesh, overlap: bool = True,
                gather_groups: int = 1) -> nn.Module:
    """Set the DAP layout of ``mesh`` on every module of ``model`` that has a ``layout`` hook.

    Parameters
    ----------
    model : nn.Module
        Any model containing axial stacks (``AlphaFold``, ``EvoformerStack``, ...); changed in place.
    mesh : ParallelMesh
        The process mesh; checked against the running processes. With DAP size 1 every hook stays
        the identity.
    overlap : bool
        Overlap the asynchronous collectives with computation (see
        :class:`~fastfold.distributed.layout.DapLayout`); ``False`` only for measurements.
    gather_groups : int
        The channel groups of the triangle update's gather (see
        :class:`~fastfold.distributed.layout.DapLayout`); the results do not depend on it.

    Returns
    -------
    nn.Module
        ``model``.
    """
    _check_mesh(mesh)
    layout = DapLayout(mesh, overlap=overlap, gather_groups=gather_groups)
    for module in model.modules():
        if hasattr(module, "layout"):
            module.layout = layout
    return model


def average_gradients(parameters: Iterable[nn.Parameter], mesh: ParallelMesh) -> None:
    """Average the gradients of ``parameters`` over all DP x DAP processes, in place.

    The training step calls this after ``loss.backward()`` and before the optimiser step. Under DAP
    every process computes the same loss, and the DAP backwards sum the per-process contributions, so
    the sum over a DAP group is ``dap_size`` times the gradient; over DP the replicas' gradients are
    averaged. Dividing the sum over the world by the world size does both. Every process must hold
    gradients for the same parameters (the same graph runs everywhere); those without one are skipped.

    Parameters
    ----------
    parameters : iterable of nn.Parameter
        Usually ``model.parameters()``.
    mesh : ParallelMesh
        The process mesh; nothing happens on one process.
    """
    if mesh.world_size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    buckets: dict = {}
    for grad in grads:
        buckets.setdefault((grad.dtype, grad.device), []).append(grad)
    for bucket in buckets.values():  # one all-reduce per dtype and device
        flat = torch.cat([grad.reshape(-1) for grad in bucket])
        dist.all_reduce(flat)
        flat /= mesh.world_size
        for grad, reduced in zip(bucket, flat.split([grad.numel() for grad in bucket]), strict=True):
            grad.copy_(reduced.view_as(grad))
