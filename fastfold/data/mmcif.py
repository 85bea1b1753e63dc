"""mmCIF files: protein chains with their SEQRES, resolved residues and atom37 coordinates (first model).

Follows AlphaFold's reading of PDB files: chains are the polymer entities with a peptide component
(``_entity_poly_seq`` + ``_chem_comp.type``), keyed by author chain id; SEQRES letters come from the
PDB's table of (modified) amino acids (MSE -> M, ...), unknown residues become ``X``; coordinates come
from Biopython's structure of the first model (for alternative locations, the one it selects: highest
occupancy); selenium of MSE is stored as SD, hydrogens and non-atom37 atoms are dropped, and arginines
whose NH1/NH2 are swapped (NH1 farther from CD) are fixed. Files without ``_entity_poly_seq`` (bare
coordinate files) take their SEQRES from the residues of ``_atom_site``.
"""

import dataclasses
import io
import os
from collections.abc import Mapping

import numpy as np
from Bio.Data.PDBData import protein_letters_3to1_extended
from Bio.PDB import MMCIFParser
from Bio.PDB.MMCIF2Dict import MMCIF2Dict
from Bio.PDB.Structure import Structure

from fastfold.common import residue_constants
from fastfold.data.errors import ParseError
from fastfold.data.mmcif_tables import ResidueKey, polymer_chains, resolved_residues, table

_NUM_ATOMS = residue_constants.atom_type_num  # 37


@dataclasses.dataclass(frozen=True, eq=False)
class MmcifChain:
    """One protein chain: its full SEQRES and the coordinates of the residues that were resolved.

    Attributes
    ----------
    chain_id
        Author chain id (``_atom_site.auth_asym_id``), as in the PDB file and AlphaFold.
    seqres
        ``N_res`` one-letter codes of the SEQRES, ``X`` for unknown residues.
    residue_names
        ``N_res`` three-letter SEQRES names as in the file (``MSE``, ``UNK``, ...).
    resolved
        bool ``[N_res]``: the residue has coordinates in the first model.
    atom_positions
        float32 ``[N_res, 37, 3]`` in Angstrom, atom37 order (``residue_constants.atom_types``).
    atom_mask
        float32 ``[N_res, 37]``: 1 where the atom has coordinates.
    """

    chain_id: str
    seqres: str
    residue_names: tuple[str, ...]
    resolved: np.ndarray
    atom_positions: np.ndarray
    atom_mask: np.ndarray

    def __post_init__(self):
        num_residues = len(self.seqres)
        expected = {
            "residue_names": (len(self.residue_names),),
            "resolved": self.resolved.shape,
            "atom_positions": self.atom_positions.shape,
            "atom_mask": self.atom_mask.shape,
        }
        wanted = {
            "residue_names": (num_residues,),
            "resolved": (num_residues,),
            "atom_positions": (num_residues, _NUM_ATOMS, 3),
            "atom_mask": (num_residues, _NUM_ATOMS),
        }
        if expected != wanted:
            raise ValueError(f"Chain {self.chain_id!r}: shapes {expected}, expected {wanted}")
        if np.any(self.atom_mask.any(axis=-1) & ~self.resolved):
            raise ValueError(f"Chain {self.chain_id!r}: atoms on residues marked unresolved")


@dataclasses.dataclass(frozen=True, eq=False)
class MmcifStructure:
    """The protein chains of an mmCIF file and its header facts.

    Attributes
    ----------
    file_id
        Name used in messages (the file name, or a PDB id).
    method
        Experimental methods, lower case, comma separated (``"x-ray diffraction"``); ``""`` if not given.
    release_date
        Earliest revision date ``"YYYY-MM-DD"``, or ``None`` if the file has no revision history.
    resolution
        In Angstrom; ``0.0`` when the file gives none (NMR, bare coordinate files), as in AlphaFold.
    chains
        Author chain id -> chain, in file order.
    """

    file_id: str
    method: str
    release_date: str | None
    resolution: float
    chains: Mapping[str, MmcifChain]

    def __post_init__(self):
        if not self.chains:
            raise ValueError(f"{self.file_id}: a structure needs at least one protein chain")
        if self.resolution < 0:
            raise ValueError(f"{self.file_id}: resolution {self.resolution} < 0")


def _biopython(read, file_id: str, *args):
    """Call a Biopython reader, turning its errors on broken files (of many types) into a ParseError."""
    try:
        return read(*args)
    except Exception as error:
        raise ParseError(file_id, f"not a readable mmCIF file ({type(error).__name__}: {error})") from error


def _one_letter(residue_name: str) -> str:
    """SEQRES letter of a residue name: the PDB's amino-acid letter, ``X`` when there is none."""
    letter = protein_letters_3to1_extended.get(residue_name, "X")
    return letter if len(letter) == 1 else "X"


