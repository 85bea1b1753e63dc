"""Running a search tool: find the binary, check the databases, stream its output to a logger, time out.

Every wrapper in this package goes through :func:`run_tool`, so they all fail the same way: a
:class:`ToolError` whose message names the binary or database and what to do about it.
"""

import collections
import glob
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

LOGGER = logging.getLogger("fastfold.data.tools")
INSTALL_HINT = "install HMMER, HH-suite and Kalign with scripts/install_tools.sh"
_TAIL_LINES = 40


class ToolError(RuntimeError):
    """A search tool is missing, a database is missing, or the tool failed or timed out."""


def find_binary(binary: str) -> str:
    """Absolute path of ``binary`` (a name on ``PATH`` or a path).

    Raises
    ------
    ToolError
        When it is not found or not executable.
    """
    path = shutil.which(binary)
    if path is None:
        raise ToolError(f"Binary {binary!r} not found or not executable; {INSTALL_HINT}")
    return path


def require_file(path: str | os.PathLike, what: str) -> None:
    """Raise :class:`ToolError` naming ``what`` (e.g. "jackhmmer database") unless ``path`` is a file."""
    if not os.path.isfile(path):
        raise ToolError(f"{what} {os.fspath(path)!r} not found")


def require_hhsuite_databases(binary: str, databases: Sequence[str]) -> None:
    """Check an HH-suite tool's setup: ``binary`` on PATH and files ``prefix_*`` for each database prefix.

    Raises :class:`ToolError` naming the missing binary or database, or ``TypeError`` when
    ``databases`` is one string rather than a sequence of prefixes.
    """
    if isinstance(databases, str):
        raise TypeError(f"databases must be a sequence of prefixes, got the string {databases!r}")
    find_binary(binary)
    for prefix in databases:
        if not glob.glob(glob.escape(prefix) + "_*"):
            raise ToolError(f"HH-suite database {prefix!r} not found (no files {prefix}_*)")


def _stream(pipe, name: str, tail: collections.deque, logger: logging.Logger) -> None:
    """Log every line the tool prints and keep the last few for error messages."""
    for line in pipe:
        line = line.rstrip()
        if line:
            logger.info("%s: %s", name, line)
            tail.append(line)


def run_tool(
    command: Sequence[str], *, timeout: float | None = None, logger: logging.Logger = LOGGER
) -> None:
    """Run ``command``, logging its stdout and stderr line by line as they come.

    Parameters
    ----------
    command
        Binary (name or path) and arguments; the tools write their results to files named in it.
    timeout
        Seconds after which the tool is killed; ``None`` waits forever.
    logger
        Where progress goes (INFO).

    Raises
    ------
    ToolError
        When the binary is missing, the tool exits with an error, or it runs past ``timeout``.
    """
    binary = find_binary(command[0])
    name = os.path.basename(command[0])
    logger.info("Running %s", shlex.join(command))
    started = time.monotonic()
    process = subprocess.Popen(
        [binary, *command[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, so a timeout also ends the children it starts
    )
    tail = collections.deque(maxlen=_TAIL_LINES)
    reader = threading.Thread(target=_stream, args=(process.stdout, name, tail, logger), daemon=True)
    reader.start()
    try:
        return_code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise ToolError(f"{name} did not finish within {timeout} s: {shlex.join(command)}") from None
    finally:
        reader.join()
        process.stdout.close()
    if return_code != 0:
        output = "\n".join(tail)
        raise ToolError(f"{name} failed with exit status {return_code}: {shlex.join(command)}\n{output}")
    logger.info("%s finished in %.1f s", name, time.monotonic() - started)
