"""Parameters converted to the activations' dtype (and a kernel's layout) once, not at every call; whether
autograd records an operation.

In 16-bit inference with float32 parameters every matrix product would first convert its weights: one small
launch per weight and call, a few hundred per Evoformer block. :func:`converted` keeps the converted copy for
the parameter while the parameter's storage and version counter are unchanged (an in-place update, such as
an optimiser step or ``load_state_dict``, bumps the version; moving the module replaces the storage), so a
kept copy is never stale. Copies are kept only without autograd (``no_grad``, ``inference_mode``): with
it, and while ``torch.compile`` traces, the parameter is converted afresh, so gradients flow and no copy
made in inference mode enters an autograd graph.
"""

import weakref

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

# parameter -> (weak reference to its storage, (data pointer, version), {key: copy}); the weak reference,
# not an address, tells a new storage from a freed one whose address was reused. Held beside the parameters
# (not on them), so that pickling a module never meets it; an entry goes with its parameter.
_KEPT = WeakIdKeyDictionary()


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records an operation on these tensors (``None`` entries are skipped)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _convert(t: torch.Tensor, dtype: torch.dtype, transposed: bool) -> torch.Tensor:
    source = t.t() if transposed else t
    return t.new_empty(source.shape, dtype=dtype).copy_(source)  # contiguous, one pass


def converted(t: torch.Tensor, dtype: torch.dtype, transposed: bool = False) -> torch.Tensor:
    """``t`` in ``dtype``, contiguous (a contiguous ``t`` of that dtype is returned as it is); with
    ``transposed`` a matrix's transpose (``[in, out]`` weights stored ``[out, in]``).

    ``t`` may be a parameter or a view of one (flattened, sliced): the copy is kept on the parameter,
    keyed by the view's shape, strides and offset. Other tensors are converted at every call.
    The returned copy is shared: callers must not modify it.
    """
    if not transposed and t.dtype == dtype and t.is_contiguous():
        return t
    owner = t if t._base is None else t._base
    if not isinstance(owner, nn.Parameter) or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return _convert(t, dtype, transposed)
    storage, stamp = owner.untyped_storage(), (owner.data_ptr(), owner._version)
    kept = _KEPT.get(owner)
    if kept is None or kept[0]() is not storage or kept[1] != stamp:
        kept = _KEPT[owner] = (weakref.ref(storage), stamp, {})
    key = (dtype, transposed, tuple(t.shape), t.stride(), t.storage_offset())
    if key not in kept[2]:
        kept[2][key] = _convert(t, dtype, transposed)
    return kept[2][key]
