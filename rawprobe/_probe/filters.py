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
from .._plan import abi
from .._plan.compile import CompiledProbe
from .fetchargs import c_integer

__all__ = [
    "Comparison",
    "FilterExpr",
    "Logical",
    "Not",
    "compile_filter",
    "evaluate_filter",
    "parse_filter",
]

_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|!~|&&|\|\||[<>&~!()])"
    r"|(?P<num>-?(?:0[xX][0-9a-fA-F]+|\d+))"
    r'|(?P<str>"(?:[^"\\]|\\.)*")'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)

# Header members a filter may name: (offset in struct rp_header, size, signed).
_HEADER_FIELDS = {
    "pid": (8, 4, False),
    "tid": (12, 4, False),
    "cpu": (20, 4, False),
}
_COMM_OFFSET = 32  # struct rp_header.comm


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
        if op_kind != "op" or (op not in abi.CMP_CODES and op not in ("~", "!~")):
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


@dataclass
class CompiledFilter:
    """A filter program for one probe: postfix predicates and the string constants."""

    predicates: list[dict[str, object]]
    strings: list[bytes]


def compile_filter(expr: FilterExpr, probe: CompiledProbe, text: str = "") -> CompiledFilter:
    """Compile ``expr`` against one probe's fields into the BPF filter program.

    Raises:
        FilterError: A name the probe has no field for, a comparison that does not fit the
            field's type, or a program over the BPF side's limits.
    """
    result = CompiledFilter([], [])
    _emit(expr, probe, text, result)
    if len(result.predicates) > abi.MAX_PREDICATES:
        raise FilterError(
            f"the filter is too long: {len(result.predicates)} steps, at most "
            f"{abi.MAX_PREDICATES}", text, 0,
        )
    return result


def _emit(expr: FilterExpr, probe: CompiledProbe, text: str, out: CompiledFilter) -> None:
    if isinstance(expr, Logical):
        _emit(expr.left, probe, text, out)
        _emit(expr.right, probe, text, out)
        out.predicates.append(_predicate(abi.PredOp.AND if expr.op == "&&" else abi.PredOp.OR))
        return
    if isinstance(expr, Not):
        _emit(expr.operand, probe, text, out)
        out.predicates.append(_predicate(abi.PredOp.NOT))
        return
    field = next((f for f in probe.fields if f.name == expr.name and f.offset >= 0), None)
    if field is not None:
        fault_bit = field.slots[0]
        if field.type.kind == "string" and field.type.count is None:
            _emit_string(expr, field.offset, 4, fault_bit, text, out)
            return
        if field.type.count is not None or field.type.kind not in ("int", "char", "symbol"):
            raise FilterError(
                f"field {expr.name!r} ({field.type.name}) cannot be compared in a filter",
                text, expr.column,
            )
        offset, size, signed = field.offset, field.type.size, field.type.signed
    elif expr.name in _HEADER_FIELDS:
        offset, size, signed = _HEADER_FIELDS[expr.name]
        fault_bit = 0xFFFFFFFF
    elif expr.name == "comm":
        _emit_string(expr, _COMM_OFFSET, abi.COMM_LEN, 0xFFFFFFFF, text, out)
        return
    else:
        known = [f.name for f in probe.fields if f.offset >= 0] + [*_HEADER_FIELDS, "comm"]
        raise FilterError(
            f"the filter names {expr.name!r}, which this probe does not have; fields: "
            + ", ".join(known),
            text, expr.column,
        )
    if not isinstance(expr.value, int):
        raise FilterError(f"{expr.name!r} is a number: compare it with a number", text,
                          expr.column)
    if expr.op in ("~", "!~"):
        raise FilterError("'~' compares strings; use ==, !=, <, <=, >, >= or &", text,
                          expr.column)
    value = expr.value
    if not -(1 << 63) <= value < (1 << 64):
        raise FilterError(f"{value} does not fit in 64 bits", text, expr.column)
    if value >= 1 << 63:
        value -= 1 << 64  # the BPF side reads the constant as the same 64 bits
    predicate = _predicate(abi.PredOp.CMP)
    predicate.update(cmp=abi.CMP_CODES[expr.op], size=size, is_signed=int(signed), src=offset,
                     field=fault_bit, value=value)
    out.predicates.append(predicate)


def _emit_string(expr: Comparison, offset: int, size: int, fault_bit: int, text: str,
                 out: CompiledFilter) -> None:
    if not isinstance(expr.value, str):
        raise FilterError(f"{expr.name!r} is a string: compare it with a \"string\"", text,
                          expr.column)
    negate = expr.op in ("!=", "!~")
    if expr.op in ("==", "!="):
        op, constant = abi.PredOp.STR_EQ, expr.value
    elif expr.op in ("~", "!~"):
        if "*" not in expr.value:
            op, constant = abi.PredOp.STR_EQ, expr.value
        elif expr.value.endswith("*") and "*" not in expr.value[:-1]:
            op, constant = abi.PredOp.STR_PREFIX, expr.value[:-1]
        else:
            raise FilterError("only prefix patterns (\"text*\") are supported with '~'", text,
                              expr.column)
    else:
        raise FilterError(f"strings compare with ==, != or ~, not {expr.op!r}", text,
                          expr.column)
    encoded = constant.encode()
    if len(encoded) >= abi.STR_CONST_LEN:
        raise FilterError(
            f"string constants are limited to {abi.STR_CONST_LEN - 1} bytes", text, expr.column
        )
    if len(out.strings) >= abi.MAX_STR_CONSTS:
        raise FilterError(f"at most {abi.MAX_STR_CONSTS} string constants per filter", text,
                          expr.column)
    predicate = _predicate(op)
    # Negated in the predicate itself, so that an unreadable string stays false.
    predicate.update(size=size, src=offset, str_index=len(out.strings), field=fault_bit,
                     str_len=len(encoded), cmp=abi.CMP_CODES["!="] if negate else 0)
    out.strings.append(encoded)
    out.predicates.append(predicate)


def _predicate(op: int) -> dict[str, object]:
    return {"op": op, "cmp": 0, "size": 0, "is_signed": 0, "src": 0, "str_index": 0,
            "field": 0xFFFFFFFF, "str_len": 0, "value": 0}


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
