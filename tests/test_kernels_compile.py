"""The Triton kernels compile for an H100 (sm_90) within its shared memory, on CPU.

Triton compiles for a named GPU target without a GPU, so CI catches launch settings whose software
pipelining or tiles need more shared memory than a Hopper SM has (the stage-1 backward once asked for
656 KiB in float32). Each kernel is compiled with the settings its wrapper uses on a GPU for the model's
largest case (C_z = c = 128), for 16-bit and float32 operands (float32 with exact products, the
largest tiles in shared memory). The GPU machines run an older Triton than CI, whose pipeliner can
differ; the GPU tests (`pytest -m gpu`) remain the check of the kernels themselves.
"""

import pytest
import torch
import triton
from triton.compiler import ASTSource

from fastfold.kernels import offline, triton_attention, triton_attention_bwd, triton_triangle

HOPPER = offline.HOPPER
SHARED_MEMORY = offline.HOPPER_SHARED_MEMORY
VECTORS = {"ln_w", "ln_b", "bl", "br", "blg", "brg", "bg", "c_w", "c_b", "bo", "sums_ptr"}  # float32
CZ = C = 128

KERNELS = {  # kernel -> (GPU launch settings, its other block sizes)
    "_projections_kernel": (triton_triangle.GPU_PROJECT, dict(BLOCK_CZ=CZ, LEFT=True, RIGHT=True, GATE=True)),
    "_projections_bwd_kernel": (triton_triangle.GPU_PROJECT_BWD, dict(BLOCK_CZ=CZ)),
    "_output_kernel": (triton_triangle.GPU_OUTPUT, dict(BLOCK_CZ=CZ, BLOCK_CI=C)),
    "_output_bwd_kernel": (triton_triangle.GPU_OUTPUT_BWD, dict(BLOCK_CZ=CZ, BLOCK_CI=C)),
}


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_triangle_kernel_fits_hopper_shared_memory(name, dtype):
    fn = getattr(triton_triangle, name)
    settings, blocks = KERNELS[name]
    options = {k: v for k, v in settings.items() if k in ("num_warps", "num_stages")}
    constants = {**{k: v for k, v in settings.items() if k.startswith("BLOCK_")}, **blocks,
                 "PRECISION": "ieee" if dtype == "fp32" else None}
    signature = {}
    for arg in fn.arg_names:
        if arg in constants:
            signature[arg] = "constexpr"
        elif arg in VECTORS:
            signature[arg] = "*fp32"
        elif arg.endswith("_ptr") or arg.startswith("w"):
            signature[arg] = f"*{dtype}"
        else:
            signature[arg] = "fp32" if arg == "eps" else "i32"
    source = ASTSource(fn=fn, signature=signature,
                       constexprs={(fn.arg_names.index(k),): v for k, v in constants.items()})
    compiled = triton.compile(source, target=HOPPER, options=options)
    assert compiled.metadata.shared <= SHARED_MEMORY, \
        f"{name} ({dtype}) needs {compiled.metadata.shared} bytes of shared memory"


# every tile of each kernel with each variant it offers at N_RES (below): the bias through TMA (0) or plain
# loads (1); the dK/dV kernel's key-major tiles with TMA (0), then query-major with TMA (1) or without (2)
ATTENTION_LAUNCHES = [(name, tiles, variant) for name, tile_set, variants in (
    ("_fwd_kernel", triton_attention.FWD_TILES, 2), ("_bwd_kv_kernel", triton_attention_bwd.KV_TILES, 3),
    ("_bwd_q_kernel", triton_attention_bwd.Q_TILES, 2)) for tiles in tile_set for variant in range(variants)]
# a partial key block (both the full-block and the bounds-checked code are compiled), and rows of the pair
# bias 16-byte aligned, so that every variant is offered
N_RES = 104


@pytest.mark.parametrize("name, tiles, variant", ATTENTION_LAUNCHES)
def test_attention_tiles_fit_hopper_shared_memory(name, tiles, variant):
    """Every tile setting of the 16-bit attention kernels compiles for sm_90, as the JIT specialises
    the wrappers' launches, within Hopper's shared memory, in every variant it is timed in."""
    launches = offline.attention_launches({name: tiles}, torch.bfloat16, N_RES, variant=variant)
    (launch,) = [launch for launch in launches if launch.name == name]
    kv = name == "_bwd_kv_kernel"
    assert launch.kwargs["BIAS_TMA"] == (variant == 0 or kv and variant == 1)
    assert launch.kwargs.get("KEY_MAJOR", False) == (kv and variant == 0)
    shared = offline.compile_launch(launch).metadata.shared
    assert shared <= SHARED_MEMORY, f"{name} {tiles} needs {shared} bytes"


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_attention_float32_kernels_compile(variant):
    """Float32 with exact products: every attention kernel, with the fixed float32 tiles."""
    launches = offline.attention_launches({}, torch.float32, N_RES, variant=variant)
    assert {launch.name for launch in launches} == {"_fwd_kernel", "_bwd_pre_kernel", "_bwd_kv_kernel",
                                                    "_bwd_q_kernel"}
    for launch in launches:
        shared = offline.compile_launch(launch).metadata.shared
        assert shared <= SHARED_MEMORY, f"{launch.name} needs {shared} bytes"
