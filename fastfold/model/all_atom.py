"""All-atom geometry: torsion angles, rigid-group frames and atom positions (Algorithm 24 and helpers).

Atom layouts and rigid groups follow :mod:`fastfold.common.residue_constants` (atom14 / atom37, groups
0 backbone, 1 pre-omega, 2 phi, 3 psi, 4-7 chi1-chi4). Every function takes ``aatype`` ``[*, N]`` with
values 0-20 (20 is unknown, which has no atoms and no side-chain groups) and looks the per-residue-type
tables up from tensors built once per device and dtype (:func:`residue_table`).

Frames are :class:`~fastfold.common.rigid.Rigid` objects; where they are returned as features they are
homogeneous ``[*, 4, 4]`` tensors (``Rigid.to_tensor_4x4``), not AlphaFold's flat 12-vectors.
"""

import functools

import numpy as np
import torch

from fastfold.common import residue_constants as rc
from fastfold.common.rigid import Rigid, rigids_from_3_points, rot_compose, rot_x_from_sin_cos


@functools.cache
def _numpy_tables() -> dict:
    """Per-residue-type tables, each with 21 rows (20 amino acids, then unknown)."""
    def with_unknown_row(table) -> np.ndarray:
        table = np.asarray(table)
        return np.concatenate([table, np.zeros_like(table[:1])])

    return {
        "default_frame": rc.restype_rigid_group_default_frame,  # [21, 8, 4, 4]
        "atom14_to_group": rc.restype_atom14_to_rigid_group,  # [21, 14]
        "atom14_mask": rc.restype_atom14_mask,  # [21, 14]
        "atom14_group_positions": rc.restype_atom14_rigid_group_positions,  # [21, 14, 3]
        "atom37_mask": rc.restype_atom37_mask,  # [21, 37]
        "atom14_to_atom37": rc.restype_atom14_to_atom37,  # [21, 14]
        "atom37_to_atom14": rc.restype_atom37_to_atom14,  # [21, 37]
        "chi_atom_indices": with_unknown_row(rc.chi_angles_atom_indices),  # [21, 4, 4]
        "chi_mask": with_unknown_row(np.asarray(rc.chi_angles_mask, np.float32)),  # [21, 4]
        "chi_pi_periodic": np.asarray(rc.chi_pi_periodic, np.float32),  # [21, 4]
    }


