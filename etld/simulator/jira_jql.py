"""The subset of JQL the simulated Jira understands.

Clauses: `project`, `key`/`issuekey`, `id`, `issuetype`/`type` with `=`, `!=`, `in`, `not in`;
`updated`/`created` with `=`, `!=`, `>`, `>=`, `<`, `<=` against `"yyyy-MM-dd HH:mm"`,
`"yyyy/MM/dd HH:mm"`, a bare date or a relative offset such as `-15m`/`-2d`; joined by `AND`/`OR`
with `NOT` and parentheses; then `ORDER BY` over `updated`, `created`, `key`, `id`, each
`ASC`/`DESC`. Dates are read in the site's time zone, as Jira reads them in the user's zone.
Anything else is a syntax error, which the API turns into a 400 with `errorMessages`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>!=|>=|<=|=|>|<|~|!~)
    | (?P<punct>[(),])
    | (?P<word>[^\s"'(),=!<>~]+)
    )""",
    re.VERBOSE,
)
_FIELDS = {
    "project": "project",
    "key": "key",
    "issuekey": "key",
    "id": "id",
    "issuetype": "issuetype",
    "type": "issuetype",
    "updated": "updated",
    "updateddate": "updated",
    "created": "created",
    "createddate": "created",
}
_DATE_FIELDS = frozenset({"updated", "created"})
_SORT_FIELDS = frozenset({"updated", "created", "key", "id"})
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
_RELATIVE = re.compile(r"^([+-]?)(\d+)([wdhm])$")
_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}
_KEYWORDS = frozenset(
    {"and", "or", "not", "in", "order", "by", "asc", "desc", "empty", "null", "is"}
)


class JqlError(ValueError):
    """A query the simulator cannot parse; the message is shown to the client."""


@dataclass(frozen=True, slots=True)
class Clause:
    field: str  # canonical field name
    op: str  # =, !=, in, not in, >, >=, <, <=
    values: tuple[str | int, ...]  # strings, or epoch ms for date fields


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and, or, not
    parts: tuple[Condition, ...]


Condition = Clause | BoolOp


