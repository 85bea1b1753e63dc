"""Raw input features of one chain: sequence, MSA and template features in AlphaFold's layout.

These are the dictionaries that AlphaFold's data pipeline hands to its feature processing
(``fastfold.data.pipeline.process_features``): the query sequence as a one-hot ``aatype``, the MSAs
stacked and deduplicated in the HHblits alphabet (``msa``, ``deletion_matrix_int``), and template
features built from mmCIF chains. Per-residue scalars (``seq_length``, ``num_alignments``) are repeated
over the residues, as AlphaFold stores them.
"""

import re
from collections.abc import Mapping, Sequence

import numpy as np

from fastfold.common import residue_constants
from fastfold.data.mmcif import MmcifChain
from fastfold.data.msa import Msa

FeatureDict = dict[str, np.ndarray]

_NUM_ATOMS = residue_constants.atom_type_num  # 37
_NUM_HHBLITS_CLASSES = len(residue_constants.restypes_with_x_and_gap)  # 22

# Letter (as a byte) -> HHblits class; every upper-case letter and the gap have one.
_HHBLITS_LOOKUP = np.full(256, -1, dtype=np.int32)
for _letter, _index in residue_constants.HHBLITS_AA_TO_ID.items():
    _HHBLITS_LOOKUP[ord(_letter)] = _index

# UniProt entry names "tr|ACCESSION|NAME_SPECIES" (also "sp|..."), with optional isoform ("_1") and
# small-BFD ("_123") suffixes; the species mnemonic pairs MSA rows of different chains.
_UNIPROT_ENTRY = re.compile(
    r"^(?:tr|sp)\|[A-Za-z0-9]{6,10}(?:_\d)?\|[A-Za-z0-9]+_(?P<species>[A-Za-z0-9]{1,5})(?:_\d+)?$"
)


def make_sequence_features(sequence: str, description: str) -> FeatureDict:
    """Features of the query sequence.

    Parameters
    ----------
    sequence
        ``N_res`` one-letter codes; letters outside the 20 amino acids become ``X``.
    description
        Name of the chain (stored as ``domain_name``).

    Returns
    -------
    dict
        ``aatype`` int32 ``[N_res, 21]`` one-hot, ``between_segment_residues`` int32 ``[N_res]`` (zeros),
        ``domain_name`` object ``[1]``, ``residue_index`` int32 ``[N_res]``, ``seq_length`` int32
        ``[N_res]`` (``N_res`` repeated), ``sequence`` object ``[1]``.
    """
    num_res = len(sequence)
    return {
        "aatype": residue_constants.sequence_to_onehot(
            sequence, residue_constants.restype_order_with_x, map_unknown_to_x=True
        ),
        "between_segment_residues": np.zeros(num_res, dtype=np.int32),
        "domain_name": np.array([description.encode()], dtype=object),
        "residue_index": np.arange(num_res, dtype=np.int32),
        "seq_length": np.full(num_res, num_res, dtype=np.int32),
        "sequence": np.array([sequence.encode()], dtype=object),
    }


def species_identifier(description: str) -> str:
    """UniProt species code of an MSA row (``"tr|A0A1|A0A1_HUMAN/3-90"`` -> ``"HUMAN"``), else ``""``."""
    words = description.split()
    match = _UNIPROT_ENTRY.match(words[0].partition("/")[0]) if words else None
    return match.group("species") if match else ""


def make_msa_features(msas: Sequence[Msa]) -> FeatureDict:
    """Stack MSAs in the HHblits alphabet, keeping the first copy of every aligned sequence.

    Parameters
    ----------
    msas
        Alignments of the same query (its first row), e.g. UniRef90, MGnify, BFD hits in that order.

    Returns
    -------
    dict
        ``msa`` int32 ``[N_seq, N_res]`` HHblits classes (``residue_constants.HHBLITS_AA_TO_ID``),
        ``deletion_matrix_int`` int32 ``[N_seq, N_res]``, ``num_alignments`` int32 ``[N_res]``
        (``N_seq`` repeated), ``msa_species_identifiers`` object ``[N_seq]`` (bytes, ``b""`` if unknown).

    Raises
    ------
    ValueError
        If no MSA is given or the MSAs have different numbers of columns.
    """
    if not msas:
        raise ValueError("At least one MSA is needed to make MSA features")
    num_res = len(msas[0].sequences[0])
    rows, deletion_rows, species, seen = [], [], [], set()
    for msa_index, msa in enumerate(msas):
        if len(msa.sequences[0]) != num_res:
            raise ValueError(f"MSA {msa_index} has {len(msa.sequences[0])} columns, MSA 0 has {num_res}")
        for sequence, deletions, description in zip(
            msa.sequences, msa.deletion_matrix, msa.descriptions, strict=True
        ):
            if sequence in seen:
                continue
            seen.add(sequence)
            rows.append(sequence)
            deletion_rows.append(deletions)
            species.append(species_identifier(description).encode())
    letters = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8).reshape(len(rows), num_res)
    return {
        "msa": _HHBLITS_LOOKUP[letters],
        "deletion_matrix_int": np.stack(deletion_rows).astype(np.int32),
        "num_alignments": np.full(num_res, len(rows), dtype=np.int32),
        "msa_species_identifiers": np.array(species, dtype=object),
    }


def make_structure_features(chain: MmcifChain, resolution: float) -> FeatureDict:
    """Ground-truth atoms of a chain for training (the chain's SEQRES is the query sequence).

    Returns
    -------
    dict
        ``all_atom_positions`` float32 ``[N_res, 37, 3]``, ``all_atom_mask`` float32 ``[N_res, 37]``,
        ``resolution`` float32 ``[1]`` (Angstrom).
    """
    return {
        "all_atom_positions": chain.atom_positions.astype(np.float32),
        "all_atom_mask": chain.atom_mask.astype(np.float32),
        "resolution": np.array([resolution], dtype=np.float32),
    }


# Keys of a dataset example that are not features themselves but inputs of the feature builders.
_EXAMPLE_INPUTS = ("domain_name", "sequence", "msas", "release_date")


def make_raw_features(example: Mapping) -> FeatureDict:
    """Raw features of one training example, ready for :func:`fastfold.data.pipeline.process_features`.

    Parameters
    ----------
    example
        An item of :class:`fastfold.data.dataset.TrainingDataset`: ``domain_name``, ``sequence``,
        ``msas``, ground-truth atoms, ``resolution`` and template features.

    Returns
    -------
    dict
        Sequence and MSA features (:func:`make_sequence_features`, :func:`make_msa_features`) plus the
        example's structure and template arrays unchanged.
    """
    features = {
        **make_sequence_features(example["sequence"], example["domain_name"]),
        **make_msa_features(example["msas"]),
    }
    features.update({key: value for key, value in example.items() if key not in _EXAMPLE_INPUTS})
    return features