@functools.cache
def residue_table(name: str, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A residue-type table of :func:`_numpy_tables` as a tensor, built once per (device, dtype).

    Integer tables are int64 (gather indices) whatever ``dtype`` says; float tables take ``dtype``
    (float32 when None).
    """
    table = np.asarray(_numpy_tables()[name])
    if np.issubdtype(table.dtype, np.integer):
        return torch.as_tensor(table, dtype=torch.int64, device=device)
    return torch.as_tensor(table, dtype=dtype or torch.float32, device=device)


def _lookup(name: str, aatype: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rows of table ``name`` for each residue: ``[*, N, ...]``."""
    return residue_table(name, aatype.device, dtype)[aatype.long()]


def _gather_atoms(data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-residue gather along the atom dimension.

    data [*, N, A, ...], index [*, N, B] (values < A) -> [*, N, B, ...].
    """
    atom_dim = index.dim() - 1
    trailing = data.shape[atom_dim + 1:]
    index = index.reshape(index.shape + (1,) * len(trailing)).expand(*index.shape, *trailing)
    return torch.gather(data, atom_dim, index)


def _mask_atoms(data: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """data [*, N, A, ...] times mask [*, N, A] broadcast over the trailing dimensions."""
    return data * mask.reshape(mask.shape + (1,) * (data.dim() - mask.dim())).to(data.dtype)


def atom14_to_atom37(atom14: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Convert per-atom data from the atom14 to the atom37 layout; atoms a residue lacks are zero.

    atom14 [*, N, 14, ...], aatype [*, N] -> [*, N, 37, ...].
    """
    atom37 = _gather_atoms(atom14, _lookup("atom37_to_atom14", aatype))
    return _mask_atoms(atom37, _lookup("atom37_mask", aatype))


def atom37_to_atom14(atom37: torch.Tensor, aatype: torch.Tensor) -> torch.Tensor:
    """Convert per-atom data from the atom37 to the atom14 layout; unused atom14 slots are zero.

    atom37 [*, N, 37, ...], aatype [*, N] -> [*, N, 14, ...].
    """
    atom14 = _gather_atoms(atom37, _lookup("atom14_to_atom37", aatype))
    return _mask_atoms(atom14, _lookup("atom14_mask", aatype))


def atom14_mask(aatype: torch.Tensor) -> torch.Tensor:
    """Which atom14 slots each residue type fills: aatype [*, N] -> float32 [*, N, 14]."""
    return _lookup("atom14_mask", aatype)


def atom37_mask(aatype: torch.Tensor) -> torch.Tensor:
    """Which atom37 atoms each residue type has: aatype [*, N] -> float32 [*, N, 37]."""
    return _lookup("atom37_mask", aatype)


def torsion_angles_to_frames(aatype: torch.Tensor, backbone_to_global: Rigid,
                             torsion_angles_sin_cos: torch.Tensor) -> Rigid:
    """Frames of the 8 rigid groups of every residue from its backbone frame and 7 torsion angles.

    Algorithm 24 lines 1-10 (with Algorithm 25, makeRotX): each group's frame is its literature
    frame relative to its parent, rotated about the x axis by its torsion; chi2-chi4 hang on the
    previous chi group, the others on the backbone.

    Parameters
    ----------
    aatype : [*, N]
    backbone_to_global : Rigid [*, N]
    torsion_angles_sin_cos : [*, N, 7, 2]
        (sin, cos) of pre-omega, phi, psi, chi1-chi4, used as given (not normalised here).

    Returns
    -------
    Rigid [*, N, 8]
        Group-to-global frames.
    """
    default_frames = Rigid.from_tensor_4x4(_lookup("default_frame", aatype))  # [*, N, 8]
    no_rotation = torsion_angles_sin_cos.new_tensor([0.0, 1.0])  # the backbone group's (sin, cos)
    backbone_sin_cos = no_rotation.expand_as(torsion_angles_sin_cos[..., :1, :])
    sin_cos = torch.cat([backbone_sin_cos, torsion_angles_sin_cos], dim=-2)  # [*, N, 8, 2]
    # Lines 1-9: T_i,f = T_lit o makeRotX(alpha_f).
    frames = Rigid(rot_compose(default_frames.rot, rot_x_from_sin_cos(sin_cos)), default_frames.trans)
    chi_to_backbone = [frames[..., 4]]
    for group in range(5, 8):  # line 10: chi2-chi4 are relative to the previous chi group
        chi_to_backbone.append(chi_to_backbone[-1].compose(frames[..., group]))
    to_backbone = Rigid.cat([frames[..., :4], Rigid.stack(chi_to_backbone, dim=-1)], dim=-1)
    return backbone_to_global.unsqueeze(-1).compose(to_backbone)


def frames_and_literature_positions_to_atom14_pos(aatype: torch.Tensor, frames: Rigid) -> torch.Tensor:
    """Place every atom's literature position in its rigid group's frame (Algorithm 24 line 11).

    Parameters
    ----------
    aatype : [*, N]
    frames : Rigid [*, N, 8]
        Group-to-global frames from :func:`torsion_angles_to_frames`.

    Returns
    -------
    torch.Tensor [*, N, 14, 3]
        Atom14 positions, zero in slots the residue type does not use.
    """
    group = _lookup("atom14_to_group", aatype)  # [*, N, 14]
    atom_rot = torch.take_along_dim(frames.rot, group[..., None, None], dim=-3)  # [*, N, 14, 3, 3]
    atom_trans = torch.take_along_dim(frames.trans, group[..., None], dim=-2)  # [*, N, 14, 3]
    literature = _lookup("atom14_group_positions", aatype, frames.dtype)  # [*, N, 14, 3]
    positions = Rigid(atom_rot, atom_trans).apply(literature)
    return _mask_atoms(positions, _lookup("atom14_mask", aatype))


def _shift_to_next_residue(x: torch.Tensor, residue_dim: int) -> torch.Tensor:
    """The previous residue's values at each residue (zeros at the first): shift by one along N."""
    pad = torch.zeros_like(x.narrow(residue_dim, 0, 1))
    return torch.cat([pad, x.narrow(residue_dim, 0, x.shape[residue_dim] - 1)], dim=residue_dim)


def atom37_to_torsion_angles(aatype: torch.Tensor, all_atom_positions: torch.Tensor,
                             all_atom_mask: torch.Tensor, placeholder_for_undefined: bool = False) -> dict:
    """sin and cos of the 7 torsion angles of every residue, from atom37 coordinates.

    The torsions are pre-omega (to the previous residue), phi, psi, chi1-chi4 (supplement 1.8.1). Each
    is measured in the frame built from its first three atoms (Algorithm 21) as the direction of the
    fourth atom in the yz plane; psi is measured on the carbonyl O and mirrored.

    Parameters
    ----------
    aatype : [*, N]
        Values above 20 count as unknown.
    all_atom_positions : [*, N, 37, 3]
    all_atom_mask : [*, N, 37]
    placeholder_for_undefined : bool
        Replace undefined torsions (mask 0) by (sin, cos) = (1, 0), as template features do.

    Returns
    -------
    dict
        ``torsion_angles_sin_cos`` [*, N, 7, 2]; ``alt_torsion_angles_sin_cos`` [*, N, 7, 2], the same
        with pi added to the chis that a renaming of symmetric atoms flips; ``torsion_angles_mask``
        [*, N, 7], 1 where the residue has the torsion and all four of its atoms are present.
    """
    aatype = torch.clamp(aatype.long(), max=rc.restype_num)
    residue_dim = aatype.dim() - 1
    positions = all_atom_positions.float()
    mask = all_atom_mask.float()
    previous_positions = _shift_to_next_residue(positions, residue_dim)
    previous_mask = _shift_to_next_residue(mask, residue_dim)
    n, ca, c, o = (rc.atom_order[name] for name in ("N", "CA", "C", "O"))

    backbone_atoms = torch.stack([  # [*, N, 3, 4, 3]
        torch.stack([previous_positions[..., ca, :], previous_positions[..., c, :],
                     positions[..., n, :], positions[..., ca, :]], dim=-2),  # pre-omega
        torch.stack([previous_positions[..., c, :], positions[..., n, :],
                     positions[..., ca, :], positions[..., c, :]], dim=-2),  # phi
        torch.stack([positions[..., n, :], positions[..., ca, :],
                     positions[..., c, :], positions[..., o, :]], dim=-2),  # psi
    ], dim=-3)
    backbone_mask = torch.stack([
        previous_mask[..., ca] * previous_mask[..., c] * mask[..., n] * mask[..., ca],
        previous_mask[..., c] * mask[..., n] * mask[..., ca] * mask[..., c],
        mask[..., n] * mask[..., ca] * mask[..., c] * mask[..., o],
    ], dim=-1)  # [*, N, 3]

    chi_atoms = _lookup("chi_atom_indices", aatype).flatten(-2)  # [*, N, 16]
    chi_positions = _gather_atoms(positions, chi_atoms).unflatten(-2, (4, 4))  # [*, N, 4, 4, 3]
    chi_atoms_present = _gather_atoms(mask, chi_atoms).unflatten(-1, (4, 4)).prod(dim=-1)  # [*, N, 4]
    chi_mask = _lookup("chi_mask", aatype) * chi_atoms_present

    torsion_atoms = torch.cat([backbone_atoms, chi_positions], dim=-3)  # [*, N, 7, 4, 3]
    torsion_mask = torch.cat([backbone_mask, chi_mask], dim=-1)  # [*, N, 7]

    frames = rigids_from_3_points(point_on_neg_x_axis=torsion_atoms[..., 1, :],
                                  origin=torsion_atoms[..., 2, :],
                                  point_on_xy_plane=torsion_atoms[..., 0, :])
    fourth_atom = frames.invert_apply(torsion_atoms[..., 3, :])  # [*, N, 7, 3]
    sin_cos = torch.stack([fourth_atom[..., 2], fourth_atom[..., 1]], dim=-1)  # [*, N, 7, 2]
    sin_cos = sin_cos / torch.sqrt(sin_cos.square().sum(dim=-1, keepdim=True) + 1e-8)
    psi_mirror = sin_cos.new_tensor([1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    sin_cos = sin_cos * psi_mirror[:, None]

    chi_flip = 1.0 - 2.0 * _lookup("chi_pi_periodic", aatype)  # [*, N, 4]
    alt_sin_cos = sin_cos * torch.cat([torch.ones_like(chi_flip[..., :3]), chi_flip], dim=-1)[..., None]

    if placeholder_for_undefined:
        placeholder = sin_cos.new_tensor([1.0, 0.0])
        defined = torsion_mask[..., None]
        sin_cos = sin_cos * defined + placeholder * (1.0 - defined)
        alt_sin_cos = alt_sin_cos * defined + placeholder * (1.0 - defined)
    return {
        "torsion_angles_sin_cos": sin_cos,
        "alt_torsion_angles_sin_cos": alt_sin_cos,
        "torsion_angles_mask": torsion_mask,
    }


def pseudo_beta(aatype: torch.Tensor, all_atom_positions: torch.Tensor,
                all_atom_mask: torch.Tensor | None = None):
    """CB position of every residue, CA for glycine (the template and distogram features' atom).

    aatype [*, N], all_atom_positions [*, N, 37, 3], all_atom_mask [*, N, 37] ->
    positions [*, N, 3], and the mask [*, N] (float32) when ``all_atom_mask`` is given.
    """
    is_gly = (aatype == rc.restype_order["G"])[..., None]
    ca, cb = rc.atom_order["CA"], rc.atom_order["CB"]
    positions = torch.where(is_gly, all_atom_positions[..., ca, :], all_atom_positions[..., cb, :])
    if all_atom_mask is None:
        return positions
    mask = torch.where(is_gly[..., 0], all_atom_mask[..., ca], all_atom_mask[..., cb])
    return positions, mask.float()
