"""Feature transforms on the whole chain: raw-feature clean-up, masks, MSA features, cropping, padding.

Each transform takes a feature dict and returns a new dict (inputs are not modified). Names and
semantics follow AlphaFold's feature processing (supplement section 1.2); the MSA sampling and
masking steps are in :mod:`fastfold.data.transforms_msa`, the structure ones in
:mod:`fastfold.data.transforms_structure`.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from fastfold.common import residue_constants

FeatureDict = dict[str, np.ndarray]

# Shape-schema placeholders of the config's ``data.eval.feat`` (AlphaFold's names).
NUM_RES = "num residues placeholder"
NUM_MSA_SEQ = "msa placeholder"
NUM_EXTRA_SEQ = "extra msa placeholder"
NUM_TEMPLATES = "num templates placeholder"

MSA_FEATURE_NAMES = ("msa", "deletion_matrix", "msa_mask", "msa_row_mask", "bert_mask", "true_msa")

_HHBLITS_TO_OURS = np.array(residue_constants.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, dtype=np.int32)  # [22]


def deletion_value(deletion_matrix: np.ndarray) -> np.ndarray:
    """Deletion counts squashed to ``[0, 1)``: ``2/pi * arctan(d / 3)`` (supplement Table 1), same shape."""
    return np.arctan(deletion_matrix / np.float32(3.0)) * np.float32(2.0 / np.pi)


def prepare_raw_features(raw: Mapping[str, np.ndarray]) -> FeatureDict:
    """Turn raw features (:mod:`fastfold.data.features`) into the pipeline's working layout.

    MSA classes go from the HHblits alphabet to ours, ``aatype`` from one-hot to indices, the repeated
    per-residue scalars ``seq_length`` and ``num_alignments`` (and ``resolution`` ``[1]``) to scalars,
    ``deletion_matrix_int`` to a float ``deletion_matrix``, 64-bit integers to int32, and
    ``is_distillation`` (0) is added.

    Parameters
    ----------
    raw
        ``aatype`` ``[N_res, 21]``, ``seq_length`` ``[N_res]``, ``msa`` ``[N_seq, N_res]``,
        ``deletion_matrix_int`` ``[N_seq, N_res]``, ``num_alignments`` ``[N_res]`` and the other raw keys.

    Returns
    -------
    dict
        ``aatype`` int32 ``[N_res]``, ``msa`` int32 ``[N_seq, N_res]``, ``deletion_matrix`` float32
        ``[N_seq, N_res]``, ``seq_length`` and ``num_alignments`` int32 ``[]``, the rest unchanged.
    """
    features = {
        key: value.astype(np.int32) if value.dtype == np.int64 else value
        for key, value in raw.items()
        if key != "deletion_matrix_int"
    }
    if "deletion_matrix_int" in raw:
        features["deletion_matrix"] = raw["deletion_matrix_int"].astype(np.float32)
    features["msa"] = _HHBLITS_TO_OURS[features["msa"]]
    features["aatype"] = np.argmax(features["aatype"], axis=-1).astype(np.int32)
    for key in ("seq_length", "num_alignments", "resolution"):
        if key in features:
            features[key] = features[key][0]
    features["is_distillation"] = np.array(0.0, dtype=np.float32)
    return features


def make_masks(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add all-ones ``seq_mask`` ``[N_res]``, ``msa_mask`` ``[N_seq, N_res]`` and ``msa_row_mask`` ``[N_seq]``
    (float32); padding later sets them to 0 where there is nothing."""
    return {
        **features,
        "seq_mask": np.ones(features["aatype"].shape, dtype=np.float32),
        "msa_mask": np.ones(features["msa"].shape, dtype=np.float32),
        "msa_row_mask": np.ones(features["msa"].shape[:1], dtype=np.float32),
    }


