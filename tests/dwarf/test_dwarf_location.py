"""DWARF location expressions evaluated into fetch-args, on hand-made expressions."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from rawprobe._dwarf._location import (
    EvaluationContext,
    ImplicitLocation,
    MemoryLocation,
    Register,
    RegisterLocation,
    Unavailable,
    Value,
    evaluate,
    memory_text,
    value_text,
)
from rawprobe._sys.arch import X86_64


class Op(NamedTuple):
    op_name: str
    args: list[Any]


def op(name: str, *args: Any) -> Op:
    return Op("DW_OP_" + name, list(args))


BASE_TYPES = {0x2F: (4, 0x08), 0x33: (1, 0x02), 0x40: (8, 0x04)}  # u32, _Bool, double


def context(at_entry: bool = False, cfa: tuple[str, int] = ("bp", 16)) -> EvaluationContext:
    def cfa_value() -> Value:
        return Value(Register(cfa[0]), cfa[1])

    return EvaluationContext(
        register_name=X86_64.dwarf_registers.get,
        frame_base=cfa_value,  # DW_AT_frame_base = DW_OP_call_frame_cfa
        cfa=cfa_value,
        address_index=lambda index: 0x4000 + 8 * index,
        at_function_entry=at_entry,
        base_type=BASE_TYPES.get,
    )


def text(ops: list[Op], ctx: EvaluationContext | None = None, delta: int = 0) -> str | None:
    location = evaluate(ops, ctx or context())
    file_offset = lambda vaddr: vaddr - delta  # noqa: E731
    if isinstance(location, MemoryLocation):
        return memory_text(location.address, file_offset)
    if isinstance(location, RegisterLocation):
        return "%" + location.register
    return value_text(location.value, file_offset)


def test_registers_and_memory() -> None:
    assert text([op("reg5")]) == "%di"
    assert text([op("regx", 15)]) == "%r15"
    assert text([op("breg6", -20)]) == "-20(%bp)"
    assert text([op("bregx", 7, 8)]) == "+8(%sp)"
    # DW_OP_fbreg with the frame base at the CFA, %bp + 16 after the prologue: -36 → -20(%bp)
    assert text([op("fbreg", -36)]) == "-20(%bp)"
    assert text([op("fbreg", -36)], context(cfa=("sp", 8))) == "-28(%sp)"
    assert text([op("call_frame_cfa"), op("consts", -176), op("plus")]) == "-160(%bp)"


def test_dereferences_nest() -> None:
    assert text([op("breg7", 8), op("deref")]) == "+0(+8(%sp))"
    assert text([op("breg5", 0), op("deref"), op("plus_uconst", 16), op("deref")]) == \
        "+0(+16(+0(%di)))"


def test_globals_are_relative_to_the_probed_file() -> None:
    assert text([op("addr", 0x4010)]) == "@+0x4010"
    # In a segment mapped 0x1000 above its file offset, the kernel's N is 0x1000 less.
    assert text([op("addr", 0x4010)], delta=0x1000) == "@+0x3010"
    assert text([op("addrx", 2)]) == "@+0x4010"
    # A pointer stored in a global, followed: the kernel reads the global, then at it + 8.
    assert text([op("addr", 0x4010), op("deref"), op("plus_uconst", 8)]) == "+8(@+0x4010)"
    # A global's address as a value: the kernel can read at it, not produce it.
    assert text([op("addr", 0x4010), op("stack_value")]) is None


def test_entry_values_only_at_the_entry() -> None:
    ops = [op("entry_value", [op("reg5")]), op("stack_value")]
    assert text(ops, context(at_entry=True)) == "%di"
    with pytest.raises(Unavailable, match=r"only known on entry.*%di"):
        evaluate(ops, context(at_entry=False))
    with pytest.raises(Unavailable, match="only known on entry"):
        evaluate([op("entry_value", [op("breg5", 0), op("deref")]), op("stack_value")],
                 context(at_entry=True))


def test_computed_values() -> None:
    # %di itself, written as a computation, is still %di.
    assert text([op("breg5", 0), op("stack_value")]) == "%di"
    location = evaluate([op("breg0", 1), op("stack_value")], context())
    assert isinstance(location, ImplicitLocation)
    assert value_text(location.value, lambda v: v) is None
    assert location.value.describe() == "%ax + 1"
    with pytest.raises(Unavailable, match="knows it is 3"):
        evaluate([op("lit3"), op("stack_value")], context())
    with pytest.raises(Unavailable, match=r"knows its value \(258\)"):
        evaluate([op("implicit_value", [2, 1])], context())
    with pytest.raises(Unavailable, match="computed"):
        evaluate([op("breg0", 0), op("breg1", 0), op("plus"), op("stack_value")], context())


def test_masks_and_conversions_keep_low_bits() -> None:
    """clang zero-extends a _Bool held in %ecx: %rcx & 0xffffffff, converted to u32 then to
    _Bool. The fetch-arg is %cx; a read of 8 bits (the _Bool) is exact."""
    ops = [op("breg2", 0), op("constu", 0xFFFFFFFF), op("and"), op("convert", 0x2F),
           op("convert", 0x33), op("stack_value")]
    location = evaluate(ops, context())
    assert isinstance(location, ImplicitLocation)
    assert location.value.bits == 8 and value_text(location.value, lambda v: v) == "%cx"
    assert location.value.describe() == "%cx & 0xff"
    with pytest.raises(Unavailable, match="floating-point"):
        evaluate([op("breg2", 0), op("convert", 0x40), op("stack_value")], context())
    with pytest.raises(Unavailable, match="computed"):
        evaluate([op("breg2", 0), op("constu", 0xFF), op("and"), op("plus_uconst", 1),
                  op("stack_value")], context())


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([], "optimized out"),
        ([op("reg5"), op("piece", 4), op("reg4"), op("piece", 4)], "pieces"),
        ([op("reg17")], "vector or floating-point"),
        ([op("const8u", 16), op("form_tls_address")], "thread-local"),
        ([op("GNU_implicit_pointer", 0x40, 0)], "optimized away"),
        ([op("call2", 0x10)], "DW_OP_call2"),
        ([op("deref")], "empty stack"),
    ],
)
def test_refusals_say_why(ops: list[Op], reason: str) -> None:
    with pytest.raises(Unavailable, match=reason):
        evaluate(ops, context())
