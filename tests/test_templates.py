"""Template features from real HHsearch hits against the bundled mmCIF files, checked against AlphaFold's.

The bundled HHR files name PDB entries that are not bundled, so the hits come from the real hhsearch run
against a small HH-suite database of the bundled chains. In that database ``1gbt_A`` is a slightly
different version (as when PDB70 is older than the mmCIF mirror: realigned with Kalign) and ``2ofg_X`` a
20% different one (realignment refused).
"""

import datetime
import logging
import pathlib
import shutil
import types

import numpy as np
import pytest
from alphafold.data import mmcif_parsing
from alphafold.data import parsers as alphafold_parsers
from alphafold.data import templates as alphafold_templates
from Bio.Data import PDBData

from fastfold.data import TemplateHit, parse_hhr, read_mmcif
from fastfold.data.templates import (
    MmcifCache,
    TemplateFeaturizer,
    read_obsolete_pdbs,
    read_release_dates,
)
from fastfold.data.tools import HHSearch
from fastfold.data.tools.hhsuite_database import build_hhsuite_database

DATA = pathlib.Path(__file__).parent / "data"
TOOLS = ("hhsearch", "hhmake", "ffindex_build", "kalign")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="HH-suite/kalign missing: scripts/install_tools.sh",
)


def _mutate(sequence: str, every: int, start: int = 3) -> str:
    """Change every ``every``-th residue (A -> G, others -> A)."""
    return "".join(
        ("G" if letter == "A" else "A") if i % every == start else letter for i, letter in enumerate(sequence)
    )


@pytest.fixture(scope="module")
def chains() -> dict[str, str]:
    return {
        f"{path.stem.lower()}_{chain_id}": chain.seqres
        for path in sorted(DATA.glob("*.cif"))
        for chain_id, chain in read_mmcif(path).chains.items()
    }


@pytest.fixture(scope="module")
def mmcif_dir(tmp_path_factory) -> str:
    """The bundled mmCIF files named as in a PDB mirror: ``{pdb_id}.cif``, lower case."""
    folder = tmp_path_factory.mktemp("mmcif")
    for path in DATA.glob("*.cif"):
        shutil.copy(path, folder / path.name.lower())
    return str(folder)


@pytest.fixture(scope="module")
def queries(chains) -> dict[str, str]:
    return {
        "q1a8o": _mutate(chains["1a8o_A"][5:], 9),
        "q1gbt": _mutate(chains["1gbt_A"][10:200], 8),
        "q4cup": _mutate(chains["4cup_A"], 6),
        "q2ofg": _mutate(chains["2ofg_X"], 10),
    }


@pytest.fixture(scope="module")
def hhr(chains, queries, tmp_path_factory) -> dict[str, str]:
    """HHsearch output of every query against the bundled chains (two of them altered)."""
    database = dict(chains)
    database["1gbt_A"] = "".join("W" if i % 40 == 5 else a for i, a in enumerate(chains["1gbt_A"]))
    database["2ofg_X"] = _mutate(chains["2ofg_X"], 5, start=0)
    prefix = build_hhsuite_database(database, tmp_path_factory.mktemp("pdb70") / "pdb70")
    search = HHSearch((prefix,), timeout=120)
    return {name: search.query(f">{name}\n{sequence}\n") for name, sequence in queries.items()}


