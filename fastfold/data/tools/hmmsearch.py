"""hmmsearch (HMMER): search a profile HMM, built by hmmbuild from a Stockholm MSA, in a FASTA database.

AlphaFold-Multimer finds templates this way (query MSA -> profile -> PDB SEQRES database).
"""

import dataclasses
import os
import tempfile

from fastfold.data.tools.runner import find_binary, require_file, run_tool

# AlphaFold's permissive thresholds: keep nearly every hit, the template featuriser filters later.
DEFAULT_FLAGS = (
    "--F1", "0.1", "--F2", "0.1", "--F3", "0.1",
    "--incE", "100", "-E", "100", "--domE", "100", "--incdomE", "100",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Hmmsearch:
    """hmmsearch (with hmmbuild for the profile) with AlphaFold's settings.

    Attributes
    ----------
    database_path
        FASTA file to search (e.g. ``pdb_seqres.txt``).
    binary, hmmbuild_binary
        Names on ``PATH`` or paths of ``hmmsearch`` and ``hmmbuild``.
    n_cpu
        Threads (``--cpu``).
    flags
        Thresholds passed to hmmsearch.
    timeout
        Seconds before each tool run is killed; ``None`` waits forever.
    """

    database_path: str
    binary: str = "hmmsearch"
    hmmbuild_binary: str = "hmmbuild"
    n_cpu: int = 8
    flags: tuple[str, ...] = DEFAULT_FLAGS
    timeout: float | None = None

    def __post_init__(self):
        find_binary(self.binary)
        find_binary(self.hmmbuild_binary)
        require_file(self.database_path, "hmmsearch database")

    def build_profile(self, stockholm: str) -> str:
        """Profile HMM text of a Stockholm MSA whose ``#=GC RF`` line marks the match columns (``--hand``)."""
        with tempfile.TemporaryDirectory() as directory:
            msa_path, output = os.path.join(directory, "query.sto"), os.path.join(directory, "query.hmm")
            with open(msa_path, "w") as handle:
                handle.write(stockholm)
            run_tool([self.hmmbuild_binary, "--hand", "--amino", output, msa_path], timeout=self.timeout)
            with open(output) as handle:
                return handle.read()

    def query(self, stockholm: str) -> str:
        """Search with the profile of a Stockholm MSA; returns the hits as Stockholm text."""
        return self.query_with_hmm(self.build_profile(stockholm))

    def query_with_hmm(self, hmm: str) -> str:
        """Search with a profile HMM given as text; returns the hits as Stockholm text."""
        with tempfile.TemporaryDirectory() as directory:
            hmm_path, output = os.path.join(directory, "query.hmm"), os.path.join(directory, "output.sto")
            with open(hmm_path, "w") as handle:
                handle.write(hmm)
            command = [self.binary, "--noali", "--cpu", str(self.n_cpu), *self.flags, "-A", output]
            run_tool([*command, hmm_path, self.database_path], timeout=self.timeout)
            with open(output) as handle:
                return handle.read()
