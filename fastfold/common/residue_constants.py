"""Amino-acid types, atom layouts, idealised geometry and stereochemistry of the 20 residues.

Names and values match AlphaFold's ``alphafold.common.residue_constants``, so that the model, the losses
and the data pipeline use the names they know; ``tests/test_residue_constants.py`` compares every value.
Tables that AlphaFold rebuilds inside its data transforms and ``all_atom`` modules (atom14 <-> atom37
maps, atom14 ambiguity, rigid-group base atoms) are built here once.

Index conventions
-----------------
restype
    The 20 amino acids ordered by their 3-letter codes (``restypes``), then 20 for unknown (X, UNK).
atom37
    Every heavy-atom name that occurs in the 20 amino acids, plus OXT (``atom_types``).
atom14
    Per residue type: N, CA, C, O, then its side chain (``restype_name_to_atom14_names``).
rigid group
    0 backbone, 1 pre-omega, 2 phi, 3 psi, 4-7 chi1-chi4 (AlphaFold2 supplement Table 2).
"""

import functools
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from fastfold.common.residue_geometry import (
    BOND_GEOMETRY,
    IDEALISED_ATOM_POSITIONS,
    STANDARD_BACKBONE_GEOMETRY,
)

# ---------------------------------------------------------------------------------------------------------
# Residue types
# ---------------------------------------------------------------------------------------------------------
restype_1to3 = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}  # fmt: skip
restype_3to1 = {three: one for one, three in restype_1to3.items()}
restypes = sorted(restype_1to3, key=restype_1to3.get)
restype_order = {restype: index for index, restype in enumerate(restypes)}
restype_num = len(restypes)  # 20
unk_restype_index = restype_num  # X / UNK

restypes_with_x = restypes + ["X"]
restype_order_with_x = {restype: index for index, restype in enumerate(restypes_with_x)}
restypes_with_x_and_gap = restypes_with_x + ["-"]

unk_restype = "UNK"
resnames = [restype_1to3[restype] for restype in restypes] + [unk_restype]
resname_to_idx = {resname: index for index, resname in enumerate(resnames)}

# mmCIF _entity_poly.type and _entity.type of a protein chain.
PROTEIN_CHAIN = "polypeptide(L)"
POLYMER_CHAIN = "polymer"

# HHblits alphabet: the 20 amino acids in alphabetical order of their 1-letter codes, X, then the gap.
# Ambiguity codes fold onto the residue they most likely are (B -> D, Z -> E), selenocysteine onto
# cysteine, and J, O onto X.
ID_TO_HHBLITS_AA = dict(enumerate("".join(sorted(restypes)) + "X-"))
HHBLITS_AA_TO_ID = {aa: index for index, aa in ID_TO_HHBLITS_AA.items()}
HHBLITS_AA_TO_ID.update(
    {alias: HHBLITS_AA_TO_ID[aa] for alias, aa in {"B": "D", "Z": "E", "U": "C", "J": "X", "O": "X"}.items()}
)
MAP_HHBLITS_AATYPE_TO_OUR_AATYPE = tuple(
    restypes_with_x_and_gap.index(ID_TO_HHBLITS_AA[index]) for index in range(len(ID_TO_HHBLITS_AA))
)


def sequence_to_onehot(
    sequence: str, mapping: Mapping[str, int], map_unknown_to_x: bool = False
) -> np.ndarray:
    """One-hot encode a sequence.

    Parameters
    ----------
    sequence
        Residue letters, e.g. ``"MKV"``.
    mapping
        Letter -> class index; the indices must be exactly 0 .. num_classes - 1.
    map_unknown_to_x
        Map upper-case letters missing from ``mapping`` to ``mapping["X"]`` instead of failing.

    Returns
    -------
    np.ndarray
        int32 ``[len(sequence), num_classes]``.

    Raises
    ------
    ValueError
        If the mapping's indices have gaps, or a character cannot be encoded.
    """
    num_classes = max(mapping.values()) + 1
    if sorted(set(mapping.values())) != list(range(num_classes)):
        raise ValueError(
            f"Mapping values must be 0..{num_classes - 1} without gaps, got {sorted(mapping.values())}"
        )
    indices = [
        _class_index(letter, position, mapping, map_unknown_to_x) for position, letter in enumerate(sequence)
    ]
    return np.eye(num_classes, dtype=np.int32)[np.asarray(indices, dtype=np.int64)].reshape(-1, num_classes)


