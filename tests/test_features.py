"""Raw features, and eval-mode feature processing against AlphaFold's own pipeline, array by array.

AlphaFold's pipeline (alphafold-colabfold 2.3.20, a subprocess: see ``af_pipeline_reference.py``)
records its random draws; our pipeline replays them, so every output array must be identical.
"""

from pathlib import Path

import numpy as np
import pytest
from af_pipeline_reference import replay_eval_draws, run_af_pipeline
from alphafold.common import residue_constants as af_constants

from fastfold.config import model_config
from fastfold.data import Msa, read_mmcif, read_stockholm
from fastfold.data.features import make_msa_features, make_sequence_features, species_identifier
from fastfold.data.pipeline import process_features
from fastfold.data.templates import (
    empty_template_features,
    stack_template_features,
    template_features_from_chain,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def globins() -> Msa:
    return read_stockholm(DATA / "globins45.ali")


def _template(path, name: str, mapping: dict, num_res: int, sum_probs: float) -> dict:
    features = template_features_from_chain(read_mmcif(path).chains["A"], mapping, num_res, name)
    return {**features, "template_sum_probs": np.array([sum_probs], dtype=np.float32)}


def _templates(num_res: int) -> dict:
    """Two real templates: 1A8O chain A (70 residues) at query 10-79 with a gap, 1GBT chain A shifted."""
    first = {query: query - 10 for query in range(10, 80) if query != 40}
    second = {query: query + 20 for query in range(num_res)}
    return stack_template_features(
        [
            _template(DATA / "1A8O.cif", "1a8o_A", first, num_res, 35.5),
            _template(DATA / "1GBT.cif", "1gbt_A", second, num_res, 12.0),
        ],
        num_res,
    )


def test_sequence_features():
    features = make_sequence_features("MKVBX", "query")
    assert features["aatype"].dtype == np.int32 and features["aatype"].shape == (5, 21)
    np.testing.assert_array_equal(features["aatype"].argmax(-1), [12, 11, 19, 20, 20])  # B is not one of ours
    np.testing.assert_array_equal(features["seq_length"], [5] * 5)
    np.testing.assert_array_equal(features["residue_index"], np.arange(5))
    assert features["sequence"][0] == b"MKVBX" and features["domain_name"][0] == b"query"


def test_msa_features_deduplicate_and_use_hhblits_classes(globins):
    letters = "".join(chr(ord("A") + i) for i in range(26)) + "-"
    odd = Msa(
        (letters, letters[::-1], letters), np.arange(81).reshape(3, 27).astype(np.int32), ("q", "a", "b")
    )
    features = make_msa_features([odd])
    expected = [af_constants.HHBLITS_AA_TO_ID[letter] for letter in letters]
    np.testing.assert_array_equal(features["msa"], [expected, expected[::-1]])  # row 2 is a duplicate
    np.testing.assert_array_equal(features["deletion_matrix_int"], odd.deletion_matrix[:2])
    assert features["msa"].dtype == np.int32 and features["deletion_matrix_int"].dtype == np.int32

    twice = make_msa_features([globins, globins.truncate(10)])
    unique = len(set(globins.sequences))
    assert twice["msa"].shape == (unique, 153) and twice["num_alignments"][0] == unique


def test_species_identifiers():
    assert species_identifier("tr|A0A146SKV9|A0A146SKV9_FUNHE/10-99 description") == "FUNHE"
    assert species_identifier("sp|P69905|HBA_HUMAN") == "HUMAN"
    assert species_identifier("MYG_HORSE") == "" and species_identifier("") == ""
    msa = Msa(("AC", "AD"), np.zeros((2, 2), np.int32), ("query", "sp|P69905|HBA_HUMAN/1-2"))
    np.testing.assert_array_equal(make_msa_features([msa])["msa_species_identifiers"], [b"", b"HUMAN"])


def test_template_features_place_the_chain_at_aligned_residues():
    features = _templates(153)
    chain = read_mmcif(DATA / "1A8O.cif").chains["A"]
    assert features["template_aatype"].shape == (2, 153, 22)
    np.testing.assert_array_equal(features["template_all_atom_positions"][0, 10], chain.atom_positions[0])
    assert not features["template_all_atom_masks"][0, 40].any()
    sequence = features["template_sequence"][0].decode()
    assert sequence[10:40] == chain.seqres[:30] and sequence[40] == "-"
    assert features["template_aatype"][0, 40].argmax() == af_constants.HHBLITS_AA_TO_ID["-"]
    empty = empty_template_features(153)
    assert {key: value.shape for key, value in empty.items()} == {
        key: (0, *value.shape[1:]) for key, value in features.items()
    }


def _compare_with_alphafold(raw: dict, model_name: str, overrides: dict):
    """Run both pipelines with AlphaFold's draws and check every output array."""
    expected, calls = run_af_pipeline(raw, model_name, overrides)
    config = model_config(model_name)
    for dotted, value in overrides.items():
        section, subsection, key = dotted.split(".")
        config[section][subsection][key] = value
    data = config.data
    num_members = data.eval.num_ensemble * (data.common.num_recycle + 1)
    ours = process_features(raw, config, "eval", replay_eval_draws(calls, num_members))
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    return ours


_SMALL = {"data.eval.max_msa_clusters": 20, "data.common.max_extra_msa": 16, "data.common.num_recycle": 1}


def test_eval_pipeline_matches_alphafold_without_templates(globins):
    raw = {**make_sequence_features(globins.sequences[0], "globin"), **make_msa_features([globins])}
    ours = _compare_with_alphafold({**raw, **empty_template_features(153)}, "model_1", _SMALL)
    assert ours["msa_feat"].shape == (2, 16, 153, 49) and not ours["template_mask"].any()


def test_eval_pipeline_matches_alphafold_with_templates(globins):
    raw = {**make_sequence_features(globins.sequences[0], "globin"), **make_msa_features([globins])}
    ours = _compare_with_alphafold({**raw, **_templates(153)}, "model_1", _SMALL)
    np.testing.assert_array_equal(ours["template_mask"][0], [1, 1, 0, 0])


def test_eval_pipeline_matches_alphafold_default_sizes(globins):
    """model_3 (no templates, 4 recycling copies): all 45 rows are clusters, nothing is left for extra."""
    raw = {**make_sequence_features(globins.sequences[0], "globin"), **make_msa_features([globins])}
    ours = _compare_with_alphafold(raw, "model_3", {})
    assert ours["msa_feat"].shape == (4, 512, 153, 49) and ours["extra_msa"].shape == (4, 5120, 153)
