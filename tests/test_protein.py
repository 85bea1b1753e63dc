"""Protein PDB / mmCIF writers: a real structure written and read back with Biopython, and AlphaFold's
own PDB writer as the reference for the fixed columns."""

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
from alphafold.common import protein as alphafold_protein
from Bio.PDB import MMCIFParser, PDBParser
from Bio.PDB.MMCIF2Dict import MMCIF2Dict

from fastfold.common import residue_constants as rc
from fastfold.common.io import write_atomically
from fastfold.common.protein import Protein, chain_id, from_prediction, to_mmcif, to_pdb

STRUCTURE = Path(__file__).parent / "data" / "1A8O.cif"


def _read_1a8o() -> Protein:
    """Chain A of 1A8O in atom37 layout, parsed with Biopython; selenomethionine read as methionine."""
    chain = next(MMCIFParser(QUIET=True).get_structure("1A8O", STRUCTURE).get_models())["A"]
    residues = [residue for residue in chain if residue.id[0] != "W"]
    positions = np.zeros([len(residues), rc.atom_type_num, 3])
    mask = np.zeros([len(residues), rc.atom_type_num])
    b_factors = np.zeros([len(residues), rc.atom_type_num])
    for i, residue in enumerate(residues):
        for atom in residue:
            name = "SD" if atom.get_id() == "SE" else atom.get_id()
            if name in rc.atom_order:
                positions[i, rc.atom_order[name]] = atom.get_coord()
                mask[i, rc.atom_order[name]] = 1
                b_factors[i, rc.atom_order[name]] = atom.get_bfactor()
    resnames = ["MET" if residue.get_resname() == "MSE" else residue.get_resname() for residue in residues]
    return Protein(
        atom_positions=positions,
        atom_mask=mask,
        aatype=np.array([rc.resname_to_idx.get(name, rc.unk_restype_index) for name in resnames]),
        residue_index=np.array([residue.id[1] for residue in residues]),
        chain_index=np.zeros(len(residues), dtype=np.int64),
        b_factors=b_factors,
    )


def _two_chains(protein: Protein, second_chain_length: int | None = None) -> Protein:
    """``protein`` followed by a copy of its first residues as chain B, moved 40 A along x."""
    length = second_chain_length or len(protein.aatype)
    return Protein(
        atom_positions=np.concatenate([protein.atom_positions, protein.atom_positions[:length] + [40, 0, 0]]),
        atom_mask=np.concatenate([protein.atom_mask, protein.atom_mask[:length]]),
        aatype=np.concatenate([protein.aatype, protein.aatype[:length]]),
        residue_index=np.concatenate([protein.residue_index, protein.residue_index[:length]]),
        chain_index=np.concatenate([protein.chain_index, protein.chain_index[:length] + 1]),
        b_factors=np.concatenate([protein.b_factors, protein.b_factors[:length] / 2]),
    )


@pytest.fixture(scope="module")
def protein() -> Protein:
    return _read_1a8o()


def _expected_atoms(protein: Protein) -> dict:
    """(chain ID, residue number, atom name) -> (residue name, position, B-factor) of every present atom."""
    atoms = {}
    for residue, atom in zip(*np.nonzero(protein.atom_mask > 0.5), strict=True):
        key = (chain_id(protein.chain_index[residue]), protein.residue_index[residue], rc.atom_types[atom])
        atoms[key] = (
            rc.resnames[protein.aatype[residue]],
            protein.atom_positions[residue, atom],
            protein.b_factors[residue, atom],
        )
    return atoms


def _read_atoms(structure) -> dict:
    """The same mapping from a Biopython structure."""
    return {
        (atom.get_parent().get_parent().id, atom.get_parent().id[1], atom.get_id()): (
            atom.get_parent().get_resname(),
            atom.get_coord(),
            atom.get_bfactor(),
        )
        for atom in next(structure.get_models()).get_atoms()
    }


