"""FASTA, A3M, Stockholm and HHR parsers against AlphaFold's own parsers on real files, and bad input."""

import dataclasses
import pathlib
import re

import numpy as np
import pytest
from alphafold.data import parsers as alphafold_parsers

from fastfold.data import (
    Msa,
    ParseError,
    TemplateHit,
    parse_a3m,
    parse_fasta,
    parse_hhr,
    parse_stockholm,
    read_fasta,
    read_hhr,
    read_mmcif,
    read_stockholm,
)

DATA = pathlib.Path(__file__).parent / "data"
STOCKHOLM_FILES = ["example.sth", "globins45.ali", "pfam1.seed.txt", "pfam2.seed.txt"]
HHR_FILES = ["2uvo_hhblits.hhr", "2uvo_hhsearch.hhr", "4p79_hhsearch_server_NOssm.hhr"]


def _hmmer_style(stockholm: str) -> str:
    """The same alignment with HMMER's conventions, which AlphaFold's parser expects: '-' gaps, upper case.

    Pfam seeds mark gaps with '.', which AlphaFold's parser would keep as a residue column.
    """
    lines = []
    for line in stockholm.splitlines():
        if line.strip() and not line.startswith(("#", "//")):
            name, aligned = line.split()
            line = f"{name} {aligned.replace('.', '-').upper()}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _assert_msa_equal(msa: Msa, reference) -> None:
    assert msa.sequences == tuple(reference.sequences)
    assert msa.descriptions == tuple(reference.descriptions)
    np.testing.assert_array_equal(msa.deletion_matrix, np.array(reference.deletion_matrix, dtype=np.int32))


# ------------------------------------------------------------------------------------------------- FASTA
def _chain_fasta() -> str:
    """A multi-record FASTA of the real SEQRES of 4ZHL and 7CFN, with line-wrapped sequences."""
    records = []
    for name in ("4ZHL", "7CFN"):
        for chain_id, chain in read_mmcif(DATA / f"{name}.cif").chains.items():
            wrapped = "\n".join(chain.seqres[i : i + 60] for i in range(0, len(chain.seqres), 60))
            records.append(f">{name}_{chain_id} mol:protein length:{len(chain.seqres)}\n{wrapped}\n")
    return "\n".join(records)


def test_fasta_matches_alphafold():
    text = _chain_fasta()
    fasta = parse_fasta(text)
    sequences, descriptions = alphafold_parsers.parse_fasta(text)
    assert fasta.sequences == tuple(sequences)
    assert fasta.descriptions == tuple(descriptions)
    assert len(fasta) == 7
    assert fasta.descriptions[0] == "4ZHL_U mol:protein length:247"


def test_fasta_upper_cases_residues():
    assert parse_fasta(">query\nmkv\nLLA\n").sequences == ("MKVLLA",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no '>' header"),
        ("MKV\n>a\nMKV\n", "line 1: sequence line before the first '>' header"),
        (">a\nMKV\n>b\n\n>c\nMK\n", "record 'b', line 3: empty sequence"),
        (">a\nMKV\n>b\nMK-V\n", "record 'b', line 4: characters '-' are not residues"),
        (">a\nMKV*\n", "record 'a', line 2: characters '*' are not residues"),
        (">a\nMK V1\n", "record 'a', line 2: characters ' 1' are not residues"),
    ],
)
def test_fasta_bad_input(text, message):
    with pytest.raises(
        ParseError, match=re.escape(f"bad.fasta, {message}" if "record" in message else message)
    ):
        parse_fasta(text, source="bad.fasta")


def test_fasta_error_names_the_file(tmp_path):
    path = tmp_path / "query.fasta"
    path.write_text(">query\nMKV\n>empty\n")
    with pytest.raises(
        ParseError, match=re.escape(f"{path}, record 'empty', line 3: empty sequence")
    ) as error:
        read_fasta(path)
    assert isinstance(error.value, ValueError)
    assert (error.value.source, error.value.record, error.value.line) == (str(path), "empty", 3)


# --------------------------------------------------------------------------------------------- Stockholm
@pytest.mark.parametrize("name", STOCKHOLM_FILES)
def test_stockholm_matches_alphafold(name):
    text = (DATA / name).read_text()
    msa = read_stockholm(DATA / name)
    _assert_msa_equal(msa, alphafold_parsers.parse_stockholm(_hmmer_style(text)))


def test_stockholm_globins_known_values():
    msa = read_stockholm(DATA / "globins45.ali")
    assert msa.deletion_matrix.shape == (45, 153)
    assert msa.descriptions[:2] == ("MYG_ESCGI", "MYG_HORSE")
    assert msa.sequences[0].startswith("VLSDAEWQLVLNIWAKVEAD") and msa.sequences[0].endswith("KYKELGFQG")
    # MYG_HORSE's 'g' sits in column 1, where the query has a gap: one deletion before the first residue.
    assert msa.deletion_matrix[1, :3].tolist() == [1, 0, 0]
    assert int(msa.deletion_matrix.sum()) == 67


