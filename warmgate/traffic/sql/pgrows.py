"""PostgreSQL: rows wider than ``row_bytes`` stay on the server.

Theory of operation. libpq reads a whole row (one DataRow message) into its buffer before
warmgate sees any of it, so a wide row cannot be dropped on the client: the server must not send
it. :func:`guard` wraps the query so that the server replaces the wide columns of a row wider
than ``row_bytes`` by NULLs and flags the row in a last column. To wrap a query, warmgate must
know its columns: the first time a pool runs a query with parameters of given types, it has the
server parse and describe it without running it (``Describe``), and parse the wrapped query too;
:class:`Shapes` remembers the outcome for a minute, or until the query fails, so that a change
of the schema is seen again.

The wrapping costs the server some parsing and planning on every query (docs/sql.md, "Wide
rows", has the figures), so it is only done when the columns' types do not already bound the
row (a row of integers, dates and ``varchar(40)`` never needs it), and only the columns of
unbounded types are measured, text and bytea in O(1): ``octet_length`` reads their stored
length, not their content (so the server does not read the out-of-line TOAST data of a value it
drops). A query the server cannot read as a subquery (``SHOW``, ``EXPLAIN``) is sent as it is,
and its rows are not checked (``Shape.unchecked``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psycopg

from warmgate.traffic.sql.rows import rows_per_read

SMALL_COLUMN = 128
"""Bytes: a column whose type bounds its text to this many is counted at that width, not
measured, and is sent even in a dropped row."""
_REFUSED_AS_SUBQUERY = ("42", "0A", "54")
"""SQLSTATE classes with which the server refuses a wrapped query that it parsed plain (syntax
error or access rule violation, feature not supported, a limit such as the most columns):
the query cannot be guarded."""
_REMEMBERED = 64
"""Shapes a pool remembers (a query with each combination of parameter types)."""
SHAPE_LIFETIME = 60.0
"""Seconds a shape is used before the query is described again."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a PostgreSQL result: its type and type modifier, as the server describes
    them (``typmod`` -1 when the type has none)."""

    type_oid: int
    typmod: int = -1


_FIXED = {
    16: 1,  # bool
    18: 4,  # "char", escaped when not printable
    19: 63,  # name
    20: 20,  # int8
    21: 6,  # int2
    23: 11,  # int4
    26: 10,  # oid
    27: 18,  # tid
    28: 10,  # xid
    29: 10,  # cid
    5069: 20,  # xid8
    700: 16,  # float4
    701: 24,  # float8
    790: 48,  # money, with the locale's currency symbol
    1082: 24,  # date, in any DateStyle
    1083: 16,  # time
    1266: 32,  # timetz
    1114: 48,  # timestamp, in any DateStyle
    1184: 64,  # timestamptz, with a zone abbreviation
    1186: 128,  # interval, in any IntervalStyle
    2950: 36,  # uuid
    869: 64,  # inet
    650: 64,  # cidr
    829: 17,  # macaddr
    774: 23,  # macaddr8
    3220: 17,  # pg_lsn
}
"""Types whose text form has a fixed most bytes, whatever the settings."""
_BYTEA, _BPCHAR, _VARCHAR, _TEXT, _NUMERIC, _BIT, _VARBIT = 17, 1042, 1043, 25, 1700, 1560, 1562
_MAX_CHAR_BYTES = 4
"""Bytes of the widest character in any server encoding."""


def text_bound(column: Column) -> int | None:
    """The most bytes of ``column``'s text form, or ``None`` when its type does not bound it."""
    if column.type_oid in _FIXED:
        return _FIXED[column.type_oid]
    if column.typmod < 0:
        return None
    if column.type_oid in (_BPCHAR, _VARCHAR):
        return (column.typmod - 4) * _MAX_CHAR_BYTES
    if column.type_oid in (_BIT, _VARBIT):
        return column.typmod
    if column.type_oid == _NUMERIC:
        precision = ((column.typmod - 4) >> 16) & 0xFFFF
        scale = (column.typmod - 4) & 0x7FF
        scale = scale - 0x800 if scale & 0x400 else scale  # 11 bits, signed (PostgreSQL 15)
        return precision + abs(scale) + 3  # a sign, a point and a leading zero
    return None


