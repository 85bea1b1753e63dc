"""The Evoformer inference step on one GPU, eagerly and replayed as one CUDA graph.

The 48-block ``EvoformerStack`` of ``scripts/benchmark_dap.py`` (model_1_ptm widths, random non-zero
parameters, 128-row chunks), N_seq 128, N_res 1024 by default, in bfloat16 and float32 (TF32 products).
The graph replay has no Python launch time, so ``eager / graph`` is the host's share. The outputs' mean
magnitudes are printed to compare trees. With ``--tree`` the
``fastfold`` package comes from another checkout (a ``git worktree`` of an older commit), so that two trees
can be timed alternately in one call on one GPU::

    python scripts/benchmark_step.py                       # this tree
    python scripts/benchmark_step.py --tree /tmp/base       # another checkout, same script
"""

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="a checkout whose fastfold package is timed (default: this one)")
    parser.add_argument("--blocks", type=int, default=48)
    parser.add_argument("--num-res", type=int, default=1024)
    parser.add_argument("--num-seq", type=int, default=128)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [args.tree or os.path.dirname(here), here]
    import benchmark_dap as bench
    import torch

    import fastfold

    torch.backends.cuda.matmul.allow_tf32 = True
    model = bench.build(args.blocks, 128)
    for name in args.dtypes:
        inputs = bench.inputs(args.num_seq, args.num_res, dtype=getattr(torch, name))
        def step(inputs=inputs):
            return bench.run(model, inputs, False)

        msa, pair = step()
        print(f"{name} outputs: mean |msa| {msa.double().abs().mean():.6f}, mean |pair| "
              f"{pair.double().abs().mean():.6f}", flush=True)
        eager = _median_seconds(step, 3)
        graph = bench.captured(step)
        replay = _median_seconds(graph.replay, 5)
        print(f"{os.path.dirname(fastfold.__file__)} {name}: eager {eager:.4f} s, graph {replay:.4f} s, "
              f"eager / graph {eager / replay:.2f}", flush=True)
        del graph


def _median_seconds(fn, repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
