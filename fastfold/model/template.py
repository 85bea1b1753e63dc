"""Template pair embedding: template pair features, the template pair stack (Algorithm 16) and
template pointwise attention (Algorithm 17), as in Algorithm 2 lines 9-13."""

from collections.abc import Mapping

import torch
from torch import nn

from fastfold.common import residue_constants
from fastfold.common.rigid import Rigid, rot_from_two_vectors
from fastfold.model.attention import Attention
from fastfold.model.chunking import apply_in_chunks, inference_chunk_size
from fastfold.model.embedders import NUM_TEMPLATE_AATYPE_CLASSES, distogram_one_hot
from fastfold.model.evoformer import (
    add_pair_update_modules,
    add_residual,
    call_with_remat,
    moved_dropout_scale,
)
from fastfold.model.layout import AxialLayout
from fastfold.model.primitives import LayerNorm, Linear

# Template features read by the pair embedding, in the order the per-template chunks slice them.
TEMPLATE_PAIR_FEATURES = ("template_aatype", "template_all_atom_positions", "template_all_atom_masks",
                          "template_pseudo_beta", "template_pseudo_beta_mask")
# Dimension of the template axis of each of those features, counted from the end.
_TEMPLATE_DIMS = (-2, -4, -3, -3, -2)


def num_template_pair_features(num_bins: int) -> int:
    """Channels of :func:`template_pair_features`: distogram, 2 masks, 2 residue one-hots, unit vector."""
    return num_bins + 2 + 2 * NUM_TEMPLATE_AATYPE_CLASSES + 3


def backbone_unit_vectors(all_atom_positions: torch.Tensor, backbone_mask: torch.Tensor) -> torch.Tensor:
    """Unit vector from residue ``i`` to residue ``j``'s C-alpha in ``i``'s backbone frame.

    The frame of residue ``i`` has its origin on CA, x axis towards C and N in the xy plane (positive
    y), as AlphaFold's ``make_transform_from_reference``. Pairs where either backbone is incomplete
    get the zero vector. Computed in float32 at least.

    Parameters
    ----------
    all_atom_positions : torch.Tensor
        ``[*, N_res, 37, 3]``.
    backbone_mask : torch.Tensor
        ``[*, N_res]``, 1 where N, CA and C all exist.

    Returns
    -------
    torch.Tensor
        ``[*, N_res, N_res, 3]``.
    """
    n, ca, c = (all_atom_positions[..., residue_constants.atom_order[name], :] for name in ("N", "CA", "C"))
    frames = Rigid(rot_from_two_vectors(c - ca, n - ca), ca)  # [*, N_res]
    local = frames.unsqueeze(-1).invert_apply(frames.trans[..., None, :, :])  # [*, N_res, N_res, 3]
    inverse_distance = torch.rsqrt(1e-6 + (local ** 2).sum(dim=-1, keepdim=True))
    mask_2d = backbone_mask[..., :, None] * backbone_mask[..., None, :]
    return local * (inverse_distance * mask_2d[..., None].to(local.dtype))


def template_pair_features(template_aatype: torch.Tensor, template_all_atom_positions: torch.Tensor,
                           template_all_atom_masks: torch.Tensor, template_pseudo_beta: torch.Tensor,
                           template_pseudo_beta_mask: torch.Tensor, config,
                           dtype: torch.dtype) -> torch.Tensor:
    """Pair features of each template (input of Algorithm 2 line 9), in AlphaFold 2.3's channel order.

    Channels: pseudo-beta distogram (``config.dgram_features``), pseudo-beta pair mask, residue
    type one-hot of ``j`` then of ``i`` (22 classes each), backbone unit vector ``x, y, z`` (zeros
    unless ``config.use_template_unit_vector``), backbone pair mask; everything is then multiplied by
    the backbone pair mask.

    Parameters
    ----------
    template_aatype : torch.Tensor
        ``[*, N_res]`` (int).
    template_all_atom_positions : torch.Tensor
        ``[*, N_res, 37, 3]``.
    template_all_atom_masks : torch.Tensor
        ``[*, N_res, 37]``.
    template_pseudo_beta : torch.Tensor
        ``[*, N_res, 3]``.
    template_pseudo_beta_mask : torch.Tensor
        ``[*, N_res]``.
    config : ConfigDict
        AlphaFold's ``template`` node.
    dtype : torch.dtype
        Dtype of the result (geometry is computed in float32 at least).

    Returns
    -------
    torch.Tensor
        ``[*, N_res, N_res, num_bins + 49]``.
    """
    num_res = template_aatype.shape[-1]
    pseudo_beta_mask_2d = template_pseudo_beta_mask[..., :, None] * template_pseudo_beta_mask[..., None, :]
    dgram = distogram_one_hot(template_pseudo_beta.float(), **config.dgram_features)
    aatype = nn.functional.one_hot(template_aatype.long(), NUM_TEMPLATE_AATYPE_CLASSES)  # [*, N_res, 22]
    aatype = aatype.to(dtype)
    expanded = (*aatype.shape[:-2], num_res, num_res, NUM_TEMPLATE_AATYPE_CLASSES)
    backbone_mask = torch.stack([template_all_atom_masks[..., residue_constants.atom_order[name]]
                                 for name in ("N", "CA", "C")]).prod(dim=0)  # [*, N_res]
    backbone_mask_2d = (backbone_mask[..., :, None] * backbone_mask[..., None, :]).to(dtype)
    if config.use_template_unit_vector:
        unit_vectors = backbone_unit_vectors(template_all_atom_positions, backbone_mask).to(dtype)
    else:
        unit_vectors = backbone_mask_2d.new_zeros(*backbone_mask_2d.shape, 3)
    features = torch.cat([
        dgram.to(dtype),
        pseudo_beta_mask_2d.to(dtype)[..., None],
        aatype[..., None, :, :].expand(expanded),  # type of residue j
        aatype[..., :, None, :].expand(expanded),  # type of residue i
        unit_vectors,
        backbone_mask_2d[..., None],
    ], dim=-1)
    return features * backbone_mask_2d[..., None]


