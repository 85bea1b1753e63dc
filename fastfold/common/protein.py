"""Protein structures as FastFold writes them: PDB and mmCIF text with per-atom B-factors (pLDDT).

A :class:`Protein` holds a structure in the atom37 layout of :mod:`fastfold.common.residue_constants`.
:func:`from_prediction` builds one from model features and outputs; :func:`to_pdb` and :func:`to_mmcif`
turn it into file text, which :func:`fastfold.common.io.write_atomically` then writes.

Chain ``k`` (``chain_index == k``) is written as chain ID ``chain_id(k)``: A-Z, a-z, 0-9, then AA, AB, ...
in both formats; PDB files hold at most 62 chains.
"""

import dataclasses
import string
from collections.abc import Mapping

import numpy as np

from fastfold.common import residue_constants as rc

PDB_CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits
PDB_MAX_CHAINS = len(PDB_CHAIN_IDS)  # 62

_CHEM_COMP_NAMES = dict(
    zip(
        rc.resnames,
        "ALANINE,ARGININE,ASPARAGINE,ASPARTIC ACID,CYSTEINE,GLUTAMINE,GLUTAMIC ACID,GLYCINE,HISTIDINE,"
        "ISOLEUCINE,LEUCINE,LYSINE,METHIONINE,PHENYLALANINE,PROLINE,SERINE,THREONINE,TRYPTOPHAN,TYROSINE,"
        "VALINE,UNKNOWN".split(","),
        strict=True,
    )
)


@dataclasses.dataclass(frozen=True, eq=False)
class Protein:
    """A protein structure in the atom37 layout, validated on construction.

    Attributes
    ----------
    atom_positions
        float ``[N_res, 37, 3]``, Angstrom; atom order is ``residue_constants.atom_types``.
    atom_mask
        float ``[N_res, 37]``, 1 where the atom is present (values above 0.5 count as present).
    aatype
        int ``[N_res]``, residue type in ``residue_constants.restypes`` order, 20 for unknown.
    residue_index
        int ``[N_res]``, residue number written to files (usually 1-based).
    chain_index
        int ``[N_res]``, non-negative chain number; each chain's residues must be consecutive.
    b_factors
        float ``[N_res, 37]``, written in the B-factor column (pLDDT for predictions).

    Array-likes are converted to numpy arrays. Proteins compare by identity.

    Raises
    ------
    ValueError
        If shapes disagree or values are out of range.
    """

    atom_positions: np.ndarray
    atom_mask: np.ndarray
    aatype: np.ndarray
    residue_index: np.ndarray
    chain_index: np.ndarray
    b_factors: np.ndarray

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, np.asarray(getattr(self, field.name)))
        if self.aatype.ndim != 1 or len(self.aatype) == 0:
            raise ValueError(
                f"Protein.aatype must have shape [N_res] with N_res >= 1, got {self.aatype.shape}"
            )
        num_residues = len(self.aatype)
        expected_shapes = {
            "atom_positions": (num_residues, rc.atom_type_num, 3),
            "atom_mask": (num_residues, rc.atom_type_num),
            "residue_index": (num_residues,),
            "chain_index": (num_residues,),
            "b_factors": (num_residues, rc.atom_type_num),
        }
        for name, shape in expected_shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Protein.{name} has shape {getattr(self, name).shape}; "
                    f"expected {shape} (N_res = len(aatype))"
                )
        self._validate_values()

    def _validate_values(self):
        for name in ("aatype", "residue_index", "chain_index"):
            if not np.issubdtype(getattr(self, name).dtype, np.integer):
                raise ValueError(f"Protein.{name} must be integers, got dtype {getattr(self, name).dtype}")
        if self.aatype.min() < 0 or self.aatype.max() > rc.unk_restype_index:
            raise ValueError(
                f"Protein.aatype must lie in 0..{rc.unk_restype_index}, "
                f"got values {self.aatype.min()}..{self.aatype.max()}"
            )
        if self.chain_index.min() < 0:
            raise ValueError(f"Protein.chain_index must be non-negative, got {self.chain_index.min()}")
        chain_runs = self.chain_index[np.flatnonzero(np.diff(self.chain_index, prepend=-1))]
        if len(chain_runs) != len(np.unique(chain_runs)):
            raise ValueError(
                "Protein.chain_index must keep each chain's residues together; "
                f"chains in residue order: {chain_runs[:20].tolist()}"
            )
        present = self.atom_mask > 0.5
        if not present.any():
            raise ValueError("Protein.atom_mask marks no atom as present")
        if not np.isfinite(self.atom_positions[present]).all():
            raise ValueError("Protein.atom_positions has non-finite coordinates for present atoms")


