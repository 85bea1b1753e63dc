"""File output shared by every writer in FastFold: nothing half-written is ever left behind."""

import os
import uuid


def write_atomically(path: str | os.PathLike, content: str | bytes) -> None:
    """Write ``content`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The content goes to a hidden temporary file in the same directory, is flushed to disk, and then
    replaces ``path`` in one ``os.replace``. On any failure the temporary file is removed and ``path`` is
    left as it was. The new file gets the usual permissions for new files (``0o666`` less the umask).

    Parameters
    ----------
    path
        Destination file; its directory must exist.
    content
        Text (written as UTF-8) or bytes.
    """
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
