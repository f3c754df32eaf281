"""The OData query options of Sage 200 lists: ``$filter`` as parameterised SQL, ``$orderby``.

The subset Sage 200 documents (SAGE-APIS.md, section 2)::

    expr     := or
    or       := and ('or' and)*
    and      := unary ('and' unary)*
    unary    := 'not' unary | compare
    compare  := operand (('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand)?
    operand  := '(' expr ')' | call | literal | field
    call     := ('contains'|'startswith'|'endswith') '(' field ',' string ')'
    literal  := 'it''s' | 12 | -1.5 | true | false | null | 2024-01-31 | 2024-01-31T09:15:00.123Z
    field    := name ('/' name)*        (a/b: the field b of the embedded object a)

so ``not`` binds tighter than ``and``, which binds tighter than ``or``. Dates and
date-times are written unquoted; a date-time must end in ``Z`` (UTC). The parser
checks every field through a resolver supplied by the caller (unknown fields are
errors) and produces SQL whose values are all ``?`` parameters, never text.

Comparisons follow OData's two-valued logic: ``null eq null`` is true, a comparison
of null with a value is false except ``ne``, which is true; text compares
case-insensitively, as Sage 200's SQL Server collation does.

>>> fields = {"name": Field("json_extract(data, '$.name')", "TEXT")}
>>> filter_sql("not (name eq 'it''s') or startswith(name,'b')", fields.__getitem__)[1]
["it's", 'b%']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

COMPARISONS = {"eq": "IS", "ne": "IS NOT", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
FUNCTIONS = {"contains": ("%", "%"), "startswith": ("", "%"), "endswith": ("%", "")}
KEYWORDS = {"and", "or", "not", *COMPARISONS}
LIKE_ESCAPE = "\\"

# Which literal kinds each field type accepts.
NUMERIC = frozenset({"INTEGER", "DECIMAL"})
TEMPORAL = frozenset({"DATE", "DATETIME"})


class ODataError(ValueError):
    """A query option Sage 200 would refuse with 400: what is wrong, and where."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.position = position


@dataclass(frozen=True)
class Field:
    """How a field of a record is reached in SQL, and what type its values have."""

    sql: str
    type: str  # a catalog type: TEXT INTEGER DECIMAL BOOLEAN DATE DATETIME JSON
    nullable: bool = True
    # Turns a literal (str, int, Decimal, bool, date, datetime) into the SQL parameter.
    convert: Callable[[Any], Any] | None = None
    # What $orderby sorts by, when not ``sql`` (an indexed column in the same order).
    order_sql: str | None = None


Resolver = Callable[[str], Field]


def datetime_text(value: date | datetime) -> str:
    """The sandbox's form of a Sage 200 date-time: 2024-01-31T09:15:00.123Z (UTC)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# -- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # NAME STRING NUMBER DATE DATETIME ( ) , END
    value: Any
    position: int
    text: str


_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?P<zone>Z|z|[+-]\d{2}:?\d{2})?"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:])")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")


def tokenize(text: str) -> list[Token]:
    """The tokens of a query option, ending with an END token."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "(),":
            tokens.append(Token(ch, ch, i, ch))
            i += 1
            continue
        if ch == "'":
            tokens.append(_string(text, i))
            i += len(tokens[-1].text)
            continue
        match = _DATETIME.match(text, i)
        if match:
            tokens.append(_datetime(match, i))
            i = match.end()
            continue
        match = _DATE.match(text, i)
        if match:
            try:
                value = date.fromisoformat(match.group())
            except ValueError:
                raise ODataError(f"invalid date {match.group()!r}", i) from None
            tokens.append(Token("DATE", value, i, match.group()))
            i = match.end()
            continue
        match = _NUMBER.match(text, i)
        if match:
            tokens.append(Token("NUMBER", _number(match.group()), i, match.group()))
            i = match.end()
            continue
        match = _NAME.match(text, i)
        if match:
            tokens.append(Token("NAME", match.group(), i, match.group()))
            i = match.end()
            continue
        raise ODataError(f"unexpected character {ch!r}", i)
    tokens.append(Token("END", None, len(text), ""))
    return tokens


