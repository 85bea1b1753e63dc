"""TrainingDataset on an alignment folder made from the bundled mmCIF chains (real sequences and hhsearch)."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from fastfold.config import model_config
from fastfold.data import read_mmcif
from fastfold.data.dataset import ChainFilters, TrainingDataset
from fastfold.data.features import make_raw_features
from fastfold.data.pipeline import process_features
from fastfold.data.templates import TemplateFeaturizer
from fastfold.data.tools import HHSearch
from fastfold.data.tools.hhsuite_database import build_hhsuite_database

DATA = pathlib.Path(__file__).parent / "data"
TOOLS = ("hhsearch", "hhmake", "ffindex_build", "kalign")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="HH-suite/kalign missing: scripts/install_tools.sh",
)
CHAINS = ("1a8o_A", "4cup_A", "2ofg_X", "4zhl_P")


def _a3m(sequence: str) -> str:
    """The query, a copy with every 7th residue changed and 'kk' inserted after residue 3, a gapped copy."""
    changed = "".join("A" if i % 7 == 0 else letter for i, letter in enumerate(sequence))
    gapped = "-" * 5 + sequence[5:]
    return f">query\n{sequence}\n>changed\n{changed[:3]}kk{changed[3:]}\n>gapped\n{gapped}\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[str, str]:
    """``mmcif/{pdb_id}.cif`` and ``alignments/{pdb_id}_{chain}/`` for the chains in CHAINS."""
    root = tmp_path_factory.mktemp("training")
    mmcif, alignments = root / "mmcif", root / "alignments"
    mmcif.mkdir()
    chains = {}
    for path in DATA.glob("*.cif"):
        shutil.copy(path, mmcif / path.name.lower())
        for chain_id, chain in read_mmcif(path).chains.items():
            chains[f"{path.stem.lower()}_{chain_id}"] = chain.seqres
    search = HHSearch((build_hhsuite_database(chains, root / "pdb70"),), timeout=120)
    for name in CHAINS:
        folder = alignments / name
        folder.mkdir(parents=True)
        sequence = chains[name]
        (folder / "uniref90_hits.a3m").write_text(_a3m(sequence))
        (folder / "bfd_uniref_hits.a3m").write_text(_a3m(sequence))
        (folder / "mgnify_hits.sto").write_text(
            f"# STOCKHOLM 1.0\nquery {sequence}\nhit {sequence[:-3]}---\n//\n"
        )
        (folder / "pdb70_hits.hhr").write_text(search.query(f">{name}\n{sequence}\n"))
    return str(mmcif), str(alignments)


def test_example_features(folders):
    mmcif, alignments = folders
    featurizer = TemplateFeaturizer(mmcif, "2020-01-01")
    dataset = TrainingDataset(mmcif, alignments, template_featurizer=featurizer)
    # 4zhl_P (10 residues) passes: no length bound by default; all four resolutions are <= 9 A.
    assert [chain.name for chain in dataset.chains] == sorted(CHAINS)
    example = dataset[[chain.name for chain in dataset.chains].index("4cup_A")]
    chain = read_mmcif(DATA / "4CUP.cif").chains["A"]
    assert example["domain_name"] == "4cup_A" and example["sequence"] == chain.seqres
    np.testing.assert_array_equal(example["all_atom_positions"], chain.atom_positions)
    np.testing.assert_array_equal(example["all_atom_mask"], chain.atom_mask)
    assert (
        example["resolution"].tolist() == [pytest.approx(1.88)]
        and example["release_date"][0] == b"2014-04-02"
    )
    uniref90, bfd, mgnify = example["msas"]
    assert uniref90.sequences[0] == bfd.sequences[0] == mgnify.sequences[0] == chain.seqres
    assert uniref90.deletion_matrix[1, 3] == 2 and mgnify.sequences[1].endswith("---")
    # The chain's own entry is no template for it; the other bundled chains found by hhsearch are.
    names = list(example["template_domain_names"])
    assert names == [b"2ofg_X", b"1a8o_A", b"4zhl_U", b"1gbt_A"]
    num_templates = len(names)
    assert example["template_aatype"].shape == (num_templates, len(chain.seqres), 22)
    assert example["template_all_atom_positions"].shape == (num_templates, len(chain.seqres), 37, 3)
    # One parse per file: the dataset and the template featurizer share the cache.
    assert dataset.mmcif_cache is featurizer.mmcif_cache
    assert dataset.mmcif_cache.read(pathlib.Path(mmcif) / "4cup.cif") is dataset.mmcif_cache.read(
        pathlib.Path(mmcif) / "4cup.cif"
    )


def test_example_to_training_batch(folders):
    """A dataset example goes through the training pipeline: cropped, with ground truth of the crop."""
    mmcif, alignments = folders
    dataset = TrainingDataset(mmcif, alignments, chain_names=["4cup_A"],
                              template_featurizer=TemplateFeaturizer(mmcif, "2020-01-01"))
    example = dataset[0]
    config = model_config("model_1")
    crop_size = 48
    batch = process_features(make_raw_features(example), config, mode="train", random=3, crop_size=crop_size)
    assert batch["aatype"].shape[1:] == (crop_size,)
    assert batch["template_all_atom_positions"].shape[2:] == (crop_size, 37, 3)
    assert batch["msa_feat"].shape[-2:] == (crop_size, 49)
    # The crop is one contiguous window of the chain, and its ground truth is that window's atoms.
    start = int(batch["residue_index"][0, 0])
    window = slice(start, start + crop_size)
    np.testing.assert_array_equal(batch["residue_index"][0], np.arange(start, start + crop_size))
    np.testing.assert_allclose(batch["all_atom_positions"][0], example["all_atom_positions"][window])
    np.testing.assert_array_equal(batch["all_atom_mask"][0], example["all_atom_mask"][window])


def test_without_templates(folders):
    mmcif, alignments = folders
    example = TrainingDataset(mmcif, alignments, chain_names=["1a8o_A"])[0]
    assert example["template_all_atom_positions"].shape == (0, 70, 37, 3)
    assert example["template_domain_names"].shape == (0,)


def test_filters_and_weights(folders, tmp_path):
    mmcif, alignments = folders
    cache = tmp_path / "chain_data_cache.json"
    cache.write_text(
        json.dumps(
            {
                "1a8o_A": {"seq": "Q" * 60 + "A" * 10, "resolution": 1.7, "release_date": "1998-10-14"},
                "4cup_A": {"seq": "M" * 300, "resolution": 9.5, "release_date": "2014-04-02"},
            }
        )
    )
    clusters = tmp_path / "clusters.txt"
    clusters.write_text("2OFG_X 4ZHL_P 9xyz_A\n1a8o_A\n")
    dataset = TrainingDataset(mmcif, alignments, cluster_file=clusters, chain_data_cache=cache)
    # 1a8o_A: 86% glutamine in the cache entry; 4cup_A: 9.5 A.
    assert [chain.name for chain in dataset.chains] == ["2ofg_X", "4zhl_P"]
    assert [chain.cluster_size for chain in dataset.chains] == [3, 3]
    np.testing.assert_allclose(dataset.sampling_weights(), [0.5, 0.5])
    lengths = {chain.name: chain for chain in TrainingDataset(mmcif, alignments).chains}
    assert lengths["2ofg_X"].sampling_probability == 256 / 512  # 111 residues: the floor of 256
    late = TrainingDataset(
        mmcif, alignments, filters=ChainFilters(min_length=20, max_release_date="2010-01-01")
    )
    assert [chain.name for chain in late.chains] == ["1a8o_A", "2ofg_X"]


def test_clear_errors(folders, tmp_path):
    mmcif, alignments = folders
    with pytest.raises(FileNotFoundError, match=f"{alignments}/1gbt_A"):
        TrainingDataset(mmcif, alignments, chain_names=["1a8o_A", "1gbt_A"])
    with pytest.raises(FileNotFoundError, match="alignment folder .*no-such"):
        TrainingDataset(mmcif, tmp_path / "no-such")
    broken = tmp_path / "alignments"
    shutil.copytree(pathlib.Path(alignments) / "1a8o_A", broken / "1a8o_A")
    (broken / "1a8o_A" / "bfd_uniref_hits.a3m").unlink()
    with pytest.raises(FileNotFoundError, match="No bfd alignment in .*1a8o_A.*bfd_uniclust_hits.a3m"):
        TrainingDataset(mmcif, broken)[0]
    (broken / "1a8o_A" / "bfd_uniclust_hits.a3m").write_text(">query\nMKV\n")
    with pytest.raises(ValueError, match="query of 3 residues, chain SEQRES of 70"):
        TrainingDataset(mmcif, broken)[0]
