"""mmCIF parsing against AlphaFold's own ``mmcif_parsing`` + template atom extraction, and bad input."""

import pathlib
import re
import types

import numpy as np
import pytest
from alphafold.data import mmcif_parsing, templates
from Bio.Data import PDBData
from Bio.PDB.MMCIF2Dict import MMCIF2Dict

from fastfold.common import residue_constants
from fastfold.data import ParseError, parse_mmcif, read_mmcif

DATA = pathlib.Path(__file__).parent / "data"
WITH_SEQRES = ["1A8O", "2OFG", "4ZHL", "4CUP", "1GBT"]


@pytest.fixture(autouse=True)
def alphafold_seqres_table(monkeypatch):
    """Give AlphaFold the residue table it was written for.

    AlphaFold reads SEQRES letters from ``protein_letters_3to1``, which held the PDB's modified residues
    (MSE -> M, ...) until Biopython 1.80 moved them to ``protein_letters_3to1_extended``.
    """
    table = types.SimpleNamespace(protein_letters_3to1=PDBData.protein_letters_3to1_extended)
    monkeypatch.setattr(mmcif_parsing, "PDBData", table)


def _alphafold(file_id: str, text: str):
    result = mmcif_parsing.parse(file_id=file_id, mmcif_string=text, catch_all_errors=False)
    return result.mmcif_object


def _assert_chains_match_alphafold(structure, reference) -> None:
    assert list(structure.chains) == list(reference.chain_to_seqres)
    for chain_id, chain in structure.chains.items():
        assert chain.seqres == reference.chain_to_seqres[chain_id]
        positions, mask = templates._get_atom_positions(reference, chain_id, max_ca_ca_distance=150.0)
        np.testing.assert_array_equal(chain.atom_positions, positions.astype(np.float32))
        np.testing.assert_array_equal(chain.atom_mask, mask)
        missing = [reference.seqres_to_structure[chain_id][i].is_missing for i in range(len(chain.seqres))]
        np.testing.assert_array_equal(chain.resolved, ~np.array(missing))


@pytest.mark.parametrize("name", WITH_SEQRES)
def test_matches_alphafold(name):
    text = (DATA / f"{name}.cif").read_text()
    structure = parse_mmcif(text, name)
    reference = _alphafold(name, text)
    _assert_chains_match_alphafold(structure, reference)
    assert structure.method == reference.header["structure_method"]
    assert structure.resolution == reference.header["resolution"]
    assert structure.release_date == reference.header.get("release_date", structure.release_date)


def _with_polymer_tables(text: str) -> str:
    """A bare coordinate file plus the SEQRES tables AlphaFold needs, written from its own atoms."""
    atoms = MMCIF2Dict(str(DATA / "7CFN.cif"))
    residues = {}
    for label_id, number, name in zip(
        atoms["_atom_site.label_asym_id"],
        atoms["_atom_site.label_seq_id"],
        atoms["_atom_site.label_comp_id"],
        strict=True,
    ):
        if number.isdigit():
            residues.setdefault(label_id, {})[int(number)] = name
    poly_seq = [
        f"{c} {n} {name} n" for c, by_number in residues.items() for n, name in sorted(by_number.items())
    ]
    names = sorted({name for by_number in residues.values() for name in by_number.values()})
    return "\n".join(
        [text.rstrip(), "_entry.id 7CFN", "#", "loop_"]
        + [f"_entity_poly_seq.{column}" for column in ("entity_id", "num", "mon_id", "hetero")]
        + poly_seq
        + ["#", "loop_", "_struct_asym.id", "_struct_asym.entity_id"]
        + [f"{chain} {chain}" for chain in residues]
        + ["#", "loop_", "_chem_comp.id", "_chem_comp.type"]
        + [f"{name} 'L-peptide linking'" for name in names]
        + ["#", ""]
    )