def from_prediction(
    features: Mapping[str, np.ndarray],
    result: Mapping[str, Mapping[str, np.ndarray]],
    b_factors: np.ndarray | None = None,
) -> Protein:
    """Assemble the predicted structure.

    Parameters
    ----------
    features
        Model inputs: ``aatype`` and ``residue_index`` (0-based), and ``asym_id`` for complexes, each
        ``[N_res]`` or ``[R, N_res]`` with a leading ensemble/recycling dimension (its first entry is used).
    result
        Model outputs: ``result["structure_module"]["final_atom_positions"]`` ``[N_res, 37, 3]`` and
        ``["final_atom_mask"]`` ``[N_res, 37]``.
    b_factors
        ``[N_res]`` per-residue values (pLDDT) written on every atom of the residue, or ``[N_res, 37]``;
        zeros if None.

    Returns
    -------
    Protein
        Residues numbered from 1; chains numbered 0, 1, ... in order of increasing ``asym_id``.
    """
    structure = result["structure_module"]
    atom_mask = np.asarray(structure["final_atom_mask"])
    aatype = _per_residue(features["aatype"])
    if "asym_id" in features:
        chain_index = np.unique(_per_residue(features["asym_id"]), return_inverse=True)[1]
    else:
        chain_index = np.zeros_like(aatype)
    if b_factors is None:
        b_factors = np.zeros(atom_mask.shape)
    b_factors = np.asarray(b_factors)
    if b_factors.ndim == 1:
        b_factors = np.broadcast_to(b_factors[:, None], atom_mask.shape)
    return Protein(
        atom_positions=np.asarray(structure["final_atom_positions"]),
        atom_mask=atom_mask,
        aatype=aatype,
        residue_index=_per_residue(features["residue_index"]) + 1,
        chain_index=chain_index.reshape(aatype.shape),
        b_factors=b_factors,
    )


def _per_residue(feature: np.ndarray) -> np.ndarray:
    """A ``[N_res]`` feature, or the first entry of a ``[R, N_res]`` one."""
    feature = np.asarray(feature)
    return feature[0] if feature.ndim == 2 else feature


def chain_id(chain_index: int) -> str:
    """Chain ID of a 0-based chain number: A..Z, a..z, 0..9, then AA, AB, ... (bijective base 62)."""
    letters, number = "", chain_index + 1
    while number > 0:
        number, digit = divmod(number - 1, PDB_MAX_CHAINS)
        letters = PDB_CHAIN_IDS[digit] + letters
    return letters


def _chains(protein: Protein) -> list[np.ndarray]:
    """Residue indices of each chain, in order."""
    boundaries = np.flatnonzero(np.diff(protein.chain_index)) + 1
    return np.split(np.arange(len(protein.aatype)), boundaries)


def _present_atoms(protein: Protein, residue: int) -> np.ndarray:
    """atom37 indices of the atoms present in one residue."""
    return np.flatnonzero(protein.atom_mask[residue] > 0.5)


# ---------------------------------------------------------------------------------------------------------
# PDB
# ---------------------------------------------------------------------------------------------------------


def to_pdb(protein: Protein) -> str:
    """PDB text: one ATOM record per present atom, a TER record closing each chain, then END.

    Lines follow the fixed columns of the PDB format (80 characters). Occupancy is 1.00; the B-factor
    column holds ``protein.b_factors``.

    Raises
    ------
    ValueError
        If the structure does not fit the format's columns (more than 62 chains or 99,999 records,
        residue numbers outside -999..9999, coordinates or B-factors too wide); write mmCIF instead.
    """
    _check_fits_pdb(protein)
    lines, serial = [], 1
    for residues in _chains(protein):
        chain = chain_id(int(protein.chain_index[residues[0]]))
        for residue in residues:
            for atom in _present_atoms(protein, residue):
                lines.append(_pdb_atom_line(protein, serial, residue, atom, chain))
                serial += 1
        last = residues[-1]
        resname = rc.resnames[protein.aatype[last]]
        lines.append(f"TER   {serial:>5}      {resname:>3} {chain}{protein.residue_index[last]:>4}")
        serial += 1
    lines.append("END")
    return "".join(line.ljust(80) + "\n" for line in lines)


