"""Per-process activation memory of the Evoformer stack at DAP 1, 2 and 4, on CPU processes (gloo).

Counts the bytes of the tensors that autograd saves for the backward pass during one training
forward (``torch.autograd.graph.saved_tensors_hooks``; each storage counted once, parameters
excluded), on every process of a DAP group of 4 processes split as DAP 1 (4 replicas), 2 and 4::

    python scripts/measure_dap_memory.py [--num-seq 32 --num-res 64]
"""

import argparse

import torch
import torch.distributed as dist

from fastfold.config import model_config
from fastfold.distributed import ParallelMesh, parallelize, spawn
from fastfold.model.evoformer import EvoformerStack


def saved_bytes(model: torch.nn.Module, args: tuple) -> int:
    """Bytes of distinct non-parameter storages saved for backward by one forward of ``model``."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*args)
    return sum(storages.values())


def _worker(mesh: ParallelMesh, num_seq: int, num_res: int) -> None:
    cfg = model_config("model_1_ptm").model
    cfg.global_config.update(zero_init=False, deterministic=True)
    e = cfg.embeddings_and_evoformer
    e.update(msa_channel=64, pair_channel=32, evoformer_num_block=2)
    e.evoformer.outer_product_mean.num_outer_channel = 16
    for name in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
        e.evoformer[name].num_intermediate_channel = 32
    torch.manual_seed(0)
    model = EvoformerStack(e, cfg.global_config).train()
    args = (torch.randn(num_seq, num_res, 64), torch.randn(num_res, num_res, 32),
            torch.ones(num_seq, num_res), torch.ones(num_res, num_res))
    results = {}
    for dap_size in (1, 2, 4):
        parallelize(model, ParallelMesh.from_process_group(dap_size))
        measured = torch.tensor(float(saved_bytes(model, args)))
        dist.all_reduce(measured, op=dist.ReduceOp.MAX)
        results[dap_size] = measured.item()
    if mesh.rank == 0:
        print(f"Evoformer, 2 blocks, C_m 64, C_z 32, N_seq {num_seq}, N_res {num_res}, training forward")
        print("| DAP | saved activations per process, MiB | / DAP 1 | ideal 1/n |\n|---|---|---|---|")
        for dap_size, value in results.items():
            print(f"| {dap_size} | {value / 2**20:.1f} | {value / results[1]:.3f} | {1 / dap_size:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-seq", type=int, default=32)
    parser.add_argument("--num-res", type=int, default=64)
    options = parser.parse_args()
    spawn(_worker, 4, 4, options.num_seq, options.num_res)


if __name__ == "__main__":
    main()
