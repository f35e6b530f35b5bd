r"""``--filter EXPR``: a boolean expression over a probe's fields, run in BPF before a record
is made, so a rejected hit costs no ring-buffer space.

Grammar::

    expr    := and ('||' and)*
    and     := unary ('&&' unary)*
    unary   := '!' unary | '(' expr ')' | compare
    compare := NAME OP LITERAL
    OP      := '==' | '!=' | '<' | '<=' | '>' | '>=' | '&' | '~' | '!~'
    LITERAL := integer (decimal, 0x hex, negative) | "string"

A string may hold the escapes ``\\ \" \' \n \t \r \0 \a \b \f \v`` and ``\xHH`` (up to
``\x7f``; other characters are written as themselves). A filter holds at most
:data:`MAX_COMPARISONS` comparisons, nested at most :data:`MAX_NESTING` deep.

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
    "MAX_COMPARISONS",
    "MAX_NESTING",
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


# Far above what the BPF side runs (32 predicates) or anyone writes, far below Python's
# recursion limit (the tracefs backend evaluates the tree in user space).
MAX_COMPARISONS = 128
MAX_NESTING = 64
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "0": "\0",
            "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)


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
        self.depth = 0
        self.comparisons = 0

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
        if kind == "op" and text in ("!", "("):
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise FilterError(f"the filter is nested more than {MAX_NESTING} levels deep",
                                  self.text, column)
            try:
                return self.nested(text)
            finally:
                self.depth -= 1
        return self.compare(kind, text, column)

    def nested(self, text: str) -> FilterExpr:
        if text == "!":
            return Not(self.unary())
        if text == "(":
            inner = self.or_expr()
            closing = self.peek()
            if closing is None or closing[1] != ")":
                where = len(self.text) if closing is None else closing[2]
                raise FilterError("missing ')'", self.text, where)
            self.take()
            return inner
        raise AssertionError(text)

    def compare(self, kind: str, text: str, column: int) -> FilterExpr:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise FilterError(f"the filter has more than {MAX_COMPARISONS} comparisons",
                              self.text, column)
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
            value = self.unescape(value_text[1:-1], value_column + 1)
        else:
            raise FilterError("expected a number or a \"string\"", self.text, value_column)
        return Comparison(text, op, value, column)


    def unescape(self, body: str, column: int) -> str:
        def replace(match: re.Match[str]) -> str:
            escape = match.group(1)
            if escape in _ESCAPES:
                return _ESCAPES[escape]
            if escape[0] == "x" and len(escape) == 3 and int(escape[1:], 16) < 0x80:
                return chr(int(escape[1:], 16))
            raise FilterError(
                f"unknown escape \\{escape} in a string: use \\\\, \\\", \\n, \\t, \\xHH "
                "(below \\x80), or the character itself", self.text, column + match.start())

        return _ESCAPE.sub(replace, body)


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
    if isinstance(value, str) and isinstance(expr.value, int) and len(value) == 1:
        value = ord(value)  # a char: the BPF side compares its byte
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
