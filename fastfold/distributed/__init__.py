"""Process mesh (data parallel x DAP), DAP collectives with their adjoint backwards, duality-async pairs,
and the DAP layout hooks of the axial stacks.

The gradient convention is in :mod:`fastfold.distributed.comm`: every DAP rank computes the same loss,
and the training step averages parameter gradients over all DP x DAP processes.
"""

from fastfold.distributed.async_comm import Pending, start_all_gather, start_all_to_all, wait
from fastfold.distributed.comm import all_gather, all_to_all, pad_to_multiple, reduce_scatter, scatter, unpad
from fastfold.distributed.launch import init_from_env, spawn
from fastfold.distributed.layout import DapLayout
from fastfold.distributed.mesh import ParallelMesh

__all__ = ["DapLayout", "ParallelMesh", "Pending", "all_gather", "all_to_all", "init_from_env",
           "pad_to_multiple", "reduce_scatter", "scatter", "spawn", "start_all_gather", "start_all_to_all",
           "unpad", "wait"]