def _class_index(letter: str, position: int, mapping: Mapping[str, int], map_unknown_to_x: bool) -> int:
    """Class index of one sequence letter (see :func:`sequence_to_onehot`)."""
    if map_unknown_to_x:
        if not (letter.isalpha() and letter.isupper()):
            raise ValueError(f"Invalid character {letter!r} at position {position} of the sequence")
        return mapping.get(letter, mapping["X"])
    if letter not in mapping:
        raise ValueError(f"Character {letter!r} at position {position} is not in the mapping")
    return mapping[letter]


# ---------------------------------------------------------------------------------------------------------
# Atoms
# ---------------------------------------------------------------------------------------------------------
atom_types = [
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1", "ND2", "OD1",
    "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1", "NH2", "OH", "CZ",
    "CZ2", "CZ3", "NZ", "OXT",
]  # fmt: skip
atom_order = {atom_name: index for index, atom_name in enumerate(atom_types)}
atom_type_num = len(atom_types)  # 37

# Heavy atoms of each residue, in AlphaFold's order.
residue_atoms = {
    resname: atoms.split()
    for resname, atoms in {
        "ALA": "C CA CB N O",
        "ARG": "C CA CB CG CD CZ N NE O NH1 NH2",
        "ASN": "C CA CB CG N ND2 O OD1",
        "ASP": "C CA CB CG N O OD1 OD2",
        "CYS": "C CA CB N O SG",
        "GLN": "C CA CB CG CD N NE2 O OE1",
        "GLU": "C CA CB CG CD N O OE1 OE2",
        "GLY": "C CA N O",
        "HIS": "C CA CB CG CD2 CE1 N ND1 NE2 O",
        "ILE": "C CA CB CG1 CG2 CD1 N O",
        "LEU": "C CA CB CG CD1 CD2 N O",
        "LYS": "C CA CB CG CD CE N NZ O",
        "MET": "C CA CB CG CE N O SD",
        "PHE": "C CA CB CG CD1 CD2 CE1 CE2 CZ N O",
        "PRO": "C CA CB CG CD N O",
        "SER": "C CA CB N O OG",
        "THR": "C CA CB CG2 N O OG1",
        "TRP": "C CA CB CG CD1 CD2 CE2 CE3 CZ2 CZ3 CH2 N NE1 O",
        "TYR": "C CA CB CG CD1 CD2 CE1 CE2 CZ N O OH",
        "VAL": "C CA CB CG1 CG2 N O",
    }.items()
}

# Side-chain atoms in atom14 order (after N, CA, C, O).
_ATOM14_SIDE_CHAINS = {
    "ALA": "CB",
    "ARG": "CB CG CD NE CZ NH1 NH2",
    "ASN": "CB CG OD1 ND2",
    "ASP": "CB CG OD1 OD2",
    "CYS": "CB SG",
    "GLN": "CB CG CD OE1 NE2",
    "GLU": "CB CG CD OE1 OE2",
    "GLY": "",
    "HIS": "CB CG ND1 CD2 CE1 NE2",
    "ILE": "CB CG1 CG2 CD1",
    "LEU": "CB CG CD1 CD2",
    "LYS": "CB CG CD CE NZ",
    "MET": "CB CG SD CE",
    "PHE": "CB CG CD1 CD2 CE1 CE2 CZ",
    "PRO": "CB CG CD",
    "SER": "CB OG",
    "THR": "CB OG1 CG2",
    "TRP": "CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2",
    "TYR": "CB CG CD1 CD2 CE1 CE2 CZ OH",
    "VAL": "CB CG1 CG2",
}


def _atom14_names(side_chain: str) -> list[str]:
    """Atom14 names of a residue: backbone, side chain, then empty strings up to 14."""
    names = ["N", "CA", "C", "O", *side_chain.split()]
    return names + [""] * (14 - len(names))


restype_name_to_atom14_names = {
    resname: _atom14_names(atoms) for resname, atoms in _ATOM14_SIDE_CHAINS.items()
}
restype_name_to_atom14_names[unk_restype] = [""] * 14


