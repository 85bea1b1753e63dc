"""Build a small HH-suite database (what HHsearch and HHblits search) from a few sequences.

For tests and small custom template sets: one single-sequence MSA per entry -> HMMs (``hhmake``) ->
ffindex ``_a3m``/``_hhm`` databases (``ffindex_build``) -> ``_cs219`` column states (``cstranslate``).
"""

import os
import pathlib
import tempfile
from collections.abc import Mapping

from fastfold.data.tools.runner import ToolError, run_tool

HHSUITE_LIBEXEC = pathlib.Path("/usr/libexec/hhsuite")
HHSUITE_DATA = pathlib.Path("/usr/share/hhsuite/data")


def cstranslate_binary() -> str:
    """Debian's cstranslate for this CPU (Debian's ``cstranslate`` wrapper looks in the wrong folder)."""
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    return str(HHSUITE_LIBEXEC / ("cstranslate-avx2" if "avx2" in flags else "cstranslate-plain"))


def build_hhsuite_database(
    sequences: Mapping[str, str], prefix: str | os.PathLike, hhsuite_data: str | os.PathLike = HHSUITE_DATA
) -> str:
    """Write an HH-suite database of single-sequence entries.

    Parameters
    ----------
    sequences
        Entry name (e.g. ``"1a8o_A"``, as PDB70 names its entries) -> residue letters.
    prefix
        Database prefix; ``{prefix}_a3m.ffdata``, ``_hhm.*`` and ``_cs219.*`` are written.
    hhsuite_data
        Folder with HH-suite's ``cs219.lib`` and ``context_data.lib``.

    Returns
    -------
    str
        ``prefix``, for :class:`~fastfold.data.tools.HHSearch` / :class:`~fastfold.data.tools.HHBlits`.

    Raises
    ------
    ToolError
        When a tool or HH-suite's data files are missing, or a tool fails.
    """
    prefix, data = os.fspath(prefix), pathlib.Path(hhsuite_data)
    for library in ("cs219.lib", "context_data.lib"):
        if not (data / library).is_file():
            raise ToolError(f"HH-suite data file {data / library} not found")
    with tempfile.TemporaryDirectory() as directory:
        folders = {kind: pathlib.Path(directory, kind) for kind in ("a3m", "hhm")}
        for folder in folders.values():
            folder.mkdir()
        for name, sequence in sequences.items():
            a3m = folders["a3m"] / f"{name}.a3m"
            a3m.write_text(f">{name}\n{sequence}\n")
            run_tool(["hhmake", "-i", str(a3m), "-o", str(folders["hhm"] / f"{name}.hhm"), "-v", "0"])
        for kind, folder in folders.items():
            run_tool(
                ["ffindex_build", "-s", f"{prefix}_{kind}.ffdata", f"{prefix}_{kind}.ffindex", str(folder)]
            )
    run_tool([
        cstranslate_binary(), "-f", "-x", "0.3", "-c", "4", "-I", "a3m",
        "-i", f"{prefix}_a3m", "-o", f"{prefix}_cs219",
        "-A", str(data / "cs219.lib"), "-D", str(data / "context_data.lib"),
    ])  # fmt: skip
    return prefix
