"""The instruction mix of the attention kernels' inner loops on an H100, from their SASS, on CPU.

Compiles the launches the attention wrappers make for an MSA-row-like case (pair bias shared by all
rows, a per-key mask, a gate) for sm_90 exactly as the JIT would specialise them
(:mod:`fastfold.kernels.offline`), disassembles them with Triton's ``nvdisasm`` and prints, per kernel,
the shared memory, the instructions per logit and per thread of each loop, register spills (LDL/STL in
the loop) and the commonest opcodes. A quick, GPU-free check of a kernel change before timing it.

Usage: ``python scripts/kernel_sass.py [--n 768] [--dtype bf16] [--tiles _fwd_kernel=128,64,4,3 ...]
[--variant 0|1|2]``
"""

import argparse

import torch

from fastfold.kernels import offline, triton_attention, triton_attention_bwd

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=768, help="N_res (queries and keys)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--c", type=int, default=32, help="channels per head")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--tiles", nargs="*", default=[], metavar="KERNEL=BQ,BK,WARPS,STAGES",
                        help="tiles per kernel (default: the first of each tile set)")
    parser.add_argument("--variant", type=int, choices=(0, 1, 2), default=0,
                        help="0: the bias through TMA where N allows it (dK/dV key-major); 1: plain loads "
                             "(dK/dV query-major through TMA); 2: plain loads everywhere")
    options = parser.parse_args()
    tiles = {"_fwd_kernel": triton_attention.FWD_TILES[0], "_bwd_kv_kernel": triton_attention_bwd.KV_TILES[0],
             "_bwd_q_kernel": triton_attention_bwd.Q_TILES[0]}
    for item in options.tiles:
        name, values = item.split("=")
        tiles[name] = tuple(int(v) for v in values.split(","))
    launches = offline.attention_launches(tiles, DTYPES[options.dtype], options.n, options.heads, options.c,
                                          variant=options.variant)
    for launch in launches:
        compiled = offline.compile_launch(launch)
        kwargs = launch.kwargs
        keys = ("BLOCK_Q", "BLOCK_K", "num_warps", "num_stages", "BIAS_TMA", "KEY_MAJOR")
        print(f"{launch.name}: shared memory {compiled.metadata.shared} B, settings "
              f"{ {k: kwargs[k] for k in keys if k in kwargs} }")
        if "BLOCK_K" not in kwargs:
            continue
        # the dQ kernel may take two rows per program (ROWS): logits per loop step are per program
        logits = kwargs.get("ROWS", 1) * kwargs["BLOCK_Q"] * kwargs["BLOCK_K"]
        per_thread = logits / (kwargs["num_warps"] * 32)
        for length, opcodes in offline.loop_mix(offline.sass(compiled)):
            if length > 32:
                common = ", ".join(f"{op} {count}" for op, count in opcodes.most_common(12))
                print(f"  loop of {length} instructions: {length / per_thread:.1f} per logit per thread; "
                      f"spills LDL {opcodes.get('LDL', 0)} STL {opcodes.get('STL', 0)}; {common}")


if __name__ == "__main__":
    main()