def atom_id_to_type(atom_id: str) -> str:
    """Element symbol of a standard protein atom name (``"CA"`` -> ``"C"``).

    Raises
    ------
    ValueError
        If the name starts with none of C, N, O, H, S.
    """
    if atom_id[:1] in ("C", "N", "O", "H", "S"):
        return atom_id[0]
    raise ValueError(f"Atom ID {atom_id!r} not recognized")


def _standard_atom_mask() -> np.ndarray:
    """int32 [21, 37] mask of the heavy atoms each residue type has; UNK has none."""
    mask = np.zeros([restype_num + 1, atom_type_num], dtype=np.int32)
    for restype, resname in enumerate(resnames[:restype_num]):
        mask[restype, [atom_order[name] for name in residue_atoms[resname]]] = 1
    return mask


STANDARD_ATOM_MASK = _standard_atom_mask()  # [21, 37]


def _atom14_index_maps() -> tuple[np.ndarray, np.ndarray]:
    """atom14 -> atom37 [21, 14] and atom37 -> atom14 [21, 37] indices; absent atoms map to 0."""
    atom14_to_atom37 = np.zeros([restype_num + 1, 14], dtype=np.int32)
    atom37_to_atom14 = np.zeros([restype_num + 1, atom_type_num], dtype=np.int32)
    for restype, resname in enumerate(resnames[:restype_num]):
        for atom14, name in enumerate(filter(None, restype_name_to_atom14_names[resname])):
            atom14_to_atom37[restype, atom14] = atom_order[name]
            atom37_to_atom14[restype, atom_order[name]] = atom14
    return atom14_to_atom37, atom37_to_atom14


restype_atom14_to_atom37, restype_atom37_to_atom14 = _atom14_index_maps()

# ---------------------------------------------------------------------------------------------------------
# Torsion angles and atom-name ambiguity
# ---------------------------------------------------------------------------------------------------------
# Side-chain torsion path after N, CA: chi k (k = 1..4) is the dihedral of atoms k-1 .. k+2 of "N CA <path>".
# Arginine's chi5 stays near 0 degrees and is not modelled.
_CHI_PATHS = {
    "ALA": "",
    "ARG": "CB CG CD NE CZ",
    "ASN": "CB CG OD1",
    "ASP": "CB CG OD1",
    "CYS": "CB SG",
    "GLN": "CB CG CD OE1",
    "GLU": "CB CG CD OE1",
    "GLY": "",
    "HIS": "CB CG ND1",
    "ILE": "CB CG1 CD1",
    "LEU": "CB CG CD1",
    "LYS": "CB CG CD CE NZ",
    "MET": "CB CG SD CE",
    "PHE": "CB CG CD1",
    "PRO": "CB CG CD",
    "SER": "CB OG",
    "THR": "CB OG1",
    "TRP": "CB CG CD1",
    "TYR": "CB CG CD1",
    "VAL": "CB CG1",
}


def _chi_atoms(path: str) -> list[list[str]]:
    """The four atoms of every chi angle along a torsion path."""
    atoms = ["N", "CA", *path.split()]
    return [atoms[k : k + 4] for k in range(len(atoms) - 3)]


chi_angles_atoms = {resname: _chi_atoms(path) for resname, path in _CHI_PATHS.items()}
chi_angles_mask = [  # [20, 4]: which of chi1..chi4 each residue type has
    [1.0] * len(chi_angles_atoms[resname]) + [0.0] * (4 - len(chi_angles_atoms[resname]))
    for resname in resnames[:restype_num]
]
chi_angles_atom_indices = np.array(  # [20, 4, 4] atom37 indices, absent chis 0
    [
        [[atom_order[name] for name in atoms] for atoms in chi_angles_atoms[resname]]
        + [[0, 0, 0, 0]] * (4 - len(chi_angles_atoms[resname]))
        for resname in resnames[:restype_num]
    ]
)

# Atom names that a 180-degree flip of the last side-chain torsion exchanges (supplement Table 3).
# LEU, VAL and ARG are symmetric too, but their atom names can be told apart from the neighbourhood.
residue_atom_renaming_swaps = {
    "ASP": {"OD1": "OD2"},
    "GLU": {"OE1": "OE2"},
    "PHE": {"CD1": "CD2", "CE1": "CE2"},
    "TYR": {"CD1": "CD2", "CE1": "CE2"},
}