@pytest.fixture
def alphafold_featurizer(monkeypatch, mmcif_dir):
    """AlphaFold's featurizer, with three shims that give it DeepMind's behaviour on these files.

    * SEQRES letters: the PDB's table of modified residues (MSE -> M) is ``protein_letters_3to1_extended``
      since Biopython 1.80 (as in tests/test_mmcif.py).
    * Release date: the bundled files are older PDB releases with only ``_database_PDB_rev``; AlphaFold
      reads ``_pdbx_audit_revision_history``, which every current PDB file has.
    * Prefilter: ColabFold's fork removed DeepMind's coverage (<= 10%), duplicate (> 95% and part of the
      query) and length (< 10) checks; they are added back.
    """
    table = types.SimpleNamespace(protein_letters_3to1=PDBData.protein_letters_3to1_extended)
    monkeypatch.setattr(mmcif_parsing, "PDBData", table)
    header = mmcif_parsing._get_header

    def header_with_old_release_date(parsed_info):
        result = header(parsed_info)
        if "release_date" not in result and "_database_PDB_rev.date" in parsed_info:
            result["release_date"] = min(parsed_info["_database_PDB_rev.date"])
        return result

    monkeypatch.setattr(mmcif_parsing, "_get_header", header_with_old_release_date)
    assess = alphafold_templates._assess_hhsearch_hit

    def deepmind_prefilter(hit, query_sequence, **kwargs):
        assess(hit=hit, query_sequence=query_sequence, **kwargs)
        template = hit.hit_sequence.replace("-", "")
        if hit.aligned_cols / len(query_sequence) <= 0.1:
            raise alphafold_templates.AlignRatioError("align ratio")
        if template in query_sequence and len(template) / len(query_sequence) > 0.95:
            raise alphafold_templates.DuplicateError("duplicate")
        if len(template) < 10:
            raise alphafold_templates.LengthError("too short")
        return True

    monkeypatch.setattr(alphafold_templates, "_assess_hhsearch_hit", deepmind_prefilter)
    return alphafold_templates.HhsearchHitFeaturizer(mmcif_dir, "2020-01-01", 20, "kalign", None, None)


@pytest.mark.parametrize("query", ["q1a8o", "q1gbt", "q4cup", "q2ofg"])
def test_matches_alphafold(query, queries, hhr, mmcif_dir, alphafold_featurizer):
    sequence = queries[query]
    ours = TemplateFeaturizer(mmcif_dir, "2020-01-01").get_templates(sequence, parse_hhr(hhr[query]))
    reference = alphafold_featurizer.get_templates(sequence, alphafold_parsers.parse_hhr(hhr[query]))
    assert len(ours.features["template_domain_names"]) > 0
    for name, value in reference.features.items():
        assert ours.features[name].dtype == value.dtype, name
        if value.dtype == object:
            assert list(ours.features[name]) == list(value), name
        else:
            np.testing.assert_array_equal(ours.features[name], value, err_msg=name)
    assert len(ours.errors) == len(reference.errors) and len(ours.warnings) == len(reference.warnings)
    # AlphaFold cannot read the bare coordinate file 7CFN; we read it but it has no release date.
    assert all("7cfn" in warning or "Realigning" in warning for warning in ours.warnings)


def test_realignment(chains, queries, hhr, mmcif_dir):
    result = TemplateFeaturizer(mmcif_dir, "2020-01-01").get_templates(
        queries["q1gbt"], parse_hhr(hhr["q1gbt"])
    )
    assert result.features["template_domain_names"][0] == b"1gbt_A"
    assert any("was not found in 1gbt_A. Realigning" in warning for warning in result.warnings)
    # The realigned template carries the mmCIF residues, not the database's W substitutions.
    assert result.features["template_sequence"][0] == chains["1gbt_A"][10:200].encode()
    refused = TemplateFeaturizer(mmcif_dir, "2020-01-01").get_templates(
        queries["q2ofg"], parse_hhr(hhr["q2ofg"])
    )
    assert b"2ofg_X" not in list(refused.features["template_domain_names"])
    assert any(error.startswith("2ofg_X") and "Insufficient similarity" in error for error in refused.errors)


def test_date_cutoff_and_max_hits(queries, hhr, mmcif_dir):
    hits = parse_hhr(hhr["q4cup"])
    early = TemplateFeaturizer(mmcif_dir, "1999-01-01").get_templates(queries["q4cup"], hits)
    assert list(early.features["template_domain_names"]) == [b"1gbt_A"]  # 1994; 4CUP, 2OFG, 4ZHL later
    top = TemplateFeaturizer(mmcif_dir, "2020-01-01", max_hits=1).get_templates(queries["q4cup"], hits)
    assert list(top.features["template_domain_names"]) == [b"4cup_A"]
    assert top.features["template_sum_probs"].shape == (1, 1)


