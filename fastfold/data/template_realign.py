"""Where a template hit's residues sit: query -> hit index mapping, the hit in its mmCIF chain, realignment.

The facts follow AlphaFold's ``data/templates.py``: the hit's sequence is looked up in the mmCIF SEQRES
(same chain id first, then any chain, then with ``X`` as a wildcard); when the search database held
another version of the chain, the hit is realigned to the SEQRES with Kalign and kept only if the two
versions are at least 90% identical over the shorter one.
"""

import re
from collections.abc import Mapping

from fastfold.data.hhr import TemplateHit
from fastfold.data.msa import parse_a3m
from fastfold.data.tools import Kalign

MIN_REALIGN_IDENTITY = 0.9


class TemplateError(Exception):
    """A hit cannot give template features; the hit is skipped and the message reported."""


class SequenceNotInTemplateError(TemplateError):
    """The hit's sequence is not part of any chain of the mmCIF file."""


class QueryToTemplateAlignError(TemplateError):
    """The hit could not be realigned to the chain in the mmCIF file (tool error or < 90% identity)."""


def query_to_hit_mapping(hit: TemplateHit, query_sequence: str) -> dict[int, int]:
    """Map query residues to residues of the hit's (ungapped) sequence.

    The HHR alignment covers a stretch of the query; it is placed in ``query_sequence`` by finding that
    stretch, and the hit indices are counted from the first aligned hit residue.

    Parameters
    ----------
    hit
        A parsed HHR hit.
    query_sequence
        The full query, ``N_res`` letters.

    Returns
    -------
    dict[int, int]
        Query index (0 .. N_res - 1) -> index into ``hit.hit_sequence`` without gaps.

    Raises
    ------
    QueryToTemplateAlignError
        When the hit's query stretch is not part of ``query_sequence`` (an HHR of another query).
    """
    hit_query = hit.query.replace("-", "")
    if not hit_query:
        return {}
    offset = query_sequence.find(hit_query)
    if offset < 0:
        raise QueryToTemplateAlignError(f"The query of hit {hit.name!r} ({hit_query}) is not in the query")
    hit_length = len(hit.hit_sequence.replace("-", ""))
    first_query = min(index for index in hit.indices_query if index >= 0)
    first_hit = min(index for index in hit.indices_hit if index >= 0)
    mapping = {}
    for query_index, hit_index in zip(hit.indices_query, hit.indices_hit, strict=True):
        if query_index < 0 or hit_index < 0:
            continue
        query_index, hit_index = query_index - first_query + offset, hit_index - first_hit
        if hit_index < hit_length and query_index < len(query_sequence):
            mapping[query_index] = hit_index
    return mapping


def _fuzzy_pattern(sequence: str) -> re.Pattern:
    """Regex matching ``sequence`` where an ``X`` on either side matches any residue."""
    return re.compile("".join("." if letter == "X" else f"[{letter}X]" for letter in sequence))


def find_in_chains(chain_id: str, template_sequence: str, seqres: Mapping[str, str]) -> tuple[str, int]:
    """Find the hit's sequence in the mmCIF chains.

    Tried in order: a substring of the chain named by the hit; a substring of any chain; a match of any
    chain where ``X`` (on either side) is a wildcard.

    Parameters
    ----------
    chain_id
        The chain named in the hit (``"A"`` of ``"1abc_A"``).
    template_sequence
        The hit's residues without gaps.
    seqres
        Author chain id -> SEQRES letters of the mmCIF file.

    Returns
    -------
    tuple[str, int]
        The chain id where it was found and the SEQRES index of the hit's first residue.

    Raises
    ------
    SequenceNotInTemplateError
        When no chain matches.
    """
    if template_sequence in seqres.get(chain_id, ""):
        return chain_id, seqres[chain_id].find(template_sequence)
    for other_id, sequence in seqres.items():
        if template_sequence in sequence:
            return other_id, sequence.find(template_sequence)
    pattern = _fuzzy_pattern(template_sequence)
    for other_id, sequence in seqres.items():
        match = pattern.search(sequence)
        if match:
            return other_id, match.start()
    raise SequenceNotInTemplateError(f"The template sequence {template_sequence} is in no chain")


def _aligned_pair(kalign: Kalign, first: str, second: str) -> tuple[str, str]:
    """Kalign's alignment of two sequences, rows in input order."""
    msa = parse_a3m(kalign.align([first, second]), source="kalign output")
    rows = dict(zip(msa.descriptions, msa.sequences, strict=True))
    return rows["sequence 1"], rows["sequence 2"]


def realign_to_seqres(
    template_sequence: str,
    chain_id: str,
    seqres: Mapping[str, str],
    mapping: Mapping[int, int],
    kalign: Kalign,
    file_id: str,
) -> tuple[str, dict[int, int]]:
    """Realign a hit whose sequence differs from the mmCIF SEQRES, and carry the query mapping over.

    Parameters
    ----------
    template_sequence
        The hit's residues without gaps (the search database's version of the chain).
    chain_id
        The chain named in the hit; if the file lacks it but has a single chain, that chain is used.
    seqres
        Author chain id -> SEQRES letters of the mmCIF file.
    mapping
        Query index -> index into ``template_sequence``.
    kalign
        The aligner.
    file_id
        PDB id for messages.

    Returns
    -------
    tuple[str, dict[int, int]]
        The chain's SEQRES and the mapping query index -> SEQRES index. Query residues whose hit residue
        the realignment leaves unaligned are dropped (AlphaFold maps them to index ``-1``, i.e. to the
        chain's last residue).

    Raises
    ------
    QueryToTemplateAlignError
        When the chain is not in the file, Kalign fails, or the identity is below 90%.
    """
    new_sequence = seqres.get(chain_id) or (next(iter(seqres.values())) if len(seqres) == 1 else "")
    if not new_sequence:
        raise QueryToTemplateAlignError(
            f"Could not find chain {chain_id} in {file_id}; it may not be a protein chain"
        )
    try:
        old_aligned, new_aligned = _aligned_pair(kalign, template_sequence, new_sequence)
    except Exception as error:  # any tool or parse failure makes this hit unusable
        raise QueryToTemplateAlignError(
            f"Could not align template {template_sequence} to {file_id}_{chain_id} {new_sequence}: {error}"
        ) from error
    old_to_new, old_index, new_index, same = {}, -1, -1, 0
    for old_letter, new_letter in zip(old_aligned, new_aligned, strict=True):
        old_index += old_letter != "-"
        new_index += new_letter != "-"
        if old_letter != "-" and new_letter != "-":
            old_to_new[old_index] = new_index
            same += old_letter == new_letter
    if same / min(len(template_sequence), len(new_sequence)) < MIN_REALIGN_IDENTITY:
        raise QueryToTemplateAlignError(
            f"Insufficient similarity of the database sequence {template_sequence} to the sequence of "
            f"{file_id}_{chain_id} in the mmCIF file {new_sequence}: at least 90% identity over the "
            "shorter sequence is required"
        )
    return new_sequence, {query: old_to_new[old] for query, old in mapping.items() if old in old_to_new}
