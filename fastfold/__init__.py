"""FastFold: AlphaFold2 in PyTorch, exact, fast and parallel over GPUs."""
