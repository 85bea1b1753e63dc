"""Fused Evoformer kernels behind one small dispatch API.

Each operation has one autograd-aware entry point that runs the fused Triton kernel on CUDA
tensors and its plain PyTorch twin elsewhere. Until the Triton kernels land, every entry point
runs the PyTorch twin.
"""

from fastfold.kernels.layer_norm import layer_norm

__all__ = ["layer_norm"]
