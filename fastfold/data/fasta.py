"""FASTA files: one or many sequence records, each a ``>description`` line followed by sequence lines."""

import dataclasses
import os
import string
from collections.abc import Iterator

from fastfold.data.errors import ParseError

RESIDUE_LETTERS = frozenset(string.ascii_letters)


@dataclasses.dataclass(frozen=True)
class FastaRecord:
    """One record as it appears in a FASTA-like file (FASTA or A3M), before any format's own checks.

    Attributes
    ----------
    description
        The header line without its ``>``.
    sequence
        The sequence lines joined, whitespace at their ends removed.
    line
        1-based line number of the header.
    """

    description: str
    sequence: str
    line: int


@dataclasses.dataclass(frozen=True)
class Fasta:
    """Sequences of a FASTA file and their descriptions, in file order.

    Attributes
    ----------
    sequences
        Upper-case residue letters, one string per record.
    descriptions
        Header lines without the leading ``>``, one per record.
    """

    sequences: tuple[str, ...]
    descriptions: tuple[str, ...]

    def __post_init__(self):
        if not self.sequences:
            raise ValueError("A FASTA needs at least one record")
        if len(self.sequences) != len(self.descriptions):
            raise ValueError(f"Got {len(self.sequences)} sequences but {len(self.descriptions)} descriptions")
        for description, sequence in zip(self.descriptions, self.sequences, strict=True):
            if not sequence or not set(sequence) <= RESIDUE_LETTERS or not sequence.isupper():
                raise ValueError(f"Sequence of {description!r} must be non-empty upper-case residue letters")

    def __len__(self) -> int:
        return len(self.sequences)


def fasta_records(text: str, source: str, alphabet: frozenset[str]) -> Iterator[FastaRecord]:
    """Split FASTA-like text into records, checking every sequence line against ``alphabet``.

    Blank lines are skipped; lines starting with ``#`` before the first header (A3M comments) too.

    Parameters
    ----------
    text
        Contents of the file.
    source
        File name for error messages.
    alphabet
        The characters allowed in sequence lines (after stripping whitespace at their ends).

    Yields
    ------
    FastaRecord
        One per ``>`` header, in file order.

    Raises
    ------
    ParseError
        On sequence lines before the first header, characters outside ``alphabet``, or no record at all.
    """
    description, chunks, header_line = None, [], 0
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if line.startswith(">"):
            if description is not None:
                yield FastaRecord(description, "".join(chunks), header_line)
            description, chunks, header_line = line[1:].strip(), [], number
        elif not line or (description is None and line.startswith("#")):
            continue
        elif description is None:
            raise ParseError(source, "sequence line before the first '>' header", line=number)
        elif not set(line) <= alphabet:
            bad = "".join(sorted(set(line) - alphabet))
            raise ParseError(source, f"characters {bad!r} are not residues", record=description, line=number)
        else:
            chunks.append(line)
    if description is None:
        raise ParseError(source, "no '>' header: not a FASTA file")
    yield FastaRecord(description, "".join(chunks), header_line)


def parse_fasta(text: str, source: str = "<string>") -> Fasta:
    """Parse FASTA text with one or many records; lower-case residue letters are upper-cased.

    Parameters
    ----------
    text
        Contents of a FASTA file.
    source
        File name for error messages.

    Returns
    -------
    Fasta
        Sequences and descriptions in file order.

    Raises
    ------
    ParseError
        On a missing header, an empty sequence or characters that are not residue letters.
    """
    sequences, descriptions = [], []
    for record in fasta_records(text, source, RESIDUE_LETTERS):
        if not record.sequence:
            raise ParseError(source, "empty sequence", record=record.description, line=record.line)
        sequences.append(record.sequence.upper())
        descriptions.append(record.description)
    return Fasta(tuple(sequences), tuple(descriptions))


def read_fasta(path: str | os.PathLike) -> Fasta:
    """Read and parse a FASTA file (see :func:`parse_fasta`)."""
    with open(path) as handle:
        return parse_fasta(handle.read(), source=os.fspath(path))