def _hit(
    name: str, query: str, hit_sequence: str, first_query: int = 0, sum_probs: float = 50.0
) -> TemplateHit:
    indices_query = tuple(range(first_query, first_query + len(query)))
    return TemplateHit(1, name, len(query), sum_probs, query, hit_sequence, indices_query, indices_query)


def test_prefilter_and_missing_data(chains, mmcif_dir, tmp_path, caplog):
    query = chains["1a8o_A"]
    hits = [
        _hit("1a8o_A exact copy of the query", query, query),  # duplicate
        _hit("1a8o_A short", query[:6], query[:6]),  # <= 10% aligned and < 10 residues
        _hit("4cup_A late", query[:40], query[:40]),  # release_dates says 2014
        _hit("1gbt_A obsolete", query[:40], query[:40]),  # removed from the PDB
        _hit("9xyz_A not in the mirror", query[:40], query[:40]),
    ]
    release_dates = tmp_path / "release_dates.txt"
    release_dates.write_text("4cup: 2014-04-02\n1gbt: 1994-01-31\n")
    obsolete = tmp_path / "obsolete.dat"
    obsolete.write_text(" LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\nOBSLTE    31-JUL-94 1GBT\n")
    featurizer = TemplateFeaturizer(
        mmcif_dir,
        "2010-01-01",
        release_dates=read_release_dates(release_dates),
        obsolete_pdbs=read_obsolete_pdbs(obsolete),
    )
    with caplog.at_level(logging.INFO, logger="fastfold.data.templates"):
        result = featurizer.get_templates(query, hits)
    assert result.features["template_aatype"].shape == (0, 70, 22)
    assert result.features["template_all_atom_positions"].shape == (0, 70, 37, 3)
    assert result.errors == ()
    assert [warning.split()[0] for warning in result.warnings] == ["1gbt_A", "9xyz_A"]
    assert "Hit 1gbt is obsolete" in result.warnings[0] and "9xyz.cif not found" in result.warnings[1]
    messages = "\n".join(caplog.messages)
    for reason in ("Exact subsequence", "Align ratio", "Date (2014-04-02)"):
        assert reason in messages
    with caplog.at_level(logging.INFO, logger="fastfold.data.templates"):
        own_entry = featurizer.get_templates(
            query[:50], [_hit("1a8o_A", query[:40], query[:40])], query_pdb_id="1A8O"
        )
    assert own_entry.features["template_domain_names"].shape == (0,)
    assert "identical to the query's PDB code" in caplog.text


def test_partial_hit_places_atoms(chains, mmcif_dir):
    """A hit covering query residues 10..49 puts the mmCIF atoms of SEQRES 20..59 there."""
    template = read_mmcif(DATA / "1A8O.cif").chains["A"]
    query = "G" * 10 + _mutate(chains["1a8o_A"][20:60], 7) + "G" * 10
    hit = _hit("1a8o_A", query[10:50], template.seqres[20:60], first_query=10)
    features = TemplateFeaturizer(mmcif_dir, "2020-01-01").get_templates(query, [hit]).features
    np.testing.assert_array_equal(
        features["template_all_atom_positions"][0, 10:50], template.atom_positions[20:60]
    )
    assert not features["template_all_atom_masks"][0, :10].any()
    assert features["template_sequence"][0] == ("-" * 10 + template.seqres[20:60] + "-" * 10).encode()
    assert features["template_aatype"][0, 0, 21] == 1.0  # gap


def test_settings_and_cache(tmp_path, mmcif_dir):
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        TemplateFeaturizer(mmcif_dir, "01/01/2020")
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        TemplateFeaturizer(str(tmp_path / "no-such-folder"), "2020-01-01")
    cache = MmcifCache(max_size=1)
    first = cache.read(DATA / "1A8O.cif")
    assert cache.read(DATA / "1A8O.cif") is first
    cache.read(DATA / "4CUP.cif")
    assert cache.read(DATA / "1A8O.cif") is not first
    dates = tmp_path / "dates.txt"
    dates.write_text("1ABC: 2001-02-03\n\n")
    assert read_release_dates(dates) == {"1abc": datetime.date(2001, 2, 3)}
