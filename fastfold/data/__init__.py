"""Input data: parsers for FASTA, MSA (A3M, Stockholm), HHR and mmCIF files, and search tool wrappers.

NumPy only: nothing here imports torch.
"""

from fastfold.data.errors import ParseError
from fastfold.data.fasta import Fasta, parse_fasta, read_fasta
from fastfold.data.hhr import TemplateHit, parse_hhr, read_hhr
from fastfold.data.mmcif import MmcifChain, MmcifStructure, parse_mmcif, read_mmcif
from fastfold.data.msa import Msa, parse_a3m, parse_stockholm, read_a3m, read_stockholm

__all__ = [
    "Fasta",
    "MmcifChain",
    "MmcifStructure",
    "Msa",
    "ParseError",
    "TemplateHit",
    "parse_a3m",
    "parse_fasta",
    "parse_hhr",
    "parse_mmcif",
    "parse_stockholm",
    "read_a3m",
    "read_fasta",
    "read_hhr",
    "read_mmcif",
    "read_stockholm",
]
