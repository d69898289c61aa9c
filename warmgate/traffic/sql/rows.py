"""How much of a query's answer warmgate holds: rows are counted, and a row wider than
``row_bytes`` is counted without ever being held whole.

Theory of operation. Memory is spent where the bytes of an answer land, and each engine lands
them somewhere else:

- PostgreSQL: libpq grows its receive buffer to hold a whole message before anyone sees it, and
  a row is one message; a chunk of rows is then copied into a result. Nothing on the client can
  drop a row that the server sent, so the server must not send it (``pgrows.py``);
- MySQL and MariaDB: warmgate reads the packets itself, a piece at a time, so no row is ever
  held, however wide;
- SQLite: the row is in the process. Each connection gets SQLite's own length limit
  (``SQLITE_LIMIT_LENGTH``), so no value longer than ``row_bytes`` is ever made, and rows are
  counted one at a time on the connection's thread.

:func:`rows_per_read` sizes libpq's chunks so that a chunk holds at most :data:`CHUNK_BYTES`
of rows (at least one row). docs/sql.md, "Wide rows", derives the resulting bound on a primer's
memory from these figures.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_BYTES = 1 << 20
"""Most bytes of rows libpq is asked to gather into one result (a chunk holds at least a row)."""
MAX_ROWS_PER_READ = 100
"""Most rows in one chunk, however narrow: past this, larger chunks save nothing measurable."""


@dataclass(frozen=True, slots=True)
class Counted:
    """What one query returned, as far as warmgate read it.

    ``rows`` counts every row read, wide ones included, up to the row cap plus one; ``wide`` how
    many of them were wider than ``row_bytes`` and were dropped; ``stopped`` says that reading
    ended at a value longer than ``row_bytes`` (SQLite), so rows after it were not counted;
    ``unchecked`` is the database's reason when the rows of this query could not be checked
    against ``row_bytes`` at all (a PostgreSQL query that cannot be read as a subquery).
    """

    rows: int
    wide: int = 0
    stopped: bool = False
    unchecked: Exception | None = None


def rows_per_read(widest: int) -> int:
    """How many rows of at most ``widest`` bytes one chunk may hold (1 to 100)."""
    return max(1, min(MAX_ROWS_PER_READ, CHUNK_BYTES // max(1, widest)))
