"""The statement check for PostgreSQL, read with PostgreSQL's own scanner and grammar.

Theory of operation. pglast wraps libpg_query, which is the server's parser source (scan.l and
gram.y) built as a library, so comments (``--`` ends at ``\\r`` or ``\\n``; ``/* */`` nests),
strings (``E''``, ``U&''``, dollar quotes, a ``$`` inside a name such as ``x$$``), typed
literals (``name'...'`` is a cast of a standard string, not an ``E''`` one) and quoted or
Unicode-escaped names are read as the server reads them, not approximated. The check parses
the query *as warmgate sends it* (``:name`` already turned into ``$1``... by ``binding.py``)
and then:

- requires each ``$n`` that warmgate binds to be a parameter token, and no other ``$n``;
- requires one statement of a read kind: ``SELECT`` (with ``WITH``, ``VALUES``, ``TABLE``),
  ``EXPLAIN`` of one, or ``SHOW``;
- walks the whole tree: a data-modifying statement anywhere (a ``WITH`` part, ``EXPLAIN
  ANALYZE``'s query) is a write, ``INTO`` creates a table, a locking clause blocks the app;
  every node kind not on a list of those a read may hold is refused, since the check cannot
  classify it;
- collects every name the statement may call: function calls, and every part of a column
  reference or field selection, since ``(x).f`` and ``t.f`` call ``f`` (attribute notation);
  the known escape hatches among them are refused by name.

What the server and the check could still read differently, and how that is closed:

- ``standard_conforming_strings``: pglast reads ``'a\\'`` as a whole string, as the server does
  with the setting on (the default since 9.1). The driver sends ``SET LOCAL
  standard_conforming_strings = on`` before the query in the transaction of every query whose
  bytes hold a backslash or an ``&``, so the server always reads it that way too; the setting
  changes only what a backslash means and whether ``U&'...'`` strings are accepted, so any
  other query reads the same either way (``postgres.py``).
- the version: pglast follows PostgreSQL 18's grammar. Later versions added syntax that older
  servers refuse, and changed the reading of numbers: ``0x1F`` and ``1_000`` are numbers from
  16 on, a number and a name before; such numbers are refused, so every server reads each
  token as the check does.
- the encoding: the server converts the query from the client encoding before it lexes it, so
  it lexes the same characters pglast read, unless the client encoding sends a character as
  another (Python's EUC_JP and Shift JIS codecs send ``¥`` as a backslash's byte): the driver
  then refuses to send the query (``postgres.py``). A NUL character, which the protocol cannot
  carry, is refused (``check.py``).

pglast builds its tree by recursion in C, which a deep enough query overflows (a segfault, not
an exception): a query of more than :data:`MAX_TOKENS` tokens is refused, and the parse runs on
a thread with a stack of its own, so that the bound holds whatever stack the caller has.

pglast is imported only here, and this module only for PostgreSQL targets (its parser is a
27 MB shared library, mapped, of which importing and parsing touch a few MiB: docs/sql.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pglast.ast
from pglast import parser

from warmgate.traffic.sql.binding import Binding, Reading, misplaced

_ESCAPES = (
    (r"dblink\w*", "opens a connection of its own, outside the read-only transaction"),
    (r"postgres_fdw\w*", "manages postgres_fdw's connections to other servers"),
    (r"lo_(import|export|creat|create|unlink|put|from_bytea|truncate|truncate64)|lowrite",
     "writes large objects or files on the database server"),
    (r"pg_(terminate|cancel)_backend", "stops or interrupts other sessions, such as the app's"),
    (r"pg_read_(binary_)?file|pg_ls_\w+|pg_stat_file|pg_file_\w+",
     "reads or writes files on the database server"),
    (r"pg_(try_)?advisory_lock(_shared)?",
     "takes a session-level lock that outlives the query (pg_advisory_xact_lock does not)"),
    (r"pg_reload_conf|pg_rotate_logfile\w*|pg_switch_(wal|xlog)|pg_create_restore_point"
     r"|pg_promote|pg_(start|stop)_backup|pg_backup_(start|stop)|pg_(wal|xlog)_replay_\w+"
     r"|pg_log_backend_memory_contexts|pg_import_system_collations",
     "acts on the whole server (its configuration, logs, WAL or backups), which no rollback "
     "undoes"),
    (r"pg_stat_\w*reset\w*", "resets statistics, which no rollback undoes"),
    (r"query_to_xml\w*|ts_stat|ts_rewrite",
     "runs SQL text it is given, which the check cannot read"),
    (r"pg_(create|drop|copy)_\w*replication_slot|pg_replication_slot_advance"
     r"|pg_logical_slot_\w+|pg_replication_origin_\w+|pg_logical_emit_message",
     "acts on replication, outside the read-only transaction"),
)  # fmt: skip
_ESCAPE = re.compile("|".join(f"(?:{pattern})" for pattern, _ in _ESCAPES))

_READS = (pglast.ast.SelectStmt, pglast.ast.ExplainStmt, pglast.ast.VariableShowStmt)
_WRITES = {
    pglast.ast.InsertStmt: "INSERT",
    pglast.ast.UpdateStmt: "UPDATE",
    pglast.ast.DeleteStmt: "DELETE",
    pglast.ast.MergeStmt: "MERGE",
}
# What a read-only statement's raw parse tree may hold besides the statement kinds above.
_READ_NODES = frozenset(
    getattr(pglast.ast, name)
    for name in (  # noqa: SIM905 - a list of 70 names reads better as words
        "A_ArrayExpr A_Const A_Expr A_Indices A_Indirection A_Star Alias BitString BoolExpr "
        "Boolean BooleanTest CTECycleClause CTESearchClause CaseExpr CaseWhen CoalesceExpr "
        "CollateClause ColumnDef ColumnRef CommonTableExpr DefElem Float FuncCall GroupingFunc "
        "GroupingSet Integer JoinExpr JsonAggConstructor JsonArgument JsonArrayAgg "
        "JsonArrayConstructor JsonArrayQueryConstructor JsonBehavior JsonFormat JsonFuncExpr "
        "JsonIsPredicate JsonKeyValue JsonObjectAgg JsonObjectConstructor JsonOutput "
        "JsonParseExpr JsonReturning JsonScalarExpr JsonSerializeExpr JsonTable JsonTableColumn "
        "JsonTablePathSpec JsonValueExpr MinMaxExpr NamedArgExpr NullTest ParamRef "
        "RangeFunction RangeSubselect RangeTableFunc RangeTableFuncCol RangeTableSample "
        "RangeVar ResTarget RowExpr SQLValueFunction SortBy String SubLink TypeCast TypeName "
        "WindowDef WithClause XmlExpr XmlSerialize"
    ).split()
)
_STRINGS = frozenset({"SCONST", "USCONST", "BCONST", "XCONST"})
_NAMES = frozenset({"IDENT", "UIDENT"})
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
MAX_TOKENS = 10_000
"""Tokens of a query the check parses at most; a longer query is refused. A tree as deep as the
tokens are many then always fits :data:`_STACK_BYTES` (a chain of 40,000 ``+`` overflowed the
8 MiB main stack here; 10,000 nested ``(`` are already past the grammar's own limit)."""
_STACK_BYTES = 64 * 2**20
_LOCKS = "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"
_NEW_NUMBER = re.compile(r"0[xXoObB]|_")
EXAMPLE = "'%' || {name} || '%'"
"""How to write a parameter into a LIKE pattern, with ``{name}`` for ``:name``."""


def read(binding: Binding) -> Reading:
    """What PostgreSQL would make of ``binding.server``: see the module docstring."""
    text = binding.server
    try:
        tokens = parser.scan(text)
        problem = _token_problem(binding, tokens)
        if problem is not None:
            return problem
        statements = _parse(text)
    except parser.ParseError as exc:
        return Reading(unreadable=f"is not valid PostgreSQL ({exc})")
    if len(statements) > 1:
        return Reading(write="holds more than one statement")
    statement = statements[0].stmt if statements else None
    if statement is None:
        return Reading(write="has no statement")
    return _statement(statement, text, tokens)


def _parse(text: str) -> tuple[pglast.ast.RawStmt, ...]:
    """``parse_sql(text)`` on a thread with a stack of its own: pglast builds the tree by
    recursion in C, so its depth must not depend on the stack the caller happens to have."""
    result: list[tuple[pglast.ast.RawStmt, ...]] = []
    failure: list[parser.ParseError] = []

    def parse() -> None:
        try:
            result.append(parser.parse_sql(text))
        except parser.ParseError as exc:
            failure.append(exc)

    previous = threading.stack_size(_STACK_BYTES)
    try:
        thread = threading.Thread(target=parse, name="warmgate-pgcheck")
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _token_problem(binding: Binding, tokens: list[parser.Token]) -> Reading | None:
    if len(tokens) > MAX_TOKENS:
        return Reading(
            unreadable=f"holds {len(tokens)} tokens, more than the {MAX_TOKENS} the check "
            "reads; a warm-up query is short"
        )
    params = {token.start: token for token in tokens if token.name == "PARAM"}
    for site in binding.sites:
        token = params.pop(site.start, None)
        if token is None or token.end + 1 != site.end:
            return Reading(parameter=misplaced(site, _where(tokens, site.start), EXAMPLE))
    for token in params.values():
        param = binding.server[token.start : token.end + 1]
        return Reading(
            parameter=f"holds {param}, a parameter warmgate does not bind; write parameters "
            "as :name, with a value in params"
        )
    for token in tokens:
        number = binding.server[token.start : token.end + 1]
        if token.name in {"ICONST", "FCONST"} and _NEW_NUMBER.search(number):
            return Reading(
                unreadable=f"writes the number {number}, which PostgreSQL reads as a number only "
                "from version 16 on (a number and a name before); write it in plain decimal"
            )
    return None


def _where(tokens: list[parser.Token], offset: int) -> str:
    token = next((t for t in tokens if t.start <= offset <= t.end), None)
    if token is not None and token.name in _STRINGS:
        return "inside a string literal"
    if token is not None and token.name in _NAMES:
        return "inside a quoted name"
    if token is not None and token.name in _COMMENTS:
        return "inside a comment"
    return "where PostgreSQL reads no parameter"


def _statement(statement: pglast.ast.Node, text: str, tokens: list[parser.Token]) -> Reading:
    escape = None
    if isinstance(statement, pglast.ast.CopyStmt) and statement.is_program:
        escape = "runs COPY ... PROGRAM, which runs a command on the database server"
    if not isinstance(statement, _READS):
        first = next(t for t in tokens if t.name not in _COMMENTS)
        word = text[first.start : first.end + 1].upper()
        kind = "writes data" if type(statement) in _WRITES else "is not a read-only query"
        if isinstance(statement, pglast.ast.TruncateStmt):
            kind = "writes data"
        return Reading(write=f"starts with {word}, which {kind}", escape=escape)
    calls: set[str] = set()
    write = unreadable = None
    for node in _nodes(statement):
        if type(node) in _WRITES:
            write = write or f"contains {_WRITES[type(node)]}, which writes data"
        elif isinstance(node, pglast.ast.IntoClause):
            write = write or "contains INTO (SELECT INTO creates a table)"
        elif isinstance(node, pglast.ast.LockingClause):
            write = (
                write or "takes row locks (FOR UPDATE/SHARE), which would block the app's writes"
            )
        elif type(node) not in _READ_NODES and not isinstance(node, _READS):
            unreadable = unreadable or (
                f"holds a {type(node).__name__} node, which the statement check cannot classify as "
                "part of a read"
            )
        calls.update(_called(node))
    for name in sorted(calls):
        if escape is None and _ESCAPE.fullmatch(name):
            why = next(why for pattern, why in _ESCAPES if re.fullmatch(pattern, name))
            escape = f"calls {name}, which {why}"
    return Reading(unreadable=unreadable, write=write, escape=escape, calls=frozenset(calls))


def _nodes(root: pglast.ast.Node) -> Iterator[pglast.ast.Node]:
    """Every node of the tree under ``root``, ``root`` first."""
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple | list):
            stack.extend(item)
        elif isinstance(item, pglast.ast.Node):
            yield item
            if type(item) in _WRITES:
                continue  # a write, whatever it holds
            slots: dict[str, object] = type(item).__slots__  # type: ignore[attr-defined]
            stack.extend(getattr(item, field) for field in slots)


def _called(node: pglast.ast.Node) -> Iterator[str]:
    """The names ``node`` may call: a function's name (its last part, whatever its schema),
    and each name of a column reference or field selection (attribute notation)."""
    if isinstance(node, pglast.ast.FuncCall):
        parts = node.funcname or ()
    elif isinstance(node, pglast.ast.ColumnRef):
        parts = node.fields or ()
    elif isinstance(node, pglast.ast.A_Indirection):
        parts = node.indirection or ()
    else:
        return
    for part in parts[-1:] if isinstance(node, pglast.ast.FuncCall) else parts:
        if isinstance(part, pglast.ast.String) and part.sval is not None:
            yield part.sval.lower()
