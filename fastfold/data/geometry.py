"""Ground-truth structure features for training, in NumPy (supplement 1.8 and 1.9).

From a chain's atom37 coordinates: atom14 positions with their alternative naming (Table 3), the
frames of the eight rigid groups (Table 2, Algorithm 21) with alternative frames for pi-periodic
side chains, the seven torsion angles (Algorithm 24's inputs) and the backbone frame as a
quaternion and translation. The model's torch versions are in ``fastfold.model.all_atom``.
"""

from collections.abc import Mapping

import numpy as np

from fastfold.common import residue_constants as rc
from fastfold.data.transforms import FeatureDict
from fastfold.data.transforms_structure import pseudo_beta

_EPSILON = 1e-8
_N, _CA, _C, _O = (rc.atom_order[name] for name in ("N", "CA", "C", "O"))

# [21, 4, 4] atom37 indices of the chi-angle atoms; [21, 4] which chis exist; UNK has none.
_CHI_ATOMS = np.concatenate([rc.chi_angles_atom_indices, np.zeros((1, 4, 4), np.int64)])
_CHI_EXISTS = np.array(rc.chi_angles_mask + [[0.0] * 4], dtype=np.float32)
_CHI_PI_PERIODIC = np.array(rc.chi_pi_periodic, dtype=np.float32)  # [21, 4]

# Group 0 is built as (C, CA, N) and turned by pi about y, so that x runs from CA to C (Algorithm 21).
_BACKBONE_FLIP = np.diag([-1.0, 1.0, -1.0]).astype(np.float32)


def _ambiguous_groups() -> tuple[np.ndarray, np.ndarray]:
    """[21, 8] groups whose last chi is pi-periodic, and [21, 8, 3, 3] rotations by pi about their x-axis."""
    is_ambiguous = np.zeros((rc.restype_num + 1, 8), dtype=np.float32)
    is_ambiguous[:, 4:] = _CHI_PI_PERIODIC
    flips = np.tile(np.eye(3, dtype=np.float32), (rc.restype_num + 1, 8, 1, 1))
    flips[is_ambiguous == 1] = np.diag([1.0, -1.0, -1.0])
    return is_ambiguous, flips


_GROUP_IS_AMBIGUOUS, _GROUP_AMBIGUITY_FLIPS = _ambiguous_groups()


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.sqrt(np.sum(np.square(vectors), axis=-1, keepdims=True) + np.float32(_EPSILON))


