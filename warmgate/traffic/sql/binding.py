"""Where a SQL target's ``:name`` parameters are, for the driver that binds them and the check
that reads the query: one function, so the two can never disagree.

Theory of operation. A query names its parameters ``:name``, with SQLAlchemy's rules for
``text()`` (which the docs promise): a colon not after a letter, digit, colon or backslash,
then a name of letters, digits and underscores not followed by another colon; ``\\:`` is a
literal colon. Those rules know nothing of SQL, so they also find ``:name`` inside string
literals, quoted names and comments. :func:`bind` renders the query for one driver's
parameter style, exactly as SQLAlchemy's compiler does (a test holds the two equal), and also
says where each parameter sits in the text the *server* reads, so that the statement check
can require each to sit where the server reads a value (``check.py``):

- PostgreSQL (``$1``, ``$2``...): the server binds the values itself, so ``$1`` inside a string
  would only be text (and the query fail for a parameter too many);
- MySQL and MariaDB (``%s``): the client formats each value into the SQL text as a quoted,
  escaped literal. ``'%:q%'`` would become ``'%'<value>'%'``, and the value then is SQL code:
  a parameter inside quotes or a comment is therefore never bound;
- SQLite (``?``): bound by the library, as for PostgreSQL.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# SQLAlchemy's TextClause._bind_params_regex and compiler.BIND_PARAMS_ESC, as one pattern: a
# parameter, or an escaped colon (the two never overlap, so one pass finds what two would).
_PARAMETER = re.compile(
    r"(?<![:\w\\]):(?P<name>\w+)(?![:\w])|\\(?P<escaped>:\w*)(?![:\w])", re.UNICODE
)


class Style(enum.Enum):
    """How a driver writes a parameter into the text it sends."""

    NUMERIC_DOLLAR = "numeric_dollar"
    """PostgreSQL: ``$1``, the same number for each use of a name."""
    FORMAT = "format"
    """PyMySQL: ``%s`` for each use, and ``%`` written ``%%`` everywhere else."""
    QMARK = "qmark"
    """sqlite3: ``?`` for each use."""


@dataclass(frozen=True, slots=True)
class Site:
    """One use of a parameter in the text the server reads: ``server[start:end]``."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Binding:
    """A query rendered for a driver, and where its parameters are.

    ``text`` is what the driver sends (with ``%s`` for PyMySQL, which formats the values into
    it); ``names`` the parameter names in the order the driver passes their values;
    ``server`` the text as the server lexes it, a parameter written ``$n`` (PostgreSQL) or
    ``?`` (the value's place, for MySQL and SQLite), and ``sites`` where each one is in it.
    """

    text: str
    names: tuple[str, ...]
    server: str
    sites: tuple[Site, ...]


def bind(query: str, style: Style) -> Binding:
    """``query`` rendered for ``style``, with the place of every parameter."""
    text: list[str] = []
    server: list[str] = []
    names: list[str] = []
    sites: list[Site] = []
    length = 0
    position = 0
    for match in _PARAMETER.finditer(query):
        plain = query[position : match.start()]
        position = match.end()
        _append(text, server, plain, style)
        length += len(plain)
        if match.group("escaped") is not None:
            _append(text, server, match.group("escaped"), style)
            length += len(match.group("escaped"))
            continue
        name = match.group("name")
        if style is Style.NUMERIC_DOLLAR:
            if name not in names:
                names.append(name)
            placeholder = seen = f"${names.index(name) + 1}"
        else:
            names.append(name)
            placeholder, seen = ("%s", "?") if style is Style.FORMAT else ("?", "?")
        text.append(placeholder)
        server.append(seen)
        sites.append(Site(name, length, length + len(seen)))
        length += len(seen)
    _append(text, server, query[position:], style)
    return Binding("".join(text), tuple(names), "".join(server), tuple(sites))


def _append(text: list[str], server: list[str], plain: str, style: Style) -> None:
    text.append(plain.replace("%", "%%") if style is Style.FORMAT else plain)
    server.append(plain)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the statement check made of one query (``check.py``), each field a sentence
    fragment that follows the query's field name, or ``None``.

    ``unreadable``: the check cannot read the query as its server would, with certainty (it
    is refused whatever else it holds); ``parameter``: a ``:name`` that the server would not
    read as a value; ``write``: it writes, locks or is not one read-only statement;
    ``escape``: it calls a function that acts outside the read-only transaction. ``calls``
    are the names of everything the statement may call as a function, lower-cased.
    """

    unreadable: str | None = None
    parameter: str | None = None
    write: str | None = None
    escape: str | None = None
    calls: frozenset[str] = frozenset()


def misplaced(site: Site, where: str, example: str) -> str:
    """The sentence fragment for a parameter that sits ``where`` (``inside a string
    literal``), with a way to write it that works."""
    fixed = example.format(name=f":{site.name}")
    return (
        f"has :{site.name} {where}, where the server does not read a value, so warmgate "
        f"will not bind it there; write the parameter outside quotes and comments, such as "
        f"{fixed}, or write \\:{site.name} for a literal colon"
    )