@dataclass(frozen=True, slots=True)
class Shape:
    """What to send for one query and how to read its answer.

    ``query`` is the user's query, or the guard around it; ``flag`` the index of the column that
    is not NULL exactly in a dropped row (``None``: nothing is dropped); ``per_read`` the rows
    libpq hands out at once; ``unchecked`` why the query is sent as it is although its rows may
    be wider than ``row_bytes`` (the server's refusal of the guard).
    """

    query: str
    flag: int | None
    per_read: int
    unchecked: Exception | None = None


def guard(query: str, columns: Sequence[Column], row_bytes: int, *, bytea_hex: bool) -> Shape:
    """How to run ``query``, whose result has ``columns``, so that no row wider than
    ``row_bytes`` bytes of text reaches the client.

    When the types bound every row within ``row_bytes``, the query is sent as it is. Otherwise
    it is read as a subquery, its columns renamed by position (``c1``, ``c2``...), and each row's
    width is the sum of its columns' text widths: small bounded columns count at their bound,
    text-like ones and bytea (``bytea_hex``: in hex, the default ``bytea_output``; otherwise at
    most four bytes a byte) by their length, anything else by its text form. A row wider than
    ``row_bytes`` arrives with NULL in place of its measured columns and true in a last column
    (NULL or false in a row that is kept).
    """
    bounds = [text_bound(column) for column in columns]
    framing = 7 + 4 * len(columns)
    if all(bound is not None for bound in bounds):
        widest = sum(bound for bound in bounds if bound is not None)
        if widest <= row_bytes:
            return Shape(query, None, rows_per_read(widest + framing))
    small = [bound is not None and bound <= SMALL_COLUMN for bound in bounds]
    fixed = sum(
        bound
        for bound, is_small in zip(bounds, small, strict=True)
        if is_small and bound is not None
    )
    if fixed > row_bytes // 2:  # thousands of columns: measure them all instead
        small = [False] * len(columns)
        fixed = 0
    names = [f"c{index + 1}" for index in range(len(columns))]
    measured = [
        _width(name, column, bytea_hex)
        for name, column, is_small in zip(names, columns, small, strict=True)
        if not is_small
    ]
    kept = _within(measured, row_bytes - fixed)
    # The checked query and names made here, never a value: nothing to inject.
    if len(measured) > 2 or not all(cheap for *_, cheap in measured):
        # Measuring once per row (behind a fence that stops the planner from pulling the
        # subquery up) costs less than measuring again in every column's CASE.
        flag = "NOT warmgate_kept"
        source = (
            f"(SELECT *, {kept} AS warmgate_kept FROM (\n{_bare(query)}\n) "  # noqa: S608
            f"AS warmgate_rows({', '.join(names)}) OFFSET 0) AS warmgate_guard"
        )
        kept = "warmgate_kept"
    else:
        # The cheapest to parse and plan: the lengths are O(1), measured in each CASE.
        flag = f"NOT ({kept})"
        source = f"(\n{_bare(query)}\n) AS warmgate_rows({', '.join(names)})"
    outputs = [
        name if is_small else f"CASE WHEN {kept} THEN {name} END"
        for name, is_small in zip(names, small, strict=True)
    ]
    wrapped = f"SELECT {', '.join(outputs)}, {flag} FROM {source}"  # noqa: S608
    return Shape(wrapped, len(columns), rows_per_read(row_bytes))


