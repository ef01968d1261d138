"""Segments combined: `abc(group=A) and not lost(days=180) or birthdays`.

Grammar (`not` binds tightest, then `and`, then `or`; parentheses group):

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | NAME [ "(" k=v ("," k=v)* ")" ]

A value runs to the next `, name=` or the closing parenthesis, so lists need no quotes:
`abc(group=A,B, measure=margin)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm.segments.base import SegmentError


@dataclass(frozen=True, slots=True)
class Name:
    name: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Name | Not | And | Or

NAME = re.compile(r"[^\W\d][\w-]*")
_TOKEN = re.compile(r"\s*(?:(?P<open>\()|(?P<close>\))|(?P<word>[^\W\d][\w-]*))")
_NEXT_PARAM = re.compile(r",\s*(?=[^\W\d][\w-]*\s*=)")
_KEYWORDS = {"and", "or", "not"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> SegmentError:
        return SegmentError(f"segment expression {self.text!r}: {what} at character {self.at + 1}")

    def peek(self) -> tuple[str, str] | None:
        match = _TOKEN.match(self.text, self.at)
        if match is None:
            if self.text[self.at :].strip():
                self.at += len(self.text[self.at :]) - len(self.text[self.at :].lstrip())
                raise self.fail(f"unexpected {self.text[self.at]!r}")
            return None
        kind = match.lastgroup or ""
        return kind, match.group(kind)

    def take(self) -> tuple[str, str]:
        match = _TOKEN.match(self.text, self.at)
        assert match is not None
        self.at = match.end()
        kind = match.lastgroup or ""
        return kind, match.group(kind)

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].casefold() == word:
            self.take()
            return True
        return False

    def expr(self) -> Node:
        operands = [self.term()]
        while self.keyword("or"):
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def term(self) -> Node:
        operands = [self.factor()]
        while self.keyword("and"):
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def factor(self) -> Node:
        if self.keyword("not"):
            return Not(self.factor())
        token = self.peek()
        if token is None:
            raise self.fail("a segment name is missing")
        kind, value = token
        if kind == "open":
            self.take()
            inner = self.expr()
            if self.peek() != ("close", ")"):
                raise self.fail("')' expected")
            self.take()
            return inner
        if kind != "word" or value.casefold() in _KEYWORDS:
            raise self.fail(f"a segment name expected, not {value!r}")
        self.take()
        if self.text[self.at :].lstrip().startswith("("):
            return Name(value, self.params(value))
        return Name(value)

    def params(self, segment: str) -> tuple[tuple[str, str], ...]:
        start = self.text.index("(", self.at) + 1
        end = self.text.find(")", start)
        if end < 0:
            self.at = start
            raise self.fail(f"the parameters of {segment} are not closed with ')'")
        self.at = end + 1
        inside = self.text[start:end].strip()
        if not inside:
            return ()
        params: dict[str, str] = {}
        for item in _NEXT_PARAM.split(inside):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not NAME.fullmatch(key):
                raise SegmentError(
                    f"segment expression {self.text!r}: {segment}({inside}): write parameters "
                    "as name=value, separated by commas"
                )
            if key in params:
                raise SegmentError(f"segment expression {self.text!r}: {key} is given twice")
            params[key] = value.strip()
        return tuple(params.items())


def parse_expression(text: str) -> Node:
    """The expression's tree; a single name is the common case."""
    parser = _Parser(text)
    node = parser.expr()
    if parser.peek() is not None:
        raise parser.fail(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return node


def names_in(node: Node) -> set[str]:
    """Every segment name the expression refers to."""
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Not):
        return names_in(node.operand)
    return set().union(*(names_in(operand) for operand in node.operands))
