"""Embedders that turn input features and recycled outputs into the MSA and pair representations.

Haiku creates these layers inline in ``EmbeddingsAndEvoformer``; here each group is a module with
``haiku_name_scope = False``, so its layers keep their haiku paths (``evoformer/preprocess_1d``, ...)
when parameter files are read and written (see :mod:`fastfold.model.params`).
"""

import torch
from torch import nn

from fastfold.model.all_atom import atom37_to_torsion_angles, pseudo_beta
from fastfold.model.primitives import LayerNorm, Linear

# Number of classes in one-hot MSA and template residue types: 20 amino acids, unknown, gap (+ mask).
NUM_MSA_CLASSES = 23
NUM_TEMPLATE_AATYPE_CLASSES = 22


def distogram_one_hot(positions: torch.Tensor, min_bin: float, max_bin: float, num_bins: int) -> torch.Tensor:
    """One-hot binned pairwise distances (the distance bins of Algorithm 32).

    Bin ``i`` holds squared distances strictly between ``lower[i]**2`` and ``lower[i + 1]**2``, where
    ``lower = linspace(min_bin, max_bin, num_bins)``; the last bin is open-ended (upper edge 1e8).

    positions [*, N_res, 3] -> [*, N_res, N_res, num_bins] (float32).
    """
    lower = torch.linspace(min_bin, max_bin, num_bins, device=positions.device) ** 2
    upper = torch.cat([lower[1:], lower.new_tensor([1e8])])
    difference = positions[..., :, None, :] - positions[..., None, :, :]  # [*, N_res, N_res, 3]
    distance2 = (difference ** 2).sum(dim=-1, keepdim=True)  # [*, N_res, N_res, 1]
    return ((distance2 > lower) & (distance2 < upper)).to(positions.dtype)


