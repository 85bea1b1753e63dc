"""jackhmmer (HMMER): iterative profile search of a query sequence against a FASTA database."""

import dataclasses
import os
import tempfile

from fastfold.data.tools.runner import find_binary, require_file, run_tool


@dataclasses.dataclass(frozen=True)
class Jackhmmer:
    """jackhmmer with AlphaFold's settings (UniRef90 and MGnify searches).

    Attributes
    ----------
    database_path
        FASTA file to search.
    binary
        Name on ``PATH`` or path of ``jackhmmer``.
    n_cpu, n_iter
        Threads and search iterations.
    e_value
        Inclusion and reporting E-value (``--incE``, ``-E``).
    z_value
        Database size for E-values (``-Z``); ``None`` uses the real size.
    filter_f1, filter_f2, filter_f3
        Fractions passing the MSV, Viterbi and Forward filters (``--F1/--F2/--F3``).
    dom_e, incdom_e
        Per-domain reporting and inclusion E-values (``--domE``, ``--incdomE``), if set.
    timeout
        Seconds before the search is killed; ``None`` waits forever.
    """

    database_path: str
    binary: str = "jackhmmer"
    n_cpu: int = 8
    n_iter: int = 1
    e_value: float = 0.0001
    z_value: int | None = None
    filter_f1: float = 0.0005
    filter_f2: float = 0.00005
    filter_f3: float = 0.0000005
    dom_e: float | None = None
    incdom_e: float | None = None
    timeout: float | None = None

    def __post_init__(self):
        find_binary(self.binary)
        require_file(self.database_path, "jackhmmer database")

    def _flags(self) -> list[str]:
        flags = [
            "--noali",
            "--F1", str(self.filter_f1),
            "--F2", str(self.filter_f2),
            "--F3", str(self.filter_f3),
            "--incE", str(self.e_value),
            "-E", str(self.e_value),
            "--cpu", str(self.n_cpu),
            "-N", str(self.n_iter),
        ]  # fmt: skip
        optional = {"-Z": self.z_value, "--domE": self.dom_e, "--incdomE": self.incdom_e}
        for flag, value in optional.items():
            if value is not None:
                flags += [flag, str(value)]
        return flags

    def query(self, fasta_path: str | os.PathLike) -> str:
        """Search with the single sequence in ``fasta_path``; returns the hits as Stockholm text."""
        require_file(fasta_path, "jackhmmer query")
        with tempfile.TemporaryDirectory() as directory:
            output = os.path.join(directory, "output.sto")
            command = [self.binary, "-o", "/dev/null", "-A", output, *self._flags()]
            run_tool([*command, os.fspath(fasta_path), self.database_path], timeout=self.timeout)
            with open(output) as handle:
                return handle.read()
