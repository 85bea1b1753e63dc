"""Training chains from mmCIF files and precomputed alignments (the layout of OpenFold and OpenProteinSet).

The alignment folder has one sub-folder per chain, ``{pdb_id}_{chain_id}``, holding
``uniref90_hits.a3m``, ``bfd_uniclust_hits.a3m`` (or ``bfd_uniref_hits.a3m``), ``mgnify_hits.a3m`` (the
jackhmmer ones may be ``.sto``) and ``pdb70_hits.hhr``. Chains are filtered and weighted as AlphaFold
trains (supplement 1.2.5): resolution <= 9 A, no residue type over 80% of the sequence, and sampling
probability ``max(min(N_res, 512), 256) / 512`` divided by the size of the chain's sequence cluster.
"""

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from fastfold.data.hhr import read_hhr
from fastfold.data.msa import Msa, read_a3m, read_stockholm
from fastfold.data.templates import MmcifCache, TemplateFeaturizer, empty_template_features

LOGGER = logging.getLogger("fastfold.data.dataset")
# Database -> accepted file names, first found wins; AlphaFold's order of the MSAs.
MSA_FILES = {
    "uniref90": ("uniref90_hits.a3m", "uniref90_hits.sto"),
    "bfd": ("bfd_uniclust_hits.a3m", "bfd_uniref_hits.a3m"),
    "mgnify": ("mgnify_hits.a3m", "mgnify_hits.sto"),
}
TEMPLATE_HITS_FILE = "pdb70_hits.hhr"


@dataclasses.dataclass(frozen=True)
class ChainFilters:
    """AlphaFold's training-set filters.

    Attributes
    ----------
    max_resolution
        Angstrom; structures without a resolution (NMR: 0.0) pass.
    max_single_residue_fraction
        Chains where one residue type is more than this fraction of the sequence are dropped.
    min_length, max_length
        Sequence length bounds (``max_length=None``: no upper bound).
    max_release_date
        Latest release date ``"YYYY-MM-DD"`` (AlphaFold: 2018-04-30), or ``None``.
    """

    max_resolution: float = 9.0
    max_single_residue_fraction: float = 0.8
    min_length: int = 1
    max_length: int | None = None
    max_release_date: str | None = None

    def rejects(self, chain: "ChainInfo") -> str | None:
        """Why ``chain`` is dropped, or ``None`` when it is kept."""
        length = len(chain.sequence)
        if chain.resolution > self.max_resolution:
            return f"resolution {chain.resolution} A > {self.max_resolution} A"
        if length < self.min_length or (self.max_length is not None and length > self.max_length):
            return f"length {length} outside [{self.min_length}, {self.max_length}]"
        top_fraction = Counter(chain.sequence).most_common(1)[0][1] / length
        if top_fraction > self.max_single_residue_fraction:
            return f"one residue type is {top_fraction:.0%} of the sequence"
        if self.max_release_date and chain.release_date and chain.release_date > self.max_release_date:
            return f"released {chain.release_date} after {self.max_release_date}"
        return None


@dataclasses.dataclass(frozen=True)
class ChainInfo:
    """What the filters and weights need to know of a chain (OpenFold's ``chain_data_cache`` entry).

    Attributes
    ----------
    name
        ``"{pdb_id}_{chain_id}"``, the alignment sub-folder's name.
    sequence
        SEQRES letters.
    resolution
        Angstrom, 0.0 when not given.
    release_date
        ``"YYYY-MM-DD"`` or ``None``.
    cluster_size
        Chains in its sequence cluster (1 when unknown).
    """

    name: str
    sequence: str
    resolution: float
    release_date: str | None
    cluster_size: int = 1

    @property
    def sampling_probability(self) -> float:
        """AlphaFold's acceptance probability: length term over cluster size."""
        return max(min(len(self.sequence), 512), 256) / 512 / self.cluster_size


