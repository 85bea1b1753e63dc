"""The timed tile choice (:class:`fastfold.kernels.tuning.TiledKernel`) and the host-side grid helpers.

The timing itself needs a GPU; here a stand-in kernel and stand-in timings check what the choice does to
the launch that counts: accumulators zeroed, overwritten inputs restored, the fastest setting kept.
"""

import logging
import types

import pytest
import torch
import triton
from triton.runtime.errors import OutOfResources

from fastfold.kernels import tuning
from fastfold.kernels.launch import Slot

TILES = [(64, 64, 2, 3), (32, 64, 4, 3), (128, 64, 4, 2)]


class _AccumulatingKernel:
    """Stands in for a JIT function: adds ``source`` to ``acc`` and then doubles ``source`` in place
    (reads an input, then overwrites it, as the dQ kernel does with dO_pre in dQ's buffer)."""

    fn = types.SimpleNamespace(__name__="accumulating")

    def __init__(self):
        self.launches = []  # (grid, settings) per launch

    def __getitem__(self, grid):
        def run(acc, source, **settings):
            self.launches.append((grid, settings))
            acc += source
            source.mul_(2)
        return run


def _timer(kernel, times):
    """A stand-in for ``do_bench``: runs the trial twice, 'times' it by its BLOCK_Q from ``times``
    (an exception there is raised, as for a setting that does not fit)."""
    def do_bench(trial, warmup, rep, return_mode):
        assert return_mode == "median"
        trial()
        trial()
        result = times[kernel.launches[-1][1]["BLOCK_Q"]]
        if isinstance(result, Exception):
            raise result
        return result
    return do_bench


def test_first_choice_times_every_setting_and_leaves_the_arguments_as_found(monkeypatch):
    kernel = _AccumulatingKernel()
    monkeypatch.setattr(tuning, "do_bench", _timer(kernel, {64: 2.0, 32: 1.0, 128: 3.0}))
    tiled = tuning.TiledKernel(kernel, TILES)
    acc, source = torch.zeros(5), torch.arange(5.0)
    grid = lambda settings: (tuning.cdiv(100, settings["BLOCK_Q"]),)  # noqa: E731
    settings = tiled.choose(grid, "key", lambda s: [acc, source], zero=[acc], restore=[source])
    torch.testing.assert_close(acc, torch.zeros(5), rtol=0, atol=0)  # as if the kernel had not run
    torch.testing.assert_close(source, torch.arange(5.0), rtol=0, atol=0)
    assert settings == tiled.chosen["key"] == dict(BLOCK_Q=32, BLOCK_K=64, num_warps=4, num_stages=3)
    assert {launch[0] for launch in kernel.launches} == {(2,), (4,), (1,)}  # each setting's own grid
    assert len(kernel.launches) == 2 * len(TILES)

    assert tiled.choose(grid, "key", lambda s: [acc, source], zero=[acc]) == settings  # chosen: no timing
    assert len(kernel.launches) == 2 * len(TILES)


def test_each_choice_logs_every_setting_fastest_first(monkeypatch, caplog):
    kernel = _AccumulatingKernel()
    monkeypatch.setattr(tuning, "do_bench", _timer(kernel, {64: 2.0, 32: 1.0, 128: 3.0}))
    tiled = tuning.TiledKernel(kernel, TILES)
    acc, source = torch.zeros(5), torch.arange(5.0)
    with caplog.at_level(logging.DEBUG, logger="fastfold.kernels.tuning"):
        tiled.choose(lambda settings: (1,), "key", lambda s: [acc, source])
        tiled.choose(lambda settings: (1,), "key", lambda s: [acc, source])  # chosen: nothing logged
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith(f"{kernel.fn.__name__} for key, fastest first: ")
    times = [float(part.split(" ms ")[0]) for part in message.split(": ", 1)[1].split("; ")]
    assert times == [1.0, 2.0, 3.0]


def test_settings_that_do_not_fit_are_skipped(monkeypatch):
    kernel = _AccumulatingKernel()
    too_big = OutOfResources(300000, 232448, "shared memory")
    monkeypatch.setattr(tuning, "do_bench", _timer(kernel, {64: 2.0, 32: too_big, 128: 3.0}))
    tiled = tuning.TiledKernel(kernel, TILES)
    arguments = [torch.zeros(1), torch.ones(1)]
    assert tiled.choose(lambda s: (1,), ("n", 7), lambda s: arguments)["BLOCK_Q"] == 64

    kernel = _AccumulatingKernel()
    monkeypatch.setattr(tuning, "do_bench", _timer(kernel, dict.fromkeys((64, 32, 128), too_big)))
    with pytest.raises(RuntimeError, match="no tile setting of accumulating fits"):
        tuning.TiledKernel(kernel, TILES).choose(lambda s: (1,), "k", lambda s: arguments)


