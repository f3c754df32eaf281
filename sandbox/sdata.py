"""The SData query language of Sage CRM: ``where=`` filters and ``orderBy`` as parameterised SQL.

A ``where`` expression is tokenised, parsed by recursive descent into a small tree
(precedence ``not`` > ``and`` > ``or``, brackets to override) and compiled to SQL
in which every value is a ``?`` parameter: user text only ever selects a
:class:`Field`, whose SQL the caller wrote.

Strict by default: only what Sage documents for sagecrm2 (developer.sage.com/crm, REST
API reference, "Operators to filter retrieved records": ``and``, ``or``, ``eq``, ``gt``,
``ge``, ``like``, ``between ... and``; Sage's own examples also use ``in (...)``), so that
a connector sending anything else fails a test::

    field eq|gt|ge value
    field between value and value
    field in (value, value, ...)
    field like 'pattern'                 (% any run, _ one character)
    x and y     x or y     (x)

Values are strings in single quotes (``''`` is a quote) and numbers. Everything else is
refused with a 400 naming it (:data:`UNDOCUMENTED`): ``ne``, ``lt``, ``le``, the symbol
forms ``= <> < <= > >=``, ``not`` (before a condition, or ``not between/in/like``) and
date literals. The reference gives no literal form for dates: ``@2014-03-14@`` is SData
1.x's, not documented for sagecrm2, so a strict server cannot compare a date at all.

With ``extended=True`` (``SandboxConfig.crm_filter_operators="extended"``, the
counterpart of the connector's ``CRMFilterOperators=extended``) all of those are
understood too: ``ne lt le`` (and the symbols), ``not``, and date literals
``@2014-03-14@`` or ``@2014-03-14T10:00:00@`` (in the server's time zone unless they
carry ``Z`` or an offset). In both modes, as documented for Sage CRM, nulls and booleans
cannot be filtered: ``null``, ``true``, ``false`` and ``is null`` are refused with a clear
error. Which operators a field takes comes from the table definition.

>>> f = Field("comp_name", "TEXT", "name", frozenset({"=", "!=", "LIKE"}))
>>> compile_where("Comp_Name like 'Acme%' or comp_name eq 'O''Brien'", {"comp_name": f})
('(name LIKE ? OR name COLLATE NOCASE = ?)', ['Acme%', "O'Brien"])
>>> compile_where("comp_name ne 'x'", {"comp_name": f})
Traceback (most recent call last):
...
sagesql.sandbox.sdata.SDataError: Sage CRM documents no 'ne' operator for where= \
(documented: eq gt ge like between in, and or) (at character 11)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any


class SDataError(ValueError):
    """A ``where`` or ``orderBy`` the server refuses (answered with 400)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        where = f" (at character {position + 1})" if position is not None else ""
        super().__init__(message + where)
        self.position = position


@dataclass(frozen=True)
class Field:
    """A field the language can name: its SQL, type and the operators it takes."""

    name: str
    type: str  # the catalog's column type: TEXT, INTEGER, DECIMAL, DATE, DATETIME, BOOLEAN
    sql: str
    operators: frozenset[str]  # catalog spelling: = != < <= > >= IN LIKE
    order_sql: str | None = None  # what to sort by, when cheaper than ``sql``
    # A date literal as the parameter compared with ``sql`` (dates are stored as text).
    date_param: Callable[[datetime], Any] | None = None
    # SQL Server's default collation compares text case-insensitively; NOCASE emulates it.
    collation: str | None = "NOCASE"


