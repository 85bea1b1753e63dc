"""Wrappers of the MSA and template search tools (HMMER, HH-suite, Kalign), with AlphaFold's flags."""

from fastfold.data.tools.hhblits import HHBlits
from fastfold.data.tools.hhsearch import HHSearch
from fastfold.data.tools.hmmsearch import Hmmsearch
from fastfold.data.tools.jackhmmer import Jackhmmer
from fastfold.data.tools.kalign import Kalign
from fastfold.data.tools.runner import ToolError, run_tool

__all__ = ["HHBlits", "HHSearch", "Hmmsearch", "Jackhmmer", "Kalign", "ToolError", "run_tool"]