def _string(text: str, start: int) -> Token:
    """A quoted string; a quote inside is doubled ('it''s')."""
    i = start + 1
    chars: list[str] = []
    while i < len(text):
        if text[i] == "'":
            if text.startswith("''", i):
                chars.append("'")
                i += 2
                continue
            return Token("STRING", "".join(chars), start, text[start : i + 1])
        chars.append(text[i])
        i += 1
    raise ODataError("unterminated string (strings are in single quotes, '' for a quote)", start)


def _datetime(match: re.Match[str], position: int) -> Token:
    raw = match.group()
    zone = match.group("zone")
    if zone is None or zone.upper() != "Z":
        raise ODataError(
            f"date-time {raw!r} must be in UTC and end in Z, e.g. 2016-02-24T09:52:11.452Z",
            position,
        )
    body = raw[:-1]
    if "." in body:  # Python takes at most 6 fraction digits
        head, fraction = body.split(".")
        body = f"{head}.{fraction[:6].ljust(6, '0')}"
    try:
        value = datetime.fromisoformat(body).replace(tzinfo=timezone.utc)
    except ValueError:
        raise ODataError(f"invalid date-time {raw!r}", position) from None
    return Token("DATETIME", value, position, raw)


def _number(text: str) -> int | Decimal:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ODataError(f"invalid number {text!r}") from None


# -- the $filter parser --------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A parsed piece: SQL text, its parameters, and its type (BOOL for a condition)."""

    sql: str
    params: tuple[Any, ...]
    type: str  # BOOL, a field type, or a literal kind: STRING NUMBER BOOLEAN NULL DATE DATETIME
    field: Field | None = None
    name: str = ""
    value: Any = None
    position: int = 0