def make_hhblits_profile(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add ``hhblits_profile`` float32 ``[N_res, 22]``: frequency of each class in every MSA column."""
    msa = features["msa"]
    num_seq, num_res = msa.shape
    counts = np.bincount((np.arange(num_res) * 22 + msa).ravel(), minlength=num_res * 22)
    return {
        **features,
        "hhblits_profile": counts.reshape(num_res, 22).astype(np.float32) / np.float32(num_seq),
    }


def make_msa_feat(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add the Evoformer's input features (supplement Table 1).

    Returns
    -------
    dict
        ``target_feat`` float32 ``[N_res, 22]`` (domain break flag, one-hot aatype with X),
        ``msa_feat`` float32 ``[N_clust, N_res, 49]`` (one-hot MSA with gap and mask, has deletion,
        deletion value, cluster profile, cluster deletion mean), ``extra_has_deletion`` and
        ``extra_deletion_value`` float32 ``[N_extra, N_res]`` when there is an extra MSA.
    """
    features = dict(features)
    has_break = np.clip(features["between_segment_residues"].astype(np.float32), 0, 1)
    aatype_one_hot = np.eye(21, dtype=np.float32)[features["aatype"]]
    features["target_feat"] = np.concatenate([has_break[:, None], aatype_one_hot], axis=-1)
    deletion_matrix = features["deletion_matrix"]
    msa_feat = [
        np.eye(23, dtype=np.float32)[features["msa"]],
        np.clip(deletion_matrix, 0.0, 1.0)[..., None],
        deletion_value(deletion_matrix)[..., None],
    ]
    if "cluster_profile" in features:
        msa_feat += [
            features["cluster_profile"],
            deletion_value(features["cluster_deletion_mean"])[..., None],
        ]
    if "extra_deletion_matrix" in features:
        features["extra_has_deletion"] = np.clip(features["extra_deletion_matrix"], 0.0, 1.0)
        features["extra_deletion_value"] = deletion_value(features["extra_deletion_matrix"])
    features["msa_feat"] = np.concatenate(msa_feat, axis=-1)
    return features


def select_features(features: Mapping[str, np.ndarray], names: Sequence[str]) -> FeatureDict:
    """Keep only the features named in ``names``."""
    return {key: value for key, value in features.items() if key in names}


def crop_to_size(
    features: Mapping[str, np.ndarray],
    shape_schema: Mapping[str, Sequence[str | None]],
    crop_start: int,
    crop_size: int,
    template_indices: np.ndarray,
) -> FeatureDict:
    """Crop the residue dimension to ``crop_size`` residues from ``crop_start`` and select templates.

    Parameters
    ----------
    features
        Features whose residue dimensions are named ``NUM_RES`` in ``shape_schema``.
    shape_schema
        Feature name -> dimension names (the config's ``data.eval.feat``).
    crop_start, crop_size
        First residue and number of residues kept (``crop_size`` is reduced to the sequence length).
    template_indices
        int ``[K]``: the templates kept, in this order.

    Returns
    -------
    dict
        The cropped features, ``seq_length`` set to the number of residues kept.
    """
    crop_size = min(int(features["seq_length"]), crop_size)
    residues = slice(crop_start, crop_start + crop_size)
    cropped = dict(features)
    for key, value in features.items():
        if key not in shape_schema or ("template" not in key and NUM_RES not in shape_schema[key]):
            continue
        if key.startswith("template"):
            value = value[template_indices]
        index = tuple(residues if name == NUM_RES else slice(None) for name in shape_schema[key])
        cropped[key] = value[index]
    cropped["seq_length"] = np.array(crop_size, dtype=np.int32)
    return cropped


def make_fixed_size(
    features: Mapping[str, np.ndarray],
    shape_schema: Mapping[str, Sequence[str | None]],
    sizes: Mapping[str, int],
) -> FeatureDict:
    """Zero-pad every placeholder dimension of ``shape_schema`` to its size in ``sizes``.

    Parameters
    ----------
    features
        Features named in ``shape_schema``, with dimensions no larger than the target sizes.
    shape_schema
        Feature name -> dimension names (the config's ``data.eval.feat``).
    sizes
        Placeholder (``NUM_RES``, ``NUM_MSA_SEQ``, ``NUM_EXTRA_SEQ``, ``NUM_TEMPLATES``) -> size; a size
        of 0 leaves that dimension as it is.

    Returns
    -------
    dict
        The padded features (masks are 0 in the padding).
    """
    padded = {}
    for key, value in features.items():
        schema = shape_schema[key]
        if len(schema) != value.ndim:
            raise ValueError(f"Feature {key!r} of shape {value.shape} does not match its schema {schema}")
        target = [sizes.get(name) or size for size, name in zip(value.shape, schema, strict=True)]
        widths = [(0, size - have) for size, have in zip(target, value.shape, strict=True)]
        padded[key] = np.pad(value, widths) if widths else value
    return padded
