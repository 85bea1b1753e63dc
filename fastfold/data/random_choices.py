"""The random choices of the feature pipeline, behind one small interface.

Every random step (MSA sampling, BERT masking, cropping) draws through a :class:`RandomChoices`
object that is passed in, so the pipeline is reproducible from a seed, and a test can replay another
implementation's draws (AlphaFold's) through the same code.
"""

from typing import Protocol

import numpy as np


class RandomChoices(Protocol):
    """Source of the pipeline's random draws."""

    def permutation(self, n: int) -> np.ndarray:
        """A random order of ``0 .. n-1``: int ``[n]``."""

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 numbers in ``[0, 1)`` of the given shape."""

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> np.ndarray:
        """int32 numbers in ``[low, high)`` of the given shape."""

    def categorical(self, probs: np.ndarray) -> np.ndarray:
        """One class per row of ``probs`` ``[*, C]`` (rows sum to 1): int32 ``[*]``."""


class NumpyRandomChoices:
    """:class:`RandomChoices` drawn from a NumPy generator.

    Parameters
    ----------
    generator
        A seeded ``np.random.Generator`` (or an int seed for a new one).
    """

    def __init__(self, generator: np.random.Generator | int):
        self.generator = np.random.default_rng(generator)

    def permutation(self, n: int) -> np.ndarray:
        return self.generator.permutation(n)

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.generator.random(shape, dtype=np.float32)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> np.ndarray:
        return self.generator.integers(low, high, shape, dtype=np.int32)

    def categorical(self, probs: np.ndarray) -> np.ndarray:
        cumulative = np.cumsum(probs, axis=-1, dtype=np.float64)  # [*, C]
        threshold = self.generator.random(probs.shape[:-1])[..., None] * cumulative[..., -1:]
        return np.minimum((cumulative <= threshold).sum(axis=-1), probs.shape[-1] - 1).astype(np.int32)