class _Parser:
    def __init__(self, text: str, resolve: Resolver) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.resolve = resolve

    # helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at_word(self, *words: str) -> bool:
        return self.token.kind == "NAME" and self.token.value.lower() in words

    def expect(self, kind: str, what: str) -> Token:
        if self.token.kind != kind:
            raise ODataError(f"expected {what}, found {self._found()}", self.token.position)
        return self.take()

    def _found(self) -> str:
        return "the end of the filter" if self.token.kind == "END" else repr(self.token.text)

    # grammar

    def parse(self) -> _Node:
        if self.token.kind == "END":
            raise ODataError("empty $filter", 0)
        node = self.condition(self.or_())
        if self.token.kind != "END":
            raise ODataError(
                f"unexpected {self._found()}: expected 'and', 'or' or the end",
                self.token.position,
            )
        return node

    def or_(self) -> _Node:
        parts = [self.and_()]
        while self.at_word("or"):
            self.take()
            parts.append(self.and_())
        return self.logical("OR", parts)

    def and_(self) -> _Node:
        parts = [self.unary()]
        while self.at_word("and"):
            self.take()
            parts.append(self.unary())
        return self.logical("AND", parts)

    def unary(self) -> _Node:
        if self.at_word("not"):
            self.take()
            inner = self.condition(self.unary())
            return _Node(f"NOT ({inner.sql})", inner.params, "BOOL")
        return self.compare()

    def logical(self, op: str, parts: list[_Node]) -> _Node:
        """``(a) OP (b) OP (c)``: flat, so that a long ``id eq 1 or id eq 2 ...`` does not
        nest once per term (SQLite's parser stack holds about a hundred levels)."""
        if len(parts) == 1:
            return parts[0]
        conditions = [self.condition(p) for p in parts]
        return _Node(
            f" {op} ".join(f"({c.sql})" for c in conditions),
            tuple(param for c in conditions for param in c.params),
            "BOOL",
        )

    def condition(self, node: _Node) -> _Node:
        """A node used as a condition: a comparison, a function, or a boolean field."""
        if node.type == "BOOL":
            return node
        if node.field is not None and node.type == "BOOLEAN":
            return _Node(f"coalesce({node.sql} = 1, 0)", node.params, "BOOL")
        what = f"field {node.name!r}" if node.field is not None else "a literal"
        raise ODataError(
            f"{what} is not a condition: compare it with eq, ne, gt, ge, lt or le",
            node.position,
        )

    def compare(self) -> _Node:
        left = self.operand()
        if self.token.kind == "NAME" and self.token.value.lower() in COMPARISONS:
            op_token = self.take()
            right = self.operand()
            return self.comparison(op_token.value.lower(), left, right, op_token.position)
        if self.token.kind == "NAME" and self.token.value.lower() not in KEYWORDS:
            raise ODataError(
                f"unknown operator {self.token.text!r}: use eq, ne, gt, ge, lt or le",
                self.token.position,
            )
        return left

    def operand(self) -> _Node:
        token = self.token
        if token.kind == "(":
            self.take()
            node = self.or_()
            self.expect(")", "')'")
            return node
        if token.kind == "STRING":
            self.take()
            return _Node("?", (token.value,), "STRING", value=token.value, position=token.position)
        if token.kind in ("NUMBER", "DATE", "DATETIME"):
            self.take()
            return _Node(
                "?", (token.value,), token.kind, value=token.value, position=token.position
            )
        if token.kind == "NAME":
            word = token.value.lower()
            if word in ("true", "false"):
                self.take()
                return _Node("?", (word == "true",), "BOOLEAN", value=word == "true")
            if word == "null":
                self.take()
                return _Node("NULL", (), "NULL", position=token.position)
            if word in KEYWORDS:
                raise ODataError(f"expected a field or a value, found {word!r}", token.position)
            if self.tokens[self.i + 1].kind == "(":
                return self.call()
            self.take()
            return self.field_node(token)
        raise ODataError(f"expected a field or a value, found {self._found()}", token.position)

    def field_node(self, token: Token) -> _Node:
        try:
            field = self.resolve(token.value)
        except ODataError as err:
            raise ODataError(str(err), token.position) from None
        if field.type == "JSON":
            raise ODataError(
                f"field {token.value!r} is an object or a collection and cannot be filtered on",
                token.position,
            )
        return _Node(
            field.sql, (), field.type, field=field, name=token.value, position=token.position
        )

    def call(self) -> _Node:
        name_token = self.take()
        name = name_token.value.lower()
        if name not in FUNCTIONS:
            raise ODataError(
                f"unknown function {name_token.value!r}: use contains, startswith or endswith",
                name_token.position,
            )
        self.expect("(", "'('")
        field_token = self.expect("NAME", f"a field as the first argument of {name}")
        field = self.field_node(field_token)
        if field.type != "TEXT":
            raise ODataError(
                f"{name} needs a text field; {field.name!r} is {field.type.lower()}",
                field_token.position,
            )
        self.expect(",", "','")
        text_token = self.expect("STRING", f"a quoted string as the second argument of {name}")
        self.expect(")", "')'")
        before, after = FUNCTIONS[name]
        pattern = before + _escape_like(text_token.value) + after
        sql = f"coalesce({field.sql} LIKE ? ESCAPE '{LIKE_ESCAPE}', 0)"
        return _Node(sql, (pattern,), "BOOL")

    def comparison(self, op: str, left: _Node, right: _Node, position: int) -> _Node:
        if left.field is None and right.field is not None:
            left, right, op = right, left, FLIPPED[op]
        if left.field is None:
            if left.type == "BOOL" and right.type == "BOOLEAN" and op in ("eq", "ne"):
                # contains(name,'x') eq true
                wanted = right.value if op == "eq" else not right.value
                sql = left.sql if wanted else f"NOT ({left.sql})"
                return _Node(sql, left.params, "BOOL")
            raise ODataError("a comparison needs a field on one side", position)
        field = left.field
        if right.type == "NULL":
            if op not in ("eq", "ne"):
                raise ODataError(f"null can only be compared with eq or ne, not {op}", position)
            return _Node(f"{left.sql} {COMPARISONS[op]} NULL", (), "BOOL")
        sql_op = COMPARISONS[op]
        collate = " COLLATE NOCASE" if field.type == "TEXT" else ""
        if right.field is not None:
            _check_same_kind(left, right, position)
            params: tuple[Any, ...] = ()
            right_sql = right.sql
        else:
            value = _literal_for(field, left.name, right, position)
            params, right_sql = (value,), "?"
        sql = f"{left.sql} {sql_op} {right_sql}{collate}"
        if op not in ("eq", "ne") and (field.nullable or (right.field and right.field.nullable)):
            sql = f"coalesce({sql}, 0)"  # null gt x is false, and so not (null gt x) is true
        return _Node(sql, params, "BOOL")


