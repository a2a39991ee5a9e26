"""The one exception the ingest stage raises for bad input data."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot become a dataset.

    The message names the file, the column and how many rows are affected, so a user can
    find the problem without reading a traceback. The same facts are kept as attributes for
    callers that want to react programmatically.

    Args:
        problem: What is wrong, in words (e.g. ``"labels must be integers"``).
        file: The file (path or URL) the data came from; ``None`` for generated data.
        column: The offending column, if the problem is confined to one.
        rows: How many rows are affected, if the problem is row-wise.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: int | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = rows
        super().__init__(_format(problem, file, column, rows))


def _format(problem: str, file: str | None, column: str | None, rows: int | None) -> str:
    where = [file or "<generated data>"]
    if column is not None:
        where.append(f"column {column!r}")
    if rows is not None:
        where.append(f"{rows} row{'s' if rows != 1 else ''}")
    return f"{', '.join(where)}: {problem}"
