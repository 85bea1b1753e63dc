"""Process mesh (data parallel x DAP), DAP collectives with their adjoint backwards, duality-async pairs,
the DAP layout hooks of the axial stacks, and :func:`parallelize` which applies them to a built model.

The gradient convention is in :mod:`fastfold.distributed.comm`: every DAP rank computes the same loss,
and the training step averages parameter gradients over all DP x DAP processes
(:func:`average_gradients`).
"""

from fastfold.distributed.async_comm import Pending, start_all_gather, start_all_to_all, start_exchange, wait
from fastfold.distributed.comm import (
    all_gather,
    all_to_all,
    exchange,
    pad_to_multiple,
    reduce_scatter,
    scatter,
    unpad,
)
from fastfold.distributed.launch import init_from_env, spawn
from fastfold.distributed.layout import DapLayout
from fastfold.distributed.mesh import ParallelMesh
from fastfold.distributed.parallelize import average_gradients, parallelize

__all__ = ["DapLayout", "ParallelMesh", "Pending", "all_gather", "all_to_all", "average_gradients",
           "exchange", "init_from_env", "pad_to_multiple", "parallelize", "reduce_scatter", "scatter",
           "spawn", "start_all_gather", "start_all_to_all", "start_exchange", "unpad", "wait"]