# [21, 4]: chis that a rotation by pi maps onto the same structure (the last chi of the residues above).
chi_pi_periodic = [
    [
        float(resname in residue_atom_renaming_swaps and chi == len(chi_angles_atoms[resname]) - 1)
        for chi in range(4)
    ]
    for resname in resnames[:restype_num]
] + [[0.0] * 4]


def _atom14_swap_index() -> np.ndarray:
    """[21, 14] atom14 index each atom takes after renaming its ambiguous partners; identity elsewhere."""
    swap_index = np.tile(np.arange(14), [restype_num + 1, 1])
    for resname, swaps in residue_atom_renaming_swaps.items():
        names = restype_name_to_atom14_names[resname]
        for name, partner in swaps.items():
            first, second = names.index(name), names.index(partner)
            swap_index[resname_to_idx[resname], [first, second]] = second, first
    return swap_index


restype_atom14_ambiguity_swap_index = _atom14_swap_index()  # [21, 14]
restype_atom14_renaming_matrices = np.eye(14, dtype=np.float32)[
    restype_atom14_ambiguity_swap_index
]  # [21, 14, 14]
restype_atom14_is_ambiguous = (  # [21, 14]
    restype_atom14_ambiguity_swap_index != np.arange(14)
).astype(np.float32)

# ---------------------------------------------------------------------------------------------------------
# Rigid groups and idealised atom positions (Algorithm 24, supplement Table 2)
# ---------------------------------------------------------------------------------------------------------


def _read_atom_positions(table: str) -> dict[str, list]:
    """``{resname: [[atom_name, group, (x, y, z)], ...]}`` from the idealised-position table."""
    positions = defaultdict(list)
    for resname, atom_name, group, *xyz in (line.split() for line in table.strip().splitlines()):
        positions[resname].append([atom_name, int(group), tuple(float(value) for value in xyz)])
    return dict(positions)


rigid_group_atom_positions = _read_atom_positions(IDEALISED_ATOM_POSITIONS)


def _per_atom_rigid_group_tables(num_atoms: int, atom_index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group index [21, A] int, existence mask [21, A] and idealised position [21, A, 3] of every atom.

    ``atom_index(resname, atom_name)`` gives the atom's column (atom37 or atom14 layout).
    """
    group = np.zeros([restype_num + 1, num_atoms], dtype=np.int64)
    mask = np.zeros([restype_num + 1, num_atoms], dtype=np.float32)
    position = np.zeros([restype_num + 1, num_atoms, 3], dtype=np.float32)
    for restype, resname in enumerate(resnames[:restype_num]):
        for atom_name, group_index, xyz in rigid_group_atom_positions[resname]:
            column = atom_index(resname, atom_name)
            group[restype, column], mask[restype, column], position[restype, column] = group_index, 1, xyz
    return group, mask, position


restype_atom37_to_rigid_group, restype_atom37_mask, restype_atom37_rigid_group_positions = (
    _per_atom_rigid_group_tables(atom_type_num, lambda resname, name: atom_order[name])
)
restype_atom14_to_rigid_group, restype_atom14_mask, restype_atom14_rigid_group_positions = (
    _per_atom_rigid_group_tables(14, lambda resname, name: restype_name_to_atom14_names[resname].index(name))
)


def _frame(x_direction: np.ndarray, xy_direction: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """[4, 4] homogeneous transform of the frame with its x-axis along ``x_direction``, ``xy_direction``
    in its xy-plane (positive y) and its origin at ``origin``; all inputs [3]."""
    x_axis = x_direction / np.linalg.norm(x_direction)
    y_axis = xy_direction - np.dot(xy_direction, x_axis) * x_axis
    y_axis = y_axis / np.linalg.norm(y_axis)
    transform = np.eye(4)
    transform[:3, :3] = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)], axis=-1)
    transform[:3, 3] = origin
    return transform


def _default_frames(resname: str) -> np.ndarray:
    """[8, 4, 4] transforms from each rigid group's frame to its parent's (Algorithm 24).

    Groups 0-3 and chi1 hang on the backbone frame, chi k+1 on chi k. Absent chis stay all-zero.
    """
    position = {name: np.array(xyz) for name, _, xyz in rigid_group_atom_positions[resname]}
    frames = np.zeros([8, 4, 4])
    frames[0] = frames[1] = np.eye(4)  # backbone, pre-omega (no atoms)
    frames[2] = _frame(position["N"] - position["CA"], np.array([1.0, 0.0, 0.0]), position["N"])  # phi
    frames[3] = _frame(position["C"] - position["CA"], position["CA"] - position["N"], position["C"])  # psi
    for chi, (first, second, third, _) in enumerate(chi_angles_atoms[resname]):
        if chi == 0:
            x_direction, xy_direction = position[third] - position[second], position[first] - position[second]
        else:  # the axis runs from the parent frame's origin (``second``) to ``third``, in parent coordinates
            x_direction, xy_direction = position[third], np.array([-1.0, 0.0, 0.0])
        frames[4 + chi] = _frame(x_direction, xy_direction, position[third])
    return frames


restype_rigid_group_default_frame = np.zeros([restype_num + 1, 8, 4, 4], dtype=np.float32)
restype_rigid_group_default_frame[:restype_num] = [
    _default_frames(resname) for resname in resnames[:restype_num]
]


def _rigid_group_base_atoms() -> tuple[np.ndarray, np.ndarray]:
    """atom37 indices [21, 8, 3] of the three atoms that define each rigid group's frame (neg-x point,
    origin, xy-plane point) and the mask [21, 8] of groups that exist; as AlphaFold's atom37_to_frames."""
    base_atoms = np.zeros([restype_num + 1, 8, 3], dtype=np.int64)
    base_atoms[:, 0] = [atom_order[name] for name in ("C", "CA", "N")]
    base_atoms[:, 3] = [atom_order[name] for name in ("CA", "C", "O")]
    mask = np.zeros([restype_num + 1, 8], dtype=np.float32)
    mask[:, [0, 3]] = 1
    for restype, resname in enumerate(resnames[:restype_num]):
        for chi, atoms in enumerate(chi_angles_atoms[resname]):
            base_atoms[restype, 4 + chi] = [atom_order[name] for name in atoms[1:]]
            mask[restype, 4 + chi] = 1
    return base_atoms, mask


