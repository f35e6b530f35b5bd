"""Filters compiled for the BPF programs: a filter expression, checked against one probe's
fields, becomes the postfix predicate program ``struct rp_probe.predicates`` runs in the
kernel (clang/rawprobe.h, ``rp_filter()``)."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import FilterError
from .._probe.filters import Comparison, FilterExpr, Logical, Not
from . import abi
from .compile import CompiledProbe

__all__ = ["CompiledFilter", "compile_filter"]

# Header members a filter may name: (offset in struct rp_header, size, signed).
_HEADER_FIELDS = {
    "pid": (8, 4, False),
    "tid": (12, 4, False),
    "cpu": (20, 4, False),
}
_COMM_OFFSET = 32  # struct rp_header.comm


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