def _assert_same_atoms(structure, protein: Protein) -> None:
    expected, read = _expected_atoms(protein), _read_atoms(structure)
    assert read.keys() == expected.keys()
    for key, (resname, position, b_factor) in expected.items():
        assert read[key][0] == resname, key
        np.testing.assert_allclose(read[key][1], position, rtol=0, atol=1e-3, err_msg=str(key))
        assert abs(read[key][2] - b_factor) <= 0.005 + 1e-6, key


@pytest.mark.parametrize("chains", [1, 2])
def test_pdb_round_trip(protein, chains, tmp_path):
    protein = protein if chains == 1 else _two_chains(protein)
    path = tmp_path / "model.pdb"
    write_atomically(path, to_pdb(protein))
    _assert_same_atoms(PDBParser(QUIET=True).get_structure("model", path), protein)


@pytest.mark.parametrize("chains", [1, 2])
def test_pdb_columns_match_alphafold(protein, chains):
    protein = protein if chains == 1 else _two_chains(protein, second_chain_length=20)
    reference = alphafold_protein.to_pdb(alphafold_protein.Protein(**dataclasses.asdict(protein)))
    lines = to_pdb(protein).splitlines()
    assert lines == [line for line in reference.splitlines() if not line.startswith(("MODEL", "ENDMDL"))]
    assert sum(line.startswith("TER") for line in lines) == chains
    assert lines[-1].rstrip() == "END"
    assert {len(line) for line in lines} == {80}


@pytest.mark.parametrize("second_chain_length", [None, 20])
def test_mmcif_round_trip(protein, second_chain_length, tmp_path):
    protein = _two_chains(protein, second_chain_length) if second_chain_length else protein
    path = tmp_path / "model.cif"
    write_atomically(path, to_mmcif(protein, entry_id="1A8O_model"))
    _assert_same_atoms(MMCIFParser(QUIET=True).get_structure("model", path), protein)


def test_mmcif_tables_describe_chains_and_sequences(protein):
    two_chains = _two_chains(protein, second_chain_length=20)
    tables = MMCIF2Dict(io.StringIO(to_mmcif(two_chains)))
    sequence = [rc.resnames[aatype] for aatype in protein.aatype]
    assert tables["data_"] == "fastfold"
    assert tables["_entity.id"] == ["1", "2"]
    assert tables["_entity_poly.type"] == ["polypeptide(L)"] * 2
    assert tables["_struct_asym.id"] == ["A", "B"]
    assert tables["_entity_poly_seq.mon_id"] == sequence + sequence[:20]
    assert tables["_entity_poly_seq.num"] == [str(n) for n in [*range(1, 71), *range(1, 21)]]
    assert "ASPARTIC ACID" in tables["_chem_comp.name"]
    assert tables["_atom_type.symbol"] == ["C", "N", "O", "S"]
    first_atom = np.flatnonzero(protein.atom_mask[0])[0]
    assert tables["_atom_site.label_seq_id"][0] == "1"
    assert tables["_atom_site.auth_seq_id"][0] == str(protein.residue_index[0])
    assert tables["_atom_site.label_atom_id"][0] == rc.atom_types[first_atom]
    assert tables["_atom_site.id"][-1] == str(int(two_chains.atom_mask.sum()))


def test_identical_chains_share_an_entity(protein):
    tables = MMCIF2Dict(io.StringIO(to_mmcif(_two_chains(protein))))
    assert tables["_entity.id"] == ["1"]
    assert tables["_entity_poly.pdbx_strand_id"] == ["A,B"]
    assert tables["_struct_asym.entity_id"] == ["1", "1"]
    assert len(tables["_entity_poly_seq.num"]) == len(protein.aatype)


