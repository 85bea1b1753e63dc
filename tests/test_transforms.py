"""Feature transforms: random steps' statistics, ground-truth geometry against AlphaFold's
``alphafold.model.all_atom`` on the 1A8O chain, and the training-mode pipeline."""

from pathlib import Path

import numpy as np
import pytest
from alphafold.model import all_atom, quat_affine

from fastfold.config import model_config
from fastfold.data import (
    Msa,
    geometry,
    read_mmcif,
    read_stockholm,
    transforms,
    transforms_msa,
    transforms_structure,
)
from fastfold.data.features import (
    make_msa_features,
    make_sequence_features,
    make_structure_features,
)
from fastfold.data.pipeline import process_features
from fastfold.data.random_choices import NumpyRandomChoices
from fastfold.data.templates import empty_template_features

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def chain_features() -> dict:
    """Working features of 1A8O chain A with its ground-truth atoms."""
    chain = read_mmcif(DATA / "1A8O.cif").chains["A"]
    msa = Msa((chain.seqres,), np.zeros((1, len(chain.seqres)), np.int32), ("1a8o_A",))
    raw = {
        **make_sequence_features(chain.seqres, "1a8o_A"),
        **make_msa_features([msa]),
        **make_structure_features(chain, 1.7),
    }
    return transforms_structure.make_atom14_masks(transforms.prepare_raw_features(raw))


def _globin_features() -> dict:
    globins = read_stockholm(DATA / "globins45.ali")
    raw = {**make_sequence_features(globins.sequences[0], "globin"), **make_msa_features([globins])}
    return transforms.make_hhblits_profile(transforms.make_masks(transforms.prepare_raw_features(raw)))


def test_frames_match_alphafold(chain_features):
    aatype, positions, mask = (chain_features[k] for k in ("aatype", "all_atom_positions", "all_atom_mask"))
    ours = geometry.atom37_to_frames(aatype, positions, mask)
    for key, value in all_atom.atom37_to_frames(aatype, positions, mask).items():
        np.testing.assert_allclose(ours[key], np.asarray(value), atol=1e-6, err_msg=key)
    assert ours["rigidgroups_group_is_ambiguous"].sum() > 0  # 1A8O has Asp, Glu, Phe, Tyr


def test_torsion_angles_match_alphafold(chain_features):
    aatype, positions, mask = (chain_features[k] for k in ("aatype", "all_atom_positions", "all_atom_mask"))
    ours = geometry.atom37_to_torsion_angles(aatype, positions, mask)
    reference = all_atom.atom37_to_torsion_angles(aatype[None], positions[None], mask[None])
    for key, value in reference.items():
        np.testing.assert_allclose(ours[key], np.asarray(value)[0], atol=2e-5, err_msg=key)


def test_atom14_ground_truth_matches_alphafold(chain_features):
    ours = geometry.make_ground_truth_features(chain_features)
    positions = all_atom.atom37_to_atom14(chain_features["all_atom_positions"], chain_features)
    np.testing.assert_array_equal(ours["atom14_gt_positions"], np.asarray(positions))
    renaming = all_atom.RENAMING_MATRICES[chain_features["aatype"]]
    alt_positions = np.einsum("nic,nij->njc", ours["atom14_gt_positions"], renaming)
    np.testing.assert_array_equal(ours["atom14_alt_gt_positions"], alt_positions)
    assert (ours["atom14_alt_gt_positions"] != ours["atom14_gt_positions"]).any()
    np.testing.assert_array_equal(ours["atom14_atom_is_ambiguous"].sum(-1) > 0, renaming.trace(0, 1, 2) < 14)
    # the backbone quaternion gives back the backbone frame's rotation
    rotation = quat_affine.QuatAffine.from_tensor(ours["backbone_affine_tensor"]).rotation
    rotation = np.stack([np.stack(row, -1) for row in rotation], -2).reshape(-1, 9)
    np.testing.assert_allclose(rotation, ours["rigidgroups_gt_frames"][:, 0, :9], atol=1e-6)
    sin_cos = geometry.atom37_to_torsion_angles(
        chain_features["aatype"], chain_features["all_atom_positions"], chain_features["all_atom_mask"]
    )["torsion_angles_sin_cos"][:, 3:]
    np.testing.assert_allclose(np.sin(ours["chi_angles"]), sin_cos[..., 0], atol=1e-6)


