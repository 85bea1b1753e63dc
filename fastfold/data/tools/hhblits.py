"""HHblits (HH-suite): iterative HMM-HMM search of a query against HH-suite databases (BFD, UniRef30)."""

import dataclasses
import os
import tempfile

from fastfold.data.tools.runner import require_file, require_hhsuite_databases, run_tool

_DEFAULT_MIN_PROBABILITY = 20
_DEFAULT_MAX_HITS = 500


@dataclasses.dataclass(frozen=True)
class HHBlits:
    """HHblits with AlphaFold's settings.

    Attributes
    ----------
    databases
        Database prefixes (the path up to ``_hhm.ffindex``, ``_a3m.ffdata``, ...).
    binary
        Name on ``PATH`` or path of ``hhblits``.
    n_cpu, n_iter, e_value
        Threads, search iterations and E-value cut-off (``-cpu``, ``-n``, ``-e``).
    maxseq, realign_max, maxfilt, min_prefilter_hits
        Limits on input rows, realigned hits, prefilter survivors, and the prefilter minimum.
    all_seqs
        Keep every sequence in the output MSA (``-all``).
    alt
        Alternative alignments to show (``-alt``), if set.
    min_probability, max_hits
        ``-p`` and ``-Z``, passed only when they differ from HHblits' defaults (20, 500).
    timeout
        Seconds before the search is killed; ``None`` waits forever.
    """

    databases: tuple[str, ...]
    binary: str = "hhblits"
    n_cpu: int = 4
    n_iter: int = 3
    e_value: float = 0.001
    maxseq: int = 1_000_000
    realign_max: int = 100_000
    maxfilt: int = 100_000
    min_prefilter_hits: int = 1000
    all_seqs: bool = False
    alt: int | None = None
    min_probability: int = _DEFAULT_MIN_PROBABILITY
    max_hits: int = _DEFAULT_MAX_HITS
    timeout: float | None = None

    def __post_init__(self):
        require_hhsuite_databases(self.binary, self.databases)

    def _flags(self) -> list[str]:
        flags = [
            "-cpu", str(self.n_cpu),
            "-n", str(self.n_iter),
            "-e", str(self.e_value),
            "-maxseq", str(self.maxseq),
            "-realign_max", str(self.realign_max),
            "-maxfilt", str(self.maxfilt),
            "-min_prefilter_hits", str(self.min_prefilter_hits),
        ]  # fmt: skip
        if self.all_seqs:
            flags.append("-all")
        if self.alt:
            flags += ["-alt", str(self.alt)]
        if self.min_probability != _DEFAULT_MIN_PROBABILITY:
            flags += ["-p", str(self.min_probability)]
        if self.max_hits != _DEFAULT_MAX_HITS:
            flags += ["-Z", str(self.max_hits)]
        for prefix in self.databases:
            flags += ["-d", prefix]
        return flags

    def query(self, fasta_path: str | os.PathLike) -> str:
        """Search with the sequence in ``fasta_path``; returns the MSA as A3M text."""
        require_file(fasta_path, "hhblits query")
        with tempfile.TemporaryDirectory() as directory:
            output = os.path.join(directory, "output.a3m")
            command = [self.binary, "-i", os.fspath(fasta_path), "-oa3m", output, "-o", "/dev/null"]
            run_tool([*command, *self._flags()], timeout=self.timeout)
            with open(output) as handle:
                return handle.read()