def _pdb_atom_line(protein: Protein, serial: int, residue: int, atom: int, chain: str) -> str:
    """One ATOM record. Columns: 1-6 record, 7-11 serial, 13-16 atom name (names of up to three letters
    start in column 14), 18-20 residue, 22 chain, 23-26 residue number, 31-54 x y z, 55-60 occupancy,
    61-66 B-factor, 77-78 element."""
    atom_name = rc.atom_types[atom]
    x, y, z = protein.atom_positions[residue, atom]
    return (
        f"ATOM  {serial:>5}  {atom_name:<3} {rc.resnames[protein.aatype[residue]]:>3} {chain}"
        f"{protein.residue_index[residue]:>4}    {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}"
        f"{protein.b_factors[residue, atom]:6.2f}          {rc.atom_id_to_type(atom_name):>2}"
    )


def _check_fits_pdb(protein: Protein) -> None:
    """Raise ValueError if a field would overflow its PDB column."""
    present = protein.atom_mask > 0.5
    num_records = np.count_nonzero(present) + len(_chains(protein))
    limits = [
        (protein.chain_index.max() < PDB_MAX_CHAINS, f"at most {PDB_MAX_CHAINS} chains"),
        (num_records <= 99_999, f"at most 99,999 atom and TER records, not {num_records}"),
        (
            np.all((protein.residue_index >= -999) & (protein.residue_index <= 9999)),
            "residue numbers -999..9999",
        ),
        (_within(protein.atom_positions[present], -999.999, 9999.999, 3), "coordinates -999.999..9999.999"),
        (_within(protein.b_factors[present], -99.99, 999.99, 2), "B-factors -99.99..999.99"),
    ]
    for fits, what in limits:
        if not fits:
            raise ValueError(f"Structure does not fit the PDB format ({what}); write mmCIF instead")


def _within(values: np.ndarray, low: float, high: float, decimals: int) -> bool:
    """Whether all values, rounded to ``decimals``, lie in ``[low, high]``."""
    values = np.round(values, decimals)
    return bool(np.all((values >= low) & (values <= high)))


# ---------------------------------------------------------------------------------------------------------
# mmCIF
# ---------------------------------------------------------------------------------------------------------


def to_mmcif(protein: Protein, entry_id: str = "fastfold") -> str:
    """mmCIF text (PDBx/mmCIF dictionary): entities, polymer sequences, chains, chemical components and
    one ``_atom_site`` row per present atom.

    Chains with the same residue sequence share an entity. ``label_seq_id`` numbers a chain's residues
    1, 2, ... in order; ``auth_seq_id`` holds ``protein.residue_index``. The B-factor column holds
    ``protein.b_factors``.

    Parameters
    ----------
    protein
        The structure.
    entry_id
        Name of the data block and ``_entry.id``; letters, digits, ``-`` and ``_`` only.
    """
    if not entry_id or not all(character.isalnum() or character in "-_" for character in entry_id):
        raise ValueError(f"entry_id must be letters, digits, '-' or '_', got {entry_id!r}")
    chains = _chains(protein)
    entity_of_sequence = {}
    for residues in chains:
        entity_of_sequence.setdefault(tuple(protein.aatype[residues]), len(entity_of_sequence) + 1)
    entity_of_chain = [entity_of_sequence[tuple(protein.aatype[residues])] for residues in chains]
    chain_ids = [chain_id(int(protein.chain_index[residues[0]])) for residues in chains]
    entities = list(entity_of_sequence.values())
    resnames = sorted({rc.resnames[aatype] for aatype in protein.aatype})
    lines = [f"data_{entry_id}", "#", f"_entry.id {entry_id}", "#"]
    lines += _cif_loop("_entity", {"id": entities, "type": [rc.POLYMER_CHAIN] * len(entities)})
    lines += _cif_loop(
        "_entity_poly",
        {
            "entity_id": entities,
            "type": [rc.PROTEIN_CHAIN] * len(entities),
            "pdbx_strand_id": [
                ",".join(c for c, e in zip(chain_ids, entity_of_chain, strict=True) if e == entity)
                for entity in entities
            ],
        },
    )
    lines += _cif_loop("_entity_poly_seq", _entity_poly_seq(entity_of_sequence))
    lines += _cif_loop("_struct_asym", {"id": chain_ids, "entity_id": entity_of_chain})
    lines += _cif_loop(
        "_chem_comp",
        {
            "id": resnames,
            "type": ["peptide linking" if name == "GLY" else "L-peptide linking" for name in resnames],
            "name": [_CHEM_COMP_NAMES[name] for name in resnames],
        },
    )
    atom_site = _atom_site(protein, chains, chain_ids, entity_of_chain)
    lines += _cif_loop("_atom_type", {"symbol": sorted(set(atom_site["type_symbol"]))})
    lines += _cif_loop("_atom_site", atom_site)
    return "\n".join(lines) + "\n"