def read_cluster_sizes(path: str | os.PathLike) -> dict[str, int]:
    """Chain name -> size of its cluster, from a file with one cluster a line (``1abc_A 2xyz_B ...``)."""
    sizes = {}
    with open(path) as handle:
        for line in handle:
            members = line.split()
            sizes.update({_normalise(name): len(members) for name in members})
    return sizes


def _normalise(name: str) -> str:
    """``"1ABC_A"`` -> ``"1abc_A"``: PDB ids are case-insensitive, chain ids are not."""
    pdb_id, _, chain_id = name.partition("_")
    return f"{pdb_id.lower()}_{chain_id}"


def _read_msa(path: str) -> Msa:
    return read_stockholm(path) if path.endswith(".sto") else read_a3m(path)


class TrainingDataset:
    """Raw training examples (NumPy) of the chains that pass AlphaFold's filters.

    Parameters
    ----------
    mmcif_dir
        Folder of ``{pdb_id}.cif`` files (lower or upper case ids).
    alignment_dir
        Folder with one sub-folder of alignments per chain.
    chain_names
        Chains to use (``"1abc_A"``); default: every sub-folder of ``alignment_dir``.
    template_featurizer
        Builds template features from ``pdb70_hits.hhr``; ``None``: no templates.
    filters
        The training-set filters (default: AlphaFold's).
    cluster_file
        Clusters for the sampling weights (see :func:`read_cluster_sizes`).
    chain_data_cache
        OpenFold's ``chain_data_cache.json`` (name -> ``seq``, ``resolution``, ``release_date``,
        optionally ``cluster_size``): used instead of reading every mmCIF file to filter.
    cache_size
        Parsed mmCIF files kept in memory (shared with ``template_featurizer``'s cache if given).

    Raises
    ------
    FileNotFoundError
        When a folder, or the alignment sub-folder of a requested chain, does not exist.
    """

    def __init__(
        self,
        mmcif_dir: str | os.PathLike,
        alignment_dir: str | os.PathLike,
        chain_names: Sequence[str] | None = None,
        template_featurizer: TemplateFeaturizer | None = None,
        filters: ChainFilters | None = None,
        cluster_file: str | os.PathLike | None = None,
        chain_data_cache: str | os.PathLike | None = None,
        cache_size: int = 16,
    ):
        self.mmcif_dir, self.alignment_dir = os.fspath(mmcif_dir), os.fspath(alignment_dir)
        for folder, what in ((self.mmcif_dir, "mmCIF folder"), (self.alignment_dir, "alignment folder")):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{what} {folder!r} not found")
        self.template_featurizer = template_featurizer
        self.mmcif_cache = template_featurizer.mmcif_cache if template_featurizer else MmcifCache(cache_size)
        names = sorted(os.listdir(self.alignment_dir)) if chain_names is None else list(chain_names)
        missing = [name for name in names if not os.path.isdir(os.path.join(self.alignment_dir, name))]
        if missing:
            raise FileNotFoundError(
                f"No alignment folder for {len(missing)} chain(s) in {self.alignment_dir!r}, e.g. "
                f"{os.path.join(self.alignment_dir, missing[0])!r}"
            )
        cluster_sizes = read_cluster_sizes(cluster_file) if cluster_file else {}
        cached = self._read_chain_data_cache(chain_data_cache)
        self.chains: list[ChainInfo] = []
        for name in names:
            info = cached.get(name) or self._chain_info(name)
            info = dataclasses.replace(
                info, cluster_size=cluster_sizes.get(_normalise(name), info.cluster_size)
            )
            reason = (filters or ChainFilters()).rejects(info)
            if reason is None:
                self.chains.append(info)
            else:
                LOGGER.info("Chain %s dropped: %s", name, reason)

    @staticmethod
    def _read_chain_data_cache(path: str | os.PathLike | None) -> dict[str, ChainInfo]:
        if path is None:
            return {}
        with open(path) as handle:
            entries = json.load(handle)
        return {
            name: ChainInfo(
                name,
                entry["seq"],
                float(entry.get("resolution") or 0.0),
                entry.get("release_date"),
                int(entry.get("cluster_size") or 1),
            )
            for name, entry in entries.items()
        }

    def _mmcif_path(self, pdb_id: str) -> str:
        paths = [os.path.join(self.mmcif_dir, f"{name}.cif") for name in (pdb_id.lower(), pdb_id.upper())]
        for path in paths:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"mmCIF file {paths[0]!r} not found")

    def _chain(self, name: str):
        """The structure and chain named ``{pdb_id}_{chain_id}``."""
        pdb_id, _, chain_id = name.partition("_")
        structure = self.mmcif_cache.read(self._mmcif_path(pdb_id))
        if chain_id not in structure.chains:
            raise KeyError(
                f"{structure.file_id} has no protein chain {chain_id!r} (has {list(structure.chains)})"
            )
        return structure, structure.chains[chain_id]

    def _chain_info(self, name: str) -> ChainInfo:
        structure, chain = self._chain(name)
        return ChainInfo(name, chain.seqres, structure.resolution, structure.release_date)

    def __len__(self) -> int:
        return len(self.chains)

    def sampling_weights(self) -> np.ndarray:
        """float64 ``[N_chains]`` probabilities of drawing each chain (AlphaFold's weights, normalised)."""
        weights = np.array([chain.sampling_probability for chain in self.chains], dtype=np.float64)
        return weights / weights.sum()

    def _msas(self, folder: str, sequence: str) -> tuple[Msa, ...]:
        msas = []
        for database, file_names in MSA_FILES.items():
            paths = [os.path.join(folder, file_name) for file_name in file_names]
            path = next((path for path in paths if os.path.isfile(path)), None)
            if path is None:
                raise FileNotFoundError(
                    f"No {database} alignment in {folder!r} (expected one of {file_names})"
                )
            msa = _read_msa(path)
            if len(msa.sequences[0]) != len(sequence):
                raise ValueError(
                    f"{path}: query of {len(msa.sequences[0])} residues, chain SEQRES of {len(sequence)}"
                )
            msas.append(msa)
        return tuple(msas)

    def _templates(self, folder: str, name: str, sequence: str) -> Mapping[str, np.ndarray]:
        hhr_path = os.path.join(folder, TEMPLATE_HITS_FILE)
        if self.template_featurizer is None or not os.path.isfile(hhr_path):
            return empty_template_features(len(sequence))
        result = self.template_featurizer.get_templates(
            sequence, read_hhr(hhr_path), query_pdb_id=name.partition("_")[0]
        )
        for message in result.errors + result.warnings:
            LOGGER.info("%s template skipped: %s", name, message)
        return result.features

    def __getitem__(self, index: int) -> dict:
        """Raw features of one chain.

        Returns
        -------
        dict
            ``domain_name`` (str), ``sequence`` (SEQRES, ``N_res`` letters), ``msas`` (uniref90, bfd,
            mgnify :class:`~fastfold.data.Msa`), ``all_atom_positions`` float32 ``[N_res, 37, 3]``,
            ``all_atom_mask`` float32 ``[N_res, 37]``, ``resolution`` float32 ``[1]``,
            ``release_date`` object ``[1]`` (bytes, empty if unknown), and the template features of
            :data:`fastfold.data.templates.TEMPLATE_FEATURES` (``N_templ`` >= 0).

        Raises
        ------
        FileNotFoundError
            When the chain's alignment folder, one of its MSAs, or its mmCIF file is missing.
        """
        info = self.chains[index]
        folder = os.path.join(self.alignment_dir, info.name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Alignment folder {folder!r} of chain {info.name} not found")
        structure, chain = self._chain(info.name)
        return {
            "domain_name": info.name,
            "sequence": chain.seqres,
            "msas": self._msas(folder, chain.seqres),
            "all_atom_positions": chain.atom_positions,
            "all_atom_mask": chain.atom_mask,
            "resolution": np.array([structure.resolution], dtype=np.float32),
            "release_date": np.array([(structure.release_date or "").encode()], dtype=object),
            **self._templates(folder, info.name, chain.seqres),
        }