# -- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<date>@[^@]*@)
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<symbol><=|>=|<>|[=<>(),])
    """,
    re.VERBOSE,
)

# What Sage does not document for sagecrm2 where=: refused unless extended.
UNDOCUMENTED = frozenset({"ne", "lt", "le", "=", "<>", "<", "<=", ">", ">=", "not", "@date@"})
DOCUMENTED = "eq gt ge like between in, and or"

_WORD_OPERATORS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_SYMBOL_OPERATORS = {"=": "=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_SQL_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
KEYWORDS = frozenset(
    {*_WORD_OPERATORS, "and", "or", "not", "between", "in", "like", "is", "null", "true", "false"}
)


@dataclass(frozen=True)
class Token:
    kind: str  # string, date, number, ident, keyword, symbol, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise SDataError("unterminated string (quote a quote as '')", pos)
            if text[pos] == "@":
                raise SDataError("unterminated date literal (write @2014-03-14@)", pos)
            raise SDataError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        if kind != "space":
            word = match.group()
            if kind == "ident" and word.lower() in KEYWORDS:
                kind, word = "keyword", word.lower()
            tokens.append(Token(kind, word, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# -- literals -----------------------------------------------------------------------------

_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_date(text: str, local: tzinfo, pos: int = 0) -> datetime:
    """The instant of a date literal's content; without an offset it is server local time."""
    match = _DATE.match(text.strip())
    if match is None:
        raise SDataError(
            f"bad date literal @{text}@ (write @2014-03-14@ or @2014-03-14T10:00:00@)", pos
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone: tzinfo = local
    if offset == "Z":
        zone = timezone.utc
    elif offset:
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        zone = timezone(delta if offset[0] == "+" else -delta)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as err:
        raise SDataError(f"bad date literal @{text}@: {err}", pos) from None


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, date, null, boolean
    value: Any
    pos: int


# -- the tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # catalog spelling
    value: Literal
    pos: int


@dataclass(frozen=True)
class Between:
    field: str
    low: Literal
    high: Literal
    negated: bool
    pos: int


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Literal, ...]
    negated: bool
    pos: int


@dataclass(frozen=True)
class Like:
    field: str
    pattern: Literal
    negated: bool
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Logical:
    op: str  # AND, OR
    left: Node
    right: Node


Node = Compare | Between | In | Like | Not | Logical


