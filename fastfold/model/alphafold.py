"""The AlphaFold2 monomer model: embeddings and Evoformer, one recycling iteration, and recycling.

Module tree and parameter names follow DeepMind's haiku model (``alphafold/alphafold_iteration/...``),
so published ``params_model_*.npz`` files load with :meth:`AlphaFold.load_parameters`.
"""

import os

import torch
from torch import nn

from fastfold import kernels
from fastfold.model import heads
from fastfold.model.embedders import (
    ExtraMsaEmbedder,
    InputEmbedder,
    RecyclingEmbedder,
    RelativePositionEncoding,
    TemplateSingleEmbedder,
)
from fastfold.model.evoformer import EvoformerStack
from fastfold.model.extra_msa import ExtraMsaStack
from fastfold.model.params import haiku_params, load_haiku_params, read_npz, write_npz
from fastfold.model.primitives import Linear
from fastfold.model.structure_module import StructureModule
from fastfold.model.template import TemplateEmbedding

PARAMETER_PREFIX = "alphafold/alphafold_iteration"


class EmbeddingsAndEvoformer(nn.Module):
    """Algorithm 2 lines 5-18: embed the inputs, run the template, extra-MSA and Evoformer stacks.

    With ``global_config.bfloat16`` the activations and the parameters (cast at each use) are
    bfloat16 from the embedders to the outputs, as in AlphaFold's ``bfloat16_context``: the MSA,
    extra-MSA and pair representations are stored in bfloat16 and every matrix product runs in it,
    while LayerNorm statistics, softmax and the geometry (recycled and template atom positions,
    distograms, torsion angles, unit vectors) are computed in float32. The representations are
    returned in float32 unless ``global_config.bfloat16_output``.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``model.embeddings_and_evoformer`` node.
    global_config : ConfigDict
        AlphaFold's ``model.global_config``.
    """

    def __init__(self, config, global_config):
        super().__init__()
        self.config = config
        self.global_config = global_config
        self.input_embedder = InputEmbedder(config, global_config)
        self.recycling_embedder = RecyclingEmbedder(config, global_config)
        if config.max_relative_feature:
            self.relative_position_encoding = RelativePositionEncoding(config, global_config)
        if config.template.enabled:
            self.template_embedding = TemplateEmbedding(config.template, global_config, config.pair_channel)
            if config.template.embed_torsion_angles:
                self.template_single_embedder = TemplateSingleEmbedder(config, global_config)
        self.extra_msa_embedder = ExtraMsaEmbedder(config, global_config)
        self.extra_msa = ExtraMsaStack(config, global_config)
        self.evoformer_stack = EvoformerStack(config, global_config)
        self.single_activations = Linear(config.msa_channel, config.seq_channel)

    def forward(self, batch: dict) -> dict:
        """Representations of one recycling iteration.

        Parameters
        ----------
        batch : dict
            AlphaFold's processed features of one iteration (``target_feat`` [N_res, 22], ``msa_feat``
            [N_seq, N_res, 49], ``msa_mask``, ``seq_mask``, ``residue_index``, ``aatype``, ``extra_*``,
            ``template_*``) and the recycled ``prev_pos`` [N_res, 37, 3], ``prev_msa_first_row``
            [N_res, C_m], ``prev_pair`` [N_res, N_res, C_z].

        Returns
        -------
        dict
            ``single`` [N_res, C_s], ``pair`` [N_res, N_res, C_z], ``msa`` [N_seq, N_res, C_m] (without the
            template rows), ``msa_first_row`` [N_res, C_m].
        """
        config, global_config = self.config, self.global_config
        dtype = torch.bfloat16 if global_config.bfloat16 else torch.float32
        msa, pair = self.input_embedder(batch["target_feat"].to(dtype), batch["msa_feat"].to(dtype))  # l. 5
        mask_2d = batch["seq_mask"][..., :, None] * batch["seq_mask"][..., None, :]  # [*, N_res, N_res]
        mask_2d = mask_2d.to(dtype)
        msa, pair = self.recycling_embedder(msa, pair, batch["aatype"], batch["prev_pos"],
                                            batch["prev_msa_first_row"], batch["prev_pair"])  # line 6
        if config.max_relative_feature:
            pair = pair + self.relative_position_encoding(batch["residue_index"], dtype)  # Alg 4
        if config.template.enabled:  # lines 9-13
            template_batch = {key: value for key, value in batch.items() if key.startswith("template_")}
            pair = pair + self.template_embedding(pair, template_batch, mask_2d)

        extra_msa = self.extra_msa_embedder(batch["extra_msa"], batch["extra_has_deletion"].to(dtype),
                                            batch["extra_deletion_value"].to(dtype))  # lines 14-15
        pair = self.extra_msa(extra_msa, pair, batch["extra_msa_mask"].to(dtype), mask_2d)  # line 16

        num_sequences = msa.shape[-3]
        msa_mask = batch["msa_mask"].to(dtype)
        if config.template.enabled and config.template.embed_torsion_angles:  # lines 7-8
            template_rows, template_mask = self.template_single_embedder(
                batch["template_aatype"], batch["template_all_atom_positions"],
                batch["template_all_atom_masks"])
            msa = torch.cat([msa, template_rows.to(dtype)], dim=-3)  # [*, N_seq + N_templ, N_res, C_m]
            msa_mask = torch.cat([msa_mask, template_mask.to(dtype)], dim=-2)

        msa, pair = self.evoformer_stack(msa, pair, msa_mask, mask_2d)  # lines 17-18
        representations = {
            "single": self.single_activations(msa[..., 0, :, :]),
            "pair": pair,
            "msa": msa[..., :num_sequences, :, :],
            "msa_first_row": msa[..., 0, :, :],
        }
        if global_config.bfloat16_output:
            return representations
        return {key: value.float() for key, value in representations.items()}