def rigid_from_three_points(
    point_on_neg_x_axis: np.ndarray, origin: np.ndarray, point_on_xy_plane: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Frame by Gram-Schmidt from three points (Algorithm 21, argument order of AlphaFold's ``r3``).

    Parameters
    ----------
    point_on_neg_x_axis, origin, point_on_xy_plane
        ``[*, 3]``.

    Returns
    -------
    tuple
        Rotation ``[*, 3, 3]`` (columns are the frame's axes) and translation ``[*, 3]`` (``origin``).
    """
    e0 = _normalize(origin - point_on_neg_x_axis)
    e1 = point_on_xy_plane - origin
    e1 = _normalize(e1 - np.sum(e1 * e0, axis=-1, keepdims=True) * e0)
    return np.stack([e0, e1, np.cross(e0, e1)], axis=-1), origin


def atom37_to_atom14(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Ground-truth atom14 positions, with the alternative naming of ambiguous atoms (Table 3).

    Parameters
    ----------
    features
        ``aatype`` ``[N_res]``, ``all_atom_positions`` ``[N_res, 37, 3]``, ``all_atom_mask`` ``[N_res, 37]``,
        ``residx_atom14_to_atom37`` and ``atom14_atom_exists`` ``[N_res, 14]``.

    Returns
    -------
    dict
        ``atom14_gt_positions`` / ``atom14_alt_gt_positions`` ``[N_res, 14, 3]``, ``atom14_gt_exists`` /
        ``atom14_alt_gt_exists`` and ``atom14_atom_is_ambiguous`` float32 ``[N_res, 14]``.
    """
    aatype, exists = features["aatype"], features["atom14_atom_exists"]
    index = features["residx_atom14_to_atom37"]
    gt_exists = np.take_along_axis(features["all_atom_mask"], index, axis=1) * exists
    positions = np.take_along_axis(features["all_atom_positions"], index[..., None], axis=1)
    positions = positions * gt_exists[..., None]
    renaming = rc.restype_atom14_renaming_matrices[aatype]  # [N_res, 14, 14]
    return {
        **features,
        "atom14_gt_exists": gt_exists.astype(np.float32),
        "atom14_gt_positions": positions,
        "atom14_alt_gt_exists": np.einsum("ni,nij->nj", gt_exists, renaming).astype(np.float32),
        "atom14_alt_gt_positions": np.einsum("nic,nij->njc", positions, renaming),
        "atom14_atom_is_ambiguous": rc.restype_atom14_is_ambiguous[aatype],
    }


def atom37_to_frames(aatype: np.ndarray, positions: np.ndarray, mask: np.ndarray) -> FeatureDict:
    """Ground-truth frames of the eight rigid groups of every residue (Table 2, Algorithm 21).

    Parameters
    ----------
    aatype
        int ``[N_res]``.
    positions
        ``[N_res, 37, 3]``.
    mask
        ``[N_res, 37]``.

    Returns
    -------
    dict
        ``rigidgroups_gt_frames`` and ``rigidgroups_alt_gt_frames`` float32 ``[N_res, 8, 12]`` (rotation
        row-major, then translation), ``rigidgroups_gt_exists``, ``rigidgroups_group_exists`` and
        ``rigidgroups_group_is_ambiguous`` float32 ``[N_res, 8]``.
    """
    base_atoms = rc.restype_rigidgroup_base_atom37_idx[aatype]  # [N_res, 8, 3]
    base_positions = np.take_along_axis(positions[:, None], base_atoms[..., None], axis=2)  # [N_res, 8, 3, 3]
    rotation, translation = rigid_from_three_points(*np.moveaxis(base_positions, 2, 0))
    rotation[:, 0] = rotation[:, 0] @ _BACKBONE_FLIP
    group_exists = rc.restype_rigidgroup_mask[aatype]
    atoms_exist = np.take_along_axis(mask[:, None].astype(np.float32), base_atoms, axis=2).min(axis=-1)
    alt_rotation = rotation @ _GROUP_AMBIGUITY_FLIPS[aatype]

    def flat12(rot: np.ndarray) -> np.ndarray:
        return np.concatenate([rot.reshape(*rot.shape[:-2], 9), translation], axis=-1).astype(np.float32)

    return {
        "rigidgroups_gt_frames": flat12(rotation),
        "rigidgroups_gt_exists": atoms_exist * group_exists,
        "rigidgroups_group_exists": group_exists,
        "rigidgroups_group_is_ambiguous": _GROUP_IS_AMBIGUOUS[aatype],
        "rigidgroups_alt_gt_frames": flat12(alt_rotation),
    }


def atom37_to_torsion_angles(aatype: np.ndarray, positions: np.ndarray, mask: np.ndarray) -> FeatureDict:
    """Sines and cosines of the seven torsion angles: pre-omega, phi, psi, chi1-4 (supplement 1.9.1).

    Parameters
    ----------
    aatype
        int ``[N_res]`` (values above 20 count as unknown).
    positions
        ``[N_res, 37, 3]``.
    mask
        ``[N_res, 37]``.

    Returns
    -------
    dict
        ``torsion_angles_sin_cos`` and ``alt_torsion_angles_sin_cos`` (pi-periodic chis turned by pi)
        float32 ``[N_res, 7, 2]``, ``torsion_angles_mask`` float32 ``[N_res, 7]``.
    """
    aatype = np.minimum(aatype, rc.restype_num)
    previous_positions = np.concatenate([np.zeros_like(positions[:1]), positions[:-1]])
    previous_mask = np.concatenate([np.zeros_like(mask[:1]), mask[:-1]])
    backbone = np.stack(
        [
            np.concatenate([previous_positions[:, [_CA, _C]], positions[:, [_N, _CA]]], axis=1),  # pre-omega
            np.concatenate([previous_positions[:, [_C]], positions[:, [_N, _CA, _C]]], axis=1),  # phi
            positions[:, [_N, _CA, _C, _O]],  # psi
        ],
        axis=1,
    )  # [N_res, 3, 4, 3]
    backbone_mask = np.stack(
        [
            previous_mask[:, _CA] * previous_mask[:, _C] * mask[:, _N] * mask[:, _CA],
            previous_mask[:, _C] * mask[:, _N] * mask[:, _CA] * mask[:, _C],
            mask[:, _N] * mask[:, _CA] * mask[:, _C] * mask[:, _O],
        ],
        axis=1,
    )  # [N_res, 3]
    chi_atoms = _CHI_ATOMS[aatype].reshape(-1, 16)  # [N_res, 16]
    chis = np.take_along_axis(positions, chi_atoms[..., None], axis=1).reshape(-1, 4, 4, 3)
    chi_mask = _CHI_EXISTS[aatype] * np.take_along_axis(mask, chi_atoms, axis=1).reshape(-1, 4, 4).prod(-1)
    atoms = np.concatenate([backbone, chis], axis=1)  # [N_res, 7, 4, 3]
    rotation, translation = rigid_from_three_points(atoms[:, :, 1], atoms[:, :, 2], atoms[:, :, 0])
    fourth = np.einsum("nkji,nkj->nki", rotation, atoms[:, :, 3] - translation)  # in the torsion's frame
    sin_cos = _normalize(fourth[..., [2, 1]])
    sin_cos = sin_cos * np.array([1, 1, -1, 1, 1, 1, 1], dtype=np.float32)[:, None]  # psi's O is opposite
    mirror = np.concatenate([np.ones((len(aatype), 3), np.float32), 1 - 2 * _CHI_PI_PERIODIC[aatype]], axis=1)
    return {
        "torsion_angles_sin_cos": sin_cos.astype(np.float32),
        "alt_torsion_angles_sin_cos": (sin_cos * mirror[..., None]).astype(np.float32),
        "torsion_angles_mask": np.concatenate([backbone_mask, chi_mask], axis=1).astype(np.float32),
    }


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices ``[*, 3, 3]``: ``[*, 4]``.

    Taken as the top eigenvector of the symmetric 4x4 matrix whose quadratic form is the trace of
    ``rotation^T R(q)``, which is robust for every angle.
    """
    r = rotation.astype(np.float64)
    xx, xy, xz = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    yx, yy, yz = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    zx, zy, zz = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    k = np.stack(
        [
            np.stack([xx + yy + zz, zy - yz, xz - zx, yx - xy], axis=-1),
            np.stack([zy - yz, xx - yy - zz, xy + yx, xz + zx], axis=-1),
            np.stack([xz - zx, xy + yx, yy - xx - zz, yz + zy], axis=-1),
            np.stack([yx - xy, xz + zx, yz + zy, zz - xx - yy], axis=-1),
        ],
        axis=-2,
    )
    quaternion = np.linalg.eigh(k)[1][..., -1]  # eigenvalues ascend
    return (quaternion * np.where(quaternion[..., :1] < 0, -1.0, 1.0)).astype(np.float32)


def make_ground_truth_features(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add every ground-truth structure feature of the training losses.

    Parameters
    ----------
    features
        ``aatype`` ``[N_res]``, ``all_atom_positions`` ``[N_res, 37, 3]``, ``all_atom_mask`` ``[N_res, 37]``
        and the atom14 maps (``transforms_structure.make_atom14_masks``).

    Returns
    -------
    dict
        The outputs of :func:`atom37_to_atom14` and :func:`atom37_to_frames`, ``pseudo_beta`` ``[N_res, 3]``
        and ``pseudo_beta_mask``, ``chi_angles`` (radians) and ``chi_mask`` ``[N_res, 4]``,
        ``backbone_affine_tensor`` ``[N_res, 7]`` (quaternion, translation) and ``backbone_affine_mask``.
    """
    aatype, positions, mask = features["aatype"], features["all_atom_positions"], features["all_atom_mask"]
    features = {**atom37_to_atom14(features), **atom37_to_frames(aatype, positions, mask)}
    features["pseudo_beta"], features["pseudo_beta_mask"] = pseudo_beta(aatype, positions, mask)
    torsions = atom37_to_torsion_angles(aatype, positions, mask)
    chi_sin_cos = torsions["torsion_angles_sin_cos"][:, 3:]
    features["chi_angles"] = np.arctan2(chi_sin_cos[..., 0], chi_sin_cos[..., 1])
    features["chi_mask"] = torsions["torsion_angles_mask"][:, 3:]
    backbone = features["rigidgroups_gt_frames"][:, 0]  # [N_res, 12]
    quaternion = rotation_to_quaternion(backbone[:, :9].reshape(-1, 3, 3))
    features["backbone_affine_tensor"] = np.concatenate([quaternion, backbone[:, 9:]], axis=-1)
    features["backbone_affine_mask"] = (mask[:, _N] * mask[:, _CA] * mask[:, _C]).astype(np.float32)
    return features