def test_variants_are_timed_with_every_tile_and_per_tiles_arguments_follow_them(monkeypatch):
    """Each tile combined with each variant is a candidate, timed with the arguments made for it (a TMA
    descriptor whose block is the tile, or the plain tensor); a planned launch takes the chosen one's."""
    seen = []  # (settings, made argument) per launch

    class Kernel:
        fn = types.SimpleNamespace(__name__="variants")

        def __getitem__(self, grid):
            return lambda made, **settings: seen.append((settings, made))

    times = {(64, True): 3.0, (32, True): 2.0, (128, True): 4.0, (64, False): 2.5, (32, False): 1.5,
             (128, False): 5.0}

    def do_bench(trial, warmup, rep, return_mode):
        trial()
        settings = seen[-1][0]
        return times[settings["BLOCK_Q"], settings["TMA"]]

    monkeypatch.setattr(tuning, "do_bench", do_bench)
    made = tuning.PerTiles(lambda s: ("descriptor", s["BLOCK_Q"]) if s["TMA"] else "tensor")
    tiled = tuning.TiledKernel(Kernel(), TILES)
    variants = ({"TMA": True}, {"TMA": False})
    planned = tuning.TiledLaunch(tiled, lambda s: (1,), "key", [made], variants=variants)
    planned([])
    assert len(seen) == 2 * len(TILES) + 1
    assert {(s["BLOCK_Q"], s["TMA"]) for s, _ in seen} == set(times)
    assert all(m == (("descriptor", s["BLOCK_Q"]) if s["TMA"] else "tensor") for s, m in seen)
    assert tiled.chosen["key"] == dict(BLOCK_Q=32, BLOCK_K=64, num_warps=4, num_stages=3, TMA=False)
    assert seen[-1] == (tiled.chosen["key"], "tensor")


def test_a_tiled_launch_chooses_with_its_first_call_and_then_launches_each_call_with_its_tensors(monkeypatch):
    """The first call times the settings on that call's tensors (slots), leaves them as found and then
    launches once; later calls launch the chosen settings on their own tensors, with no timing."""
    kernel = _AccumulatingKernel()
    monkeypatch.setattr(tuning, "do_bench", _timer(kernel, {64: 2.0, 32: 1.0, 128: 3.0}))
    grid = lambda settings: (tuning.cdiv(100, settings["BLOCK_Q"]),)  # noqa: E731
    tiled = tuning.TiledKernel(kernel, TILES)
    acc, source = Slot(0), Slot(1)
    planned = tuning.TiledLaunch(tiled, grid, "key", [acc, source], zero=[acc], restore=[source])
    first = [torch.zeros(5), torch.arange(5.0)]
    planned(first)
    torch.testing.assert_close(first[0], torch.arange(5.0), rtol=0, atol=0)  # ran once, on the inputs
    torch.testing.assert_close(first[1], 2 * torch.arange(5.0), rtol=0, atol=0)
    assert kernel.launches[-1] == ((4,), tiled.chosen["key"])
    assert len(kernel.launches) == 2 * len(TILES) + 1

    second = [torch.full((5,), 10.0), torch.ones(5)]
    planned(second)
    assert len(kernel.launches) == 2 * len(TILES) + 2 and kernel.launches[-1] == ((4,), tiled.chosen["key"])
    torch.testing.assert_close(second[0], torch.full((5,), 11.0), rtol=0, atol=0)
    torch.testing.assert_close(first[0], torch.arange(5.0), rtol=0, atol=0)  # the first call's untouched

    fixed = dict(BLOCK_Q=64, BLOCK_K=16, num_warps=2, num_stages=1)
    kernel.launches.clear()
    tuning.TiledLaunch(tuning.TiledKernel(kernel, TILES), grid, "key", [acc, source], fixed=fixed)(second)
    assert kernel.launches == [((2,), fixed)]  # fixed settings: no timing


@pytest.mark.parametrize("n", [*range(0, 70), 127, 128, 129, 1023, 1024, 1025, 5120])
def test_host_helpers_match_triton(n):
    assert tuning.next_power_of_2(n) == max(triton.next_power_of_2(n), 1)
    for block in (1, 16, 32, 64, 128):
        assert tuning.cdiv(n, block) == triton.cdiv(n, block)


@pytest.mark.parametrize("tma, has_bias, per_key, offered", [
    (True, True, True, [(True, True), (True, False), (False, False)]),
    (False, True, True, [(False, False)]),  # biases read through pointers: query-major only
    (False, False, True, [(False, True), (False, False)]),  # no bias: key-major as well
    (True, True, False, [(True, False), (False, False)]),  # a per-query mask: query-major only
])
def test_dkdv_variants(tma, has_bias, per_key, offered):
    """The dK/dV kernel is timed key-major where its biases can be read transposed cheaply (TMA, or no
    bias) and its mask is shared by the queries; key-major first, so fixed-tile launches use it."""
    from fastfold.kernels.triton_attention_bwd import _kv_variants

    variants = ({"BIAS_TMA": True}, {"BIAS_TMA": False}) if tma else ({"BIAS_TMA": False},)
    flags = dict(NUM_BIAS=int(has_bias), HAS_MASK=True, MASK_PER_KEY=per_key)
    got = _kv_variants(variants, flags)
    assert [(v["BIAS_TMA"], v["KEY_MAJOR"]) for v in got] == offered


@pytest.mark.parametrize("bias_shape, rows, expected", [
    ((1, 1, 2, 5, 5), 3, True),  # the pair bias, the same for every MSA row: rows walked first
    ((1, 3, 2, 5, 5), 3, False),  # a bias per row
    (None, 3, False),  # no bias
    ((1, 1, 2, 5, 5), 1, False),  # one row
])
def test_rows_first(bias_shape, rows, expected):
    """The attention kernels walk the rows before the heads (so that the programs running together share
    one head's bias tiles and bias-gradient slice) exactly where every bias is the same for every row;
    the dQ kernel then pairs the rows."""
    from fastfold.kernels.triton_attention import Operands

    q = torch.randn(1, rows, 2, 5, 8)
    biases = [] if bias_shape is None else [torch.randn(bias_shape)]
    mask = torch.ones(1, rows, 1, 1, 5, dtype=torch.bool)
    flags = Operands([q, q, q, *biases, mask], len(biases), True, False).flags()
    assert flags["ROWS_FIRST"] is expected