@dataclass(frozen=True, slots=True)
class Query:
    where: Condition | None
    order: tuple[tuple[str, bool], ...]  # (field, descending)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].isspace():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise JqlError(
                f"Error in the JQL Query: the character '{text[pos]}' is not allowed "
                f"(at character {pos + 1})."
            )
        kind = m.lastgroup or "word"
        raw = m.group(kind)
        if kind == "str":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        tokens.append(_Tok(kind, raw, m.start(kind) + 1))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, tz: tzinfo, now_ms: int) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.tz = tz
        self.now_ms = now_ms

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def word_is(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "word" and tok.text.lower() == word

    def next(self, expecting: str) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise JqlError(
                f"Error in the JQL Query: expecting {expecting} but reached the end of the query."
            )
        self.i += 1
        return tok

    def fail(self, expecting: str, tok: _Tok) -> JqlError:
        return JqlError(
            f"Error in the JQL Query: expecting {expecting} but got '{tok.text}'. "
            f"The invalid query is at line 1, character {tok.pos}."
        )

    def parse(self) -> Query:
        where = None
        if self.peek() is not None and not (self.word_is("order") and self.word_is("by", 1)):
            where = self.or_expr()
        order: list[tuple[str, bool]] = []
        if self.word_is("order"):
            self.i += 1
            if not self.word_is("by"):
                raise self.fail("'by'", self.next("'by'"))
            self.i += 1
            order.append(self.sort_key())
            while self.peek() is not None and self.peek_punct(","):
                self.i += 1
                order.append(self.sort_key())
        tok = self.peek()
        if tok is not None:
            raise self.fail("'AND', 'OR' or 'ORDER BY'", tok)
        return Query(where, tuple(order))

    def peek_punct(self, char: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "punct" and tok.text == char

    def sort_key(self) -> tuple[str, bool]:
        tok = self.next("a field name")
        field = _FIELDS.get(tok.text.lower())
        if field not in _SORT_FIELDS or tok.kind not in ("word", "str"):
            raise JqlError(
                f"Error in the JQL Query: the field '{tok.text}' cannot be used in ORDER BY here."
            )
        desc = False
        if self.word_is("asc") or self.word_is("desc"):
            desc = self.next("a direction").text.lower() == "desc"
        return field, desc

    def or_expr(self) -> Condition:
        parts = [self.and_expr()]
        while self.word_is("or"):
            self.i += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def and_expr(self) -> Condition:
        parts = [self.unary()]
        while self.word_is("and"):
            self.i += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def unary(self) -> Condition:
        if self.word_is("not"):
            self.i += 1
            return BoolOp("not", (self.unary(),))
        if self.peek_punct("("):
            self.i += 1
            inner = self.or_expr()
            tok = self.next("')'")
            if tok.text != ")" or tok.kind != "punct":
                raise self.fail("')'", tok)
            return inner
        return self.clause()

    def clause(self) -> Clause:
        tok = self.next("a field name")
        if tok.kind not in ("word", "str") or tok.text.lower() in _KEYWORDS:
            raise self.fail("a field name", tok)
        field = _FIELDS.get(tok.text.lower())
        if field is None:
            raise JqlError(
                f"Field '{tok.text}' does not exist or you do not have permission to view it."
            )
        op = self.operator()
        values = self.value_list(field) if op in ("in", "not in") else (self.value(field),)
        if field in _DATE_FIELDS and op in ("in", "not in"):
            raise JqlError(f"The operator '{op.upper()}' is not supported by the '{field}' field.")
        if field not in _DATE_FIELDS and op not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{op}' is not supported by the '{field}' field.")
        return Clause(field, op, values)

    def operator(self) -> str:
        tok = self.next("an operator")
        if tok.kind == "op" and tok.text not in ("~", "!~"):
            return tok.text
        if tok.kind == "word" and tok.text.lower() == "in":
            return "in"
        if tok.kind == "word" and tok.text.lower() == "not" and self.word_is("in"):
            self.i += 1
            return "not in"
        raise self.fail("an operator", tok)

    def value_list(self, field: str) -> tuple[str | int, ...]:
        tok = self.next("'('")
        if tok.kind != "punct" or tok.text != "(":
            raise self.fail("'('", tok)
        values = [self.value(field)]
        while self.peek_punct(","):
            self.i += 1
            values.append(self.value(field))
        tok = self.next("')'")
        if tok.kind != "punct" or tok.text != ")":
            raise self.fail("')' or ','", tok)
        return tuple(values)

    def value(self, field: str) -> str | int:
        tok = self.next("a value")
        if tok.kind not in ("word", "str") or (
            tok.kind == "word" and tok.text.lower() in _KEYWORDS
        ):
            raise self.fail("a value", tok)
        if field in _DATE_FIELDS:
            return self.date_ms(tok, field)
        return tok.text

    def date_ms(self, tok: _Tok, field: str) -> int:
        text = tok.text.strip()
        rel = _RELATIVE.match(text)
        if rel:
            sign = 1 if rel.group(1) == "+" else -1 if rel.group(1) == "-" else 1
            return self.now_ms + sign * int(rel.group(2)) * _UNIT_MS[rel.group(3)]
        for fmt in _DATE_FORMATS:
            try:
                local = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return int(local.replace(tzinfo=self.tz).timestamp() * 1000)
        raise JqlError(
            f"Date value '{text}' for field '{field}' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
            "format e.g. '-5d', '4w 2d'."
        )


def parse_jql(text: str, *, tz: tzinfo, now_ms: int) -> Query:
    """Parse `text`; date literals are read in `tz`, relative ones counted from `now_ms`."""
    return _Parser(text, tz, now_ms).parse()