def _header(mmcif_dict: Mapping[str, list[str]], file_id: str) -> tuple[str, str | None, float]:
    """Method, release date and resolution (see :class:`MmcifStructure`)."""
    methods = table(mmcif_dict, "_exptl.", file_id).get("method", [])
    # Current files have a revision history; older ones (e.g. 1A8O) only _database_PDB_rev.
    dates = mmcif_dict.get("_pdbx_audit_revision_history.revision_date") or mmcif_dict.get(
        "_database_PDB_rev.date", []
    )
    resolution = 0.0
    # As in AlphaFold, the last of these that holds a number wins.
    for key in ("_refine.ls_d_res_high", "_em_3d_reconstruction.resolution", "_reflns.d_resolution_high"):
        try:
            resolution = float(mmcif_dict[key][0])
        except (KeyError, ValueError):
            continue
    return ",".join(method.lower() for method in methods), min(dates, default=None), resolution


def _atom37(residue) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``[37, 3]`` positions and ``[37]`` mask of one Biopython residue."""
    positions = np.zeros((_NUM_ATOMS, 3), dtype=np.float32)
    mask = np.zeros(_NUM_ATOMS, dtype=np.float32)
    for atom in residue.get_atoms():
        name = atom.get_name()
        if name.upper() == "SE" and residue.get_resname() == "MSE":
            name = "SD"  # selenomethionine: selenium in the place of methionine's sulphur
        if name in residue_constants.atom_order:
            positions[residue_constants.atom_order[name]] = atom.get_coord()
            mask[residue_constants.atom_order[name]] = 1.0
    if residue.get_resname() == "ARG":
        _fix_arginine_nh(positions, mask)
    return positions, mask


def _fix_arginine_nh(positions: np.ndarray, mask: np.ndarray) -> None:
    """Swap NH1 and NH2 in place when NH1 is the one farther from CD (a naming error in some entries)."""
    cd, nh1, nh2 = (residue_constants.atom_order[name] for name in ("CD", "NH1", "NH2"))
    if mask[[cd, nh1, nh2]].all() and (
        np.linalg.norm(positions[nh1] - positions[cd]) > np.linalg.norm(positions[nh2] - positions[cd])
    ):
        positions[[nh1, nh2]] = positions[[nh2, nh1]]


def _chain(
    chain_id: str, residue_names: list[str], residues: dict[int, ResidueKey], structure: Structure
) -> MmcifChain:
    """Build one chain from its SEQRES names and SEQRES index -> residue of the first model."""
    model = next(iter(structure))
    num_residues = len(residue_names)
    positions = np.zeros((num_residues, _NUM_ATOMS, 3), dtype=np.float32)
    mask = np.zeros((num_residues, _NUM_ATOMS), dtype=np.float32)
    resolved = np.zeros(num_residues, dtype=bool)
    for index, key in residues.items():
        positions[index], mask[index] = _atom37(model[chain_id][key])
        resolved[index] = True
    seqres = "".join(_one_letter(name) for name in residue_names)
    return MmcifChain(chain_id, seqres, tuple(residue_names), resolved, positions, mask)


def parse_mmcif(text: str, file_id: str = "<string>") -> MmcifStructure:
    """Parse the protein chains of an mmCIF file (first model only).

    Parameters
    ----------
    text
        Contents of an mmCIF file.
    file_id
        File name or PDB id for error messages.

    Returns
    -------
    MmcifStructure
        Header facts and every protein chain that has coordinates.

    Raises
    ------
    ParseError
        When the file is not mmCIF, is truncated (loops of unequal length, no coordinates), or has no
        protein chain.
    """
    mmcif_dict = _biopython(MMCIF2Dict, file_id, io.StringIO(text))
    polymers = polymer_chains(mmcif_dict, file_id)
    residues = resolved_residues(mmcif_dict, polymers, file_id)
    if not residues:
        raise ParseError(file_id, "no protein chain with coordinates (nucleic acids or ligands only?)")
    structure = _biopython(MMCIFParser(QUIET=True).get_structure, file_id, file_id, io.StringIO(text))
    chains = {
        chain_id: _chain(chain_id, polymers[label_id].residue_names, by_index, structure)
        for label_id, (chain_id, by_index) in residues.items()
    }
    method, release_date, resolution = _header(mmcif_dict, file_id)
    return MmcifStructure(file_id, method, release_date, resolution, chains)


def read_mmcif(path: str | os.PathLike) -> MmcifStructure:
    """Read and parse an mmCIF file (see :func:`parse_mmcif`); the file name is the ``file_id``."""
    with open(path) as handle:
        return parse_mmcif(handle.read(), file_id=os.fspath(path))