def test_stockholm_rows_of_different_length():
    text = "# STOCKHOLM 1.0\nquery MKV-L\nhit1  MKVAL\nhit2  MK-A\n//\n"
    with pytest.raises(
        ParseError, match=re.escape("x.sto, record 'hit2', line 4: 4 ASCII columns expected 5")
    ):
        parse_stockholm(text, source="x.sto")


@pytest.mark.parametrize(
    "text, message",
    [("# STOCKHOLM 1.0\n//\n", "no aligned sequences"), ("query MKV extra\n", "line 1: expected 'name")],
)
def test_stockholm_bad_input(text, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_stockholm(text, source="x.sto")


# --------------------------------------------------------------------------------------------------- A3M
@pytest.mark.parametrize("name", STOCKHOLM_FILES)
def test_a3m_matches_alphafold(name):
    """A3M text with real insertions: AlphaFold's converter applied to the real Stockholm files."""
    stockholm = _hmmer_style((DATA / name).read_text())
    a3m = alphafold_parsers.convert_stockholm_to_a3m(stockholm)
    msa = parse_a3m(a3m)
    _assert_msa_equal(msa, alphafold_parsers.parse_a3m(a3m))
    # The same alignment read either way gives the same rows and deletions.
    from_stockholm = parse_stockholm(stockholm)
    assert msa.sequences == from_stockholm.sequences
    np.testing.assert_array_equal(msa.deletion_matrix, from_stockholm.deletion_matrix)


def test_a3m_insertions_and_dots():
    msa = parse_a3m("#A3M comment\n>query\nMKVL\n>hit\nmkMK.-aaL\n")
    assert msa.sequences == ("MKVL", "MK-L")
    assert msa.deletion_matrix.tolist() == [[0, 0, 0, 0], [2, 0, 0, 2]]
    assert msa.descriptions == ("query", "hit")
    assert len(msa.truncate(1)) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        (">query\nMKVL\n>hit\nMKaV\n", "x.a3m, record 'hit', line 3: 3 aligned columns, the query has 4"),
        (">query\nMKVL\n>hit\nMK*L\n", "x.a3m, record 'hit', line 4: characters '*' are not residues"),
        (">query\nmkvl\n", "x.a3m, record 'query': the query has no aligned residues"),
        ("MKVL\n", "x.a3m, line 1: sequence line before the first '>' header"),
    ],
)
def test_a3m_bad_input(text, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_a3m(text, source="x.a3m")


def test_msa_validates():
    with pytest.raises(ValueError, match="upper-case letters"):
        Msa(("MKV", "MK"), np.zeros((2, 3), dtype=np.int32), ("a", "b"))
    with pytest.raises(ValueError, match="Deletion matrix"):
        Msa(("MKV",), np.zeros((1, 2), dtype=np.int32), ("a",))


# --------------------------------------------------------------------------------------------------- HHR
def _alphafold_readable(hhr: str) -> str:
    """HH-suite 3.0's summary line: AlphaFold's parser requires ``Template_Neff``, which older files lack."""
    return re.sub(r"(Sum_probs=\S+)\s*$", r"\1  Template_Neff=0", hhr, flags=re.MULTILINE)


@pytest.mark.parametrize("name", HHR_FILES)
def test_hhr_matches_alphafold(name):
    hits = read_hhr(DATA / name)
    reference = alphafold_parsers.parse_hhr(_alphafold_readable((DATA / name).read_text()))
    assert len(hits) == len(reference) > 0
    for hit, expected in zip(hits, reference, strict=True):
        expected = dataclasses.replace(
            expected, indices_query=tuple(expected.indices_query), indices_hit=tuple(expected.indices_hit)
        )
        assert hit == TemplateHit(**dataclasses.asdict(expected))


def test_hhr_known_values():
    hits = read_hhr(DATA / "4p79_hhsearch_server_NOssm.hhr")
    first = hits[0]
    assert (first.index, first.aligned_cols, first.sum_probs) == (1, 198, 0.0)
    assert first.name.startswith("4P79_A cell adhesion protein")
    assert first.query.startswith("GSEFMSVAVETFGFF") and len(first.query) == len(first.hit_sequence)
    assert first.indices_query[:3] == (0, 1, 2) and first.indices_hit[-1] == 197


def test_hhr_empty_table_names_the_file():
    path = DATA / "2uvo_hhblits_emptytable.hhr"
    with pytest.raises(ParseError, match=re.escape(f"{path}, line 9: the hit table is empty")):
        read_hhr(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda text: "just text\n", "no ' No Hit ...' table"),
        (lambda text: text.replace("Aligned_cols=198", "Cols=198", 1), "record '4P79_A cell adhesion"),
        (lambda text: text.replace("  80 (198)", "  81 (198)", 1), "do not fit"),
    ],
)
def test_hhr_bad_input(edit, message):
    text = edit((DATA / "4p79_hhsearch_server_NOssm.hhr").read_text())
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_hhr(text, source="x.hhr")
