"""Multiple sequence alignments: A3M (HHblits) and Stockholm (jackhmmer, Pfam) files.

Both readers return an :class:`Msa` anchored on the first sequence (the query), with AlphaFold's rules:
a column is kept where the query has a residue, and residues that other sequences have in between (A3M's
lower-case insertions, Stockholm's columns where the query has a gap) are dropped and counted in the
deletion matrix, at the next kept column.
"""

import dataclasses
import os
import string

import numpy as np

from fastfold.data.errors import ParseError
from fastfold.data.fasta import fasta_records

GAP = "-"
_ALIGNED_LETTERS = frozenset(string.ascii_uppercase + GAP)
_A3M_LETTERS = frozenset(string.ascii_letters + "-.")
_STOCKHOLM_GAPS = b"-."


@dataclasses.dataclass(frozen=True, eq=False)
class Msa:
    """An alignment anchored on its first sequence (the query).

    Attributes
    ----------
    sequences
        ``N_seq`` aligned rows of ``N_res`` upper-case letters or ``-``; row 0 is the query.
    deletion_matrix
        int32 ``[N_seq, N_res]``: residues of row ``i`` dropped just before column ``j``.
    descriptions
        ``N_seq`` sequence names or description lines.
    """

    sequences: tuple[str, ...]
    deletion_matrix: np.ndarray
    descriptions: tuple[str, ...]

    def __post_init__(self):
        if not self.sequences:
            raise ValueError("An MSA needs at least one sequence (the query)")
        num_residues = len(self.sequences[0])
        if self.deletion_matrix.shape != (len(self.sequences), num_residues):
            raise ValueError(
                f"Deletion matrix of shape {self.deletion_matrix.shape} for {len(self.sequences)} "
                f"sequences of length {num_residues}"
            )
        if len(self.descriptions) != len(self.sequences):
            raise ValueError(f"{len(self.descriptions)} descriptions for {len(self.sequences)} sequences")
        for description, sequence in zip(self.descriptions, self.sequences, strict=True):
            if len(sequence) != num_residues or not set(sequence) <= _ALIGNED_LETTERS:
                raise ValueError(
                    f"Row {description!r} must be {num_residues} upper-case letters or '-', got {sequence!r}"
                )

    def __len__(self) -> int:
        return len(self.sequences)

    def truncate(self, max_sequences: int) -> "Msa":
        """The first ``max_sequences`` rows."""
        return Msa(
            self.sequences[:max_sequences],
            self.deletion_matrix[:max_sequences],
            self.descriptions[:max_sequences],
        )


def _deletions_at_kept_columns(inserted: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Count inserted residues between consecutive kept columns.

    Parameters
    ----------
    inserted
        bool ``[*, L]``: a residue that is not part of the query-anchored alignment.
    kept
        bool ``[L]``: the columns that stay in the alignment.

    Returns
    -------
    np.ndarray
        int32 ``[*, N_res]`` with ``N_res = kept.sum()``.
    """
    inserted_so_far = np.cumsum(inserted, axis=-1)[..., kept]  # [*, N_res]
    return np.diff(inserted_so_far, axis=-1, prepend=0).astype(np.int32)


def parse_a3m(text: str, source: str = "<string>") -> Msa:
    """Parse an A3M alignment: upper case and ``-`` are aligned, lower case inserted, ``.`` ignored.

    Parameters
    ----------
    text
        Contents of an A3M file whose first record is the query.
    source
        File name for error messages.

    Returns
    -------
    Msa
        Aligned rows without the insertions, which are counted in the deletion matrix.

    Raises
    ------
    ParseError
        On malformed records, or rows whose aligned length differs from the query's.
    """
    sequences, deletion_rows, descriptions = [], [], []
    for record in fasta_records(text, source, _A3M_LETTERS):
        letters = np.frombuffer(record.sequence.replace(".", "").encode("ascii"), dtype=np.uint8)
        inserted = (letters >= ord("a")) & (letters <= ord("z"))
        aligned = letters[~inserted].tobytes().decode("ascii")
        if not sequences and not aligned:
            raise ParseError(source, "the query has no aligned residues", record=record.description)
        if sequences and len(aligned) != len(sequences[0]):
            raise ParseError(
                source,
                f"{len(aligned)} aligned columns, the query has {len(sequences[0])}",
                record=record.description,
                line=record.line,
            )
        sequences.append(aligned)
        deletion_rows.append(_deletions_at_kept_columns(inserted, ~inserted))
        descriptions.append(record.description)
    return Msa(tuple(sequences), np.stack(deletion_rows), tuple(descriptions))


def _stockholm_rows(text: str, source: str) -> tuple[dict[str, str], dict[str, int]]:
    """Aligned rows of a Stockholm file by sequence name (blocks joined), and each name's first line."""
    rows, first_lines = {}, {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        fields = line.split()
        if len(fields) != 2:
            message = f"expected 'name aligned_sequence', got {len(fields)} fields"
            raise ParseError(source, message, line=number)
        name, aligned = fields
        first_lines.setdefault(name, number)
        rows[name] = rows.get(name, "") + aligned
    if not rows:
        raise ParseError(source, "no aligned sequences: not a Stockholm file")
    return rows, first_lines


def parse_stockholm(text: str, source: str = "<string>") -> Msa:
    """Parse a Stockholm alignment; ``-`` and ``.`` are gaps, names become the descriptions.

    Columns where the first sequence (the query) has a gap are dropped; residues of other sequences in
    them are counted in the deletion matrix. Kept letters are upper-cased.

    Parameters
    ----------
    text
        Contents of a Stockholm file (one alignment, possibly in several blocks).
    source
        File name for error messages.

    Returns
    -------
    Msa
        The query-anchored alignment.

    Raises
    ------
    ParseError
        On malformed lines, non-ASCII text, or rows whose length differs from the query's.
    """
    rows, first_lines = _stockholm_rows(text, source)
    names = list(rows)
    width = len(rows[names[0]])
    for name in names:
        if len(rows[name]) != width or not rows[name].isascii():
            raise ParseError(
                source,
                f"{len(rows[name])} ASCII columns expected {width} (the query's)",
                record=name,
                line=first_lines[name],
            )
    letters = np.frombuffer("".join(rows.values()).encode("ascii"), dtype=np.uint8).reshape(len(names), width)
    is_gap = np.isin(letters, np.frombuffer(_STOCKHOLM_GAPS, dtype=np.uint8))
    kept = ~is_gap[0]  # [L]
    deletion_matrix = _deletions_at_kept_columns(~is_gap & ~kept, kept)  # [N_seq, N_res]
    aligned = np.where(is_gap[:, kept], ord(GAP), letters[:, kept]).astype(np.uint8)
    sequences = tuple(row.tobytes().decode("ascii").upper() for row in aligned)
    return Msa(sequences, deletion_matrix, tuple(names))


def read_a3m(path: str | os.PathLike) -> Msa:
    """Read and parse an A3M file (see :func:`parse_a3m`)."""
    with open(path) as handle:
        return parse_a3m(handle.read(), source=os.fspath(path))


def read_stockholm(path: str | os.PathLike) -> Msa:
    """Read and parse a Stockholm file (see :func:`parse_stockholm`)."""
    with open(path) as handle:
        return parse_stockholm(handle.read(), source=os.fspath(path))
