"""fastfold.model.all_atom against AlphaFold's ``all_atom`` (JAX) on random and real coordinates."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from alphafold.model import all_atom as af_all_atom
from alphafold.model import modules as af_modules
from alphafold.model import r3
from alphafold_reference import assert_close, r3_to_4x4, random_features
from Bio.PDB import MMCIFParser

from fastfold.common import residue_constants as rc
from fastfold.common.rigid import Rigid, quat_to_rot
from fastfold.data import geometry
from fastfold.model import all_atom

MMCIF_PATH = Path(__file__).parent / "data" / "1A8O.cif"


def random_backbone(num_res: int, rng) -> np.ndarray:
    """Random backbone frames as homogeneous matrices [N, 4, 4], translations up to ~20 A."""
    quaternion = torch.from_numpy(rng.standard_normal((num_res, 4)).astype(np.float32))
    frames = np.zeros((num_res, 4, 4), np.float32)
    frames[:, :3, :3] = quat_to_rot(quaternion).numpy()
    frames[:, :3, 3] = rng.standard_normal((num_res, 3)) * 10.0
    frames[:, 3, 3] = 1.0
    return frames


def read_mmcif_atom37(path: str):
    """aatype [N], atom37 positions [N, 37, 3] and mask [N, 37] of the first chain of the first model.

    Selenomethionine (MSE) is read as methionine, its SE as SD, as AlphaFold's mmCIF parsing does.
    """
    chain = next(iter(MMCIFParser(QUIET=True).get_structure("s", path)[0]))
    residues = [r for r in chain if r.get_resname() != "HOH"]
    resnames = ["MET" if r.get_resname() == "MSE" else r.get_resname() for r in residues]
    aatype = np.array([rc.resname_to_idx.get(name, rc.unk_restype_index) for name in resnames])
    positions = np.zeros((len(residues), 37, 3), np.float32)
    mask = np.zeros((len(residues), 37), np.float32)
    for i, residue in enumerate(residues):
        for atom in residue:
            name = "SD" if atom.get_id() == "SE" else atom.get_id()
            if name in rc.atom_order:
                positions[i, rc.atom_order[name]] = atom.get_coord()
                mask[i, rc.atom_order[name]] = 1.0
    return aatype, positions, mask


@pytest.fixture(scope="module")
def mmcif_atoms():
    return read_mmcif_atom37(MMCIF_PATH)


def test_torsion_angles_to_atom14_matches_alphafold():
    rng = np.random.default_rng(0)
    num_res = 23
    aatype = np.arange(num_res) % 21  # every residue type, the unknown one included
    backbone = random_backbone(num_res, rng)
    sin_cos = rng.standard_normal((num_res, 7, 2)).astype(np.float32)  # unnormalised on purpose

    af_frames = af_all_atom.torsion_angles_to_frames(
        jnp.asarray(aatype), r3.rigids_from_tensor4x4(jnp.asarray(backbone)), jnp.asarray(sin_cos))
    af_atoms = r3.vecs_to_tensor(af_all_atom.frames_and_literature_positions_to_atom14_pos(
        jnp.asarray(aatype), af_frames))

    backbone_t = torch.from_numpy(backbone).requires_grad_()
    sin_cos_t = torch.from_numpy(sin_cos).requires_grad_()
    frames = all_atom.torsion_angles_to_frames(
        torch.from_numpy(aatype), Rigid.from_tensor_4x4(backbone_t), sin_cos_t)
    atoms = all_atom.frames_and_literature_positions_to_atom14_pos(torch.from_numpy(aatype), frames)

    assert_close(frames.to_tensor_4x4(), r3_to_4x4(af_frames))
    assert_close(atoms, af_atoms, atol=1e-3)
    atoms.square().sum().backward()
    assert torch.isfinite(backbone_t.grad).all() and backbone_t.grad.abs().sum() > 0
    assert torch.isfinite(sin_cos_t.grad).all() and sin_cos_t.grad.abs().sum() > 0


def test_torsion_angles_to_atom14_batched():
    """Leading batch dimensions give the same as running each member alone."""
    rng = np.random.default_rng(1)
    aatype = torch.from_numpy(rng.integers(0, 21, (2, 9)))
    backbone = Rigid.from_tensor_4x4(torch.from_numpy(np.stack([random_backbone(9, rng) for _ in range(2)])))
    sin_cos = torch.from_numpy(rng.standard_normal((2, 9, 7, 2)).astype(np.float32))
    batched = all_atom.frames_and_literature_positions_to_atom14_pos(
        aatype, all_atom.torsion_angles_to_frames(aatype, backbone, sin_cos))
    for b in range(2):
        single = all_atom.frames_and_literature_positions_to_atom14_pos(
            aatype[b], all_atom.torsion_angles_to_frames(aatype[b], backbone[b], sin_cos[b]))
        torch.testing.assert_close(batched[b], single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("placeholder", [False, True])
def test_atom37_to_torsion_angles_real_structure(mmcif_atoms, placeholder):
    aatype, positions, mask = mmcif_atoms
    mask[5, rc.atom_order["O"]] = 0.0  # a missing atom: psi of residue 5 becomes undefined
    reference = af_all_atom.atom37_to_torsion_angles(
        jnp.asarray(aatype[None]), jnp.asarray(positions[None]), jnp.asarray(mask[None]),
        placeholder_for_undefined=placeholder)
    ours = all_atom.atom37_to_torsion_angles(torch.from_numpy(aatype), torch.from_numpy(positions),
                                             torch.from_numpy(mask), placeholder_for_undefined=placeholder)
    assert ours["torsion_angles_mask"][5, 2] == 0 and ours["torsion_angles_mask"].sum() > 100
    for key, value in ours.items():
        # Undefined torsions come from zero coordinates: compare them only through the placeholder.
        defined = np.asarray(reference["torsion_angles_mask"][0])[..., None]
        weight = 1 if placeholder or key == "torsion_angles_mask" else defined
        assert_close(value.numpy() * weight, np.asarray(reference[key][0]) * weight)


def test_atom37_to_torsion_angles_template_features():
    """Random template coordinates with missing atoms and unknown residues, batched over templates."""
    features = random_features(num_res=13, num_msa=1, num_extra_msa=1, num_templates=3, seed=2)
    aatype, positions, mask = (features[k] for k in ("template_aatype", "template_all_atom_positions",
                                                     "template_all_atom_masks"))
    reference = af_all_atom.atom37_to_torsion_angles(jnp.asarray(aatype), jnp.asarray(positions),
                                                     jnp.asarray(mask), placeholder_for_undefined=True)
    ours = all_atom.atom37_to_torsion_angles(torch.from_numpy(aatype), torch.from_numpy(positions),
                                             torch.from_numpy(mask), placeholder_for_undefined=True)
    for key in reference:
        assert_close(ours[key], reference[key])


def test_ground_truth_frames_and_torsions_rebuild_the_structure(mmcif_atoms):
    """The data pipeline's ground-truth frames (numpy; compared with AlphaFold in test_transforms) and
    our torsion angles, fed through torsions -> frames -> atoms, put every atom back where it was."""
    aatype, positions, mask = mmcif_atoms
    flat = geometry.atom37_to_frames(aatype, positions, mask)["rigidgroups_gt_frames"][:, 0]  # [N, 12]
    backbone = Rigid(torch.from_numpy(flat[:, :9].reshape(-1, 3, 3)), torch.from_numpy(flat[:, 9:]))
    torsions = all_atom.atom37_to_torsion_angles(torch.from_numpy(aatype), torch.from_numpy(positions),
                                                 torch.from_numpy(mask))
    frames = all_atom.torsion_angles_to_frames(torch.from_numpy(aatype), backbone,
                                               torsions["torsion_angles_sin_cos"])
    rebuilt = all_atom.atom14_to_atom37(
        all_atom.frames_and_literature_positions_to_atom14_pos(torch.from_numpy(aatype), frames),
        torch.from_numpy(aatype))
    side_chain_ok = (torsions["torsion_angles_mask"][:, 3:].sum(-1) == torch.from_numpy(
        np.asarray(rc.chi_angles_mask + [[0.0] * 4], np.float32)[aatype]).sum(-1)).numpy()
    keep = mask * side_chain_ok[:, None] * (aatype < 20)[:, None]
    keep[:, rc.atom_order["O"]] = 0.0  # O and OXT depend on psi / the next residue
    keep[:, rc.atom_order["OXT"]] = 0.0
    error = np.linalg.norm(rebuilt.numpy() - positions, axis=-1)[keep > 0]
    # Idealised bond geometry vs the crystal structure: small for most atoms, < 1 A at chain ends.
    assert np.median(error) < 0.1 and error.max() < 1.0, (np.median(error), error.max())


def test_atom14_atom37_and_pseudo_beta_match_alphafold():
    features = random_features(num_res=13, num_msa=1, num_extra_msa=1, num_templates=2, seed=3)
    aatype = torch.from_numpy(features["aatype"])
    rng = np.random.default_rng(3)
    atom14 = rng.standard_normal((13, 14, 3)).astype(np.float32)
    atom37 = rng.standard_normal((13, 37, 3)).astype(np.float32)
    np.testing.assert_array_equal(all_atom.atom14_to_atom37(torch.from_numpy(atom14), aatype).numpy(),
                                  af_all_atom.atom14_to_atom37(jnp.asarray(atom14), features))
    np.testing.assert_array_equal(all_atom.atom37_to_atom14(torch.from_numpy(atom37), aatype).numpy(),
                                  af_all_atom.atom37_to_atom14(jnp.asarray(atom37), features))
    np.testing.assert_array_equal(all_atom.atom14_mask(aatype).numpy(), features["atom14_atom_exists"])
    np.testing.assert_array_equal(all_atom.atom37_mask(aatype).numpy(), features["atom37_atom_exists"])

    template_aatype = features["template_aatype"]
    positions, mask = features["template_all_atom_positions"], features["template_all_atom_masks"]
    reference = af_modules.pseudo_beta_fn(jnp.asarray(template_aatype), jnp.asarray(positions),
                                          jnp.asarray(mask))
    ours = all_atom.pseudo_beta(torch.from_numpy(template_aatype), torch.from_numpy(positions),
                                torch.from_numpy(mask))
    for value, expected in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(value.numpy(), np.asarray(expected))
