"""DAP on GPUs: DAP 2 = DAP 1 check, Evoformer scaling table, overlap, memory and a profiler summary.

Run under torchrun with 2 processes (``scripts/benchmark_dap.sh`` does everything in one call)::

    torchrun --standalone --nproc-per-node 2 scripts/benchmark_dap.py --out OUT

DAP 1 runs on both GPUs at once as two independent replicas (a DP mesh: no collective in the
model), DAP 2 splits one Evoformer over both. The timed stack has AlphaFold's 48 blocks by default (a
step's start, while the host launches the first small MSA kernels, and the final gather happen once
per stack, not per block); the profiled steps run ``--profile-blocks``. Official widths (C_m 256,
C_z 128), activations in ``--dtype`` (float32 with TF32 matrix products, or bfloat16 as AlphaFold's
inference runs the trunk) for the timings and float32 without TF32 for the equality check, the
default kernels (Triton on CUDA), inference chunked by ``--subbatch`` rows, training with
rematerialisation. DAP 2 with overlap runs once per ``--gather-groups`` value (the channel groups of
the triangle update's gather of ``right``). Prints markdown tables (peak memory of rank 0) and the
part of the exposed communication that the overlap removes; writes ``OUT/dap_results.json``. With
``--graphs`` the inference steps are timed as replays of one CUDA graph of the step (the DAP group's
collectives replay in it), which takes the host's launch time and its jitter out of the ratios.
"""

import argparse
import copy
import functools
import gzip
import json
import os
import shutil
import statistics
import time

import torch
import torch.distributed as dist

from fastfold import kernels
from fastfold.config import model_config
from fastfold.distributed import ParallelMesh, average_gradients, init_from_env, parallelize
from fastfold.model.evoformer import EvoformerStack


def build(num_blocks: int, subbatch: int, seed: int = 0) -> EvoformerStack:
    """The Evoformer stack of model_1_ptm with random (not zero) final layers and no dropout."""
    cfg = model_config("model_1_ptm").model
    cfg.global_config.update(zero_init=False, deterministic=True, subbatch_size=subbatch, use_remat=True)
    cfg.embeddings_and_evoformer.evoformer_num_block = num_blocks
    torch.manual_seed(seed)
    return EvoformerStack(cfg.embeddings_and_evoformer, cfg.global_config).cuda()


