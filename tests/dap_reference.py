"""Small models and inputs for the DAP tests: AlphaFold's monomer config with tiny widths.

Kept apart from the test file so that the spawned processes import only torch and fastfold.
"""

import copy

import torch
from torch import nn

from fastfold.config import model_config
from fastfold.model.alphafold import AlphaFold
from fastfold.model.evoformer import EvoformerStack
from fastfold.model.extra_msa import ExtraMsaStack
from fastfold.model.template import TemplatePairStack

# Not multiples of 2 or 4: every stack pads and masks.
NUM_SEQ, NUM_RES, NUM_EXTRA = 5, 7, 6
MSA_DIM, PAIR_DIM, EXTRA_DIM, TEMPLATE_DIM = 16, 8, 8, 8


def tiny_config(training: bool = False):
    """model_1_ptm with widths 16/8, 2 Evoformer blocks, 1 extra-MSA block, 2 template blocks.

    Random (not zero) final layers so that every parameter gets a gradient; dropout off unless
    ``training``; chunks of 2 rows at inference, so that chunking runs on the DAP slices.
    """
    cfg = model_config("model_1_ptm").model
    cfg.num_recycle = 1
    cfg.global_config.update(zero_init=False, deterministic=not training, subbatch_size=2)
    e = cfg.embeddings_and_evoformer
    e.update(msa_channel=MSA_DIM, pair_channel=PAIR_DIM, extra_msa_channel=EXTRA_DIM, seq_channel=16,
             evoformer_num_block=2, extra_msa_stack_num_block=1)
    e.evoformer.outer_product_mean.update(num_outer_channel=4, chunk_size=2)
    template_stack = e.template.template_pair_stack
    for stack in (e.evoformer, template_stack):
        stack.triangle_multiplication_outgoing.num_intermediate_channel = 8
        stack.triangle_multiplication_incoming.num_intermediate_channel = 8
    for node in (template_stack.triangle_attention_starting_node,
                 template_stack.triangle_attention_ending_node):
        node.update(key_dim=TEMPLATE_DIM, value_dim=TEMPLATE_DIM)
    e.template.attention.update(key_dim=PAIR_DIM, value_dim=PAIR_DIM)
    sm = cfg.heads.structure_module
    sm.update(num_channel=16, num_head=2, num_layer=2, num_scalar_qk=4, num_scalar_v=4, num_point_qk=2,
              num_point_v=2)
    sm.sidechain.num_channel = 8
    cfg.heads.predicted_lddt.num_channels = 8
    cfg.heads.predicted_aligned_error.num_channels = 8
    return cfg


def random(seed: int, *shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def random_mask(seed: int, *shape) -> torch.Tensor:
    """A 0/1 mask with about 20 % zeros; the first row and column stay 1."""
    mask = (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) > 0.2).float()
    mask[..., 0, :] = mask[..., :, 0] = 1.0
    return mask


def stack_inputs(name: str, seed: int, num_seq: int = NUM_SEQ, num_res: int = NUM_RES) -> tuple:
    """Inputs of stack ``name``: (msa, pair, msa_mask, pair_mask) or (pair, pair_mask) for the template.

    Every attention row keeps at least one unmasked key (AlphaFold's maths leaves a row whose keys are
    all masked to a uniform average over the keys, which the DAP padding would extend).
    """
    pair_mask = torch.ones(num_res, num_res)
    if name == "template":
        return random(seed, 1, num_res, num_res, TEMPLATE_DIM), pair_mask[None]
    channels = EXTRA_DIM if name == "extra_msa" else MSA_DIM
    rows = NUM_EXTRA if name == "extra_msa" else num_seq
    return (random(seed, rows, num_res, channels), random(seed + 1, num_res, num_res, PAIR_DIM),
            random_mask(seed + 2, rows, num_res), pair_mask)


def build_stack(name: str, training: bool = False) -> nn.Module:
    """One of ``evoformer``, ``extra_msa``, ``template`` with fixed random parameters."""
    cfg = tiny_config(training)
    torch.manual_seed(0)
    e = cfg.embeddings_and_evoformer
    if name == "template":
        return TemplatePairStack(e.template.template_pair_stack, cfg.global_config, TEMPLATE_DIM)
    return (ExtraMsaStack if name == "extra_msa" else EvoformerStack)(e, cfg.global_config)


def build_alphafold(seed: int = 0) -> AlphaFold:
    torch.manual_seed(seed)
    return AlphaFold(tiny_config())


def stack_output(model: nn.Module, inputs: tuple) -> tuple:
    """The stack's outputs as a tuple (the extra-MSA and template stacks return one tensor)."""
    out = model(*inputs)
    return out if isinstance(out, tuple) else (out,)


def differentiable_outputs(outputs) -> list:
    """Every floating tensor in a nested output dict that has a gradient path, in a fixed order."""
    if isinstance(outputs, dict):
        return [t for key in sorted(outputs) for t in differentiable_outputs(outputs[key])]
    if isinstance(outputs, torch.Tensor) and outputs.requires_grad:
        return [outputs]
    return []


def weighted_loss(tensors: list) -> torch.Tensor:
    """sum_k sum(t_k * w_k) with fixed random weights w_k (the same on every process)."""
    return sum((t * random(1000 + k, *t.shape)).sum() for k, t in enumerate(tensors))


def clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