def _escape_like(text: str) -> str:
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


def _kind(field_type: str) -> str:
    if field_type in NUMERIC:
        return "number"
    if field_type in TEMPORAL:
        return "date"
    return field_type.lower()


def _check_same_kind(left: _Node, right: _Node, position: int) -> None:
    if _kind(left.type) != _kind(right.type):
        raise ODataError(
            f"cannot compare {left.name!r} ({left.type.lower()}) with "
            f"{right.name!r} ({right.type.lower()})",
            position,
        )


LITERAL_KINDS = {
    "STRING": "TEXT",
    "NUMBER": "number",
    "BOOLEAN": "BOOLEAN",
    "DATE": "date",
    "DATETIME": "date",
}


def _literal_for(field: Field, name: str, literal: _Node, position: int) -> Any:
    """The SQL parameter for comparing a field with a literal, or an error if types differ."""
    if literal.type == "BOOL":
        raise ODataError(f"cannot compare {name!r} with a condition", position)
    wanted = {"number": "number", "date": "date"}.get(_kind(field.type), field.type)
    got = LITERAL_KINDS.get(literal.type)
    if got != wanted:
        hint = ""
        if wanted == "date" and literal.type == "STRING":
            hint = ": write dates unquoted, e.g. 2024-01-31 or 2024-01-31T09:15:00Z"
        elif wanted == "TEXT":
            hint = ": quote text in single quotes"
        raise ODataError(
            f"cannot compare {name!r} ({field.type.lower()}) with "
            f"{literal.type.lower()} {_shown(literal)}{hint}",
            literal.position or position,
        )
    value = literal.value
    if field.convert is not None:
        return field.convert(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (date, datetime)):
        return datetime_text(value)
    return value


def _shown(literal: _Node) -> str:
    if literal.type == "STRING":
        return "'" + str(literal.value).replace("'", "''") + "'"
    if isinstance(literal.value, (date, datetime)):
        return literal.value.isoformat()
    return str(literal.value).lower() if isinstance(literal.value, bool) else str(literal.value)


def filter_sql(text: str, resolve: Resolver) -> tuple[str, list[Any]]:
    """SQL (a condition with ``?`` placeholders) and its parameters, for a ``$filter``."""
    node = _Parser(text, resolve).parse()
    return node.sql, list(node.params)


# -- $orderby and $select ------------------------------------------------------------------


def orderby_sql(text: str, resolve: Resolver) -> list[str]:
    """ORDER BY terms for ``$orderby=f [asc|desc], g [asc|desc]``."""
    terms: list[str] = []
    for position, part in _comma_parts(text, "$orderby"):
        words = part.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(
                f"$orderby term {part!r} must be a field followed by asc or desc", position
            )
        if not _NAME.fullmatch(words[0]):
            raise ODataError(f"$orderby term {part!r} is not a field", position)
        try:
            field = resolve(words[0])
        except ODataError as err:
            raise ODataError(str(err), position) from None
        if field.type == "JSON":
            raise ODataError(f"cannot order by {words[0]!r}: it is an object or a collection")
        direction = "DESC" if len(words) == 2 and words[1].lower() == "desc" else "ASC"
        collate = " COLLATE NOCASE" if field.type == "TEXT" else ""
        terms.append(f"{field.order_sql or field.sql}{collate} {direction}")
    return terms


def select_paths(text: str, option: str = "$select") -> list[tuple[str, ...]]:
    """The field paths of ``$select=a,b/c`` (or ``$expand``), checked for syntax only."""
    paths: list[tuple[str, ...]] = []
    for position, part in _comma_parts(text, option):
        if not _NAME.fullmatch(part):
            raise ODataError(f"{option} item {part!r} is not a field", position)
        paths.append(tuple(part.split("/")))
    return paths


def _comma_parts(text: str, option: str) -> list[tuple[int, str]]:
    parts: list[tuple[int, str]] = []
    position = 0
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise ODataError(f"{option} has an empty item", position)
        parts.append((position + len(raw) - len(raw.lstrip()), part))
        position += len(raw) + 1
    return parts
