"""Reading the mmCIF tables (loops) that define protein chains and where their residues are resolved.

Two numberings meet here: the SEQRES index (``label_seq_id`` minus the chain's first number) and
Biopython's residue id ``(hetero flag, author residue number, insertion code)`` in the author chain.
"""

from collections import defaultdict
from collections.abc import Mapping
from typing import NamedTuple

from Bio.Data.PDBData import protein_letters_3to1_extended

from fastfold.data.errors import ParseError

ResidueKey = tuple[str, int, str]  # Biopython residue id: (hetero flag, author number, insertion code)
_UNSET = (".", "?")


class Polymer(NamedTuple):
    """SEQRES of one protein chain (``label_asym_id``).

    Attributes
    ----------
    first_number
        ``label_seq_id`` of the first SEQRES residue (usually 1).
    residue_names
        Three-letter names in SEQRES order.
    """

    first_number: int
    residue_names: list[str]


def table(mmcif_dict: Mapping[str, list[str]], prefix: str, file_id: str) -> dict[str, list[str]]:
    """The columns of one mmCIF category, e.g. ``table(d, "_atom_site.", f)["label_seq_id"]``.

    Raises
    ------
    ParseError
        When the columns differ in length (a truncated file).
    """
    columns = {key[len(prefix) :]: values for key, values in mmcif_dict.items() if key.startswith(prefix)}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ParseError(file_id, f"columns of {prefix[:-1]} differ in length {sorted(lengths)} (truncated?)")
    return columns


def _is_peptide(residue_name: str, chem_comp_types: Mapping[str, str]) -> bool:
    """Whether a monomer is an amino acid (``_chem_comp.type`` has 'peptide'; else the PDB's table)."""
    if residue_name in chem_comp_types:
        return "peptide" in chem_comp_types[residue_name].lower()
    return residue_name in protein_letters_3to1_extended


def _entity_polymers(mmcif_dict: Mapping[str, list[str]], file_id: str) -> dict[str, Polymer]:
    """Protein chains from ``_entity_poly_seq`` + ``_struct_asym`` (first monomer at each number)."""
    entity_residues = defaultdict(dict)  # entity id -> {number: name}
    poly_seq = table(mmcif_dict, "_entity_poly_seq.", file_id)
    for entity_id, number, name in zip(
        poly_seq["entity_id"], poly_seq["num"], poly_seq["mon_id"], strict=True
    ):
        entity_residues[entity_id].setdefault(int(number), name)
    chem_comp = table(mmcif_dict, "_chem_comp.", file_id)
    chem_comp_types = dict(zip(chem_comp.get("id", []), chem_comp.get("type", []), strict=True))
    struct_asym = table(mmcif_dict, "_struct_asym.", file_id)
    polymers = {}
    for label_id, entity_id in zip(struct_asym.get("id", []), struct_asym.get("entity_id", []), strict=True):
        residues = entity_residues.get(entity_id, {})
        if any(_is_peptide(name, chem_comp_types) for name in residues.values()):
            polymers[label_id] = Polymer(min(residues), [residues[number] for number in sorted(residues)])
    return polymers


def _coordinate_polymers(atom_site: Mapping[str, list[str]]) -> dict[str, Polymer]:
    """Protein chains of a file without ``_entity_poly_seq``: numbered residues of ``_atom_site``.

    Numbers missing between the first and the last become ``UNK`` (unknown, unresolved).
    """
    chain_residues = defaultdict(dict)  # label_asym_id -> {number: name}
    for label_id, number, name in zip(
        atom_site["label_asym_id"], atom_site["label_seq_id"], atom_site["label_comp_id"], strict=True
    ):
        if number.isdigit():
            chain_residues[label_id].setdefault(int(number), name)
    polymers = {}
    for label_id, residues in chain_residues.items():
        if any(name in protein_letters_3to1_extended for name in residues.values()):
            numbers = range(min(residues), max(residues) + 1)
            polymers[label_id] = Polymer(numbers[0], [residues.get(number, "UNK") for number in numbers])
    return polymers


def _atom_site(mmcif_dict: Mapping[str, list[str]], file_id: str) -> dict[str, list[str]]:
    """The ``_atom_site`` columns that locate residues, checked to be present and of equal length."""
    atom_site = table(mmcif_dict, "_atom_site.", file_id)
    required = ("group_PDB", "label_comp_id", "label_asym_id", "label_seq_id", "auth_asym_id", "auth_seq_id")
    missing = [column for column in required if column not in atom_site]
    if missing:
        raise ParseError(file_id, f"no coordinates: _atom_site lacks {missing}")
    num_atoms = len(atom_site["label_asym_id"])
    atom_site.setdefault("pdbx_PDB_ins_code", ["?"] * num_atoms)
    atom_site.setdefault("pdbx_PDB_model_num", ["1"] * num_atoms)
    return atom_site


def polymer_chains(mmcif_dict: Mapping[str, list[str]], file_id: str) -> dict[str, Polymer]:
    """Protein chains by ``label_asym_id``: from ``_entity_poly_seq`` if present, else ``_atom_site``."""
    if "_entity_poly_seq.mon_id" in mmcif_dict:
        return _entity_polymers(mmcif_dict, file_id)
    return _coordinate_polymers(_atom_site(mmcif_dict, file_id))


def _residue_key(hetero: str, residue_name: str, number: str, insertion_code: str) -> ResidueKey:
    """Biopython's id of a residue: hetero flag ``" "``, ``"W"`` (water) or ``"H_<name>"``."""
    if hetero != "HETATM":
        flag = " "
    elif residue_name in ("HOH", "WAT"):
        flag = "W"
    else:
        flag = f"H_{residue_name}"
    return flag, int(number), " " if insertion_code in _UNSET else insertion_code


def resolved_residues(
    mmcif_dict: Mapping[str, list[str]], polymers: Mapping[str, Polymer], file_id: str
) -> dict[str, tuple[str, dict[int, ResidueKey]]]:
    """Where the SEQRES residues of each protein chain are in the first model.

    Returns
    -------
    dict
        ``label_asym_id -> (author chain id, {SEQRES index: Biopython residue id})``, for chains with at
        least one atom in the first model, in file order.
    """
    atom_site = _atom_site(mmcif_dict, file_id)
    first_model = atom_site["pdbx_PDB_model_num"][0] if atom_site["pdbx_PDB_model_num"] else "1"
    located = {}
    for row in zip(
        atom_site["pdbx_PDB_model_num"], atom_site["label_asym_id"], atom_site["label_seq_id"],
        atom_site["group_PDB"], atom_site["label_comp_id"], atom_site["auth_seq_id"],
        atom_site["pdbx_PDB_ins_code"], atom_site["auth_asym_id"], strict=True,
    ):  # fmt: skip
        model, label_id, number, hetero, name, author_number, insertion_code, author_chain = row
        if model != first_model or label_id not in polymers or not number.isdigit():
            continue
        _, by_index = located.setdefault(label_id, (author_chain, {}))
        index = int(number) - polymers[label_id].first_number
        if not 0 <= index < len(polymers[label_id].residue_names):
            raise ParseError(file_id, f"residue number {number} is outside the SEQRES", record=label_id)
        by_index[index] = _residue_key(hetero, name, author_number, insertion_code)
    return located
