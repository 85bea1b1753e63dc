"""HHR files: the hit lists with pairwise alignments that HHblits and HHsearch write."""

import dataclasses
import os
import re

from fastfold.data.errors import ParseError

# Q/T lines that annotate an alignment block rather than carry a sequence.
_ANNOTATION_ROWS = frozenset({"ss_pred", "ss_dssp", "ss_conf", "Consensus"})
# "Q name   start ALIGNED-SEQUENCE   end (length)"
_ALIGNMENT_ROW = re.compile(r"[QT] \S+\s+(\d+) ([A-Z-]+)\s+(\d+) \((\d+)\)\s*")
_SUMMARY_FIELD = re.compile(r"(\S+)=(\S+)")
_HIT_START = re.compile(r"No (\d+)\s*")


@dataclasses.dataclass(frozen=True)
class TemplateHit:
    """One hit of a template search, with its alignment to the query (AlphaFold's ``TemplateHit``).

    Attributes
    ----------
    index
        1-based rank of the hit in the file.
    name
        The hit's description line (PDB id and chain first, e.g. ``"2uvo_A Agglutinin ..."``).
    aligned_cols
        Number of aligned columns reported by the search.
    sum_probs
        Sum of the alignment's posterior probabilities; ``None`` when the tool reports none.
    query, hit_sequence
        The aligned query and hit rows, with ``-`` for gaps.
    indices_query, indices_hit
        0-based residue index in the query / hit of every alignment column, ``-1`` at gaps.
    """

    index: int
    name: str
    aligned_cols: int
    sum_probs: float | None
    query: str
    hit_sequence: str
    indices_query: tuple[int, ...]
    indices_hit: tuple[int, ...]

    def __post_init__(self):
        if self.index < 1 or self.aligned_cols < 0:
            raise ValueError(f"Hit {self.name!r}: index {self.index}, aligned_cols {self.aligned_cols}")
        if len(self.indices_query) != len(self.indices_hit):
            raise ValueError(
                f"Hit {self.name!r}: {len(self.indices_query)} query indices, "
                f"{len(self.indices_hit)} hit indices"
            )
        if min(self.indices_query + self.indices_hit, default=0) < -1:
            raise ValueError(f"Hit {self.name!r}: residue indices must be >= 0, or -1 for a gap")


def _residue_indices(aligned: str, first_index: int) -> list[int]:
    """0-based residue index of every column of ``aligned`` counting from ``first_index``; -1 at gaps."""
    indices, counter = [], first_index
    for letter in aligned:
        if letter == "-":
            indices.append(-1)
        else:
            indices.append(counter)
            counter += 1
    return indices


def _alignment_row(line: str, source: str, name: str, number: int) -> tuple[int, str] | None:
    """The 0-based start and aligned letters of a Q or T sequence line, or None for other lines."""
    fields = line.split()
    if line[:2] not in ("Q ", "T ") or len(fields) < 2 or fields[1] in _ANNOTATION_ROWS:
        return None
    match = _ALIGNMENT_ROW.fullmatch(line)
    if match is None:
        raise ParseError(source, f"malformed alignment line {line!r}", record=name, line=number)
    start, aligned, end = int(match[1]), match[2], int(match[3])
    if len(aligned) - aligned.count("-") != end - start + 1:
        raise ParseError(source, f"residues {start}-{end} do not fit {aligned!r}", record=name, line=number)
    return start - 1, aligned


def _summary(line: str, source: str, name: str, number: int) -> tuple[int, float | None]:
    """``Aligned_cols`` and ``Sum_probs`` of a hit's ``Probab=... Sum_probs=...`` line."""
    fields = dict(_SUMMARY_FIELD.findall(line))
    if "Aligned_cols" not in fields:
        raise ParseError(
            source, f"expected a 'Probab=... Aligned_cols=...' line, got {line!r}", record=name, line=number
        )
    sum_probs = float(fields["Sum_probs"]) if "Sum_probs" in fields else None
    return int(fields["Aligned_cols"]), sum_probs


def _parse_hit(lines: list[str], first_line: int, source: str) -> TemplateHit:
    """Parse one ``No <index>`` section of an HHR file (``lines[0]`` is the ``No`` line)."""
    index = int(_HIT_START.fullmatch(lines[0])[1])
    if len(lines) < 3 or not lines[1].startswith(">"):
        raise ParseError(source, "expected '>name' after the 'No' line", record=str(index), line=first_line)
    name = lines[1][1:]
    aligned_cols, sum_probs = _summary(lines[2], source, name, first_line + 2)
    rows = {"Q": ([], []), "T": ([], [])}  # letters, indices
    for offset, line in enumerate(lines[3:], start=3):
        row = _alignment_row(line, source, name, first_line + offset)
        if row is not None:
            letters, indices = rows[line[0]]
            letters.append(row[1])
            indices.extend(_residue_indices(row[1], row[0]))
    query, hit_sequence = "".join(rows["Q"][0]), "".join(rows["T"][0])
    if [len(block) for block in rows["Q"][0]] != [len(block) for block in rows["T"][0]]:
        raise ParseError(source, "query and template blocks differ in length", record=name, line=first_line)
    return TemplateHit(
        index, name, aligned_cols, sum_probs, query, hit_sequence, tuple(rows["Q"][1]), tuple(rows["T"][1])
    )


def parse_hhr(text: str, source: str = "<string>") -> list[TemplateHit]:
    """Parse every hit of an HHblits/HHsearch result file, in file order.

    Parameters
    ----------
    text
        Contents of an ``.hhr`` file.
    source
        File name for error messages.

    Returns
    -------
    list[TemplateHit]
        One per ``No <index>`` section.

    Raises
    ------
    ParseError
        When the file has no hit table, an empty hit table or no hit sections, or a section is malformed.
    """
    lines = text.splitlines()
    table = [number for number, line in enumerate(lines) if line.split()[:2] == ["No", "Hit"]]
    if not table:
        raise ParseError(source, "no ' No Hit ...' table: not an HHR file")
    starts = [number for number, line in enumerate(lines) if _HIT_START.fullmatch(line)]
    if not starts:
        raise ParseError(
            source, "the hit table is empty and no hit sections follow (truncated file?)", line=table[0] + 1
        )
    ends = starts[1:] + [len(lines)]
    return [_parse_hit(lines[start:end], start + 1, source) for start, end in zip(starts, ends, strict=True)]


def read_hhr(path: str | os.PathLike) -> list[TemplateHit]:
    """Read and parse an HHR file (see :func:`parse_hhr`)."""
    with open(path) as handle:
        return parse_hhr(handle.read(), source=os.fspath(path))
