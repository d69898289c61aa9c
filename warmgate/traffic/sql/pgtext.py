"""What PostgreSQL is sent of a query: its text in the connection's encoding, and its parameter
values with their types.

The bytes are what the server lexes, so they decide whether ``standard_conforming_strings``
matters for a query (:func:`encoded`), and a client encoding that would send a character of the
query as another (Python's EUC_JP and Shift JIS codecs send ``¥`` as a backslash's byte) makes
the query fail rather than reach the server unlike what the statement check read.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg

# A Python int is bound as the smallest of int2, int4, int8 (then numeric) that holds it, as
# psycopg binds it, so a query fails or succeeds here as it does in an app using psycopg.
INTEGER_TYPES = ((2**15, 21), (2**31, 23), (2**63, 20))
NUMERIC = 1700
_ENCODINGS: dict[bytes | None, str] = {}


def encoding_of(connection: psycopg.AsyncConnection[Any]) -> str:
    """The Python codec of the connection's ``client_encoding``, as psycopg names it."""
    name = connection.pgconn.parameter_status(b"client_encoding")
    found = _ENCODINGS.get(name)
    if found is None:
        found = _ENCODINGS[name] = connection.info.encoding
    return found


def bind(value: int | str, encoding: str) -> tuple[bytes, int]:
    """``(text, type OID)`` of one parameter; a string's type is left to the server (OID 0)."""
    if isinstance(value, str):
        return value.encode(encoding), 0
    return str(value).encode(), type_of(value)


def type_of(value: int | str) -> int:
    """The type OID a parameter is bound with (0: the server infers it)."""
    if isinstance(value, str):
        return 0
    for limit, oid in INTEGER_TYPES:
        if -limit <= value < limit:
            return oid
    return NUMERIC


@functools.lru_cache(maxsize=64)
def encoded(query: str, encoding: str) -> tuple[bytes, bool]:
    """``query`` in the connection's encoding, and whether the server's reading of it depends on
    ``standard_conforming_strings``: only with a backslash byte (what a backslash in a string
    means) or an ``&`` (``U&'...'`` strings are refused with it off).

    Raises when the encoding sends a character of the query as another (Python's EUC_JP and
    Shift JIS codecs send ``¥`` as the byte of a backslash): the server would not read the text
    the statement check read."""
    text = query.encode(encoding)
    if text.decode(encoding) != query:
        raise psycopg.NotSupportedError(
            f"the connection's client_encoding ({encoding}) sends some character of the query "
            "as another (such as ¥ as a backslash), so the server would not read the query the "
            "statement check read; use UTF8 as the client encoding, or leave that character out"
        )
    return text, b"\\" in text or b"&" in text