class InputEmbedder(nn.Module):
    """Algorithm 3: MSA and pair representations from the target and MSA features.

    Layers ``preprocess_1d``, ``preprocess_msa``, ``left_single``, ``right_single``; Algorithm 3's
    relative position term is :class:`RelativePositionEncoding`, added after recycling as AlphaFold does.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config, target_feat_dim: int = 22, msa_feat_dim: int = 49):
        super().__init__()
        self.preprocess_1d = Linear(target_feat_dim, config.msa_channel)
        self.preprocess_msa = Linear(msa_feat_dim, config.msa_channel)
        self.left_single = Linear(target_feat_dim, config.pair_channel)
        self.right_single = Linear(target_feat_dim, config.pair_channel)

    def forward(self, target_feat: torch.Tensor, msa_feat: torch.Tensor) -> tuple:
        """target_feat [*, N_res, 22], msa_feat [*, N_seq, N_res, 49]
        -> (msa [*, N_seq, N_res, C_m], pair [*, N_res, N_res, C_z])."""
        msa = self.preprocess_1d(target_feat)[..., None, :, :] + self.preprocess_msa(msa_feat)
        left, right = self.left_single(target_feat), self.right_single(target_feat)  # [*, N_res, C_z]
        pair = left[..., :, None, :] + right[..., None, :, :]
        return msa, pair


class RelativePositionEncoding(nn.Module):
    """Algorithms 4 and 5: one-hot clipped residue offsets, projected into the pair representation.

    Layer ``pair_activiations`` (AlphaFold's spelling), input ``2 * max_relative_feature + 1`` classes.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        self.max_relative_feature = config.max_relative_feature
        self.pair_activiations = Linear(2 * self.max_relative_feature + 1, config.pair_channel)

    def forward(self, residue_index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """residue_index [*, N_res] -> pair update [*, N_res, N_res, C_z] in ``dtype``."""
        offset = residue_index[..., :, None] - residue_index[..., None, :]  # [*, N_res, N_res]
        bins = torch.clamp(offset + self.max_relative_feature, 0, 2 * self.max_relative_feature).long()
        one_hot = nn.functional.one_hot(bins, 2 * self.max_relative_feature + 1)  # Alg 5
        return self.pair_activiations(one_hot.to(dtype))


class RecyclingEmbedder(nn.Module):
    """Algorithm 32: previous positions, first MSA row and pair representation, fed back.

    Layers ``prev_pos_linear`` (when ``config.recycle_pos``) on the one-hot distogram of the previous
    pseudo-beta positions, ``prev_msa_first_row_norm`` and ``prev_pair_norm`` (when
    ``config.recycle_features``). Recycled inputs are detached (the stop-gradient of Algorithm 2); the
    distogram and the LayerNorms are computed in float32 (positions) or the recycled inputs' dtype and
    added in the dtype of ``msa`` and ``pair``.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        self.recycle_pos = config.recycle_pos
        self.recycle_features = config.recycle_features
        self.prev_pos_config = config.prev_pos
        if self.recycle_pos:
            self.prev_pos_linear = Linear(config.prev_pos.num_bins, config.pair_channel)
        if self.recycle_features:
            self.prev_msa_first_row_norm = LayerNorm(config.msa_channel)
            self.prev_pair_norm = LayerNorm(config.pair_channel)

    def forward(self, msa: torch.Tensor, pair: torch.Tensor, aatype: torch.Tensor, prev_pos: torch.Tensor,
                prev_msa_first_row: torch.Tensor, prev_pair: torch.Tensor) -> tuple:
        """Add the recycled inputs to the first MSA row and to the pair representation.

        msa [*, N_seq, N_res, C_m], pair [*, N_res, N_res, C_z], aatype [*, N_res], prev_pos
        [*, N_res, 37, 3], prev_msa_first_row [*, N_res, C_m], prev_pair [*, N_res, N_res, C_z]
        -> (msa, pair), same shapes.
        """
        if self.recycle_pos:
            positions = pseudo_beta(aatype, prev_pos.detach())  # [*, N_res, 3]
            distogram = distogram_one_hot(positions, self.prev_pos_config.min_bin,
                                          self.prev_pos_config.max_bin, self.prev_pos_config.num_bins)
            pair = pair + self.prev_pos_linear(distogram.to(pair.dtype))
        if self.recycle_features:
            first_row_update = self.prev_msa_first_row_norm(prev_msa_first_row.detach()).to(msa.dtype)
            first_row = msa[..., :1, :, :] + first_row_update[..., None, :, :]  # [*, 1, N_res, C_m]
            msa = torch.cat([first_row, msa[..., 1:, :, :]], dim=-3)
            pair = pair + self.prev_pair_norm(prev_pair.detach()).to(pair.dtype)
        return msa, pair


class ExtraMsaEmbedder(nn.Module):
    """Algorithm 2 lines 14-15: extra MSA features (one-hot residue, has-deletion, deletion value)
    projected to the extra MSA channels by ``extra_msa_activations``."""

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        self.extra_msa_activations = Linear(NUM_MSA_CLASSES + 2, config.extra_msa_channel)

    def forward(self, extra_msa: torch.Tensor, extra_has_deletion: torch.Tensor,
                extra_deletion_value: torch.Tensor) -> torch.Tensor:
        """extra_msa [*, N_extra, N_res] (int), extra_has_deletion and extra_deletion_value
        [*, N_extra, N_res] -> [*, N_extra, N_res, C_e], in the dtype of ``extra_deletion_value``."""
        dtype = extra_deletion_value.dtype
        features = torch.cat([
            nn.functional.one_hot(extra_msa.long(), NUM_MSA_CLASSES).to(dtype),
            extra_has_deletion[..., None].to(dtype),
            extra_deletion_value[..., None].to(dtype),
        ], dim=-1)  # [*, N_extra, N_res, 25]
        return self.extra_msa_activations(features)


class TemplateSingleEmbedder(nn.Module):
    """Algorithm 2 lines 7-8: template residue types and torsion angles as extra MSA rows.

    Features: one-hot template residue type (22), sin/cos of the 7 torsion angles (14) and of their
    alternative (pi-shifted ambiguous chi) values (14), torsion-angle mask (7); layers
    ``template_single_embedding`` and ``template_projection`` with a ReLU between.
    """

    haiku_name_scope = False

    def __init__(self, config, global_config):
        super().__init__()
        num_features = NUM_TEMPLATE_AATYPE_CLASSES + 14 + 14 + 7
        self.placeholder_for_undefined = not global_config.zero_init
        self.template_single_embedding = Linear(num_features, config.msa_channel, initializer="relu")
        self.template_projection = Linear(config.msa_channel, config.msa_channel, initializer="relu")

    def forward(self, template_aatype: torch.Tensor, template_all_atom_positions: torch.Tensor,
                template_all_atom_masks: torch.Tensor) -> tuple:
        """template_aatype [*, N_templ, N_res] (int), template_all_atom_positions
        [*, N_templ, N_res, 37, 3], template_all_atom_masks [*, N_templ, N_res, 37]
        -> (template rows [*, N_templ, N_res, C_m], their MSA mask [*, N_templ, N_res]: the psi mask)."""
        torsions = atom37_to_torsion_angles(
            template_aatype, template_all_atom_positions, template_all_atom_masks,
            placeholder_for_undefined=self.placeholder_for_undefined)
        dtype = self.template_single_embedding.weights.dtype
        features = torch.cat([
            nn.functional.one_hot(template_aatype.long(), NUM_TEMPLATE_AATYPE_CLASSES).to(dtype),
            torsions["torsion_angles_sin_cos"].flatten(-2).to(dtype),
            torsions["alt_torsion_angles_sin_cos"].flatten(-2).to(dtype),
            torsions["torsion_angles_mask"].to(dtype),
        ], dim=-1)  # [*, N_templ, N_res, 57]
        activations = self.template_projection(self.template_single_embedding(features, relu=True))
        # The psi angle depends only on this residue's backbone atoms.
        return activations, torsions["torsion_angles_mask"][..., 2].to(dtype)
