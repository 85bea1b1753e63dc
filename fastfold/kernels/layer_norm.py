"""LayerNorm over the last dimension (PyTorch twin of the fused kernel)."""

import torch
import torch.nn.functional as F


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise ``x`` [*, C] over C, then scale by ``weight`` [C] and shift by ``bias`` [C].

    Computed in float32 (as AlphaFold's haiku LayerNorm is) and returned in ``x``'s dtype.
    """
    out = F.layer_norm(x.float(), x.shape[-1:], weight.float(), bias.float(), eps)
    return out.to(x.dtype)
