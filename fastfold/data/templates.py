"""Template features from template search hits (HHsearch on PDB70), as AlphaFold's ``HhsearchHitFeaturizer``.

Hits are taken in order of decreasing ``sum_probs`` until ``max_hits`` have given features. A hit is
skipped, silently as in AlphaFold, when it fails the prefilter: released after the cut-off, from the
query's own PDB entry, aligned over <= 10% of the query, a duplicate of the query (its sequence is part
of the query and covers > 95% of it), or shorter than 10 residues. It is skipped with a *warning* when
the mmCIF file lacks the data (obsolete entry, file missing or unreadable, no release date, no atoms, a
CA-CA gap > 150 A) and with an *error* when it cannot be placed (realignment failed, < 90% identity).
"""

import collections
import dataclasses
import datetime
import logging
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from fastfold.common import residue_constants
from fastfold.data.errors import ParseError
from fastfold.data.hhr import TemplateHit
from fastfold.data.mmcif import MmcifChain, MmcifStructure, read_mmcif
from fastfold.data.template_realign import (
    SequenceNotInTemplateError,
    TemplateError,
    find_in_chains,
    query_to_hit_mapping,
    realign_to_seqres,
)
from fastfold.data.tools import Kalign

LOGGER = logging.getLogger("fastfold.data.templates")
TEMPLATE_FEATURES = {
    "template_aatype": np.float32,  # [N_templ, N_res, 22] one-hot, HHblits alphabet
    "template_all_atom_masks": np.float32,  # [N_templ, N_res, 37]
    "template_all_atom_positions": np.float32,  # [N_templ, N_res, 37, 3]
    "template_domain_names": object,  # [N_templ] b"1abc_A"
    "template_sequence": object,  # [N_templ] bytes, "-" where the query has no template residue
    "template_sum_probs": np.float32,  # [N_templ, 1]
}
MAX_CA_CA_DISTANCE = 150.0  # Angstrom; only really broken chains are rejected
MIN_ALIGN_RATIO = 0.1
MAX_SUBSEQUENCE_RATIO = 0.95
MIN_TEMPLATE_LENGTH = 10
MIN_MASKED_ATOMS = 5  # alanine's atom count: fewer means nothing was placed
_HIT_NAME = re.compile(r"[a-zA-Z\d]{4}_[a-zA-Z0-9.]+")


class PrefilterError(TemplateError):
    """The hit fails a check that needs no mmCIF file (date, query's own entry, coverage, length)."""


class TemplateDataWarning(TemplateError):
    """The mmCIF file lacks the data for this hit: reported as a warning, as in AlphaFold."""


@dataclasses.dataclass(frozen=True)
class TemplateSearchResult:
    """Template features and what happened to the skipped hits.

    Attributes
    ----------
    features
        The arrays of :data:`TEMPLATE_FEATURES`, ``N_templ`` (0 .. max_hits) templates.
    errors, warnings
        One message per skipped hit (prefilter failures are only logged).
    """

    features: Mapping[str, np.ndarray]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


class MmcifCache:
    """The most recently read mmCIF files, parsed (least recently used dropped first).

    Parameters
    ----------
    max_size
        Number of structures kept.
    """

    def __init__(self, max_size: int = 16):
        self.max_size = max_size
        self._structures: collections.OrderedDict[str, MmcifStructure] = collections.OrderedDict()

    def read(self, path: str | os.PathLike) -> MmcifStructure:
        """Parse ``path`` (see :func:`fastfold.data.read_mmcif`), or return it from the cache."""
        key = os.path.abspath(path)
        if key in self._structures:
            self._structures.move_to_end(key)
        else:
            self._structures[key] = read_mmcif(path)
            if len(self._structures) > self.max_size:
                self._structures.popitem(last=False)
        return self._structures[key]


def read_release_dates(path: str | os.PathLike) -> dict[str, datetime.date]:
    """Read a ``pdb_id: YYYY-MM-DD`` file (one entry a line) into PDB id (lower case) -> date."""
    dates = {}
    with open(path) as handle:
        for line in handle:
            if line.strip():
                pdb_id, date = line.split(":")
                dates[pdb_id.strip().lower()] = datetime.date.fromisoformat(date.strip()[:10])
    return dates


