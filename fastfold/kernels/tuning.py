"""Tile settings of a Triton kernel chosen per problem by timing, and integer helpers for launch grids.

``triton.autotune`` makes the same choice but spends ~40-100 us of host time on every launch (it
rebuilds dictionaries of all the arguments and a key from each tensor argument's dtype): more than the
kernels of a small attention take, and an attention's forward and backward launch three tuned kernels.
Here the choice is made once per key the caller builds from what decides the tiles
(:meth:`TiledKernel.choose`), and a :class:`TiledLaunch`, planned once per problem geometry, launches the
chosen settings at every later call with no lookup at all. ``triton.cdiv`` and ``triton.next_power_of_2``
are Triton constexpr functions (3-8 us a call from the host); :func:`cdiv` and :func:`next_power_of_2`
are plain Python.

Every setting's time is logged at DEBUG level (logger ``fastfold.kernels.tuning``) when a choice is
made: ``logging.basicConfig(level=logging.DEBUG)`` before the first launch shows what each choice
won by, which is how tile sets are revised.
"""

import logging
from collections.abc import Callable, Hashable, Sequence

import torch
from triton.runtime.errors import OutOfResources, PTXASError
from triton.testing import do_bench

from fastfold.kernels.launch import Planned, Slot, filled, launch

_log = logging.getLogger(__name__)


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two at least ``n`` (1 for ``n <= 1``)."""
    return 1 << max(n - 1, 0).bit_length()


class PerTiles:
    """A launch argument made from the chosen settings: a TMA descriptor (whose block is the tile) or,
    where a variant does without one, the plain tensor."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[dict], object]):
        self.make = make


def resolved(args: Sequence, settings: dict) -> list:
    """``args`` with each :class:`PerTiles` made for ``settings``."""
    return [a.make(settings) if isinstance(a, PerTiles) else a for a in args]


class TiledKernel:
    """A Triton kernel with a few tile settings, the fastest chosen once per problem key.

    Parameters
    ----------
    kernel : triton.runtime.jit.JITFunction
        The kernel; its tile constexprs are ``BLOCK_Q`` and ``BLOCK_K``.
    tiles : sequence of (BLOCK_Q, BLOCK_K, num_warps, num_stages)
        The settings to choose from.
    """

    def __init__(self, kernel, tiles: Sequence[tuple]):
        self.kernel = kernel
        self.tiles = [dict(BLOCK_Q=bq, BLOCK_K=bk, num_warps=w, num_stages=s) for bq, bk, w, s in tiles]
        self.chosen = {}  # key -> settings

    def choose(self, grid: Callable[[dict], tuple], key: Hashable, arguments: Callable[[dict], list],
               variants: Sequence[dict] = ({},), zero: Sequence[torch.Tensor] = (),
               restore: Sequence[torch.Tensor] = (), **kwargs) -> dict:
        """The settings chosen for ``key``, which must stand for everything the choice depends on (sizes,
        dtypes, flags, the variants offered): the tiles combined with each of ``variants`` (further
        constexprs, such as whether to read an operand through TMA).

        The first choice for a key launches ``kernel[grid(s)](*arguments(s), **kwargs, **s)`` for every
        setting ``s`` (those that do not fit the GPU are skipped) and times it. It leaves the arguments
        as it found them, so that the launch that counts sees them as if the kernel ran once: the
        tensors in ``zero`` (which the kernel accumulates into) are zeroed, and those in ``restore``
        (which it reads and then overwrites) are copied before timing and put back, before every trial
        and at the end.
        """
        settings = self.chosen.get(key)
        if settings is None:
            saved = [t.clone() for t in restore]

            def reset():
                for t in zero:
                    t.zero_()
                for t, copy in zip(restore, saved, strict=True):
                    t.copy_(copy)

            candidates = [{**tile, **variant} for variant in variants for tile in self.tiles]
            settings = self.chosen[key] = self._fastest(candidates, grid, arguments, kwargs, reset, key)
            reset()
        return settings

    def _fastest(self, candidates, grid, arguments, kwargs, reset, key) -> dict:
        def trial(settings):
            reset()
            launch(self.kernel, grid(settings), *arguments(settings), **kwargs, **settings)

        times = []
        for settings in candidates:
            try:
                timed = do_bench(lambda s=settings: trial(s), warmup=10, rep=40, return_mode="median")
                times.append((timed, settings))
            except (OutOfResources, PTXASError):  # too much shared memory or too many registers here
                continue
        if not times:
            raise RuntimeError(f"no tile setting of {self.kernel.fn.__name__} fits this GPU: {candidates}")
        times.sort(key=lambda t: t[0])
        _log.debug("%s for %s, fastest first: %s", self.kernel.fn.__name__, key,
                   "; ".join(f"{ms:.3f} ms {settings}" for ms, settings in times))
        return times[0][1]


class TiledLaunch:
    """A launch of a :class:`TiledKernel` planned for one problem geometry: its arguments constants,
    :class:`~fastfold.kernels.launch.Slot` (per-call tensors) and :class:`PerTiles`.

    The first call chooses the settings (``fixed`` ones, or :meth:`TiledKernel.choose` timed with that
    call's tensors; ``zero`` and ``restore`` are slots) and plans the launch for them
    (:class:`~fastfold.kernels.launch.Planned`); every call then launches it with its own tensors.
    """

    def __init__(self, tiled: TiledKernel, grid: Callable[[dict], tuple], key: Hashable, args: Sequence,
                 variants: Sequence[dict] = ({},), zero: Sequence[Slot] = (), restore: Sequence[Slot] = (),
                 fixed: dict | None = None, **kwargs):
        self.tiled, self.grid, self.key, self.args, self.variants = tiled, grid, key, list(args), variants
        self.zero, self.restore, self.fixed, self.kwargs = zero, restore, fixed, kwargs
        self.planned = None

    def __call__(self, values: Sequence) -> None:
        if self.planned is None:
            settings = self.fixed or self.tiled.choose(
                self.grid, self.key, lambda s: filled(resolved(self.args, s), values), self.variants,
                filled(self.zero, values), filled(self.restore, values), **self.kwargs)
            self.planned = Planned(self.tiled.kernel, self.grid(settings), resolved(self.args, settings),
                                   {**self.kwargs, **settings})
        self.planned(values)
