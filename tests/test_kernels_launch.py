"""Launches through the compiled kernel's launcher (:func:`fastfold.kernels.launch.launch`).

CI has no GPU, so the JIT's compile-and-launch and the compiled launcher are stand-ins here: the tests
check when a launch goes through the JIT (first launch of a specialisation, hooks installed, a stand-in
kernel) and that a direct launch passes the grid, the stream and every parameter in signature order.
Every GPU test (``pytest -m gpu``) runs the real kernels through it.
"""

import types

import pytest
import torch
from triton.runtime.jit import JITFunction
from triton.tools.tensor_descriptor import TensorDescriptor

from fastfold.kernels import launch as launching


def _kernel_source(x_ptr, strides, n, scale, FLAG: "tl.constexpr", BLOCK: "tl.constexpr" = 16):  # noqa: F821, N803
    pass


class _Compiled:
    """Stands in for a ``CompiledKernel``: records its launcher's calls."""

    function, packed_metadata = "function-handle", "packed-metadata"

    def __init__(self):
        self.calls = []

    def run(self, *args):
        self.calls.append(args)


@pytest.fixture
def kernel(monkeypatch):
    """A real JIT function whose compile-and-launch (``run``) is a stand-in recording each JIT launch; the
    driver a stand-in with device 3 and stream 77."""
    jit = JITFunction(_kernel_source)
    jit.compiled = _Compiled()
    jit.jit_launches = []

    def run(*args, grid, warmup, **kwargs):
        jit.jit_launches.append((grid, args, kwargs))
        return jit.compiled

    jit.run = run
    active = types.SimpleNamespace(get_current_device=lambda: 3, get_current_stream=lambda dev: 77 + dev)
    monkeypatch.setattr(launching, "driver", types.SimpleNamespace(active=active))
    monkeypatch.setattr(launching, "FAST", True)
    monkeypatch.setattr(launching, "_compiled", {})
    return jit


def test_first_launch_compiles_then_the_launcher_runs_with_every_parameter_in_order(kernel):
    x = torch.zeros(64, dtype=torch.bfloat16)
    launching.launch(kernel, (5,), x, (8, 1), 100, 0.5, FLAG=True, num_warps=4)
    assert kernel.jit_launches == [((5,), (x, (8, 1), 100, 0.5), dict(FLAG=True, num_warps=4))]
    assert kernel.compiled.calls == []
    launching.launch(kernel, (6, 2), x, (8, 1), 100, 0.5, FLAG=True, num_warps=4)
    assert len(kernel.jit_launches) == 1
    # grid padded to three, the current stream, no launch metadata or hooks, then every parameter in the
    # kernel's order with BLOCK's default (num_warps is an option, not a parameter)
    assert kernel.compiled.calls == [(6, 2, 1, 80, "function-handle", "packed-metadata", None, None, None,
                                      x, (8, 1), 100, 0.5, True, 16)]


@pytest.mark.parametrize("change", ["alignment", "dtype", "int", "strides", "keyword", "device"])
def test_a_launch_that_may_specialise_differently_goes_through_the_jit(kernel, change):
    x = torch.zeros(64, dtype=torch.bfloat16)
    args, kwargs = [x, (8, 1), 100, 0.5], dict(FLAG=True)
    launching.launch(kernel, (1,), *args, **kwargs)
    if change == "alignment":
        args[0] = x[1:]  # 2 bytes past a 16-byte boundary
    elif change == "dtype":
        args[0] = torch.zeros(64, dtype=torch.float16)
    elif change == "int":
        args[2] = 96  # divisible by 16: another specialisation
    elif change == "strides":
        args[1] = (1, 8)
    elif change == "keyword":
        kwargs["FLAG"] = False
    else:
        launching.driver.active.get_current_device = lambda: 0
    launching.launch(kernel, (1,), *args, **kwargs)
    assert len(kernel.jit_launches) == 2 and kernel.compiled.calls == []


def test_tensor_descriptors_are_keyed_by_dtype_and_block(kernel):
    base = torch.zeros(32, 32, dtype=torch.bfloat16)
    for block in ([16, 16], [16, 16], [32, 16]):
        launching.launch(kernel, (1,), TensorDescriptor(base, [32, 32], [32, 1], block), (8, 1), 100, 0.5,
                         FLAG=True)
    assert len(kernel.jit_launches) == 2 and len(kernel.compiled.calls) == 1


def test_installed_hooks_send_every_launch_through_the_jit(kernel, monkeypatch):
    x = torch.zeros(64, dtype=torch.bfloat16)
    monkeypatch.setattr(launching.knobs.runtime, "launch_enter_hook", lambda metadata: None)
    for _ in range(2):
        launching.launch(kernel, (1,), x, (8, 1), 100, 0.5, FLAG=True)
    assert len(kernel.jit_launches) == 2 and kernel.compiled.calls == []


def test_other_kernels_and_versions_launch_as_written(kernel, monkeypatch):
    launched = []

    class StandIn:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launched.append((grid, args, kwargs))

    launching.launch(StandIn(), (2,), 1, A=2)
    assert launched == [((2,), (1,), dict(A=2))]
    monkeypatch.setattr(launching, "FAST", False)
    x = torch.zeros(64, dtype=torch.bfloat16)
    for _ in range(2):
        launching.launch(kernel, (1,), x, (8, 1), 100, 0.5, FLAG=True)
    assert len(kernel.jit_launches) == 2 and kernel.compiled.calls == []


def test_a_planned_launch_fills_its_slots_from_each_call(kernel):
    """The first call through the JIT, later ones through the launcher: each with its own tensors (a slot
    may make a view of its value), the constants and BLOCK's default in order."""
    double = launching.Slot(1, lambda t: t[::2])
    planned = launching.Planned(kernel, (5,), [launching.Slot(0), (8, 1), 100, double], dict(FLAG=True))
    first = [torch.zeros(64, dtype=torch.bfloat16), torch.arange(8.0)]
    planned(first)
    ((grid, args, kwargs),) = kernel.jit_launches
    assert grid == (5,) and args[0] is first[0] and args[1:3] == ((8, 1), 100) and kwargs == dict(FLAG=True)
    torch.testing.assert_close(args[3], first[1][::2])
    second = [torch.ones(64, dtype=torch.bfloat16), torch.arange(8.0, 16.0)]
    planned(second)
    (call,) = kernel.compiled.calls
    assert call[:9] == (5, 1, 1, 80, "function-handle", "packed-metadata", None, None, None)
    assert call[9] is second[0] and call[10:12] == ((8, 1), 100) and call[13:] == (True, 16)
    torch.testing.assert_close(call[12], second[1][::2])
    assert len(kernel.jit_launches) == 1


def test_a_planned_launch_compiles_per_device_and_takes_the_jit_with_hooks(kernel, monkeypatch):
    planned = launching.Planned(kernel, (1,), [launching.Slot(0), (8, 1), 100, 0.5], dict(FLAG=True))
    values = [torch.zeros(64, dtype=torch.bfloat16)]
    planned(values)
    launching.driver.active.get_current_device = lambda: 0
    planned(values)  # another device: compiled there first
    assert len(kernel.jit_launches) == 2 and kernel.compiled.calls == []
    monkeypatch.setattr(launching.knobs.runtime, "launch_enter_hook", lambda metadata: None)
    planned(values)
    assert len(kernel.jit_launches) == 3 and kernel.compiled.calls == []


def test_a_plan_keeps_no_tensor(kernel):
    with pytest.raises(TypeError, match="Slots"):
        launching.Planned(kernel, (1,), [torch.zeros(4), (8, 1), 100, 0.5], dict(FLAG=True))
