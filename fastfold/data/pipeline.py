"""Feature processing: raw features -> the model's batch, in eval or training mode (supplement 1.2).

The steps and their order follow AlphaFold's input pipeline, driven by the ``data`` section of our
config tree (``fastfold.config.model_config(name).data``, AlphaFold's keys):

* once per chain: raw-feature clean-up, masks, HHblits profile, template residue types, masks and
  pseudo-beta, atom14/atom37 maps, (training) ground-truth structure features and the crop;
* once per ensemble member / recycling iteration (``num_ensemble * (num_recycle + 1)`` when the MSA is
  resampled in recycling): cluster sampling, masked MSA, extra-MSA clustering and cropping, MSA
  features, residue crop and padding to fixed sizes.

The result has a leading dimension of that size on every feature.
"""

from collections.abc import Mapping

import numpy as np

from fastfold.data import transforms, transforms_msa, transforms_structure
from fastfold.data.geometry import make_ground_truth_features
from fastfold.data.random_choices import NumpyRandomChoices, RandomChoices
from fastfold.data.transforms import NUM_EXTRA_SEQ, NUM_MSA_SEQ, NUM_RES, NUM_TEMPLATES, FeatureDict

MODES = ("eval", "train")
_INT32 = np.iinfo(np.int32)


def _per_chain_features(
    raw: Mapping[str, np.ndarray], data_config, mode: str, random: RandomChoices
) -> FeatureDict:
    """The steps that run once per chain (AlphaFold's non-ensembled transforms)."""
    features = transforms.prepare_raw_features(raw)
    features = transforms.make_masks(features)
    features = transforms.make_hhblits_profile(features)
    features["random_crop_to_size_seed"] = random.integers(_INT32.min, _INT32.max, (2,))
    if data_config.common.use_templates:
        features = transforms_structure.fix_templates_aatype(features)
        features = transforms_structure.make_template_mask(features)
        features = transforms_structure.make_template_pseudo_beta(features)
    features = transforms_structure.make_atom14_masks(features)
    if mode == "train" and "all_atom_positions" in features:
        features = make_ground_truth_features(features)
    return features


def _crop_choices(
    features: Mapping[str, np.ndarray], data_config, mode: str, crop_size: int, random: RandomChoices
) -> tuple[int, np.ndarray]:
    """First residue of the crop and the templates kept, drawn once so that every ensemble member agrees.

    Eval mode keeps every residue and the first ``max_templates`` templates without drawing anything;
    training mode draws the crop start, and, with ``subsample_templates``, a random subset of templates.
    """
    num_res = int(features["seq_length"])
    num_templates = features["template_mask"].shape[0] if "template_mask" in features else 0
    max_templates = data_config.eval.max_templates
    if mode == "eval":
        return 0, np.arange(min(num_templates, max_templates))
    crop_start = int(random.integers(0, num_res - min(num_res, crop_size) + 1, ()))
    if not data_config.eval.subsample_templates:
        return crop_start, np.arange(min(num_templates, max_templates))
    template_start = int(random.integers(0, num_templates + 1, ()))
    order = random.permutation(num_templates)
    return crop_start, order[template_start : template_start + max_templates]


def _ensemble_member(
    features: Mapping[str, np.ndarray],
    data_config,
    crop: tuple[int, np.ndarray],
    crop_size: int,
    random: RandomChoices,
) -> FeatureDict:
    """The steps that are redrawn for every ensemble member and recycling iteration."""
    common, eval_config = data_config.common, data_config.eval
    max_templates = eval_config.max_templates
    max_msa_clusters = eval_config.max_msa_clusters
    if common.reduce_msa_clusters_by_max_templates:
        max_msa_clusters -= max_templates
    features = transforms_msa.sample_msa(features, max_msa_clusters, random)
    if "masked_msa" in common:
        masked = common.masked_msa
        features = transforms_msa.make_masked_msa(
            features,
            masked.uniform_prob,
            masked.profile_prob,
            masked.same_prob,
            eval_config.masked_msa_replace_fraction,
            random,
        )
    if common.msa_cluster_features:
        features = transforms_msa.nearest_neighbor_clusters(features)
        features = transforms_msa.summarize_clusters(features)
    if common.max_extra_msa:
        features = transforms_msa.crop_extra_msa(features, common.max_extra_msa, random)
    else:
        features = transforms_msa.delete_extra_msa(features)
    features = transforms.make_msa_feat(features)
    if not eval_config.fixed_size:
        return {
            key: value[:max_templates] if key.startswith("template_") else value
            for key, value in features.items()
        }
    schema = eval_config.feat
    features = transforms.select_features(features, list(schema))
    crop_start, template_indices = crop
    features = transforms.crop_to_size(features, schema, crop_start, crop_size, template_indices)
    sizes = {NUM_RES: crop_size, NUM_MSA_SEQ: max_msa_clusters, NUM_EXTRA_SEQ: common.max_extra_msa}
    return transforms.make_fixed_size(features, schema, {**sizes, NUM_TEMPLATES: max_templates})


def process_features(
    raw: Mapping[str, np.ndarray],
    config,
    mode: str = "eval",
    random: RandomChoices | int = 0,
    crop_size: int | None = None,
) -> FeatureDict:
    """Process raw features into the model's input batch.

    Parameters
    ----------
    raw
        Sequence, MSA and template features (:mod:`fastfold.data.features`); in training mode also
        ``all_atom_positions`` ``[N_res, 37, 3]``, ``all_atom_mask`` ``[N_res, 37]`` and ``resolution``.
    config
        The model config (``fastfold.config.model_config(name)``); its ``data`` section drives the steps.
    mode
        ``"eval"``: no residue crop, no ground truth. ``"train"``: random contiguous crop to
        ``crop_size`` and ground-truth structure features when the raw features have atom positions.
    random
        Source of the random choices, or an int seed for :class:`NumpyRandomChoices`.
    crop_size
        Residues per crop and padded length; ``None`` keeps all ``N_res`` residues.

    Returns
    -------
    dict
        Every feature of ``data.eval.feat`` that could be made, with a leading ensemble/recycling dimension
        ``E``: e.g. ``msa_feat`` float32 ``[E, N_clust, N_crop, 49]``, ``target_feat`` ``[E, N_crop, 22]``,
        ``extra_msa`` int32 ``[E, N_extra, N_crop]``, ``template_aatype`` int32 ``[E, N_templ, N_crop]``.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown feature processing mode {mode!r}; expected one of {MODES}")
    if isinstance(random, int):
        random = NumpyRandomChoices(random)
    data_config = config.data
    features = _per_chain_features(raw, data_config, mode, random)
    if crop_size is None or mode == "eval":
        crop_size = int(features["seq_length"])
    crop = _crop_choices(features, data_config, mode, crop_size, random)
    num_members = data_config.eval.num_ensemble
    if data_config.common.resample_msa_in_recycling:
        num_members *= data_config.common.num_recycle + 1
    members = [_ensemble_member(features, data_config, crop, crop_size, random) for _ in range(num_members)]
    return {key: np.stack([member[key] for member in members]) for key in members[0]}