def test_from_prediction_puts_plddt_in_b_factors(protein, tmp_path):
    num_residues = len(protein.aatype)
    plddt = np.linspace(30.0, 100.0, num_residues)
    features = {
        "aatype": protein.aatype[None],  # [1, N_res], a leading ensemble dimension
        "residue_index": np.arange(num_residues)[None],
        "asym_id": np.repeat([3, 7], [30, num_residues - 30]),
    }
    result = {
        "structure_module": {
            "final_atom_positions": protein.atom_positions,
            "final_atom_mask": protein.atom_mask,
        }
    }
    predicted = from_prediction(features, result, b_factors=plddt)
    np.testing.assert_array_equal(predicted.residue_index, np.arange(1, num_residues + 1))
    np.testing.assert_array_equal(predicted.chain_index, np.repeat([0, 1], [30, num_residues - 30]))
    np.testing.assert_array_equal(predicted.b_factors, np.repeat(plddt[:, None], rc.atom_type_num, axis=1))
    path = tmp_path / "ranked_0.pdb"
    write_atomically(path, to_pdb(predicted))
    structure = PDBParser(QUIET=True).get_structure("model", path)
    for residue, expected in zip(structure.get_residues(), plddt, strict=True):
        assert {round(atom.get_bfactor(), 2) for atom in residue} == {round(expected, 2)}
    assert [chain.id for chain in structure.get_chains()] == ["A", "B"]
    np.testing.assert_array_equal(from_prediction(features, result).b_factors, 0)


def _replace(protein: Protein, **changes) -> dict:
    return {**{field.name: getattr(protein, field.name) for field in dataclasses.fields(protein)}, **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"atom_mask": np.ones([70, 36])}, "atom_mask has shape"),
        ({"atom_positions": np.zeros([70, 37])}, "atom_positions has shape"),
        ({"b_factors": np.zeros([69, 37])}, "b_factors has shape"),
        ({"aatype": np.zeros([0], dtype=int)}, "aatype must have shape"),
        ({"aatype": np.full(70, 21)}, "aatype must lie in"),
        ({"residue_index": np.arange(70.0)}, "residue_index must be integers"),
        ({"chain_index": np.full(70, -1)}, "non-negative"),
        ({"chain_index": np.arange(70) % 2}, "keep each chain's residues together"),
        ({"atom_mask": np.zeros([70, 37])}, "no atom"),
        ({"atom_positions": np.full([70, 37, 3], np.nan)}, "non-finite"),
    ],
)
def test_protein_rejects_inconsistent_fields(protein, changes, message):
    with pytest.raises(ValueError, match=message):
        Protein(**_replace(protein, **changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"chain_index": np.arange(70) + 5}, "at most 62 chains"),
        ({"residue_index": np.arange(70) + 9990}, "residue numbers"),
        ({"b_factors": np.full([70, 37], 1000.0)}, "B-factors"),
    ],
)
def test_pdb_refuses_what_its_columns_cannot_hold(protein, changes, message):
    too_big = Protein(**_replace(protein, **changes))
    with pytest.raises(ValueError, match=message):
        to_pdb(too_big)
    assert MMCIF2Dict(io.StringIO(to_mmcif(too_big)))["_atom_site.id"][-1] == str(
        int(protein.atom_mask.sum())
    )


def test_mmcif_rejects_a_bad_entry_id(protein):
    with pytest.raises(ValueError, match="entry_id"):
        to_mmcif(protein, entry_id="two words")


def test_chain_ids():
    assert [chain_id(k) for k in (0, 25, 26, 61, 62, 63, 62 + 62 * 62)] == [
        "A",
        "Z",
        "a",
        "9",
        "AA",
        "AB",
        "AAA",
    ]


def test_write_atomically_writes_text_and_bytes(tmp_path):
    path = tmp_path / "out.txt"
    write_atomically(path, "first\n")
    write_atomically(path, "second ü\n")
    assert path.read_text(encoding="utf-8") == "second ü\n"
    write_atomically(tmp_path / "out.bin", b"\x00\x01")
    assert (tmp_path / "out.bin").read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "out.txt"]


def test_write_atomically_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "ranked_0.pdb"
    path.write_text("old")

    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ranked_0.pdb"]


def test_write_atomically_leaves_no_temporary_file_when_replace_fails(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        write_atomically(tmp_path / "taken", "text")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
