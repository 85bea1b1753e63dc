"""The search tools run for real on a small database built from the bundled mmCIF chains.

Needs Debian's hmmer, hhsuite and kalign (``scripts/install_tools.sh``); a test is skipped, saying so,
only when its binary is missing.
"""

import logging
import pathlib
import shutil

import numpy as np
import pytest
from alphafold.data import parsers as alphafold_parsers

from fastfold.data import parse_a3m, parse_hhr, parse_stockholm, read_mmcif
from fastfold.data.tools import HHBlits, HHSearch, Hmmsearch, Jackhmmer, Kalign, ToolError, run_tool
from fastfold.data.tools.hhsuite_database import build_hhsuite_database

DATA = pathlib.Path(__file__).parent / "data"


def requires(*binaries: str):
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"{', '.join(missing)} not installed: run scripts/install_tools.sh"
    )


@pytest.fixture(scope="module")
def chains() -> dict[str, str]:
    """Every protein chain of the bundled mmCIF files: ``"1a8o_A" -> SEQRES``."""
    return {
        f"{path.stem.lower()}_{chain_id}": chain.seqres
        for path in sorted(DATA.glob("*.cif"))
        for chain_id, chain in read_mmcif(path).chains.items()
    }


@pytest.fixture(scope="module")
def fasta_database(chains, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("fasta") / "chains.fasta"
    path.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in chains.items()))
    return path


@pytest.fixture(scope="module")
def hhsuite_database(chains, tmp_path_factory) -> str:
    if shutil.which("hhmake") is None or shutil.which("ffindex_build") is None:
        pytest.skip("hhmake / ffindex_build not installed: run scripts/install_tools.sh")
    prefix = tmp_path_factory.mktemp("hhsuite") / "chains"
    build_hhsuite_database(chains, prefix)
    return str(prefix)


def _query_file(tmp_path, name: str, sequence: str) -> pathlib.Path:
    path = tmp_path / f"{name}.fasta"
    path.write_text(f">{name}\n{sequence}\n")
    return path


@requires("jackhmmer")
def test_jackhmmer_finds_the_chain(chains, fasta_database, tmp_path):
    query = _query_file(tmp_path, "query", chains["4zhl_U"])
    stockholm = Jackhmmer(str(fasta_database), n_cpu=1, timeout=60).query(query)
    msa = parse_stockholm(stockholm, source="jackhmmer output")
    assert msa.descriptions[:2] == ("query", f"4zhl_U/1-{len(chains['4zhl_U'])}")
    assert msa.sequences[1] == msa.sequences[0] == chains["4zhl_U"]
    reference = alphafold_parsers.parse_stockholm(stockholm)
    assert msa.sequences == tuple(reference.sequences) and msa.descriptions == tuple(reference.descriptions)
    np.testing.assert_array_equal(msa.deletion_matrix, np.array(reference.deletion_matrix))


@requires("jackhmmer", "hmmsearch", "hmmbuild")
def test_hmmsearch_with_jackhmmer_profile(chains, fasta_database, tmp_path):
    query = _query_file(tmp_path, "query", chains["1gbt_A"])
    stockholm = Jackhmmer(str(fasta_database), n_cpu=1, timeout=60).query(query)
    hits = Hmmsearch(str(fasta_database), n_cpu=1, timeout=60).query(stockholm)
    # hmmsearch's output has no query row: its first row is the best hit.
    assert parse_stockholm(hits, source="hmmsearch output").descriptions[0].startswith("1gbt_A/")


@requires("hhsearch")
def test_hhsearch_finds_the_chain(chains, hhsuite_database, caplog):
    sequence = chains["1a8o_A"]
    with caplog.at_level(logging.INFO, logger="fastfold.data.tools"):
        hhr = HHSearch((hhsuite_database,), timeout=60).query(f">query\n{sequence}\n")
    hits = parse_hhr(hhr, source="hhsearch output")
    assert hits[0].name == "1a8o_A" and hits[0].aligned_cols == len(sequence)
    assert hits[0].query == hits[0].hit_sequence == sequence
    assert hits[0].indices_query == hits[0].indices_hit == tuple(range(len(sequence)))
    assert [hit.index for hit in hits] == list(range(1, len(hits) + 1))
    assert any(record.getMessage().startswith("hhsearch: ") for record in caplog.records)
    reference = alphafold_parsers.parse_hhr(hhr)
    assert [(hit.name, hit.query, hit.hit_sequence) for hit in hits] == [
        (hit.name, hit.query, hit.hit_sequence) for hit in reference
    ]


@requires("hhblits")
def test_hhblits_msa(chains, hhsuite_database, tmp_path):
    query = _query_file(tmp_path, "query", chains["7cfn_G"])
    a3m = HHBlits((hhsuite_database,), n_cpu=1, n_iter=1, all_seqs=True, timeout=60).query(query)
    msa = parse_a3m(a3m, source="hhblits output")
    assert msa.descriptions[:2] == ("query", "7cfn_G")
    assert msa.sequences[1] == chains["7cfn_G"]
    reference = alphafold_parsers.parse_a3m(a3m)
    assert msa.sequences == tuple(reference.sequences)
    np.testing.assert_array_equal(msa.deletion_matrix, np.array(reference.deletion_matrix))


@requires("kalign")
def test_kalign_realigns_two_sequences(chains):
    full = chains["1a8o_A"]
    shortened = full[:30] + full[35:]
    msa = parse_a3m(Kalign(timeout=60).align([full, shortened]), source="kalign output")
    rows = dict(zip(msa.descriptions, msa.sequences, strict=True))
    assert rows["sequence 1"] == full
    assert rows["sequence 2"].replace("-", "") == shortened and rows["sequence 2"].count("-") == 5
    with pytest.raises(ValueError, match="at least 6 residues"):
        Kalign().align([full, "MKV"])


def test_missing_binary_is_named(fasta_database):
    with pytest.raises(ToolError, match="Binary 'no-such-jackhmmer' not found.*install_tools.sh"):
        Jackhmmer(str(fasta_database), binary="no-such-jackhmmer")


@requires("jackhmmer", "hhsearch")
def test_missing_database_is_named(tmp_path):
    with pytest.raises(ToolError, match=f"jackhmmer database '{tmp_path}/uniref90.fasta' not found"):
        Jackhmmer(str(tmp_path / "uniref90.fasta"))
    with pytest.raises(ToolError, match=f"HH-suite database '{tmp_path}/pdb70' not found"):
        HHSearch((str(tmp_path / "pdb70"),))


def test_run_tool_failure_and_timeout(caplog):
    with pytest.raises(ToolError, match="ls failed with exit status 2"):
        run_tool(["ls", "/no/such/folder"])
    with pytest.raises(ToolError, match="sleep did not finish within 0.2 s"):
        run_tool(["sleep", "30"], timeout=0.2)
    with caplog.at_level(logging.INFO, logger="fastfold.data.tools"):
        run_tool(["echo", "progress line"])
    assert "echo: progress line" in caplog.messages