def test_bare_coordinate_file_matches_alphafold():
    """7CFN has only ``_atom_site``: the SEQRES comes from its residues; AlphaFold gets explicit tables."""
    text = (DATA / "7CFN.cif").read_text()
    structure = parse_mmcif(text, "7CFN")
    assert {chain_id: len(chain.seqres) for chain_id, chain in structure.chains.items()} == {
        "A": 232, "B": 339, "G": 58, "N": 128, "R": 274,
    }  # fmt: skip
    assert (structure.method, structure.release_date, structure.resolution) == ("", None, 0.0)
    _assert_chains_match_alphafold(structure, _alphafold("7CFN", _with_polymer_tables(text)))


def test_bare_coordinate_file_gap_is_unknown():
    """A residue without atoms inside a bare coordinate chain becomes an unresolved X."""
    text = (DATA / "7CFN.cif").read_text()
    gap = re.compile(r"^ATOM\s+\d+\s+\S+\s+\S+\s+\.\s+\S+\s+A\s+\?\s+5\s.*\n", re.MULTILINE)
    assert len(gap.findall(text)) > 0
    chain = parse_mmcif(gap.sub("", text), "7CFN").chains["A"]
    full = parse_mmcif(text, "7CFN").chains["A"]
    assert chain.seqres == full.seqres[:4] + "X" + full.seqres[5:]
    assert chain.residue_names[4] == "UNK" and not chain.resolved[4] and chain.resolved.sum() == 231
    assert not chain.atom_mask[4].any()


def test_first_model_only():
    """2OFG has 3 NMR models: coordinates are model 1's."""
    structure = read_mmcif(DATA / "2OFG.cif")
    atoms = MMCIF2Dict(str(DATA / "2OFG.cif"))
    rows = list(zip(atoms["_atom_site.pdbx_PDB_model_num"], atoms["_atom_site.label_atom_id"], strict=True))
    assert {model for model, _ in rows} == {"1", "2", "3"}
    first_ca = {model: rows.index((model, "CA")) for model in ("1", "2")}
    model_1, model_2 = (
        [float(atoms[f"_atom_site.Cartn_{axis}"][i]) for axis in "xyz"] for i in first_ca.values()
    )
    chain = structure.chains["X"]
    ca = chain.atom_positions[int(np.argmax(chain.resolved)), residue_constants.atom_order["CA"]]
    np.testing.assert_allclose(ca, model_1, atol=1e-3)
    assert not np.allclose(ca, model_2, atol=1e-2)
    assert structure.method == "solution nmr" and structure.resolution == 0.0


def test_selenomethionine_and_header():
    structure = read_mmcif(DATA / "1A8O.cif")
    assert (structure.method, structure.release_date, structure.resolution) == (
        "x-ray diffraction",
        "1998-10-14",
        1.7,
    )
    chain = structure.chains["A"]
    selenomethionines = [i for i, name in enumerate(chain.residue_names) if name == "MSE"]
    assert selenomethionines and all(chain.seqres[i] == "M" for i in selenomethionines)
    sd = residue_constants.atom_order["SD"]
    assert all(chain.atom_mask[i, sd] == 1.0 for i in selenomethionines if chain.resolved[i])
    assert chain.atom_positions.dtype == np.float32 and chain.atom_positions.shape == (70, 37, 3)


def test_multichain_peptide():
    structure = read_mmcif(DATA / "4ZHL.cif")
    assert list(structure.chains) == ["U", "P"]
    assert len(structure.chains["P"].seqres) == 10 and structure.chains["P"].resolved.all()


def test_truncated_file_names_the_file(tmp_path):
    text = (DATA / "1A8O.cif").read_text()
    cut = text.index("ATOM   300 ")
    path = tmp_path / "1A8O_truncated.cif"
    path.write_text(text[: cut + 20])
    with pytest.raises(ParseError, match=re.escape(f"{path}: columns of _atom_site differ in length")):
        read_mmcif(path)


def test_ligands_only_is_not_protein():
    text = (DATA / "7CFN.cif").read_text()
    ligands_only = "\n".join(line for line in text.splitlines() if not line.startswith("ATOM"))
    with pytest.raises(ParseError, match=re.escape("ligands.cif: no protein chain with coordinates")):
        parse_mmcif(ligands_only, "ligands.cif")


def test_not_mmcif():
    with pytest.raises(ParseError, match=re.escape("x.cif: not a readable mmCIF file")):
        parse_mmcif(">query\nMKV\n", "x.cif")
