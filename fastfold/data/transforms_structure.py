"""Structure transforms: atom14/atom37 layouts, pseudo-beta, template residue types and masks.

Ground-truth frames and torsion angles for training are in :mod:`fastfold.data.geometry`.
"""

from collections.abc import Mapping

import numpy as np

from fastfold.common import residue_constants as rc
from fastfold.data.transforms import FeatureDict

_HHBLITS_TO_OURS = np.array(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, dtype=np.int32)  # [22]
_ATOM14_MASK = np.array(
    [[float(bool(name)) for name in rc.restype_name_to_atom14_names[resname]] for resname in rc.resnames[:-1]]
    + [[0.0] * 14],
    dtype=np.float32,
)  # [21, 14]


def fix_templates_aatype(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """One-hot HHblits ``template_aatype`` ``[N_templ, N_res, 22]`` -> our indices ``[N_templ, N_res]``."""
    hhblits = np.argmax(features["template_aatype"], axis=-1)
    return {**features, "template_aatype": _HHBLITS_TO_OURS[hhblits]}


def make_template_mask(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add ``template_mask`` float32 ``[N_templ]`` (ones; padding templates get 0 later)."""
    return {**features, "template_mask": np.ones(features["template_domain_names"].shape, dtype=np.float32)}


def pseudo_beta(
    aatype: np.ndarray, atom37_positions: np.ndarray, atom37_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """C-beta position (C-alpha for glycine) of every residue.

    Parameters
    ----------
    aatype
        int ``[*, N_res]``.
    atom37_positions
        ``[*, N_res, 37, 3]``.
    atom37_mask
        ``[*, N_res, 37]``.

    Returns
    -------
    tuple
        Positions ``[*, N_res, 3]`` and float32 mask ``[*, N_res]``.
    """
    is_glycine = aatype == rc.restype_order["G"]
    atom = np.where(is_glycine, rc.atom_order["CA"], rc.atom_order["CB"])[..., None]  # [*, N_res, 1]
    positions = np.take_along_axis(atom37_positions, atom[..., None], axis=-2)[..., 0, :]
    mask = np.take_along_axis(atom37_mask, atom, axis=-1)[..., 0]
    return positions, mask.astype(np.float32)


def make_template_pseudo_beta(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add ``template_pseudo_beta`` ``[N_templ, N_res, 3]`` and its mask ``[N_templ, N_res]``."""
    positions, mask = pseudo_beta(
        features["template_aatype"],
        features["template_all_atom_positions"],
        features["template_all_atom_masks"],
    )
    return {**features, "template_pseudo_beta": positions, "template_pseudo_beta_mask": mask}


def make_atom14_masks(features: Mapping[str, np.ndarray]) -> FeatureDict:
    """Add the atom14 <-> atom37 index maps and atom existence masks of every residue (by its type).

    Returns
    -------
    dict
        ``atom14_atom_exists`` float32 ``[N_res, 14]``, ``residx_atom14_to_atom37`` int32 ``[N_res, 14]``,
        ``residx_atom37_to_atom14`` int32 ``[N_res, 37]``, ``atom37_atom_exists`` float32 ``[N_res, 37]``;
        unknown residues have no atoms.
    """
    aatype = features["aatype"]
    return {
        **features,
        "atom14_atom_exists": _ATOM14_MASK[aatype],
        "residx_atom14_to_atom37": rc.restype_atom14_to_atom37[aatype].astype(np.int32),
        "residx_atom37_to_atom14": rc.restype_atom37_to_atom14[aatype].astype(np.int32),
        "atom37_atom_exists": rc.STANDARD_ATOM_MASK[aatype].astype(np.float32),
    }
