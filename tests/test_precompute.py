"""scripts/precompute_alignments.py run for real on tiny databases made from the bundled mmCIF chains."""

import importlib.util
import logging
import pathlib
import shutil

import numpy as np
import pytest
from alphafold.data import parsers as alphafold_parsers

from fastfold.data import parse_a3m, read_a3m, read_hhr, read_mmcif
from fastfold.data.tools import Jackhmmer
from fastfold.data.tools.hhsuite_database import build_hhsuite_database

ROOT = pathlib.Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
TOOLS = ("jackhmmer", "hhblits", "hhsearch", "hhmake", "ffindex_build")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="HMMER/HH-suite missing: scripts/install_tools.sh",
)
OUTPUTS = ("uniref90_hits.a3m", "mgnify_hits.a3m", "bfd_uniclust_hits.a3m", "pdb70_hits.hhr")


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "precompute_alignments", ROOT / "scripts" / "precompute_alignments.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


precompute = _load_script()


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> dict[str, str]:
    """A FASTA (UniRef90, MGnify) and an HH-suite database (BFD, Uniclust30, PDB70) of the bundled chains."""
    folder = tmp_path_factory.mktemp("databases")
    chains = {
        f"{path.stem.lower()}_{chain_id}": chain.seqres
        for path in sorted(DATA.glob("*.cif"))
        for chain_id, chain in read_mmcif(path).chains.items()
    }
    fasta = folder / "chains.fasta"
    fasta.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in chains.items()))
    return {"fasta": str(fasta), "hhsuite": build_hhsuite_database(chains, folder / "chains")}


def _arguments(inputs, output_dir, databases, **changes) -> list[str]:
    flags = {
        "--output_dir": str(output_dir),
        "--uniref90": databases["fasta"],
        "--mgnify": databases["fasta"],
        "--bfd": databases["hhsuite"],
        "--uniclust30": databases["hhsuite"],
        "--pdb70": databases["hhsuite"],
        "--cpus": "1",
        **changes,
    }
    return [*map(str, inputs)] + [item for pair in flags.items() if pair[1] is not None for item in pair]


def test_writes_layout_and_resumes(databases, tmp_path, caplog):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(DATA / "1A8O.cif", inputs / "1A8O.cif")
    (inputs / "query.fasta").write_text(
        f">4cup_A some protein\n{read_mmcif(DATA / '4CUP.cif').chains['A'].seqres}\n"
    )
    output = tmp_path / "alignments"
    assert precompute.main(_arguments([inputs], output, databases)) == 0
    assert sorted(p.name for p in output.iterdir()) == ["1a8o_A", "4cup_A"]
    sequence = read_mmcif(DATA / "1A8O.cif").chains["A"].seqres
    folder = output / "1a8o_A"
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)  # no temporary files left
    for name in OUTPUTS[:3]:
        assert read_a3m(folder / name).sequences[0] == sequence
    # jackhmmer finds the chain itself; hhblits (without -all, as in AlphaFold) filters out the identical one.
    assert read_a3m(folder / "uniref90_hits.a3m").descriptions[1].startswith("1a8o_A/")
    assert read_hhr(folder / "pdb70_hits.hhr")[0].name.startswith("1a8o_A")

    # Second run: nothing to do. Then a lost file and a truncated one are made again, and only those.
    times = {name: (folder / name).stat().st_mtime_ns for name in OUTPUTS}
    with caplog.at_level(logging.INFO, logger="precompute_alignments"):
        assert precompute.main(_arguments([inputs], output, databases)) == 0
    assert {name: (folder / name).stat().st_mtime_ns for name in OUTPUTS} == times
    assert "1a8o_A: 0 searches run" in caplog.text and "4cup_A: 0 searches run" in caplog.text
    (folder / "mgnify_hits.a3m").unlink()
    (folder / "pdb70_hits.hhr").write_text("Query 1a8o_A\n")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="precompute_alignments"):
        assert precompute.main(_arguments([inputs], output, databases)) == 0
    assert "1a8o_A: 2 searches run" in caplog.text
    assert read_a3m(folder / "mgnify_hits.a3m").sequences[0] == sequence
    assert (folder / "uniref90_hits.a3m").stat().st_mtime_ns == times["uniref90_hits.a3m"]


def test_uniref30_name_and_clear_errors(databases, tmp_path, caplog):
    inputs = [DATA / "1A8O.cif"]
    missing_db = str(tmp_path / "uniref90.fasta")
    with caplog.at_level(logging.ERROR, logger="precompute_alignments"):
        assert (
            precompute.main(_arguments(inputs, tmp_path / "out", databases, **{"--uniref90": missing_db}))
            == 2
        )
        assert f"jackhmmer database '{missing_db}' not found" in caplog.text
        assert (
            precompute.main(_arguments(inputs, tmp_path / "out", databases, **{"--pdb70": "/no/pdb70"})) == 2
        )
        assert "HH-suite database '/no/pdb70' not found" in caplog.text
        binary = {"--hhblits_binary": "no-such-hhblits"}
        assert precompute.main(_arguments(inputs, tmp_path / "out", databases, **binary)) == 2
        assert "Binary 'no-such-hhblits' not found" in caplog.text
    assert not (tmp_path / "out").exists()
    changes = {"--uniclust30": None, "--uniref30": databases["hhsuite"]}
    runner = precompute.build_runner(
        precompute.parse_args(_arguments(inputs, tmp_path, databases, **changes))
    )
    assert runner.bfd_file == "bfd_uniref_hits.a3m"


def _assert_same_a3m(ours: str, reference: str) -> None:
    msa, expected = parse_a3m(ours), alphafold_parsers.parse_a3m(reference)
    assert msa.sequences == tuple(expected.sequences) and len(msa) > 1
    np.testing.assert_array_equal(msa.deletion_matrix, np.array(expected.deletion_matrix))
    assert [d.split()[0] for d in msa.descriptions] == [d.split()[0] for d in expected.descriptions]


def test_stockholm_to_a3m_matches_alphafold(databases, tmp_path):
    query = tmp_path / "query.fasta"
    query.write_text(f">query\n{read_mmcif(DATA / '4ZHL.cif').chains['U'].seqres}\n")
    stockholm = Jackhmmer(databases["fasta"], n_cpu=1, timeout=120).query(query)
    for limit in (None, 2):
        _assert_same_a3m(
            precompute.stockholm_to_a3m(stockholm, limit),
            alphafold_parsers.convert_stockholm_to_a3m(stockholm, max_sequences=limit),
        )
    assert len(parse_a3m(precompute.stockholm_to_a3m(stockholm, 2))) == 2
