"""The exceptions the ingest stage raises for bad input data and unusable storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# How many bad rows a message names; the count says how many there are in all.
SHOWN_ROWS = 5


@dataclass(frozen=True)
class RowNumbering:
    """How a message names a file's rows so the user can find them.

    Attributes:
        singular: The word before one number (``"line"``, ``"row index"``).
        plural: The word before several (``"lines"``, ``"row indices"``).
        offset: Added to a row's 0-based position in the file's data.
    """

    singular: str
    plural: str
    offset: int

    def numbers(self, positions: Sequence[int]) -> tuple[int, ...]:
        """The first :data:`SHOWN_ROWS` of ``positions`` (0-based) as the user counts them."""
        return tuple(int(p) + self.offset for p in list(positions)[:SHOWN_ROWS])


# CSV: 1-based line numbers with the header on line 1 (blank lines, which the reader skips,
# are not counted). Parquet and other tables: 0-based row indices.
CSV_LINES = RowNumbering("line", "lines", 2)
ROW_INDICES = RowNumbering("row index", "row indices", 0)


class DataError(ValueError):
    """Input data that cannot become a dataset.

    The message names the file, the column, how many rows are affected and the first few of
    them, so a user can find the problem without reading a traceback. The same facts are kept
    as attributes for callers that want to react programmatically.

    Args:
        problem: What is wrong, in words (e.g. ``"labels must be integers"``).
        file: The file (path or URL) the data came from; ``None`` for generated data.
        column: The offending column, if the problem is confined to one.
        rows: How many rows are affected, if the problem is row-wise.
        positions: 0-based positions of the affected rows (the first few are named).
        numbering: How the named rows are counted (CSV lines or row indices).
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows: int | None = None,
        positions: Sequence[int] = (),
        numbering: RowNumbering = ROW_INDICES,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.rows = rows
        self.first_rows = numbering.numbers(positions)
        where = _where(file, column, rows, self.first_rows, numbering)
        super().__init__(f"{where}: {problem}")


class StorageError(DataError):
    """A folder the product writes to (dataset cache, run root) is unusable: read-only,
    full, or not a folder. The message names the path and the operating system's reason."""

    def __init__(self, path: str, what: str, err: OSError) -> None:
        reason = err.strerror or str(err)
        super().__init__(f"cannot write {what}: {reason}", file=path)
        self.path = path


def _where(
    file: str | None,
    column: str | None,
    rows: int | None,
    first_rows: tuple[int, ...],
    numbering: RowNumbering,
) -> str:
    where = [file or "<generated data>"]
    if column is not None:
        where.append(f"column {column!r}")
    if rows is not None:
        count = f"{rows} row{'s' if rows != 1 else ''}"
        if first_rows:
            lead = "first at " if rows > len(first_rows) else ""
            word = numbering.plural if len(first_rows) > 1 else numbering.singular
            count += f" ({lead}{word} {', '.join(map(str, first_rows))})"
        where.append(count)
    return ", ".join(where)
