"""Test-session settings: one compute thread per pytest-xdist worker.

CI has 2 cores and runs 2 workers; letting torch and XLA each start a thread pool per core in every
worker oversubscribes the machine and makes run times swing tenfold. Set before jax/torch start work.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import torch

    torch.set_num_threads(1)
