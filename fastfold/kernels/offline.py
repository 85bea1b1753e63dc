"""The attention wrappers' Triton launches compiled for a GPU on a machine without one.

Triton compiles for a named target without a GPU, and the JIT's own specialisation (integer arguments
equal to 1 or divisible by 16, aligned pointers) can be applied to recorded launch arguments, so the
code an H100 would run can be inspected on CPU: its shared memory, whether it compiles with the
installed Triton at all, and its SASS (``nvdisasm`` ships with Triton). ``scripts/kernel_sass.py``
reports the instruction mix of each kernel's inner loop from it; ``tests/test_kernels_compile.py``
checks every tile setting compiles within Hopper's shared memory.

This reaches into ``triton.runtime.jit`` (the binder that specialises arguments); it is a development
tool, not used by the model.
"""

import collections
import contextlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from fastfold.kernels import triton_attention, triton_attention_bwd
from fastfold.kernels.tuning import TiledKernel

HOPPER = GPUTarget("cuda", 90, 32)
HOPPER_SHARED_MEMORY = 232448  # bytes per block on an H100 (227 KiB)


@dataclass
class Launch:
    """One recorded kernel launch: the JIT function, its arguments and launch settings."""

    kernel: triton.runtime.jit.JITFunction
    args: tuple
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__


class _Recorder:
    """Stands in for ``kernel[grid]``: records the launch instead of running it."""

    def __init__(self, kernel, launches: list):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.launches.append(Launch(self.kernel, args, kwargs))
        return record


@contextlib.contextmanager
def recorded_attention_launches(tiles: dict, variant: int = 0):
    """Within the block the attention wrappers record their launches (yielded list) instead of running.

    ``tiles`` maps a kernel name to its ``(BLOCK_Q, BLOCK_K, num_warps, num_stages)``, the settings a
    timed choice would make; kernels not named get ``triton_attention.FP32_TILES``; ``variant`` indexes
    the variants each launch offers, clamped to its last (0: the first bias through TMA where it can be;
    the dK/dV kernel offers key-major tiles with it first). Call the wrappers with CPU tensors of the
    shapes and dtypes to inspect.
    """
    launches = []

    def fixed_settings(tiled, q, variants):
        bq, bk, warps, stages = tiles.get(tiled.kernel.kernel.fn.__name__, triton_attention.FP32_TILES)
        # FAST_EXP as on a GPU (the wrappers set it from the CPU tensors' device)
        return dict(BLOCK_Q=bq, BLOCK_K=bk, num_warps=warps, num_stages=stages, FAST_EXP=True,
                    **variants[min(variant, len(variants) - 1)])

    def recording(tiled):  # the tiled kernel, recording its launches
        return TiledKernel(_Recorder(tiled.kernel, launches), [])

    modules = (triton_attention, triton_attention_bwd)
    patched = [(module, "fixed_settings", fixed_settings) for module in modules]
    patched += [(triton_attention, "_forward_plans", {}), (triton_attention_bwd, "_backward_plans", {}),
                (triton_attention, "_fwd_tiled", recording(triton_attention._fwd_tiled)),
                (triton_attention_bwd, "_kv_tiled", recording(triton_attention_bwd._kv_tiled)),
                (triton_attention_bwd, "_q_tiled", recording(triton_attention_bwd._q_tiled)),
                (triton_attention_bwd, "_bwd_pre_kernel", _Recorder(triton_attention_bwd._bwd_pre_kernel,
                                                                   launches))]  # no tiles
    saved = [(module, name, getattr(module, name)) for module, name, _ in patched]
    try:
        for module, name, value in patched:
            setattr(module, name, value)
        yield launches
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def attention_launches(tiles: dict, dtype: torch.dtype, n: int, heads: int = 8, c: int = 32,
                       variant: int = 0) -> list:
    """The launches of one attention forward and backward on an MSA-row-like case (2 rows, a pair bias
    shared by the rows, a per-key mask, a gate; ``n`` queries and keys), tiles and variant as in
    :func:`recorded_attention_launches`."""
    q, k, v, gate = (torch.randn(1, 2, heads, n, c, dtype=dtype) for _ in range(4))
    bias = torch.randn(1, 1, heads, n, n, dtype=dtype)
    mask = torch.rand(1, 2, 1, 1, n) > 0.1
    with recorded_attention_launches(tiles, variant) as launches:
        out, stats = triton_attention.attention_forward(q, k, v, [bias], mask, gate, save_stats=True)
        grad = torch.randn_like(out)
        triton_attention_bwd.attention_backward(grad, q, k, v, [bias], mask, gate, out, stats)
    return launches


def compile_launch(launch: Launch, target: GPUTarget = HOPPER):
    """Compile a recorded launch for ``target`` as the JIT would specialise it; a ``CompiledKernel``."""
    backend = make_backend(target)
    binder = create_function_from_signature(launch.kernel.signature, launch.kernel.params, backend)
    kwargs = dict(launch.kwargs)
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in ("num_warps", "num_stages")}
    bound, specialization, _ = binder(*launch.args, **kwargs)
    _, signature, constexprs, attrs = launch.kernel._pack_args(backend, options, bound, specialization, {})
    return triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs), target=target,
                          options=options)


def sass(compiled) -> str:
    """The SASS of a compiled kernel (Triton's ``nvdisasm``)."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        return subprocess.run([tool, "-c", cubin.name], capture_output=True, text=True, check=True).stdout


def loop_mix(text: str) -> list:
    """The loops of a SASS listing (a backward branch to an earlier label): ``(instructions, opcode
    counts)`` each, predication and modifiers dropped (``@P0 FMUL.FTZ`` counts as ``FMUL``)."""
    labels, instructions = {}, []
    for line in text.splitlines():
        label = re.match(r"^(\.L_x_\d+):", line)
        if label:
            labels[label.group(1)] = len(instructions)
        instruction = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?);", line)
        if instruction:
            instructions.append(instruction.group(1).strip())
    loops = []
    for end, instruction in enumerate(instructions):
        target = re.search(r"BRA\s+`?\(?(\.L_x_\d+)", instruction)
        if target and labels.get(target.group(1), end + 1) <= end:
            body = instructions[labels[target.group(1)]:end + 1]
            opcodes = (re.sub(r"^@!?U?P\w+\s+", "", b).split()[0].split(".")[0] for b in body)
            loops.append((len(body), collections.Counter(opcodes)))
    return loops