def _entity_poly_seq(entity_of_sequence: Mapping[tuple, int]) -> dict[str, list]:
    """``_entity_poly_seq`` columns: every entity's residues, numbered from 1."""
    columns = {"entity_id": [], "num": [], "mon_id": [], "hetero": []}
    for sequence, entity in entity_of_sequence.items():
        columns["entity_id"] += [entity] * len(sequence)
        columns["num"] += list(range(1, len(sequence) + 1))
        columns["mon_id"] += [rc.resnames[aatype] for aatype in sequence]
        columns["hetero"] += ["n"] * len(sequence)
    return columns


def _atom_site(
    protein: Protein, chains: list[np.ndarray], chain_ids: list[str], entity_of_chain: list[int]
) -> dict[str, list]:
    """``_atom_site`` columns, one row per present atom."""
    rows = []
    for residues, chain, entity in zip(chains, chain_ids, entity_of_chain, strict=True):
        for seq_id, residue in enumerate(residues, start=1):
            resname = rc.resnames[protein.aatype[residue]]
            for atom in _present_atoms(protein, residue):
                atom_name = rc.atom_types[atom]
                x, y, z = protein.atom_positions[residue, atom]
                rows.append(
                    {
                        "group_PDB": "ATOM",
                        "id": len(rows) + 1,
                        "type_symbol": rc.atom_id_to_type(atom_name),
                        "label_atom_id": atom_name,
                        "label_alt_id": ".",
                        "label_comp_id": resname,
                        "label_asym_id": chain,
                        "label_entity_id": entity,
                        "label_seq_id": seq_id,
                        "pdbx_PDB_ins_code": "?",
                        "Cartn_x": f"{x:.3f}",
                        "Cartn_y": f"{y:.3f}",
                        "Cartn_z": f"{z:.3f}",
                        "occupancy": "1.00",
                        "B_iso_or_equiv": f"{protein.b_factors[residue, atom]:.2f}",
                        "auth_seq_id": protein.residue_index[residue],
                        "auth_comp_id": resname,
                        "auth_asym_id": chain,
                        "auth_atom_id": atom_name,
                        "pdbx_PDB_model_num": 1,
                    }
                )
    return {name: [row[name] for row in rows] for name in rows[0]}


def _cif_loop(category: str, columns: Mapping[str, list]) -> list[str]:
    """Lines of one mmCIF ``loop_`` (values left-aligned in columns), closed by ``#``."""
    values = [[_cif_value(value) for value in column] for column in columns.values()]
    widths = [max(map(len, column)) for column in values]
    rows = [
        " ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in zip(*values, strict=True)
    ]
    return ["loop_", *(f"{category}.{name}" for name in columns), *rows, "#"]


def _cif_value(value) -> str:
    """One mmCIF value, single-quoted when it holds whitespace or starts like CIF syntax."""
    text = str(value)
    if not text or any(character.isspace() for character in text) or text[0] in "_#$'\";[]":
        return f"'{text}'"
    return text
