"""Starting process groups: under torchrun (:func:`init_from_env`) or spawned for tests (:func:`spawn`)."""

import os
import tempfile
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastfold.distributed.mesh import ParallelMesh, check_degrees

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def init_from_env(dap_size: int, backend: str | None = None) -> ParallelMesh:
    """Initialise ``torch.distributed`` from torchrun's environment and build the mesh.

    Without torchrun's variables (a plain ``python train.py``) this returns
    :meth:`ParallelMesh.single`. The backend defaults to NCCL when CUDA is available (each process
    then uses GPU ``LOCAL_RANK``), gloo otherwise.

    Parameters
    ----------
    dap_size : int
        Processes per DAP group; checked against ``WORLD_SIZE`` before the process group starts.
    backend : str, optional
        ``"nccl"`` or ``"gloo"``.
    """
    if "RANK" not in os.environ:
        check_degrees(1, dap_size)
        return ParallelMesh.single()
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(f"incomplete torchrun environment: {', '.join(missing)} not set")
    check_degrees(int(os.environ["WORLD_SIZE"]), dap_size)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    return ParallelMesh.from_process_group(dap_size)


def _run_spawned(rank: int, fn: Callable, world_size: int, dap_size: int, store_path: str, args: tuple):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size)
    try:
        fn(ParallelMesh.from_process_group(dap_size), *args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world_size: int, dap_size: int, *args) -> None:
    """Run ``fn(mesh, *args)`` in ``world_size`` new CPU processes joined by gloo, for tests.

    The processes meet through a file store in a fresh temporary folder (no network port to collide
    with other runs). ``fn`` and ``args`` must be picklable (a module-level function); an exception in
    any process is raised here.
    """
    check_degrees(world_size, dap_size)
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_run_spawned, args=(fn, world_size, dap_size, os.path.join(folder, "store"), args),
                 nprocs=world_size)