def read_obsolete_pdbs(path: str | os.PathLike) -> dict[str, str | None]:
    """Read the PDB's ``obsolete.dat``: obsolete id -> replacing id, ``None`` where it was removed."""
    obsolete = {}
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if fields and fields[0] == "OBSLTE" and len(fields) >= 3:
                obsolete[fields[2].lower()] = fields[3].lower() if len(fields) > 3 else None
    return obsolete


def empty_template_features(num_res: int) -> dict[str, np.ndarray]:
    """Features of zero templates for a query of ``num_res`` residues (leading dimension 0)."""
    shapes = {
        "template_aatype": (0, num_res, len(residue_constants.ID_TO_HHBLITS_AA)),
        "template_all_atom_masks": (0, num_res, residue_constants.atom_type_num),
        "template_all_atom_positions": (0, num_res, residue_constants.atom_type_num, 3),
        "template_domain_names": (0,),
        "template_sequence": (0,),
        "template_sum_probs": (0, 1),
    }
    return {name: np.zeros(shape, dtype=TEMPLATE_FEATURES[name]) for name, shape in shapes.items()}


def stack_template_features(templates: list[dict], num_res: int) -> dict[str, np.ndarray]:
    """Stack per-template features (from :func:`template_features_from_chain` plus ``template_sum_probs``
    [1]) along a new leading template dimension; :func:`empty_template_features` when there are none."""
    if not templates:
        return empty_template_features(num_res)
    return {
        name: np.stack([template[name] for template in templates]).astype(dtype)
        for name, dtype in TEMPLATE_FEATURES.items()
    }


def _pdb_id_and_chain(hit: TemplateHit) -> tuple[str, str]:
    """``("1abc", "A")`` from a hit named ``"1ABC_A ..."``; fails on names that are not PDB chains."""
    match = _HIT_NAME.match(hit.name)
    if match is None:
        raise ValueError(f"Hit name {hit.name!r} does not start with PDBID_chain")
    pdb_id, chain_id = match.group(0).split("_")
    return pdb_id.lower(), chain_id


def _check_ca_distances(chain: MmcifChain, file_id: str) -> None:
    """Raise if two consecutive resolved residues have CA atoms more than 150 A apart."""
    ca = residue_constants.atom_order["CA"]
    present = chain.atom_mask[:, ca] > 0  # [N_chain]
    gaps = np.linalg.norm(np.diff(chain.atom_positions[:, ca], axis=0), axis=-1)  # [N_chain - 1]
    broken = np.flatnonzero(present[1:] & present[:-1] & (gaps > MAX_CA_CA_DISTANCE))
    if broken.size:
        i = int(broken[0])
        raise TemplateDataWarning(
            f"Could not get atom data ({file_id}): CA-CA distance {gaps[i]:.1f} A between residues "
            f"{i + 1} and {i + 2} > {MAX_CA_CA_DISTANCE} A"
        )


def template_features_from_chain(
    chain: MmcifChain, mapping: Mapping[int, int], query_length: int, domain_name: str
) -> dict:
    """Place the chain's residues on the query.

    Parameters
    ----------
    chain
        The template chain.
    mapping
        Query index -> SEQRES index of ``chain``.
    query_length
        ``N_res``.
    domain_name
        ``"1abc_A"``.

    Returns
    -------
    dict
        One template's features: positions ``[N_res, 37, 3]``, masks ``[N_res, 37]``, aatype one-hot
        ``[N_res, 22]``, sequence and domain name as bytes.
    """
    query_indices = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
    chain_indices = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    positions = np.zeros((query_length, residue_constants.atom_type_num, 3), dtype=np.float32)
    masks = np.zeros((query_length, residue_constants.atom_type_num), dtype=np.float32)
    positions[query_indices] = chain.atom_positions[chain_indices]
    masks[query_indices] = chain.atom_mask[chain_indices]
    if masks.sum() < MIN_MASKED_ATOMS:
        raise TemplateDataWarning(
            f"Template all atom mask was all zeros: {domain_name}. Residue range: "
            f"{chain_indices.min(initial=0)}-{chain_indices.max(initial=0)}"
        )
    letters = np.full(query_length, "-")
    letters[query_indices] = np.array(list(chain.seqres), dtype=str)[chain_indices]
    sequence = "".join(letters)
    aatype = residue_constants.sequence_to_onehot(sequence, residue_constants.HHBLITS_AA_TO_ID)
    return {
        "template_all_atom_positions": positions,
        "template_all_atom_masks": masks,
        "template_sequence": sequence.encode(),
        "template_aatype": aatype.astype(np.float32),
        "template_domain_names": domain_name.encode(),
    }


