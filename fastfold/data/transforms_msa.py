"""MSA transforms: cluster sampling, BERT-style masking, extra-MSA clustering (supplement 1.2.6-1.2.7).

The random choices (row orders, mask positions, replacement classes) come from a
:class:`fastfold.data.random_choices.RandomChoices` passed in.
"""

from collections.abc import Mapping

import numpy as np

from fastfold.data.random_choices import RandomChoices
from fastfold.data.transforms import MSA_FEATURE_NAMES, FeatureDict

# Classes of the masked MSA: 20 amino acids, X, gap (our order), then the mask token.
_NUM_CLASSES = 23
_UNIFORM_AMINO_ACID = np.array([0.05] * 20 + [0.0, 0.0], dtype=np.float32)  # [22]


def sample_msa(features: Mapping[str, np.ndarray], max_seq: int, random: RandomChoices) -> FeatureDict:
    """Keep the query and ``max_seq - 1`` random other rows as the MSA; the rest become ``extra_*``.

    Parameters
    ----------
    features
        MSA features (``MSA_FEATURE_NAMES`` present) with ``N_seq`` rows.
    max_seq
        Number of rows to sample (cluster centres), query included.
    random
        Draws the order of rows ``1 .. N_seq-1``.

    Returns
    -------
    dict
        MSA features of ``min(max_seq, N_seq)`` rows, ``extra_*`` features of the others, in the drawn order.
    """
    num_seq = features["msa"].shape[0]
    order = np.concatenate([[0], 1 + random.permutation(num_seq - 1)]).astype(np.int64)
    selected, others = order[:max_seq], order[max_seq:]
    sampled = dict(features)
    for key in MSA_FEATURE_NAMES:
        if key in features:
            sampled["extra_" + key] = features[key][others]
            sampled[key] = features[key][selected]
    return sampled


def make_masked_msa(
    features: Mapping[str, np.ndarray],
    uniform_prob: float,
    profile_prob: float,
    same_prob: float,
    replace_fraction: float,
    random: RandomChoices,
) -> FeatureDict:
    """Mask MSA entries for the masked-MSA (BERT) loss (supplement 1.2.7).

    Each entry is picked with probability ``replace_fraction``; a picked entry becomes a uniformly random
    amino acid (``uniform_prob``), a class drawn from the column's HHblits profile (``profile_prob``),
    itself (``same_prob``) or the mask token 22 (the rest).

    Parameters
    ----------
    features
        ``msa`` int32 ``[N_seq, N_res]`` and ``hhblits_profile`` float32 ``[N_res, 22]``.

    Returns
    -------
    dict
        ``msa`` with the replacements, ``true_msa`` (the input ``msa``), ``bert_mask`` float32
        ``[N_seq, N_res]`` (1 at picked entries).
    """
    msa = features["msa"]
    probs = (
        np.float32(uniform_prob) * _UNIFORM_AMINO_ACID
        + np.float32(profile_prob) * features["hhblits_profile"]
        + np.float32(same_prob) * np.eye(22, dtype=np.float32)[msa]
    )  # [N_seq, N_res, 22]
    mask_prob = 1.0 - profile_prob - same_prob - uniform_prob
    if mask_prob < 0:
        raise ValueError(f"Masked-MSA probabilities sum to {1 - mask_prob} > 1")
    probs = np.concatenate([probs, np.full(msa.shape + (1,), mask_prob, dtype=np.float32)], axis=-1)
    picked = random.uniform(msa.shape) < replace_fraction  # [N_seq, N_res]
    replacement = random.categorical(probs)  # [N_seq, N_res]
    return {
        **features,
        "msa": np.where(picked, replacement, msa).astype(np.int32),
        "true_msa": msa,
        "bert_mask": picked.astype(np.float32),
    }


def nearest_neighbor_clusters(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Assign every extra-MSA row to the MSA row (cluster centre) it agrees with at the most positions.

    Agreement counts positions where both rows hold the same amino acid or X (gaps and the mask token
    do not count); ties go to the first centre.

    Returns
    -------
    dict
        ``extra_cluster_assignment`` int32 ``[N_extra]``.
    """
    one_hot = np.eye(_NUM_CLASSES, 21, dtype=np.float32)  # classes 21 (gap) and 22 (mask) are all-zero
    num_clusters, num_res = features["msa"].shape
    num_extra = features["extra_msa"].shape[0]
    centres = features["msa_mask"][..., None] * one_hot[features["msa"]]  # [N_clust, N_res, 21]
    extra = features["extra_msa_mask"][..., None] * one_hot[features["extra_msa"]]  # [N_extra, N_res, 21]
    agreement = extra.reshape(num_extra, num_res * 21) @ centres.reshape(num_clusters, num_res * 21).T
    assignment = np.argmax(agreement, axis=1) if num_extra else np.zeros(0)  # [N_extra]
    return {**features, "extra_cluster_assignment": assignment.astype(np.int32)}


def summarize_clusters(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Profile and mean deletion count of every cluster (its centre and the extra rows assigned to it).

    Returns
    -------
    dict
        ``cluster_profile`` float32 ``[N_clust, N_res, 23]``, ``cluster_deletion_mean`` float32
        ``[N_clust, N_res]``.
    """
    num_clusters, num_res = features["msa"].shape
    assignment = features["extra_cluster_assignment"]
    extra_mask = features["extra_msa_mask"]
    counts = np.zeros((num_clusters, num_res), dtype=np.float32)
    np.add.at(counts, assignment, extra_mask)
    class_sums = np.eye(_NUM_CLASSES, dtype=np.float32)[features["msa"]]  # [N_clust, N_res, 23]
    np.add.at(class_sums, (assignment[:, None], np.arange(num_res), features["extra_msa"]), extra_mask)
    deletion_sums = np.zeros((num_clusters, num_res), dtype=np.float32)
    np.add.at(deletion_sums, assignment, extra_mask * features["extra_deletion_matrix"])
    deletion_sums += features["deletion_matrix"]
    counts = np.float32(1e-6) + features["msa_mask"] + counts  # the centre counts too
    return {
        **features,
        "cluster_profile": class_sums / counts[..., None],
        "cluster_deletion_mean": deletion_sums / counts,
    }


def crop_extra_msa(
    features: Mapping[str, np.ndarray], max_extra_msa: int, random: RandomChoices
) -> FeatureDict:
    """Keep ``max_extra_msa`` random extra-MSA rows (all of them, shuffled, when there are fewer)."""
    num_extra = features["extra_msa"].shape[0]
    kept = random.permutation(num_extra)[:max_extra_msa]
    cropped = dict(features)
    for key in MSA_FEATURE_NAMES:
        if "extra_" + key in features:
            cropped["extra_" + key] = features["extra_" + key][kept]
    return cropped


def delete_extra_msa(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Drop the extra-MSA features (for models without an extra-MSA stack)."""
    extra_names = {"extra_" + key for key in MSA_FEATURE_NAMES}
    return {key: value for key, value in features.items() if key not in extra_names}