def _width(name: str, column: Column, bytea_hex: bool) -> tuple[str, int, int, bool]:
    """``(expression, a, b, cheap)``: the column's text width is at most ``a * expression + b``,
    and whether the expression reads a stored length (O(1)) rather than making the text."""
    if column.type_oid == _BYTEA:
        scale, extra = (2, 2) if bytea_hex else (4, 0)
        return f"octet_length({name})", scale, extra, True
    if column.type_oid in (_TEXT, _VARCHAR, _BPCHAR):
        return f"octet_length({name})", 1, 0, True
    return f"octet_length({name}::text)", 1, 0, False


def _within(measured: Sequence[tuple[str, int, int, bool]], limit: int) -> str:
    """The SQL condition that the measured widths add up to at most ``limit`` bytes.

    One column: its length against a threshold (NULL when the value is NULL, which keeps it and
    flags nothing); several: a 64-bit sum, a NULL counting as nothing.
    """
    if len(measured) == 1:
        expression, scale, extra, _ = measured[0]
        return f"{expression} <= {max(-1, (limit - extra) // scale)}"
    terms = " + ".join(
        f"coalesce({scale} * {expression}::int8 + {extra}, 0)"
        for expression, scale, extra, _ in measured
    )
    return f"{terms} <= {limit}"


def _bare(query: str) -> str:
    """``query`` without the semicolons and blanks it may end with, which a subquery cannot
    hold. (A semicolon at the very end is never inside a quote or a block comment of a query
    that parses: those would be unterminated.)"""
    bare = query.rstrip()
    while bare.endswith(";"):
        bare = bare[:-1].rstrip()
    return bare


Describe = Callable[[str], Awaitable[tuple[Sequence[Column], bool]]]
"""Have the server parse and describe a query without running it: its columns, and whether
``bytea`` is shown in hex (``bytea_output``). Raises the psycopg error when it does not parse."""


Key = tuple[str, tuple[int, ...], int]
"""A query, the type OIDs of its parameters (they can change a column's type), and
``row_bytes``."""


class Shapes:
    """What a pool learnt of its queries: the :class:`Shape` of each, for at most
    :data:`SHAPE_LIFETIME` seconds (``now`` is a monotonic clock's reading), so that a change of
    the schema (a column's type) is seen again within that time; and forgotten at once when the
    query fails, which a changed schema can make it do."""

    def __init__(self) -> None:
        self._known: dict[Key, tuple[Shape, float]] = {}

    def get(self, key: Key, now: float) -> Shape | None:
        """The shape learnt for ``key``, unless it is older than its lifetime."""
        known = self._known.get(key)
        if known is None or now - known[1] > SHAPE_LIFETIME or now < known[1]:
            return None
        return known[0]

    async def learn(self, key: Key, describe: Describe, now: float) -> Shape:
        """Learn the shape of ``key``'s query through ``describe``, and remember it.

        Raises the psycopg error when the query does not parse (nothing is remembered then).
        """
        query, _, row_bytes = key
        shape = await learn(query, row_bytes, describe)
        if len(self._known) >= _REMEMBERED:
            self._known.clear()
        self._known[key] = (shape, now)
        return shape

    def forget(self, key: Key) -> None:
        """Learn ``key``'s shape again next time (its query failed)."""
        self._known.pop(key, None)


async def learn(query: str, row_bytes: int, describe: Describe) -> Shape:
    """Describe ``query``, guard it, and check that the server parses the guarded query."""
    columns, bytea_hex = await describe(query)
    shape = guard(query, columns, row_bytes, bytea_hex=bytea_hex)
    if shape.flag is None:
        return shape
    try:
        await describe(shape.query)
    except psycopg.Error as exc:
        if not str(getattr(exc, "sqlstate", None) or "").startswith(_REFUSED_AS_SUBQUERY):
            raise
        # Without its traceback, which would keep the describing call's frames alive.
        return Shape(query, None, rows_per_read(row_bytes), unchecked=exc.with_traceback(None))
    return shape
