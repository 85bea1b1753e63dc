"""FastFold: AlphaFold2 in PyTorch, exact, fast and parallel over GPUs."""

__version__ = "0.1.0"