restype_rigidgroup_base_atom37_idx, restype_rigidgroup_mask = _rigid_group_base_atoms()

# ---------------------------------------------------------------------------------------------------------
# Stereochemistry (structural violation losses, supplement section 1.9.11)
# ---------------------------------------------------------------------------------------------------------
ca_ca = 3.80209737096  # CA-CA distance of consecutive residues in a trans peptide (omega = 180), Angstrom

# Peptide bond C(i)-N(i+1): [general, proline at i+1].
between_res_bond_length_c_n = [1.329, 1.341]
between_res_bond_length_stddev_c_n = [0.014, 0.016]
# Cosines of the angles across the peptide bond, [mean, stddev]:
# C(i)-N(i+1)-CA(i+1) 121.352 +- 2.315 degrees, CA(i)-C(i)-N(i+1) 116.568 +- 1.995 degrees.
between_res_cos_angles_c_n_ca = [-0.5203, 0.0353]
between_res_cos_angles_ca_c_n = [-0.4473, 0.0311]

van_der_waals_radius = {"C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}  # Angstrom, by element


class Bond(NamedTuple):
    """A bond (or the virtual bond across a bond angle): length and its stddev in Angstrom."""

    atom1_name: str
    atom2_name: str
    length: float
    stddev: float


class BondAngle(NamedTuple):
    """The angle at ``atom2_name`` between its bonds to the other two atoms: value and stddev in radians."""

    atom1_name: str
    atom2_name: str
    atom3name: str  # sic: AlphaFold's field name, kept for code written against it
    angle_rad: float
    stddev: float


@functools.cache
def load_stereo_chemical_props() -> tuple[
    dict[str, list[Bond]], dict[str, list[Bond]], dict[str, list[BondAngle]]
]:
    """Literature bond lengths and angles of every residue type, and the angles as virtual bonds.

    Returns
    -------
    residue_bonds, residue_virtual_bonds, residue_bond_angles
        resname -> list of :class:`Bond` / :class:`Bond` / :class:`BondAngle`; ``"UNK"`` has empty lists.
        A virtual bond joins the outer atoms of a bond angle, with the length that the angle implies.
    """
    backbone_rows = [line.split() for line in STANDARD_BACKBONE_GEOMETRY.strip().splitlines()]
    rows_by_residue = defaultdict(list)
    for resname, *row in (line.split() for line in BOND_GEOMETRY.strip().splitlines()):
        rows_by_residue[resname].append(row)
    residue_bonds, residue_bond_angles = {unk_restype: []}, {unk_restype: []}
    for resname in resnames[:restype_num]:
        listed = {atoms for atoms, _, _ in rows_by_residue[resname]}
        rows = rows_by_residue[resname] + [row for row in backbone_rows if row[0] not in listed]
        residue_bonds[resname] = [
            Bond(*atoms.split("-"), float(mean), float(stddev))
            for atoms, mean, stddev in rows
            if atoms.count("-") == 1
        ]
        residue_bond_angles[resname] = [
            BondAngle(*atoms.split("-"), float(mean) / 180.0 * math.pi, float(stddev) / 180.0 * math.pi)
            for atoms, mean, stddev in rows
            if atoms.count("-") == 2
        ]
    residue_virtual_bonds = {
        resname: [_virtual_bond(angle, residue_bonds[resname]) for angle in angles]
        for resname, angles in residue_bond_angles.items()
    }
    return residue_bonds, residue_virtual_bonds, residue_bond_angles


def _virtual_bond(angle: BondAngle, bonds: list[Bond]) -> Bond:
    """Distance between the outer atoms of ``angle`` (law of cosines) and its stddev, propagated to first
    order from the independent errors of the two bond lengths and the angle."""
    bond_by_atoms = {frozenset((bond.atom1_name, bond.atom2_name)): bond for bond in bonds}
    first = bond_by_atoms[frozenset((angle.atom1_name, angle.atom2_name))]
    second = bond_by_atoms[frozenset((angle.atom2_name, angle.atom3name))]
    a, b, cos, sin = first.length, second.length, math.cos(angle.angle_rad), math.sin(angle.angle_rad)
    length = math.sqrt(a * a + b * b - 2 * a * b * cos)
    stddev = math.hypot(
        (a - b * cos) / length * first.stddev,
        (b - a * cos) / length * second.stddev,
        a * b * sin / length * angle.stddev,
    )
    return Bond(angle.atom1_name, angle.atom3name, length, stddev)


def make_atom14_dists_bounds(
    overlap_tolerance: float = 1.5, bond_length_tolerance_factor: float = 15
) -> dict[str, np.ndarray]:
    """Allowed intra-residue atom14 distances for the violation loss (supplement section 1.9.11).

    Atom pairs must stay at least the sum of their van der Waals radii minus ``overlap_tolerance`` apart;
    bonded pairs and the outer atoms of bond angles within ``bond_length_tolerance_factor`` stddevs of the
    literature length. Non-existent atoms and the diagonal are 0.

    Returns
    -------
    dict
        ``lower_bound``, ``upper_bound``, ``stddev``: float32 ``[21, 14, 14]``.
    """
    bounds = {
        key: np.zeros([restype_num + 1, 14, 14], dtype=np.float32)
        for key in ("lower_bound", "upper_bound", "stddev")
    }
    residue_bonds, residue_virtual_bonds, _ = load_stereo_chemical_props()
    for restype, resname in enumerate(resnames[:restype_num]):
        names = restype_name_to_atom14_names[resname]
        radius = np.array([van_der_waals_radius[name[0]] if name else 0.0 for name in names])
        exists = np.array([bool(name) for name in names])
        is_pair = exists[:, None] & exists[None, :] & ~np.eye(14, dtype=bool)
        bounds["lower_bound"][restype] = np.where(
            is_pair, radius[:, None] + radius[None, :] - overlap_tolerance, 0
        )
        bounds["upper_bound"][restype] = np.where(is_pair, 1e10, 0)
        for bond in residue_bonds[resname] + residue_virtual_bonds[resname]:
            pair = [names.index(bond.atom1_name), names.index(bond.atom2_name)]
            rows, columns = pair, pair[::-1]
            bounds["lower_bound"][restype, rows, columns] = (
                bond.length - bond_length_tolerance_factor * bond.stddev
            )
            bounds["upper_bound"][restype, rows, columns] = (
                bond.length + bond_length_tolerance_factor * bond.stddev
            )
            bounds["stddev"][restype, rows, columns] = bond.stddev
    return bounds
