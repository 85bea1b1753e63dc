"""The one exception that every FastFold file parser raises on input it cannot read."""


class ParseError(ValueError):
    """A file could not be parsed; the message names the file, the record and the line where known.

    Parameters
    ----------
    source
        The file (or ``"<string>"``) being parsed.
    message
        What was found and what was expected.
    record
        Name of the record (sequence, chain, hit) where the problem is, if any.
    line
        1-based line number of the problem, if known.
    """

    def __init__(self, source: str, message: str, *, record: str | None = None, line: int | None = None):
        self.source = source
        self.record = record
        self.line = line
        where = [str(source)]
        if record is not None:
            where.append(f"record {record!r}")
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}")
