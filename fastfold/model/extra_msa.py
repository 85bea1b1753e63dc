"""The extra MSA stack, Algorithm 18: Evoformer blocks with global column attention on the extra MSA."""

import torch
from torch import nn

from fastfold.model.evoformer import EvoformerIteration, run_axial_stack
from fastfold.model.layout import AxialLayout


class ExtraMsaStack(nn.Module):
    """``config.extra_msa_stack_num_block`` extra-MSA blocks (Algorithm 18) updating the pair representation.

    The blocks are the ModuleList ``extra_msa_stack`` (haiku's layer stack of that name), each an
    :class:`~fastfold.model.evoformer.EvoformerIteration` with ``is_extra_msa=True`` and the
    ``evoformer`` config node; the stack adds no level to the parameter path
    (``haiku_name_scope = False``). In training with ``global_config.use_remat`` each block's
    activations are recomputed in the backward pass.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``embeddings_and_evoformer`` node (``evoformer``, ``extra_msa_stack_num_block``,
        ``extra_msa_channel``, ``pair_channel``).
    global_config : ConfigDict
        AlphaFold's ``global_config``.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        self.global_config = global_config
        self.extra_msa_stack = nn.ModuleList(
            EvoformerIteration(config.evoformer, global_config, config.extra_msa_channel, config.pair_channel,
                               is_extra_msa=True)
            for _ in range(config.extra_msa_stack_num_block))
        self.layout = AxialLayout()

    def forward(self, extra_msa: torch.Tensor, pair: torch.Tensor, extra_msa_mask: torch.Tensor,
                pair_mask: torch.Tensor) -> torch.Tensor:
        """Run the blocks and return the pair representation.

        Parameters
        ----------
        extra_msa : torch.Tensor
            ``[*, N_extra_seq, N_res, C_e]``, the embedded extra MSA.
        pair : torch.Tensor
            ``[*, N_res, N_res, C_z]``.
        extra_msa_mask : torch.Tensor
            ``[*, N_extra_seq, N_res]``.
        pair_mask : torch.Tensor
            ``[*, N_res, N_res]``.

        Returns
        -------
        torch.Tensor
            The updated pair representation ``[*, N_res, N_res, C_z]``.

        Under DAP the whole inputs are padded and sliced on entry and the whole pair gathered on exit.
        """
        remat = self.training and self.global_config.use_remat
        _, pair = run_axial_stack(self.extra_msa_stack, self.layout, extra_msa, pair, extra_msa_mask,
                                  pair_mask, remat, gather_msa=False)
        return pair
