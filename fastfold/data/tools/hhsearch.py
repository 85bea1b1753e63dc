"""HHsearch (HH-suite): search a query MSA's HMM against template databases (PDB70)."""

import dataclasses
import os
import tempfile

from fastfold.data.tools.runner import require_hhsuite_databases, run_tool


@dataclasses.dataclass(frozen=True)
class HHSearch:
    """HHsearch with AlphaFold's settings.

    Attributes
    ----------
    databases
        Database prefixes (the path up to ``_hhm.ffindex``, ``_cs219.ffdata``, ...).
    binary
        Name on ``PATH`` or path of ``hhsearch``.
    maxseq
        Maximum rows of the input alignment (``-maxseq``).
    timeout
        Seconds before the search is killed; ``None`` waits forever.
    """

    databases: tuple[str, ...]
    binary: str = "hhsearch"
    maxseq: int = 1_000_000
    timeout: float | None = None

    def __post_init__(self):
        require_hhsuite_databases(self.binary, self.databases)

    def query(self, a3m: str) -> str:
        """Search with an MSA given as A3M text (a single sequence is one); returns the HHR text."""
        with tempfile.TemporaryDirectory() as directory:
            query_path, output = os.path.join(directory, "query.a3m"), os.path.join(directory, "output.hhr")
            with open(query_path, "w") as handle:
                handle.write(a3m)
            command = [self.binary, "-i", query_path, "-o", output, "-maxseq", str(self.maxseq)]
            for prefix in self.databases:
                command += ["-d", prefix]
            run_tool(command, timeout=self.timeout)
            with open(output) as handle:
                return handle.read()
