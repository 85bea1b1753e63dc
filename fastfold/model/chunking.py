"""Apply a function over slices of a batch-like dimension to bound peak memory.

AlphaFold's ``mapping.inference_subbatch`` idea: a module whose rows are independent (attention
per MSA row, the transition per residue, the outer product per residue ``i``) runs on a few rows
at a time and the pieces are concatenated; the result equals the unchunked one. Every chunking
module calls :func:`apply_in_chunks`; none has a chunked twin of its forward.
"""

from collections.abc import Callable, Sequence

import torch


def inference_chunk_size(global_config, training: bool) -> int | None:
    """AlphaFold's rule: chunk by ``global_config.subbatch_size`` at inference, never in training."""
    return None if training else global_config.subbatch_size


def apply_in_chunks(fn: Callable[..., torch.Tensor], args: Sequence[torch.Tensor], dims: Sequence[int | None],
                    chunk_size: int | None, out_dim: int | None = None) -> torch.Tensor:
    """``fn(*args)``, computed ``chunk_size`` slices at a time along one batch-like dimension.

    Parameters
    ----------
    fn : callable
        Maps the (sliced) ``args`` to one tensor whose ``out_dim`` runs over the same slices.
    args : sequence of torch.Tensor
        Positional arguments of ``fn``.
    dims : sequence of int or None
        For each argument, its dimension that is sliced; ``None`` passes the argument whole, and so
        does a dimension of size one (it broadcasts). Give dimensions counted from the end
        (negative) so that leading batch dimensions pass through.
    chunk_size : int or None
        Slices per call; ``None`` (or a size no smaller than the dimension) calls ``fn`` once.
    out_dim : int, optional
        Dimension of the output along which the pieces are concatenated; default ``dims[0]``.

    Returns
    -------
    torch.Tensor
        Equal to ``fn(*args)``.
    """
    if len(args) != len(dims):
        raise ValueError(f"apply_in_chunks: {len(args)} arguments but {len(dims)} dims")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"apply_in_chunks: chunk_size must be positive, got {chunk_size}")
    chunked = [(arg, dim) for arg, dim in zip(args, dims, strict=True) if dim is not None]
    sizes = {arg.shape[dim] for arg, dim in chunked if arg.shape[dim] != 1}
    if len(sizes) > 1:
        raise ValueError(f"apply_in_chunks: the chunked dimensions have different sizes {sorted(sizes)}")
    size = sizes.pop() if sizes else 1
    if chunk_size is None or chunk_size >= size:
        return fn(*args)
    out_dim = dims[0] if out_dim is None else out_dim
    pieces = []
    for start in range(0, size, chunk_size):
        length = min(chunk_size, size - start)
        sliced = [arg if dim is None or arg.shape[dim] == 1 else arg.narrow(dim, start, length)
                  for arg, dim in zip(args, dims, strict=True)]
        pieces.append(fn(*sliced))
    return torch.cat(pieces, dim=out_dim)