def inputs(num_seq: int, num_res: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple:
    """msa [N_seq, N_res, 256], pair [N_res, N_res, 128] in ``dtype``, masks with a few zeros (first
    row/column kept)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    msa = torch.randn(num_seq, num_res, 256, device="cuda", generator=g).to(dtype)
    pair = torch.randn(num_res, num_res, 128, device="cuda", generator=g).to(dtype)
    msa_mask = (torch.rand(num_seq, num_res, device="cuda", generator=g) > 0.1).float()
    msa_mask[0] = msa_mask[:, 0] = 1.0
    return msa, pair, msa_mask, torch.ones(num_res, num_res, device="cuda")


def run(model, args: tuple, train: bool) -> tuple:
    """One forward (inference) or forward + backward (training, loss = weighted sum of the outputs)."""
    if not train:
        with torch.no_grad():
            return model.eval()(*args)
    msa, pair = model.train()(*args)
    (msa.sum() + (pair * pair).mean()).backward()
    return msa, pair


def captured(step):
    """A CUDA graph of ``step`` (a function of no arguments) after two warm-up calls on a side stream, as
    capture requires; ``graph.replay()`` runs it again on the same memory."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        step()
    return graph


def seconds(model, args: tuple, train: bool, repeats: int, graph: bool = False) -> float:
    """Median wall time of ``repeats`` steps after one warm-up, the slowest rank's; NaN when out of memory
    (at DAP 1 the ranks are independent; at DAP 2 both run out together, their halves being equal). With
    ``graph`` (inference) the step is captured once in a CUDA graph (the DAP group's collectives replay in
    it) and the replays are timed: no Python launch time."""
    try:
        run(model, args, train)
        eager = functools.partial(run, model, args, train)
        step = captured(eager).replay if graph else eager
    except torch.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return float("nan")
    times = []
    for _ in range(repeats):
        dist.barrier()
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    result = torch.tensor(statistics.median(times), device="cuda")
    dist.all_reduce(result, op=dist.ReduceOp.MAX)
    return result.item()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def check_equal(meshes: dict, num_seq: int, num_res: int, gather_groups: int) -> dict:
    """DAP 2 vs DAP 1 in float32 (TF32 off): outputs in eval, parameter gradients in training."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = build(num_blocks=2, subbatch=32)
    args = inputs(num_seq, num_res, seed=1)
    single = parallelize(copy.deepcopy(model), meshes[1])
    dap = parallelize(model, meshes[2], gather_groups=gather_groups)
    errors = {}
    for name, a, e in zip(("msa", "pair"), run(dap, args, False), run(single, args, False), strict=True):
        errors[f"output {name}"] = relative_error(a, e)
    run(single, args, True)
    run(dap, args, True)
    average_gradients(dap.parameters(), meshes[2])  # DAP 2: sum over 2 identical losses / 2
    # Over all parameters together: some gradients are zero in exact arithmetic (LayerNorm offsets
    # before a softmax bias) and their per-parameter relative error is rounding noise.
    errors["all parameter gradients"] = relative_error(
        torch.cat([p.grad.flatten() for p in dap.parameters()]),
        torch.cat([q.grad.flatten() for q in single.parameters()]))
    torch.backends.cuda.matmul.allow_tf32 = True
    return errors


def exposed_communication(trace_path: str) -> dict:
    """From a chrome trace: the GPU span, the time some compute kernel runs, the GPU time in NCCL kernels
    and the part of it with no compute kernel running, and the span's time with no compute kernel
    (NCCL alone or the GPU idle: what the step pays beyond its computation)."""
    with open(trace_path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("cat") == "kernel"]
    comm = _union([(e["ts"], e["ts"] + e["dur"]) for e in events if "nccl" in e["name"].lower()])
    compute = _union([(e["ts"], e["ts"] + e["dur"]) for e in events if "nccl" not in e["name"].lower()])
    total = sum(end - start for start, end in comm)
    busy = sum(end - start for start, end in compute)
    covered = sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in comm for b0, b1 in compute)
    span = max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)
    return {"gpu_span_ms": span / 1e3, "compute_ms": busy / 1e3, "nccl_ms": total / 1e3,
            "exposed_nccl_ms": (total - covered) / 1e3, "not_computing_ms": (span - busy) / 1e3}


def _union(intervals: list) -> list:
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def profile(model, args: tuple, name: str, train: bool, out: str) -> dict:
    """One profiled step on this rank; the trace is summarised and kept gzipped in ``out``."""
    run(model, args, train)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        run(model, args, train)
        torch.cuda.synchronize()
    model.zero_grad(set_to_none=True)
    path = os.path.join("/tmp", f"trace_{name}_{dist.get_rank()}.json")
    prof.export_chrome_trace(path)
    os.makedirs(out, exist_ok=True)
    with open(path, "rb") as src, gzip.open(os.path.join(out, os.path.basename(path) + ".gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    return exposed_communication(path)


def _overlap_key(groups: int, all_groups: list) -> str:
    """The row key of DAP 2 with overlap and ``groups`` gather groups: ``dap2_overlap`` for the first value
    of ``--gather-groups`` (as a run with one value names it), ``dap2_overlap_g<G>`` for the others."""
    return "dap2_overlap" if groups == all_groups[0] else f"dap2_overlap_g{groups}"


def _table_row(row: dict, variants: list) -> str:
    """One markdown row: times, speed-ups over DAP 1, peak memory of DAP 1 and of the first DAP 2 overlap."""
    dap2 = [key for key, *_ in variants[1:]]
    times = " | ".join(f"{row[key]:.3f}" for key in ["dap1", *dap2])
    speedups = " | ".join(f"{row['dap1'] / row[key]:.2f}" for key in dap2)
    return (f"| {row['mode']} | {row['num_res']} | {times} | {speedups} | {row['dap1_peak_gib']:.1f} | "
            f"{row[variants[2][0] + '_peak_gib']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/dap_benchmark")
    parser.add_argument("--blocks", type=int, default=48,
                        help="Evoformer blocks of the timed stack (AlphaFold's Evoformer: 48)")
    parser.add_argument("--profile-blocks", type=int, default=4,
                        help="blocks of the stack that the profiled steps run (traces stay small)")
    parser.add_argument("--num-seq", type=int, default=128)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--train-sizes", type=int, nargs="*", default=[256, 512, 1024])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="activations of the timed and profiled steps (the equality check is float32)")
    parser.add_argument("--subbatch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-size", type=int, default=1024)
    parser.add_argument("--profile-train-size", type=int, default=0, help="also profile a training step")
    parser.add_argument("--gather-groups", type=int, nargs="+", default=[1, 4],
                        help="channel groups of the triangle update's gather; DAP 2 overlap runs per value")
    parser.add_argument("--graphs", action="store_true",
                        help="time inference as replays of a CUDA graph of the step (no Python launch time)")
    options = parser.parse_args()
    dtype = getattr(torch, options.dtype)
    mesh = init_from_env(dap_size=2)
    meshes = {1: ParallelMesh.from_process_group(1), 2: mesh}
    rank0 = dist.get_rank() == 0
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "nccl": ".".join(map(str, torch.cuda.nccl.version())),
               "kernel": kernels.kernel_setting().value, "options": vars(options)}
    results["equality"] = {groups: check_equal(meshes, num_seq=61, num_res=203, gather_groups=groups)
                           for groups in options.gather_groups}
    # (key, DAP size, overlap, gather groups); the keys of the first G are those of a single-G run
    variants = [("dap1", 1, True, 1), ("dap2_sync", 2, False, 1)] + [
        (_overlap_key(groups, options.gather_groups), 2, True, groups) for groups in options.gather_groups]
    if rank0:
        print("equality DAP 2 vs 1 (relative L2 error) by gather groups:", results["equality"], flush=True)
        overlaps = [key for key, *_ in variants[2:]]
        times = " | ".join(f"{key} s" for key in overlaps)
        speedups = " | ".join(f"speed-up {key}" for key in overlaps)
        print(f"| mode | N_res | DAP 1 s | DAP 2 sync s | {times} | speed-up sync | {speedups} "
              f"| peak GiB DAP 1 | peak GiB DAP 2 |\n|{'---|' * (7 + 2 * len(overlaps))}", flush=True)
    model = build(options.blocks, options.subbatch)
    rows = []
    for train, sizes in ((False, options.sizes), (True, options.train_sizes)):
        for num_res in sizes:
            args = inputs(options.num_seq, num_res, dtype=dtype)
            row = {"mode": "train" if train else "inference", "num_res": num_res}
            for key, dap, overlap, groups in variants:
                parallelize(model, meshes[dap], overlap=overlap, gather_groups=groups)
                torch.cuda.reset_peak_memory_stats()
                row[key] = seconds(model, args, train, options.repeats, graph=options.graphs and not train)
                torch.cuda.empty_cache()  # a graph's memory pool goes with it
                row[f"{key}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
            if rank0:
                print(_table_row(row, variants), flush=True)
            del args
    results["rows"] = rows
    model = build(options.profile_blocks, options.subbatch)
    args = inputs(options.num_seq, options.profile_size, dtype=dtype)
    results["profile"] = {}
    for key, dap, overlap, groups in variants[1:]:
        name = key.removeprefix("dap2_")  # sync, overlap, overlap_g<G>
        dap_model = parallelize(model, meshes[dap], overlap=overlap, gather_groups=groups)
        results["profile"][name] = profile(dap_model, args, name, False, options.out)
    results["profile"]["dap1"] = profile(parallelize(model, meshes[1]), args, "dap1", False, options.out)
    sync = results["profile"]["sync"]
    summary = []
    for key, *_, groups in variants[2:]:
        suffix = key.removeprefix("dap2_overlap")  # "" for the first G, "_g<G>" for the others
        overlapped = results["profile"][key.removeprefix("dap2_")]
        removes = 1 - overlapped["exposed_nccl_ms"] / sync["exposed_nccl_ms"]
        removes_span = 1 - overlapped["not_computing_ms"] / sync["not_computing_ms"]
        results[f"overlap_removes{suffix}"] = removes
        results[f"overlap_removes_not_computing{suffix}"] = removes_span
        summary.append(f"gather groups {groups}: overlap removes {removes:.0%} of the NCCL time with no "
                       f"compute and {removes_span:.0%} of the span with no compute")
    if options.profile_train_size:
        args = inputs(options.num_seq, options.profile_train_size, dtype=dtype)
        for dap in (1, 2):
            results["profile"][f"train_dap{dap}"] = profile(parallelize(model, meshes[dap]), args,
                                                            f"train_dap{dap}", True, options.out)
    if rank0:
        print(f"profile, inference N_res {options.profile_size}, DAP 2, rank 0:", results["profile"],
              "; ".join(summary), flush=True)
        os.makedirs(options.out, exist_ok=True)
        with open(os.path.join(options.out, "dap_results.json"), "w") as f:
            json.dump(results, f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