@dataclasses.dataclass(frozen=True)
class TemplateFeaturizer:
    """Turns HHsearch hits into template features (AlphaFold's ``HhsearchHitFeaturizer``).

    Attributes
    ----------
    mmcif_dir
        Folder of ``{pdb_id}.cif`` files (lower-case ids; upper case is accepted too).
    max_template_date
        Latest release date allowed for a template, ``"YYYY-MM-DD"``.
    max_hits
        Most templates returned (AlphaFold: 20; the model later uses at most 4).
    kalign
        Aligner used to realign hits to the mmCIF SEQRES.
    release_dates
        PDB id -> release date, to drop late hits before reading their mmCIF (``read_release_dates``).
    obsolete_pdbs
        Obsolete PDB id -> replacement (``None``: removed), from ``read_obsolete_pdbs``.
    mmcif_cache
        Parsed mmCIF files, shared with other readers if wanted.
    """

    mmcif_dir: str
    max_template_date: str
    max_hits: int = 20
    kalign: Kalign = dataclasses.field(default_factory=Kalign)
    release_dates: Mapping[str, datetime.date] = dataclasses.field(default_factory=dict)
    obsolete_pdbs: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    mmcif_cache: MmcifCache = dataclasses.field(default_factory=MmcifCache)

    def __post_init__(self):
        if not os.path.isdir(self.mmcif_dir):
            raise FileNotFoundError(f"Template mmCIF folder {self.mmcif_dir!r} not found")
        try:
            datetime.date.fromisoformat(self.max_template_date)
        except (TypeError, ValueError):
            raise ValueError(
                f"max_template_date must be YYYY-MM-DD, got {self.max_template_date!r}"
            ) from None

    @property
    def _cutoff(self) -> datetime.date:
        return datetime.date.fromisoformat(self.max_template_date)

    def get_templates(
        self, query_sequence: str, hits: Sequence[TemplateHit], query_pdb_id: str | None = None
    ) -> TemplateSearchResult:
        """Template features of the best ``max_hits`` usable hits.

        Parameters
        ----------
        query_sequence
            ``N_res`` residue letters.
        hits
            Hits of a template search of this query (e.g. ``read_hhr("pdb70_hits.hhr")``).
        query_pdb_id
            The query's own PDB entry when training on it: its hits are dropped.

        Returns
        -------
        TemplateSearchResult
            Features with ``N_templ`` templates, and the errors and warnings of skipped hits.
        """
        chosen, errors, warnings = [], [], []
        for hit in sorted(hits, key=lambda hit: hit.sum_probs or 0.0, reverse=True):
            if len(chosen) >= self.max_hits:
                break
            try:
                features, warning = self._hit_features(query_sequence, hit, query_pdb_id)
            except PrefilterError as error:
                LOGGER.info("Hit %s did not pass the prefilter: %s", hit.name, error)
            except TemplateDataWarning as error:
                warnings.append(f"{_label(hit)}: {error}")
            except TemplateError as error:
                errors.append(f"{_label(hit)}: {error}")
            else:
                chosen.append(features)
                warnings.extend([warning] if warning else [])
        features = stack_template_features(chosen, len(query_sequence))
        return TemplateSearchResult(features, tuple(errors), tuple(warnings))

    def _prefilter(
        self, query_sequence: str, hit: TemplateHit, pdb_id: str, query_pdb_id: str | None
    ) -> None:
        """Raise PrefilterError for hits that can be rejected without their mmCIF file."""
        template_sequence = hit.hit_sequence.replace("-", "")
        if pdb_id in self.release_dates and self.release_dates[pdb_id] > self._cutoff:
            raise PrefilterError(f"Date ({self.release_dates[pdb_id]}) > max template date ({self._cutoff})")
        if query_pdb_id is not None and pdb_id == query_pdb_id.lower():
            raise PrefilterError("PDB code identical to the query's PDB code")
        if hit.aligned_cols / len(query_sequence) <= MIN_ALIGN_RATIO:
            raise PrefilterError(f"Align ratio {hit.aligned_cols / len(query_sequence):.3f} too small")
        length_ratio = len(template_sequence) / len(query_sequence)
        if template_sequence in query_sequence and length_ratio > MAX_SUBSEQUENCE_RATIO:
            raise PrefilterError(f"Exact subsequence of the query, length ratio {length_ratio:.3f}")
        if len(template_sequence) < MIN_TEMPLATE_LENGTH:
            raise PrefilterError(f"Template too short: {len(template_sequence)} residues")

    def _structure(self, pdb_id: str) -> MmcifStructure:
        """The parsed mmCIF file of ``pdb_id``, checked against the date cut-off."""
        paths = [os.path.join(self.mmcif_dir, f"{name}.cif") for name in (pdb_id, pdb_id.upper())]
        path = next((path for path in paths if os.path.isfile(path)), None)
        if path is None:
            raise TemplateDataWarning(f"mmCIF file {paths[0]} not found")
        try:
            structure = self.mmcif_cache.read(path)
        except ParseError as error:
            raise TemplateDataWarning(f"No chains in PDB: {error}") from error
        if structure.release_date is None:
            raise TemplateDataWarning(f"{path} has no release date: the date cut-off cannot be checked")
        if datetime.date.fromisoformat(structure.release_date) > self._cutoff:
            raise PrefilterError(
                f"Template date ({structure.release_date}) > max template date ({self._cutoff})"
            )
        return structure

    def _hit_features(
        self, query_sequence: str, hit: TemplateHit, query_pdb_id: str | None
    ) -> tuple[dict, str | None]:
        """One template's features (see :func:`template_features_from_chain`) plus its sum_probs.

        The second value is a warning when the hit had to be realigned to the mmCIF SEQRES.
        """
        pdb_id, chain_id = _pdb_id_and_chain(hit)
        if pdb_id in self.obsolete_pdbs and self.obsolete_pdbs[pdb_id] is None:
            raise TemplateDataWarning(f"Hit {pdb_id} is obsolete")
        if pdb_id not in self.release_dates:
            pdb_id = self.obsolete_pdbs.get(pdb_id) or pdb_id
        self._prefilter(query_sequence, hit, pdb_id, query_pdb_id)
        mapping = query_to_hit_mapping(hit, query_sequence)
        template_sequence = hit.hit_sequence.replace("-", "")
        structure = self._structure(pdb_id)
        seqres = {name: chain.seqres for name, chain in structure.chains.items()}
        try:
            chain_id, offset = find_in_chains(chain_id, template_sequence, seqres)
            mapping = {query: hit_index + offset for query, hit_index in mapping.items()}
            warning = None
        except SequenceNotInTemplateError:
            warning = (
                f"The exact sequence {template_sequence} was not found in {pdb_id}_{chain_id}. "
                "Realigning the template to the actual sequence."
            )
            LOGGER.warning(warning)
            _, mapping = realign_to_seqres(template_sequence, chain_id, seqres, mapping, self.kalign, pdb_id)
            chain_id = chain_id if chain_id in seqres else next(iter(seqres))
        chain = structure.chains[chain_id]
        _check_ca_distances(chain, f"{pdb_id}_{chain_id}")
        features = template_features_from_chain(chain, mapping, len(query_sequence), f"{pdb_id}_{chain_id}")
        features["template_sum_probs"] = np.array([hit.sum_probs or 0.0], dtype=np.float32)
        return features, warning


def _label(hit: TemplateHit) -> str:
    """How a skipped hit is named in messages: name, sum_probs and rank, as in AlphaFold."""
    return f"{hit.name.split()[0]} (sum_probs: {hit.sum_probs}, rank: {hit.index})"