def test_masked_msa_statistics():
    """15% of entries picked; of those 70% mask token, 10% the same, 10% profile, 10% uniform."""
    msa = np.zeros((400, 250), dtype=np.int32)  # all alanine: the profile is alanine too
    features = transforms.make_hhblits_profile({"msa": msa})
    masked = transforms_msa.make_masked_msa(features, 0.1, 0.1, 0.1, 0.15, NumpyRandomChoices(0))
    picked = masked["bert_mask"] == 1
    np.testing.assert_array_equal(masked["msa"][~picked], 0)
    np.testing.assert_array_equal(masked["true_msa"], msa)
    assert abs(picked.mean() - 0.15) < 0.005
    replacements = np.bincount(masked["msa"][picked], minlength=23) / picked.sum()
    expected = np.concatenate([[0.205], np.full(19, 0.005), [0, 0, 0.7]])  # 0.1 * 0.05 + 0.1 + 0.1 for A
    np.testing.assert_allclose(replacements, expected, atol=0.015)
    assert replacements[20] == replacements[21] == 0


def test_sampling_and_clusters():
    features = transforms_msa.sample_msa(_globin_features(), 10, NumpyRandomChoices(1))
    assert features["msa"].shape == (10, 153) and features["extra_msa"].shape == (35, 153)
    rows = np.concatenate([features["msa"], features["extra_msa"]])
    assert (rows[0] == _globin_features()["msa"][0]).all() and len({row.tobytes() for row in rows}) == 45
    features = transforms_msa.nearest_neighbor_clusters(features)
    identity = [
        [np.sum((extra == centre) & (extra < 21)) for centre in features["msa"]]
        for extra in features["extra_msa"]
    ]
    np.testing.assert_array_equal(features["extra_cluster_assignment"], np.argmax(identity, axis=1))
    features = transforms_msa.summarize_clusters(features)
    one_hot = np.eye(23)
    for cluster in range(10):
        members = features["extra_cluster_assignment"] == cluster
        counts = one_hot[features["msa"][cluster]] + one_hot[features["extra_msa"][members]].sum(0)
        np.testing.assert_allclose(
            features["cluster_profile"][cluster], counts / (1 + members.sum()), rtol=1e-5
        )


def test_crop_and_pad():
    schema = {"aatype": ["num residues placeholder"], "template_mask": ["num templates placeholder"]}
    features = {"aatype": np.arange(10), "template_mask": np.ones(3), "seq_length": np.array(10)}
    cropped = transforms.crop_to_size(features, schema, 4, 5, np.array([2, 0]))
    np.testing.assert_array_equal(cropped["aatype"], [4, 5, 6, 7, 8])
    assert cropped["seq_length"] == 5 and cropped["template_mask"].shape == (2,)
    padded = transforms.make_fixed_size(
        {"aatype": cropped["aatype"]}, schema, {"num residues placeholder": 8}
    )
    np.testing.assert_array_equal(padded["aatype"], [4, 5, 6, 7, 8, 0, 0, 0])


def test_training_pipeline(chain_features):
    chain = read_mmcif(DATA / "1A8O.cif").chains["A"]
    rng = np.random.default_rng(0)
    rows = [chain.seqres] + ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY-"), 70)) for _ in range(30)]
    msa = Msa(tuple(rows), rng.integers(0, 3, (31, 70)).astype(np.int32), tuple(map(str, range(31))))
    raw = {
        **make_sequence_features(chain.seqres, "1a8o_A"),
        **make_msa_features([msa]),
        **make_structure_features(chain, 1.7),
        **empty_template_features(70),
    }
    config = model_config("model_1")
    config.data.eval.max_msa_clusters, config.data.common.max_extra_msa = 12, 8
    batch = process_features(raw, config, "train", 3, crop_size=32)
    again = process_features(raw, config, "train", 3, crop_size=32)
    assert all(np.array_equal(batch[key], again[key]) for key in batch)
    assert batch["msa_feat"].shape == (4, 8, 32, 49) and batch["extra_msa"].shape == (4, 8, 32)
    assert batch["seq_length"].tolist() == [32] * 4 and batch["seq_mask"].all()
    start = int(batch["residue_index"][0, 0])
    np.testing.assert_array_equal(batch["residue_index"], np.arange(start, start + 32)[None].repeat(4, 0))
    full = geometry.make_ground_truth_features(chain_features)
    for key in ("atom14_gt_positions", "rigidgroups_gt_frames", "chi_angles", "backbone_affine_tensor"):
        np.testing.assert_array_equal(batch[key][2], full[key][start : start + 32], err_msg=key)
    assert not np.array_equal(batch["msa_feat"][0], batch["msa_feat"][1])  # resampled every recycle
    assert 0.05 < batch["bert_mask"].mean() < 0.3
