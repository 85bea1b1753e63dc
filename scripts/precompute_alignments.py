"""Precompute MSAs and template hits for training, in the layout of OpenFold and OpenProteinSet.

For every chain (a FASTA record, or a protein chain of an mmCIF file) writes ``OUTPUT/{name}/``:

* ``uniref90_hits.a3m``  jackhmmer on UniRef90 (at most 10,000 sequences, AlphaFold's limit)
* ``mgnify_hits.a3m``    jackhmmer on MGnify (at most 5,000)
* ``bfd_uniclust_hits.a3m`` (``bfd_uniref_hits.a3m`` with ``--uniref30``)  hhblits on BFD + Uniclust30
* ``pdb70_hits.hhr``     hhsearch of the UniRef90 alignment on PDB70

Every file is written atomically, so an interrupted run leaves only complete files; a second run skips
the files that exist and parse. mmCIF chains are named ``{pdb_id}_{chain_id}`` (PDB id from the file
name, lower case); FASTA records by the first word of their description.

Example::

    python scripts/precompute_alignments.py mmcif_dir/ --output_dir alignments/ \\
        --uniref90 uniref90/uniref90.fasta --mgnify mgnify/mgy_clusters_2022_05.fa \\
        --bfd bfd/bfd_metaclust_clu_complete_id30_c90_final_seq.sorted_opt \\
        --uniclust30 uniclust30/uniclust30_2018_08/uniclust30_2018_08 --pdb70 pdb70/pdb70 --cpus 8
"""

import argparse
import logging
import pathlib
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

from fastfold.common.io import write_atomically
from fastfold.data import ParseError, parse_a3m, read_fasta, read_mmcif
from fastfold.data.tools import HHBlits, HHSearch, Jackhmmer, ToolError

LOGGER = logging.getLogger("precompute_alignments")
UNIREF90_MAX_HITS = 10_000
MGNIFY_MAX_HITS = 5_000
_GAPS = "-."


def stockholm_to_a3m(stockholm: str, max_sequences: int | None = None) -> str:
    """Convert a Stockholm alignment (jackhmmer ``-A``) to A3M anchored on its first row.

    Columns where the query has a residue stay aligned (gaps as ``-``); residues in the other columns
    become lower-case insertions, gaps there are dropped. ``#=GS name DE text`` descriptions are kept.

    Parameters
    ----------
    stockholm
        The Stockholm text.
    max_sequences
        Keep only the first this many sequences (query included); ``None`` keeps all.

    Returns
    -------
    str
        A3M text, one ``>name description`` record per sequence.
    """
    rows, descriptions = {}, {}
    for line in stockholm.splitlines():
        if line.startswith("#=GS"):
            fields = line.split(maxsplit=3)
            if len(fields) >= 3 and fields[2] == "DE":
                descriptions[fields[1]] = fields[3] if len(fields) == 4 else ""
        elif line.strip() and not line.startswith(("#", "//")):
            name, aligned = line.split(maxsplit=1)
            if name in rows or not max_sequences or len(rows) < max_sequences:
                rows[name] = rows.get(name, "") + aligned.strip()
    if not rows:
        raise ParseError("<stockholm>", "no aligned sequences")
    kept = [letter not in _GAPS for letter in next(iter(rows.values()))]
    records = []
    for name, aligned in rows.items():
        letters = (
            ("-" if letter in _GAPS else letter) if keep else letter.lower()
            for keep, letter in zip(kept, aligned, strict=True)
            if keep or letter not in _GAPS
        )
        records.append(f">{name} {descriptions.get(name, '')}".rstrip() + "\n" + "".join(letters) + "\n")
    return "".join(records)