def _channels(config, name: str) -> int:
    return config.embeddings_and_evoformer[name]


# Head config name -> (attribute = haiku module name, builder from AlphaFold's model config).
_HEADS = {
    "distogram": ("distogram_head", lambda c, g: heads.DistogramHead(
        c.heads.distogram, g, _channels(c, "pair_channel"))),
    "experimentally_resolved": ("experimentally_resolved_head", lambda c, g: heads.ExperimentallyResolvedHead(
        c.heads.experimentally_resolved, g, _channels(c, "seq_channel"))),
    "masked_msa": ("masked_msa_head", lambda c, g: heads.MaskedMsaHead(
        c.heads.masked_msa, g, _channels(c, "msa_channel"))),
    "predicted_aligned_error": ("predicted_aligned_error_head", lambda c, g: heads.PredictedAlignedErrorHead(
        c.heads.predicted_aligned_error, g, _channels(c, "pair_channel"))),
    "predicted_lddt": ("predicted_lddt_head", lambda c, g: heads.PredictedLDDTHead(
        c.heads.predicted_lddt, g, c.heads.structure_module.num_channel)),
    "structure_module": ("structure_module", lambda c, g: StructureModule(
        c.heads.structure_module, g, _channels(c, "seq_channel"), _channels(c, "pair_channel"))),
}
# Heads that read the structure module's output run after it, in this order.
_CONFIDENCE_HEADS = ("predicted_lddt", "predicted_aligned_error")


class AlphaFoldIteration(nn.Module):
    """One recycling iteration, Algorithm 2 lines 3-22: representations, structure module and heads.

    Heads with zero weight in ``config.heads`` are not built (AlphaFold's rule), so a model without
    the predicted aligned error head has no ``predicted_aligned_error_head`` parameters.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``model`` node.
    global_config : ConfigDict
        AlphaFold's ``model.global_config``.
    """

    def __init__(self, config, global_config):
        super().__init__()
        self.evoformer = EmbeddingsAndEvoformer(config.embeddings_and_evoformer, global_config)
        self.head_names = sorted(name for name, head in config.heads.items() if head.weight)
        for name in self.head_names:
            attribute, build = _HEADS[name]
            self.add_module(attribute, build(config, global_config))

    def _head(self, name: str) -> nn.Module:
        return getattr(self, _HEADS[name][0])

    def forward(self, batch: dict) -> dict:
        """batch: one iteration's features and recycled inputs (see :class:`EmbeddingsAndEvoformer`)
        -> ``representations`` and one output dict per head, under AlphaFold's names."""
        representations = self.evoformer(batch)
        outputs = {"representations": representations}
        for name in self.head_names:
            if name in _CONFIDENCE_HEADS:
                continue
            if name == "structure_module":  # its single activations feed the confidence heads
                structure = self.structure_module(representations, batch)
                representations["structure_module"] = structure.pop("act")
                outputs[name] = structure
            else:
                outputs[name] = self._head(name)(representations)
        for name in _CONFIDENCE_HEADS:
            if name in self.head_names:
                outputs[name] = self._head(name)(representations)
        return outputs