class _Parser:
    """Recursive descent over the tokens: or_ > and_ > not_ > primary > predicate."""

    def __init__(self, text: str, local: tzinfo, extended: bool = False) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.local = local
        self.extended = extended

    def documented(self, token: Token) -> None:
        """Refuse a form Sage does not document (unless extended), naming it."""
        if not self.extended:
            what = (
                f"date literal {token.text} (it documents none)"
                if token.kind == "date"
                else f"{token.text!r} operator"
            )
            raise SDataError(
                f"Sage CRM documents no {what} for where= (documented: {DOCUMENTED})",
                token.pos,
            )

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.i += 1
            return token
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        found = self.accept(kind, text)
        if found is None:
            raise SDataError(f"expected {what}, found {self.describe(self.token)}", self.token.pos)
        return found

    @staticmethod
    def describe(token: Token) -> str:
        return "the end of the expression" if token.kind == "end" else repr(token.text)

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise SDataError("empty where expression", 0)
        node = self.or_()
        if self.token.kind != "end":
            raise SDataError(
                f"expected 'and', 'or' or the end, found {self.describe(self.token)}",
                self.token.pos,
            )
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("keyword", "or"):
            node = Logical("OR", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("keyword", "and"):
            node = Logical("AND", node, self.not_())
        return node

    def not_(self) -> Node:
        token = self.token
        if self.accept("keyword", "not"):
            self.documented(token)
            return Not(self.not_())
        return self.primary()

    def primary(self) -> Node:
        if self.accept("symbol", "("):
            node = self.or_()
            self.expect("symbol", ")", "')'")
            return node
        return self.predicate()

    def predicate(self) -> Node:
        token = self.take()
        if token.kind != "ident":
            if token.kind in {"string", "number", "date"}:
                raise SDataError("a condition starts with a field name, not a value", token.pos)
            raise SDataError(f"expected a field name, found {self.describe(token)}", token.pos)
        name, pos = token.text, token.pos
        negation = self.accept("keyword", "not")
        negated = negation is not None
        if negation is not None:
            self.documented(negation)
        op = self.take()
        if op.kind == "keyword" and op.text == "between":
            low = self.literal()
            self.expect("keyword", "and", "'and' of 'between'")
            return Between(name, low, self.literal(), negated, pos)
        if op.kind == "keyword" and op.text == "in":
            self.expect("symbol", "(", "'(' after 'in'")
            values = [self.literal()]
            while self.accept("symbol", ","):
                values.append(self.literal())
            self.expect("symbol", ")", "')' closing the 'in' list")
            return In(name, tuple(values), negated, pos)
        if op.kind == "keyword" and op.text == "like":
            return Like(name, self.literal(), negated, pos)
        if negated:
            raise SDataError("'not' after a field must be followed by between, in or like", op.pos)
        if op.kind == "keyword" and op.text == "is":
            raise SDataError("Sage CRM cannot filter on null values", op.pos)
        compare = _WORD_OPERATORS.get(op.text) if op.kind == "keyword" else None
        if op.kind == "symbol":
            compare = _SYMBOL_OPERATORS.get(op.text)
        if compare is None:
            expected = "eq ne lt le gt ge" if self.extended else "eq gt ge"
            raise SDataError(
                f"expected an operator ({expected} between in like) after {name!r}, "
                f"found {self.describe(op)}",
                op.pos,
            )
        if op.text in UNDOCUMENTED:
            self.documented(op)
        return Compare(name, compare, self.literal(), pos)

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return Literal("string", token.text[1:-1].replace("''", "'"), token.pos)
        if token.kind == "number":
            number = Decimal(token.text)
            return Literal("number", int(number) if "." not in token.text else number, token.pos)
        if token.kind == "date":
            self.documented(token)
            return Literal("date", parse_date(token.text[1:-1], self.local, token.pos), token.pos)
        if token.kind == "keyword" and token.text == "null":
            return Literal("null", None, token.pos)
        if token.kind == "keyword" and token.text in {"true", "false"}:
            return Literal("boolean", token.text == "true", token.pos)
        if token.kind == "ident":
            raise SDataError(
                f"expected a value, found the name {token.text!r} (quote text as 'text')",
                token.pos,
            )
        raise SDataError(f"expected a value, found {self.describe(token)}", token.pos)


def parse_where(text: str, local: tzinfo = timezone.utc, *, extended: bool = False) -> Node:
    """The tree of a ``where`` expression (SDataError when malformed or, unless
    ``extended``, when it uses a form Sage does not document)."""
    return _Parser(text, local, extended).parse()


# -- compiling to SQL ---------------------------------------------------------------------


class _Compiler:
    def __init__(self, fields: Mapping[str, Field]) -> None:
        self.fields = fields
        self.params: list[Any] = []

    def field(self, name: str, pos: int) -> Field:
        found = self.fields.get(name.lower())
        if found is None:
            close = difflib.get_close_matches(name.lower(), list(self.fields), n=1)
            hint = f"; did you mean {self.fields[close[0]].name}?" if close else ""
            raise SDataError(f"unknown field {name!r}{hint}", pos)
        if found.type == "BOOLEAN":
            raise SDataError(f"Sage CRM cannot filter on booleans ({found.name})", pos)
        return found

    @staticmethod
    def allow(field: Field, operator: str, spelled: str, pos: int) -> None:
        if operator not in field.operators:
            raise SDataError(f"{field.name} cannot be filtered with {spelled}", pos)

    def value(self, field: Field, literal: Literal) -> Any:
        """The parameter for a literal compared with the field, or SDataError on a mismatch."""
        kind, value, pos = literal.kind, literal.value, literal.pos
        if kind == "null":
            raise SDataError("Sage CRM cannot filter on null values", pos)
        if kind == "boolean":
            raise SDataError("Sage CRM cannot filter on booleans", pos)
        if field.type in {"DATE", "DATETIME"}:
            if kind != "date" or field.date_param is None:
                raise SDataError(
                    f"{field.name} is a date: compare it with a date literal like @2014-03-14@",
                    pos,
                )
            return field.date_param(value)
        if field.type in {"INTEGER", "DECIMAL"}:
            if kind == "string":
                try:
                    value = Decimal(value.strip())
                except InvalidOperation:
                    raise SDataError(f"{field.name} is a number, not {value!r}", pos) from None
            elif kind != "number":
                raise SDataError(f"{field.name} is a number: compare it with a number", pos)
            number = Decimal(value)
            return int(number) if number == number.to_integral_value() else float(number)
        if kind != "string":
            raise SDataError(f"{field.name} is text: quote the value, as in 'text'", pos)
        return value

    def text(self, field: Field) -> str:
        if field.collation and field.type == "TEXT":
            return f"{field.sql} COLLATE {field.collation}"
        return field.sql

    def compile(self, node: Node) -> str:
        if isinstance(node, Logical):
            return f"({self.compile(node.left)} {node.op} {self.compile(node.right)})"
        if isinstance(node, Not):
            return f"(NOT {self.compile(node.operand)})"
        if isinstance(node, Compare):
            field = self.field(node.field, node.pos)
            self.allow(field, node.op, node.op, node.pos)
            self.params.append(self.value(field, node.value))
            return f"{self.text(field)} {_SQL_OPERATORS[node.op]} ?"
        if isinstance(node, Between):
            field = self.field(node.field, node.pos)
            self.allow(field, ">=", "between", node.pos)
            self.allow(field, "<=", "between", node.pos)
            self.params += [self.value(field, node.low), self.value(field, node.high)]
            negated = "NOT " if node.negated else ""
            return f"{self.text(field)} {negated}BETWEEN ? AND ?"
        if isinstance(node, In):
            field = self.field(node.field, node.pos)
            self.allow(field, "IN", "in", node.pos)
            self.params += [self.value(field, v) for v in node.values]
            marks = ", ".join("?" * len(node.values))
            return f"{self.text(field)} {'NOT ' if node.negated else ''}IN ({marks})"
        field = self.field(node.field, node.pos)
        self.allow(field, "LIKE", "like", node.pos)
        if node.pattern.kind != "string":
            raise SDataError("like takes a quoted pattern, as in 'Acme%'", node.pattern.pos)
        self.params.append(node.pattern.value)
        # SQLite's LIKE, like SQL Server's default collation, ignores the case of letters.
        return f"{field.sql} {'NOT ' if node.negated else ''}LIKE ?"


def compile_where(
    text: str,
    fields: Mapping[str, Field],
    local: tzinfo = timezone.utc,
    *,
    extended: bool = False,
) -> tuple[str, list[Any]]:
    """SQL and parameters for a ``where`` expression over ``fields`` (keyed by lower-case name)."""
    compiler = _Compiler(fields)
    sql = compiler.compile(parse_where(text, local, extended=extended))
    return sql, compiler.params


def compile_order(text: str, fields: Mapping[str, Field]) -> list[str]:
    """SQL ORDER BY terms for ``orderBy=comp_name desc, comp_companyid``."""
    tokens = tokenize(text)
    terms: list[str] = []
    i = 0
    while tokens[i].kind != "end":
        token = tokens[i]
        if token.kind != "ident":
            raise SDataError(f"expected a field name in orderBy, found {token.text!r}", token.pos)
        field = _Compiler(fields).field(token.text, token.pos)
        i += 1
        direction = "ASC"
        if tokens[i].kind == "ident" and tokens[i].text.lower() in {"asc", "desc"}:
            direction = tokens[i].text.upper()
            i += 1
        sql = field.order_sql or field.sql
        if field.collation and field.type == "TEXT":
            sql += f" COLLATE {field.collation}"
        terms.append(f"{sql} {direction}")
        if tokens[i].kind == "symbol" and tokens[i].text == ",":
            i += 1
            if tokens[i].kind == "end":
                raise SDataError("orderBy ends with a comma", tokens[i].pos)
        elif tokens[i].kind != "end":
            raise SDataError(
                f"expected asc, desc or ',' in orderBy, found {tokens[i].text!r}", tokens[i].pos
            )
    return terms