class TemplatePairBlock(nn.Module):
    """One block of the template pair stack, Algorithm 16 lines 2-6 (AlphaFold's order).

    Under DAP (``self.layout``) the pair comes and goes as row slices ``[*, N_res / n, N_res, C_t]``
    with the mask whole; only the ending-node attention runs on column slices (the pair moves to them in
    pieces while the attention runs on the pieces already arrived).
    """

    def __init__(self, config, global_config, pair_dim: int):
        super().__init__()
        self.global_config = global_config
        add_pair_update_modules(self, config, global_config, pair_dim)
        self.layout = AxialLayout()

    _add = add_residual

    def forward(self, pair: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """pair [*, N_res, N_res, C_t], pair_mask [*, N_res, N_res] -> [*, N_res, N_res, C_t]."""
        layout, rows = self.layout, -3
        starting, ending = self.triangle_attention_starting_node, self.triangle_attention_ending_node
        outgoing, incoming = self.triangle_multiplication_outgoing, self.triangle_multiplication_incoming
        pair = self._add(pair, starting(pair, pair_mask), starting, rows)  # line 2
        pair = ending.forward_moving(  # line 3, to [*, N_res, N_res / n, C_t]
            pair, pair_mask, moved_dropout_scale(self, ending, pair, to_columns=True))
        pair = layout.columns_to_rows(pair)  # [*, N_res / n, N_res, C_t]
        pair = self._add(pair, outgoing(pair, pair_mask), outgoing, rows)  # line 4
        pair = self._add(pair, incoming(pair, pair_mask), incoming, rows)  # line 5
        return self._add(pair, self.pair_transition(pair), self.pair_transition, rows)  # line 6


class TemplatePairStack(nn.Module):
    """The template pair stack, Algorithm 16: ``config.num_block`` blocks in the ModuleList ``layer_stack``.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``template_pair_stack`` node.
    global_config : ConfigDict
        AlphaFold's ``global_config`` (``use_remat`` recomputes each block in training).
    pair_dim : int
        C_t.
    """

    def __init__(self, config, global_config, pair_dim: int):
        super().__init__()
        self.global_config = global_config
        self.layer_stack = nn.ModuleList(
            TemplatePairBlock(config, global_config, pair_dim) for _ in range(config.num_block))
        self.layout = AxialLayout()

    def forward(self, pair: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """pair [*, N_res, N_res, C_t], pair_mask [*, N_res, N_res] -> [*, N_res, N_res, C_t].

        Under DAP the whole pair is padded and sliced on entry and gathered on exit.
        """
        num_res = pair.shape[-2]
        pair, pair_mask = self.layout.enter(pair, pair_mask)  # [*, N_res / n, N_res, C_t], mask whole
        remat = self.training and self.global_config.use_remat
        for block in self.layer_stack:
            pair = call_with_remat(block, pair, pair_mask, remat=remat)
        return self.layout.leave(pair, num_res, num_res)


class SingleTemplateEmbedding(nn.Module):
    """Embed each template's pair features, Algorithm 2 lines 9 and 11 (with Algorithm 16).

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``template`` node.
    global_config : ConfigDict
        AlphaFold's ``global_config``.
    """

    def __init__(self, config, global_config):
        super().__init__()
        self.config = config
        template_dim = config.template_pair_stack.triangle_attention_ending_node.value_dim
        self.embedding2d = Linear(num_template_pair_features(config.dgram_features.num_bins), template_dim,
                                  initializer="relu")
        self.template_pair_stack = TemplatePairStack(config.template_pair_stack, global_config, template_dim)
        self.output_layer_norm = LayerNorm(template_dim)

    def forward(self, template_aatype: torch.Tensor, template_all_atom_positions: torch.Tensor,
                template_all_atom_masks: torch.Tensor, template_pseudo_beta: torch.Tensor,
                template_pseudo_beta_mask: torch.Tensor, mask_2d: torch.Tensor) -> torch.Tensor:
        """Template features as in :func:`template_pair_features` with a template dimension,
        ``[*, N_templ, N_res, ...]``, and the padding mask ``mask_2d`` [*, N_res, N_res] (its dtype is
        the activations') -> [*, N_templ, N_res, N_res, C_t]."""
        features = template_pair_features(
            template_aatype, template_all_atom_positions, template_all_atom_masks, template_pseudo_beta,
            template_pseudo_beta_mask, self.config, mask_2d.dtype)
        act = self.embedding2d(features)
        act = self.template_pair_stack(act, mask_2d[..., None, :, :])
        return self.output_layer_norm(act)


class TemplateEmbedding(nn.Module):
    """Template pair embedding: embed each template, then pointwise attention over templates (Algorithm 17).

    Algorithm 2 lines 9-13. Templates are embedded one at a time (as AlphaFold, to bound memory);
    the query pair representation attends to the templates at each residue pair, in chunks of
    ``config.subbatch_size`` pairs at inference. Without any template the result is zero.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``template`` node.
    global_config : ConfigDict
        AlphaFold's ``global_config``.
    pair_dim : int
        C_z.
    """

    def __init__(self, config, global_config, pair_dim: int):
        super().__init__()
        self.config = config
        template_dim = config.template_pair_stack.triangle_attention_ending_node.value_dim
        self.single_template_embedding = SingleTemplateEmbedding(config, global_config)
        self.attention = Attention(config.attention, global_config, pair_dim, template_dim, pair_dim)

    def forward(self, query_embedding: torch.Tensor, template_batch: Mapping[str, torch.Tensor],
                mask_2d: torch.Tensor) -> torch.Tensor:
        """Template update of the pair representation.

        Parameters
        ----------
        query_embedding : torch.Tensor
            ``[*, N_res, N_res, C_z]``.
        template_batch : mapping of str to torch.Tensor
            AlphaFold's template features: ``template_aatype`` [*, N_templ, N_res],
            ``template_all_atom_positions`` [*, N_templ, N_res, 37, 3], ``template_all_atom_masks``
            [*, N_templ, N_res, 37], ``template_pseudo_beta`` [*, N_templ, N_res, 3],
            ``template_pseudo_beta_mask`` [*, N_templ, N_res], ``template_mask`` [*, N_templ].
        mask_2d : torch.Tensor
            ``[*, N_res, N_res]`` padding mask, in the activations' dtype.

        Returns
        -------
        torch.Tensor
            ``[*, N_res, N_res, C_z]``.
        """
        num_res, pair_dim = query_embedding.shape[-2:]
        template_mask = template_batch["template_mask"].to(query_embedding.dtype)  # [*, N_templ]
        templates = apply_in_chunks(
            lambda *features: self.single_template_embedding(*features, mask_2d),
            [template_batch[name] for name in TEMPLATE_PAIR_FEATURES], dims=_TEMPLATE_DIMS, chunk_size=1,
            out_dim=-4)  # [*, N_templ, N_res, N_res, C_t]
        # Algorithm 17: each residue pair is a batch element, its templates are the keys.
        templates = templates.movedim(-4, -2).flatten(-4, -3)  # [*, N_res * N_res, N_templ, C_t]
        query = query_embedding.flatten(-3, -2)[..., None, :]  # [*, N_res * N_res, 1, C_z]
        key_mask = template_mask.bool()[..., None, None, None, :]  # [*, 1, 1, 1, N_templ]
        embedding = apply_in_chunks(
            lambda q, t: self.attention(q, t, mask=key_mask), [query, templates], dims=[-3, -3],
            chunk_size=inference_chunk_size(self.config, self.training))
        embedding = embedding.reshape(*embedding.shape[:-3], num_res, num_res, pair_dim)
        has_templates = (template_mask.sum(dim=-1) > 0).to(embedding.dtype)  # [*]
        return embedding * has_templates[..., None, None, None]
