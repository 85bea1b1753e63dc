"""Kalign: multiple alignment of a few sequences (AlphaFold realigns template and query with it)."""

import dataclasses
import os
import tempfile
from collections.abc import Sequence

from fastfold.data.tools.runner import find_binary, run_tool

_MIN_LENGTH = 6  # Kalign rejects shorter sequences


@dataclasses.dataclass(frozen=True)
class Kalign:
    """Kalign 3 (``-format fasta``).

    Attributes
    ----------
    binary
        Name on ``PATH`` or path of ``kalign``.
    timeout
        Seconds before the alignment is killed; ``None`` waits forever.
    """

    binary: str = "kalign"
    timeout: float | None = None

    def __post_init__(self):
        find_binary(self.binary)

    def align(self, sequences: Sequence[str]) -> str:
        """Align ``sequences`` (each at least 6 residues); returns aligned FASTA text, ``-`` for gaps.

        Records are named ``sequence 1``, ``sequence 2``, ... in input order; Kalign may reorder them.

        Raises
        ------
        ValueError
            When a sequence is shorter than 6 residues.
        """
        for number, sequence in enumerate(sequences, start=1):
            if len(sequence) < _MIN_LENGTH:
                raise ValueError(
                    f"Kalign needs sequences of at least {_MIN_LENGTH} residues; "
                    f"sequence {number} is {sequence!r}"
                )
        with tempfile.TemporaryDirectory() as directory:
            query_path = os.path.join(directory, "input.fasta")
            output = os.path.join(directory, "output.fasta")
            with open(query_path, "w") as handle:
                handle.writelines(f">sequence {n}\n{s}\n" for n, s in enumerate(sequences, start=1))
            run_tool([self.binary, "-i", query_path, "-o", output, "-format", "fasta"], timeout=self.timeout)
            with open(output) as handle:
                return handle.read()
