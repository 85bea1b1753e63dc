"""Triton kernel launches that skip the JIT's per-launch work once a specialisation is compiled.

``kernel[grid](*args, **kwargs)`` costs ~58 us of host time per launch on the H100 machine's CPU (the
attention kernels' 27 arguments): the JIT binds and specialises every argument (~20 us), builds its cache
key, checks the kernel's globals and the launch hooks, then calls the compiled kernel's launcher (~16
us). An attention forward and backward launches four such kernels; at N_res 256 its host time (~1.2 ms)
already exceeds its kernels' GPU time (~0.34 ms). :func:`launch` keys the compiled kernel on exactly what
the JIT specialises on (each tensor's dtype and 16-byte alignment, a tensor descriptor's dtype and block
shape, the value of every other argument and keyword argument) and on the device, and calls its launcher
directly. Building that key still costs ~1 us per argument; a :class:`Planned` launch, made once for a
problem's geometry (the attention's plans), fixes every argument but the call's tensors and skips it: the
attention's host time per forward+backward went from ~1.4 to ~0.8 ms on that CPU.

The launcher's calling convention is Triton's own (``CompiledKernel.run``, the same in the versions in
``FAST_LAUNCH_VERSIONS``); with any other Triton version, with launch hooks installed (profilers), with
the interpreter or with a stand-in kernel, both launch through ``kernel[grid](*args, **kwargs)``.
"""

from collections.abc import Sequence

import torch
import triton
from triton import knobs
from triton.runtime import driver
from triton.runtime.jit import JITFunction
from triton.tools.tensor_descriptor import TensorDescriptor

FAST_LAUNCH_VERSIONS = ((3, 6), (3, 7))  # Triton versions whose launcher convention this module follows
FAST = tuple(int(part) for part in triton.__version__.split(".")[:2]) in FAST_LAUNCH_VERSIONS

# (kernel, device, keyword arguments, each argument's specialisation) -> (compiled kernel, the values of the
# parameters after the positional ones); one entry per specialisation a process meets
_compiled = {}


def _specialisation(arg):
    """What the JIT's specialisation of ``arg`` depends on (hashable)."""
    if isinstance(arg, torch.Tensor):
        return arg.dtype, arg.data_ptr() % 16 == 0
    if isinstance(arg, TensorDescriptor):
        return arg.base.dtype, tuple(arg.block_shape)
    return arg  # ints (and tuples of them) by value: the JIT specialises on 1 and on divisibility by 16


def _hooked() -> bool:
    """Whether launch hooks are installed (``None`` or an empty hook chain means none)."""
    hooks = (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
    return any(hook is not None and getattr(hook, "calls", True) for hook in hooks)


def _trailing(kernel: JITFunction, positional: int, kwargs: dict) -> list:
    """Values of the kernel parameters after the first ``positional`` ones, in order: from ``kwargs``,
    else their defaults."""
    return [kwargs.get(p.name, p.default) for p in kernel.params[positional:]]


def _run(compiled, grid: Sequence[int], device: int, params: list) -> None:
    """Launch a compiled kernel through its launcher; ``params``: every parameter in signature order."""
    compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                 driver.active.get_current_stream(device), compiled.function, compiled.packed_metadata,
                 None, None, None, *params)


def launch(kernel, grid: Sequence[int], *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``; after the first launch of a specialisation on a device, through
    the compiled kernel's launcher alone. ``grid``: one to three program counts."""
    if not FAST or not isinstance(kernel, JITFunction) or _hooked():
        kernel[grid](*args, **kwargs)
        return
    device = driver.active.get_current_device()
    key = (kernel, device, tuple(kwargs.items()), *map(_specialisation, args))
    entry = _compiled.get(key)
    if entry is None:
        compiled = kernel[grid](*args, **kwargs)  # compiles or finds the kernel, and launches it
        _compiled[key] = compiled, _trailing(kernel, len(args), kwargs)  # kwargs are in the key
        return
    compiled, trailing = entry
    _run(compiled, grid, device, [*args, *trailing])


class Slot:
    """A per-call argument of a :class:`Planned` launch: the call's ``values[index]``, or
    ``make(values[index])`` (a view or a TMA descriptor of that tensor)."""

    __slots__ = ("index", "make")

    def __init__(self, index: int, make=None):
        self.index, self.make = index, make

    def __call__(self, values: Sequence):
        return values[self.index] if self.make is None else self.make(values[self.index])


def filled(args: Sequence, values: Sequence) -> list:
    """``args`` with each :class:`Slot` replaced by its value from ``values``."""
    return [a(values) if isinstance(a, Slot) else a for a in args]


class Planned:
    """A kernel launch planned once for a problem's geometry: grid, settings and every argument fixed
    except the per-call tensors (:class:`Slot`). Calling it with the call's tensors launches the kernel:
    the first time (and with hooks installed, another Triton version, or a stand-in kernel) through the
    JIT, then through the launcher compiled for the current device, with no per-argument work. The
    geometry (shapes, strides, dtypes, 16-byte alignment of every tensor) must decide the plan, so that
    the JIT's specialisation holds for every call; a plan keeps no tensor.
    """

    def __init__(self, kernel, grid: Sequence[int], args: Sequence, kwargs: dict):
        if any(isinstance(a, torch.Tensor) for a in args):
            raise TypeError("a planned launch takes its tensors as Slots, per call")
        self.kernel, self.grid, self.kwargs, self.args = kernel, tuple(grid), kwargs, list(args)
        self.slots = [(i, a) for i, a in enumerate(args) if isinstance(a, Slot)]
        self.fast = FAST and isinstance(kernel, JITFunction)
        # the parameters after the positional ones, as the launcher takes them
        self.trailing = _trailing(kernel, len(args), kwargs) if self.fast else []
        self.compiled = {}  # device -> compiled kernel

    def __call__(self, values: Sequence) -> None:
        params = self.args.copy()
        for i, slot in self.slots:
            params[i] = slot(values)
        if not self.fast or _hooked():
            self.kernel[self.grid](*params, **self.kwargs)
            return
        device = driver.active.get_current_device()
        compiled = self.compiled.get(device)
        if compiled is None:
            self.compiled[device] = self.kernel[self.grid](*params, **self.kwargs)
            return
        _run(compiled, self.grid, device, params + self.trailing)