class AlphaFold(nn.Module):
    """AlphaFold2 with recycling, Algorithm 2 (inference) and the recycling of section 1.10.

    Iteration ``r`` reads slice ``[r]`` of the leading recycle dimension of the features when they have
    one (``aatype`` [N_iter, N_res]), else the same features every time. ``prev_pos``,
    ``prev_msa_first_row`` and ``prev_pair`` start at zero and carry the previous iteration's final atom
    positions, first MSA row and pair representation, detached: only the last iteration builds a graph.

    Parameters
    ----------
    config : ConfigDict
        AlphaFold's ``model`` node (``fastfold.config.model_config(name).model``). Its
        ``global_config.kernel`` (``auto``, ``triton``, ``torch``) becomes the process's default kernel
        setting (:func:`fastfold.kernels.set_default_kernel`); ``FASTFOLD_KERNEL`` overrides it.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        kernels.set_default_kernel(config.global_config.get("kernel", kernels.Kernel.AUTO.value))
        self.alphafold_iteration = AlphaFoldIteration(config, config.global_config)

    def forward(self, batch: dict, num_recycle: int = None, return_representations: bool = False) -> dict:
        """Predict a structure.

        Parameters
        ----------
        batch : dict of torch.Tensor
            AlphaFold's processed features, with or without the leading recycle dimension.
        num_recycle : int, optional
            Recycling iterations after the first (default ``config.num_recycle``).
        return_representations : bool
            Also return the last iteration's ``representations``.

        Returns
        -------
        dict
            The last iteration's head outputs under AlphaFold's names (``distogram``,
            ``experimentally_resolved``, ``masked_msa``, ``predicted_lddt``, ``predicted_aligned_error``,
            ``structure_module``), and the confidence metrics of
            :func:`fastfold.model.heads.confidence_metrics` (``plddt`` [N_res], ``ptm``, ``pae``, ...).
        """
        num_iterations = (self.config.num_recycle if num_recycle is None else num_recycle) + 1
        has_recycle_dim = batch["aatype"].dim() == 2
        if has_recycle_dim and batch["aatype"].shape[0] < num_iterations:
            raise ValueError(f"features have {batch['aatype'].shape[0]} recycling slices, "
                             f"{num_iterations} iterations need one each")
        prev = self._zero_prev(batch["aatype"].shape[-1], batch["msa_feat"])
        for iteration in range(num_iterations):
            features = {key: value[iteration] for key, value in batch.items()} if has_recycle_dim else batch
            last = iteration == num_iterations - 1
            with torch.set_grad_enabled(torch.is_grad_enabled() and last):
                outputs = self.alphafold_iteration({**features, **prev})
            prev = {
                "prev_pos": outputs["structure_module"]["final_atom_positions"].detach(),
                "prev_msa_first_row": outputs["representations"]["msa_first_row"].detach(),
                "prev_pair": outputs["representations"]["pair"].detach(),
            }
        if not return_representations:
            del outputs["representations"]
        outputs.update(heads.confidence_metrics(outputs, features["seq_mask"]))
        return outputs

    def _zero_prev(self, num_res: int, like: torch.Tensor) -> dict:
        """Recycled inputs of the first iteration: all zeros."""
        config = self.config.embeddings_and_evoformer
        return {
            "prev_pos": like.new_zeros(num_res, 37, 3),
            "prev_msa_first_row": like.new_zeros(num_res, config.msa_channel),
            "prev_pair": like.new_zeros(num_res, num_res, config.pair_channel),
        }

    def load_parameters(self, path) -> None:
        """Load a DeepMind parameter file (``params_model_*.npz``) or one written by :meth:`save_parameters`.

        Raises
        ------
        ParameterFileError
            Naming the file and the first offending key, for a missing, truncated or foreign file (another
            model preset, a multimer model), a missing or unused parameter, or a wrong shape. The model's
            parameters are unchanged when it is raised.
        """
        load_haiku_params(self.alphafold_iteration, read_npz(path), prefix=PARAMETER_PREFIX,
                          source=os.fspath(path), strict=True)

    def save_parameters(self, path) -> None:
        """Write the parameters in DeepMind's npz layout (float32, written atomically)."""
        write_npz(path, haiku_params(self.alphafold_iteration, prefix=PARAMETER_PREFIX))