def read_chains(paths: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(name, sequence)`` of every chain in the given FASTA / mmCIF files (folders: their files)."""
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".cif", ".fasta", ".fa"))
            yield from read_chains([str(p) for p in files])
        elif path.suffix.lower() == ".cif":
            for chain_id, chain in read_mmcif(path).chains.items():
                yield f"{path.stem.lower()}_{chain_id}", chain.seqres
        else:
            fasta = read_fasta(path)
            for description, sequence in zip(fasta.descriptions, fasta.sequences, strict=True):
                yield description.split()[0], sequence


def is_complete(path: pathlib.Path) -> bool:
    """Whether an output file exists and parses (an A3M, or an HHR with its hit table)."""
    if not path.is_file():
        return False
    text = path.read_text()
    try:
        if path.suffix == ".hhr":
            return text.startswith("Query") and (" No Hit" in text)
        return len(parse_a3m(text, source=str(path))) > 0
    except ParseError:
        return False


class AlignmentRunner:
    """The four searches of one chain, each skipped when its output is already complete.

    Parameters
    ----------
    uniref90, mgnify, hhblits, hhsearch
        Configured tool wrappers (their constructors check binaries and databases).
    bfd_file
        ``bfd_uniclust_hits.a3m`` or ``bfd_uniref_hits.a3m``.
    """

    def __init__(
        self, uniref90: Jackhmmer, mgnify: Jackhmmer, hhblits: HHBlits, hhsearch: HHSearch, bfd_file: str
    ):
        self.uniref90, self.mgnify, self.hhblits, self.hhsearch = uniref90, mgnify, hhblits, hhsearch
        self.bfd_file = bfd_file

    def run(self, name: str, sequence: str, output_dir: pathlib.Path) -> int:
        """Write the missing outputs of one chain; returns how many searches ran."""
        folder = output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            query = pathlib.Path(scratch, "query.fasta")
            query.write_text(f">{name}\n{sequence}\n")
            steps: list[tuple[str, Callable[[], str]]] = [
                (
                    "uniref90_hits.a3m",
                    lambda: stockholm_to_a3m(self.uniref90.query(query), UNIREF90_MAX_HITS),
                ),
                ("mgnify_hits.a3m", lambda: stockholm_to_a3m(self.mgnify.query(query), MGNIFY_MAX_HITS)),
                (self.bfd_file, lambda: self.hhblits.query(query)),
                ("pdb70_hits.hhr", lambda: self.hhsearch.query((folder / "uniref90_hits.a3m").read_text())),
            ]
            ran = 0
            for file_name, search in steps:
                if is_complete(folder / file_name):
                    LOGGER.info("%s: %s exists, skipped", name, file_name)
                    continue
                write_atomically(folder / file_name, search())
                ran += 1
        return ran


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="FASTA or mmCIF files, or folders of them")
    parser.add_argument("--output_dir", required=True, help="alignment folder, one sub-folder per chain")
    parser.add_argument("--uniref90", required=True, help="UniRef90 FASTA")
    parser.add_argument("--mgnify", required=True, help="MGnify clusters FASTA")
    parser.add_argument("--bfd", required=True, help="BFD HH-suite database prefix")
    hhblits_second = parser.add_mutually_exclusive_group(required=True)
    hhblits_second.add_argument("--uniclust30", help="Uniclust30 HH-suite prefix -> bfd_uniclust_hits.a3m")
    hhblits_second.add_argument("--uniref30", help="UniRef30 HH-suite prefix -> bfd_uniref_hits.a3m")
    parser.add_argument("--pdb70", required=True, help="PDB70 HH-suite database prefix")
    parser.add_argument("--cpus", type=int, default=4, help="threads per search")
    for tool in ("jackhmmer", "hhblits", "hhsearch"):
        parser.add_argument(f"--{tool}_binary", default=tool, help=f"{tool} name on PATH or path")
    return parser.parse_args(argv)


def build_runner(args: argparse.Namespace) -> AlignmentRunner:
    """The tool wrappers; raises ToolError naming a missing binary or database."""
    second = args.uniclust30 or args.uniref30
    return AlignmentRunner(
        uniref90=Jackhmmer(args.uniref90, binary=args.jackhmmer_binary, n_cpu=args.cpus),
        mgnify=Jackhmmer(args.mgnify, binary=args.jackhmmer_binary, n_cpu=args.cpus),
        hhblits=HHBlits((args.bfd, second), binary=args.hhblits_binary, n_cpu=args.cpus),
        hhsearch=HHSearch((args.pdb70,), binary=args.hhsearch_binary),
        bfd_file="bfd_uniclust_hits.a3m" if args.uniclust30 else "bfd_uniref_hits.a3m",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the searches for every input chain; returns the exit status (2: bad setup or input)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        runner = build_runner(args)
        chains = list(read_chains(args.inputs))
    except (ToolError, ParseError, OSError) as error:
        LOGGER.error("%s", error)
        return 2
    output_dir = pathlib.Path(args.output_dir)
    for number, (name, sequence) in enumerate(chains, start=1):
        ran = runner.run(name, sequence, output_dir)
        LOGGER.info("[%d/%d] %s: %d searches run", number, len(chains), name, ran)
    return 0


if __name__ == "__main__":
    sys.exit(main())
