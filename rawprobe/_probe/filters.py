"""``--filter EXPR``: a boolean expression over a probe's fields, run in BPF before a record
is made, so a rejected hit costs no ring-buffer space.

Grammar::

    expr    := and ('||' and)*
    and     := unary ('&&' unary)*
    unary   := '!' unary | '(' expr ')' | compare
    compare := NAME OP LITERAL
    OP      := '==' | '!=' | '<' | '<=' | '>' | '>=' | '&' | '~' | '!~'
    LITERAL := integer (decimal, 0x hex, negative) | "string"

NAME is a field of the probe, or one of ``pid``, ``tid``, ``cpu`` and ``comm`` (a field of the
same name takes precedence). Strings compare with ``==`` and ``!=``, and by prefix with
``~ "text*"`` (``!~`` negates). ``field & MASK`` is true when any bit of MASK is set. A field
that could not be read makes every comparison on it false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._errors import FilterError
from .fetchargs import c_integer

__all__ = [
    "Comparison",
    "FilterExpr",
    "Logical",
    "Not",
    "evaluate_filter",
    "parse_filter",
]

# The comparisons a filter may make with a number (the BPF side's enum rp_cmp).
_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "&")
_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|!~|&&|\|\||[<>&~!()])"
    r"|(?P<num>-?(?:0[xX][0-9a-fA-F]+|\d+))"
    r'|(?P<str>"(?:[^"\\]|\\.)*")'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)



@dataclass(frozen=True)
class Comparison:
    name: str
    op: str
    value: int | str
    column: int


@dataclass(frozen=True)
class Not:
    operand: FilterExpr


@dataclass(frozen=True)
class Logical:
    op: str  # "&&" or "||"
    left: FilterExpr
    right: FilterExpr


FilterExpr = Comparison | Not | Logical


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise FilterError(f"cannot parse the filter at {text[position:]!r}", text,
                                  position)
            kind = match.lastgroup or ""
            start = match.start(kind)
            self.tokens.append((kind, match.group(kind), start))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise FilterError("the filter ends too early", self.text, len(self.text))
        self.index += 1
        return token

    def parse(self) -> FilterExpr:
        if not self.tokens:
            raise FilterError("empty filter", self.text, 0)
        expr = self.or_expr()
        token = self.peek()
        if token is not None:
            raise FilterError(f"unexpected {token[1]!r}", self.text, token[2])
        return expr

    def or_expr(self) -> FilterExpr:
        left = self.and_expr()
        while (token := self.peek()) is not None and token[1] == "||":
            self.take()
            left = Logical("||", left, self.and_expr())
        return left

    def and_expr(self) -> FilterExpr:
        left = self.unary()
        while (token := self.peek()) is not None and token[1] == "&&":
            self.take()
            left = Logical("&&", left, self.unary())
        return left

    def unary(self) -> FilterExpr:
        kind, text, column = self.take()
        if kind == "op" and text == "!":
            return Not(self.unary())
        if kind == "op" and text == "(":
            inner = self.or_expr()
            closing = self.peek()
            if closing is None or closing[1] != ")":
                where = len(self.text) if closing is None else closing[2]
                raise FilterError("missing ')'", self.text, where)
            self.take()
            return inner
        if kind != "name":
            raise FilterError(f"expected a field name, found {text!r}", self.text, column)
        op_kind, op, op_column = self.take()
        if op_kind != "op" or (op not in _COMPARISONS and op not in ("~", "!~")):
            raise FilterError(f"expected a comparison after {text!r}", self.text, op_column)
        value_kind, value_text, value_column = self.take()
        value: int | str
        if value_kind == "num":
            try:
                value = c_integer(value_text)
            except ValueError:
                raise FilterError(f"{value_text!r} is not a number", self.text,
                                  value_column) from None
        elif value_kind == "str":
            value = bytes(value_text[1:-1], "utf-8").decode("unicode_escape")
        else:
            raise FilterError("expected a number or a \"string\"", self.text, value_column)
        return Comparison(text, op, value, column)


def parse_filter(text: str) -> FilterExpr:
    """Parse a filter expression.

    Raises:
        FilterError: Malformed (the message points at the column).
    """
    return _Parser(text).parse()


def evaluate_filter(expr: FilterExpr, event: Any) -> bool:
    """Evaluate ``expr`` on a decoded event, with the BPF side's semantics (for backends that
    cannot filter in the kernel): a comparison on a field that could not be read is false,
    negated string comparisons included; ``!`` and ``||`` combine as written.
    """
    if isinstance(expr, Logical):
        if expr.op == "&&":
            return evaluate_filter(expr.left, event) and evaluate_filter(expr.right, event)
        return evaluate_filter(expr.left, event) or evaluate_filter(expr.right, event)
    if isinstance(expr, Not):
        return not evaluate_filter(expr.operand, event)
    names = event.layout.names
    if expr.name in names:
        value = event.values[names.index(expr.name)]
    elif expr.name == "comm":
        value = event.comm
    else:
        value = getattr(event, expr.name)
    if value is None:
        return False
    if isinstance(value, str):
        assert isinstance(expr.value, str)
        if expr.op in ("==", "!="):
            match = value == expr.value
        elif expr.value.endswith("*"):
            match = value.startswith(expr.value[:-1])
        else:
            match = value == expr.value
        return match != (expr.op in ("!=", "!~"))
    assert isinstance(expr.value, int)
    left, right = int(value), expr.value
    if expr.op == "&":
        return (left & right) != 0
    return bool({
        "==": left == right, "!=": left != right, "<": left < right,
        "<=": left <= right, ">": left > right, ">=": left >= right,
    }[expr.op])
