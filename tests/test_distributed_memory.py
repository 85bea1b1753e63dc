"""DAP training memory: with rematerialisation, per-process activations shrink with the DAP size, nothing
accumulates from one training step to the next, and every collective started (in the forward, the
recomputation and the backward) is waited for; the gradients equal DAP 1's.

Memory is the bytes of the tensor storages alive, tracked op by op (a dispatch mode keeping weak
references), on 2 spawned gloo processes: DAP 1 (two replicas) against DAP 2.
"""

import torch
import torch.distributed as dist
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from fastfold.config import model_config
from fastfold.distributed import ParallelMesh, async_comm, average_gradients, parallelize, spawn
from fastfold.model.evoformer import EvoformerStack

NUM_SEQ, NUM_RES, MSA_DIM, PAIR_DIM = 16, 32, 32, 16


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages that ops created and that are still alive: ``now()`` and the ``peak``."""

    def __init__(self):
        super().__init__()
        self.storages, self.peak = {}, 0

    def now(self) -> int:
        self.storages = {key: value for key, value in self.storages.items() if not value[0].expired()}
        return sum(nbytes for _, nbytes in self.storages.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self.storages.setdefault(storage._cdata, (StorageWeakRef(storage), storage.nbytes()))
        self.peak = max(self.peak, self.now())
        return out


def _stack() -> EvoformerStack:
    """2 Evoformer blocks of model_1_ptm at small widths, training with rematerialisation, no dropout."""
    cfg = model_config("model_1_ptm").model
    cfg.global_config.update(zero_init=False, deterministic=True, use_remat=True)
    e = cfg.embeddings_and_evoformer
    e.update(msa_channel=MSA_DIM, pair_channel=PAIR_DIM, evoformer_num_block=2)
    e.evoformer.outer_product_mean.num_outer_channel = 8
    torch.manual_seed(0)
    return EvoformerStack(e, cfg.global_config).train()


def _worker(mesh: ParallelMesh) -> None:
    torch.set_num_threads(1)
    flights = []  # every collective started, to check that each was waited for
    launch = async_comm._Flight.__init__
    async_comm._Flight.__init__ = lambda self, *args: (flights.append(self), launch(self, *args))[-1]
    model = _stack()
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(NUM_SEQ, NUM_RES, MSA_DIM, generator=g),
              torch.randn(NUM_RES, NUM_RES, PAIR_DIM, generator=g),
              torch.ones(NUM_SEQ, NUM_RES), torch.ones(NUM_RES, NUM_RES))
    peaks, grads = {}, {}
    for dap_size in (1, 2):
        parallelize(model, ParallelMesh.from_process_group(dap_size))
        live, after = LiveBytes(), []
        for step in range(3):  # step 0 warms up (lazily built state) outside the tracking
            with live if step else torch.enable_grad():
                msa, pair = model(*inputs)
                (msa.sum() + (pair * pair).mean()).backward()
                del msa, pair
                average_gradients(model.parameters(), mesh)
                grads[dap_size] = torch.cat([p.grad.flatten() for p in model.parameters()])
                model.zero_grad(set_to_none=True)
                after.append(live.now())
        assert after[1] == after[2], f"DAP {dap_size}: {after[2] - after[1]} bytes more after each step"
        peaks[dap_size] = live.peak
    assert flights and all(f.in_flight is None and f.gradient_in_flight is None for f in flights)
    error = (grads[2] - grads[1]).norm() / grads[1].norm()
    assert error < 1e-5, f"DAP 2 gradients with remat: relative error {error:.3g}"
    ratio = torch.tensor(peaks[2] / peaks[1])
    dist.all_reduce(ratio, op=dist.ReduceOp.MAX)
    assert ratio <= 0.65, f"peak activation bytes at DAP 2 are {ratio:.2f} x DAP 1 (ideal 0.5)"


def test_remat_training_memory_at_dap_2():
    spawn(_worker, 2, 2)
