"""DWARF location expressions evaluated symbolically at one probe address.

A uprobe reads registers and memory when it fires; it cannot run a DWARF expression. So the
expression is evaluated here, ahead of time, into a symbolic value built from what the kernel
can read: a register, the memory at a symbolic address, a link-time address of the probed file,
or a constant (DWARF 5, section 2.5 "DWARF Expressions" and 2.6 "Location Descriptions").
The result renders as a kernel fetch-arg (Documentation/trace/uprobetracer.rst):

- a register location (``DW_OP_reg5``) → ``%di``;
- a memory location at ``%bp - 20`` (``DW_OP_fbreg`` with the CFA in ``%bp``) → ``-20(%bp)``;
- memory at a global's address (``DW_OP_addr``) → ``@+N``, N relative to the probed file;
- an implicit value (``DW_OP_stack_value``) → the fetch-arg of that value, when it has one
  (``DW_OP_entry_value(DW_OP_reg5); DW_OP_stack_value`` at the function's entry → ``%di``);
- a constant (``DW_AT_const_value``, which perf probe reads too) → ``\\N``.

What a fetch-arg cannot say (arithmetic on run-time values, composite locations made of
``DW_OP_piece``\\ s, thread-local storage, values known only on entry to the function) is refused
with a :class:`Unavailable` naming the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONSTANT",
    "EvaluationContext",
    "FileAddress",
    "ImplicitLocation",
    "Load",
    "Location",
    "MemoryLocation",
    "Register",
    "RegisterLocation",
    "Unavailable",
    "Value",
    "evaluate",
    "memory_text",
    "value_text",
]


class Unavailable(Exception):
    """The expression's value cannot be read at the address; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Register:
    """The run-time value of a register, by kernel name (``di``), or ``$retval``."""

    name: str


@dataclass(frozen=True)
class Load:
    """The run-time value read from memory at ``address`` (``size`` bytes)."""

    address: Value
    size: int = 8


@dataclass(frozen=True)
class FileAddress:
    """A link-time address in the probed file (relocated with it at run time)."""

    address: int


class _Constant:
    """The base of a plain number."""

    def __repr__(self) -> str:
        return "CONSTANT"


CONSTANT = _Constant()

Base = Register | Load | FileAddress | _Constant


@dataclass(frozen=True)
class Value:
    """``base + offset``: a value known at the probe site; only its low ``bits`` bits when a
    mask cut it (clang zero-extends with ``DW_OP_constu 0xffffffff; DW_OP_and``)."""

    base: Base
    offset: int = 0
    bits: int = 64

    def plus(self, delta: int) -> Value:
        """This value plus a constant."""
        if self.bits < 64 and delta:
            raise Unavailable(f"its value is computed ({self.describe()} + {delta}), which a "
                              "fetch-arg cannot do")
        return Value(self.base, _wrap(self.offset + delta), self.bits)

    def describe(self) -> str:
        """Words for messages: ``%di + 8``, ``[%sp + 16]``, ``42``."""
        if self.base is CONSTANT:
            return str(self.offset)
        if isinstance(self.base, Register):
            text = "$retval" if self.base.name == "$retval" else "%" + self.base.name
        elif isinstance(self.base, Load):
            text = f"[{self.base.address.describe()}]"
        else:
            assert isinstance(self.base, FileAddress)
            text = f"&{self.base.address:#x}"
        if self.offset:
            text += f" {'-' if self.offset < 0 else '+'} {abs(self.offset)}"
        if self.bits < 64:
            text += f" & {(1 << self.bits) - 1:#x}"
        return text


@dataclass(frozen=True)
class MemoryLocation:
    """The object is in memory at ``address``."""

    address: Value


@dataclass(frozen=True)
class RegisterLocation:
    """The object is in a register (kernel name)."""

    register: str


@dataclass(frozen=True)
class ImplicitLocation:
    """The object has no storage; its value is ``value`` (``DW_OP_stack_value``, constants)."""

    value: Value


Location = MemoryLocation | RegisterLocation | ImplicitLocation


def _wrap(number: int) -> int:
    """Two's-complement 64-bit arithmetic, as the DWARF stack's generic type on x86-64."""
    number &= (1 << 64) - 1
    return number - (1 << 64) if number >= 1 << 63 else number


@dataclass
class EvaluationContext:
    """What an expression may refer to besides itself.

    Attributes:
        register_name: DWARF register number → kernel name, or None when a uprobe cannot read it.
        frame_base: Evaluates the enclosing function's ``DW_AT_frame_base`` (for
            ``DW_OP_fbreg``); raises :class:`Unavailable` when it cannot.
        cfa: The canonical frame address at the probe address (``DW_OP_call_frame_cfa``);
            raises :class:`Unavailable` when the call frame information has no simple rule.
        address_index: ``DW_OP_addrx`` index → address (``.debug_addr``).
        at_function_entry: The probe address is the entry of the enclosing concrete function,
            where ``DW_OP_entry_value`` of a register is that register's current value.
        base_type: The (byte size, ``DW_ATE_*`` encoding) of the base type at a unit-relative
            DIE offset (``DW_OP_convert``), or None when there is none.
    """

    register_name: Callable[[int], str | None]
    frame_base: Callable[[], Value]
    cfa: Callable[[], Value]
    address_index: Callable[[int], int]
    at_function_entry: bool
    base_type: Callable[[int], tuple[int, int] | None] = lambda offset: None


_REFUSED = {
    "DW_OP_piece": "it is split into pieces (DW_OP_piece) across registers or memory",
    "DW_OP_bit_piece": "it is split into pieces (DW_OP_bit_piece)",
    "DW_OP_form_tls_address": "it is a thread-local variable, whose address a uprobe cannot "
                              "compute",
    "DW_OP_GNU_push_tls_address": "it is a thread-local variable, whose address a uprobe "
                                  "cannot compute",
    "DW_OP_implicit_pointer": "it is a pointer the compiler optimized away "
                              "(DW_OP_implicit_pointer)",
    "DW_OP_GNU_implicit_pointer": "it is a pointer the compiler optimized away "
                                  "(DW_OP_GNU_implicit_pointer)",
    "DW_OP_GNU_parameter_ref": "its value is only known to the caller (DW_OP_GNU_parameter_ref)",
    "DW_OP_GNU_variable_value": "its value is another variable's (DW_OP_GNU_variable_value)",
}

_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "DW_OP_and": lambda a, b: a & b,
    "DW_OP_or": lambda a, b: a | b,
    "DW_OP_xor": lambda a, b: a ^ b,
    "DW_OP_mul": lambda a, b: a * b,
    "DW_OP_shl": lambda a, b: a << b if b < 64 else 0,
    "DW_OP_shr": lambda a, b: (a & ((1 << 64) - 1)) >> b if b < 64 else 0,
    "DW_OP_shra": lambda a, b: a >> min(b, 63),
}


def _top(stack: list[Value], op: str) -> Value:
    if not stack:
        raise Unavailable(f"malformed location expression ({op} on an empty stack)")
    return stack.pop()


def evaluate(ops: Sequence[Any], context: EvaluationContext) -> Location:
    """Evaluate a parsed location expression (pyelftools ``DWARFExprOp`` list).

    Args:
        ops: The operations (each with ``op_name`` and ``args``).
        context: What the expression may refer to.

    Returns:
        Where the object is: a register, memory at a symbolic address, or an implicit value.

    Raises:
        Unavailable: The expression is empty (the object is optimized out), or needs what a
            fetch-arg cannot express; the reason says which.
    """
    if not ops:
        raise Unavailable("optimized out here (empty location)")
    stack: list[Value] = []
    result: Location | None = None
    for index, op in enumerate(ops):
        name: str = op.op_name
        args: list[Any] = op.args
        if result is not None:
            # Only DW_OP_piece may follow a register location or DW_OP_stack_value.
            raise Unavailable(_REFUSED.get(name, f"unexpected {name} after the location"))
        if name in _REFUSED:
            raise Unavailable(_REFUSED[name])
        if name.startswith("DW_OP_reg") or name == "DW_OP_regx":
            number = args[0] if name == "DW_OP_regx" else int(name[len("DW_OP_reg"):])
            result = RegisterLocation(_register(number, context))
        elif name.startswith("DW_OP_breg") or name == "DW_OP_bregx":
            if name == "DW_OP_bregx":
                number, offset = args[0], args[1]
            else:
                number, offset = int(name[len("DW_OP_breg"):]), args[0]
            stack.append(Value(Register(_register(number, context)), offset))
        elif name == "DW_OP_fbreg":
            stack.append(context.frame_base().plus(args[0]))
        elif name == "DW_OP_call_frame_cfa":
            stack.append(context.cfa())
        elif name == "DW_OP_addr":
            stack.append(Value(FileAddress(args[0])))
        elif name in ("DW_OP_addrx", "DW_OP_GNU_addr_index"):
            stack.append(Value(FileAddress(context.address_index(args[0]))))
        elif name.startswith("DW_OP_lit"):
            stack.append(Value(CONSTANT, int(name[len("DW_OP_lit"):])))
        elif name.startswith("DW_OP_const") and name[-1] in "us" and name != "DW_OP_const_type":
            stack.append(Value(CONSTANT, args[0]))
        elif name == "DW_OP_plus_uconst":
            stack.append(_top(stack, name).plus(args[0]))
        elif name in ("DW_OP_plus", "DW_OP_minus"):
            right, left = _top(stack, name), _top(stack, name)
            stack.append(_add(left, right, name == "DW_OP_minus"))
        elif name == "DW_OP_and" and len(stack) >= 2 and _low_mask(stack[-1], stack[-2]):
            mask, value = stack.pop(), stack.pop()
            if value.base is CONSTANT:
                stack.append(Value(CONSTANT, value.offset & mask.offset))
            else:
                # Keeping the low bits: a fetch of that width or less reads them as they are.
                stack.append(Value(value.base, value.offset,
                                   min(value.bits, (mask.offset + 1).bit_length() - 1)))
        elif name in _ARITHMETIC:
            right, left = _top(stack, name), _top(stack, name)
            if left.base is not CONSTANT or right.base is not CONSTANT:
                raise Unavailable(f"its value is computed ({name} of {left.describe()} and "
                                  f"{right.describe()}), which a fetch-arg cannot do")
            stack.append(Value(CONSTANT, _wrap(_ARITHMETIC[name](left.offset, right.offset))))
        elif name == "DW_OP_neg":
            value = _top(stack, name)
            if value.base is not CONSTANT:
                raise Unavailable(f"its value is computed (-{value.describe()})")
            stack.append(Value(CONSTANT, _wrap(-value.offset)))
        elif name in ("DW_OP_deref", "DW_OP_deref_size"):
            size = 8 if name == "DW_OP_deref" else args[0]
            address = _top(stack, name)
            if address.bits < 64:
                raise Unavailable(f"its address is computed ({address.describe()})")
            stack.append(Value(Load(address, size)))
        elif name == "DW_OP_dup":
            value = _top(stack, name)
            stack += [value, value]
        elif name == "DW_OP_drop":
            _top(stack, name)
        elif name == "DW_OP_swap":
            right, left = _top(stack, name), _top(stack, name)
            stack += [right, left]
        elif name == "DW_OP_over":
            if len(stack) < 2:
                raise Unavailable("malformed location expression (DW_OP_over)")
            stack.append(stack[-2])
        elif name == "DW_OP_nop":
            pass
        elif name in ("DW_OP_convert", "DW_OP_GNU_convert"):
            stack.append(_convert(_top(stack, name), args[0], context))
        elif name in ("DW_OP_entry_value", "DW_OP_GNU_entry_value"):
            stack.append(_entry_value(args[0], context))
        elif name == "DW_OP_stack_value":
            value = _top(stack, name)
            if value.base is CONSTANT:
                # Refused as perf probe refuses it (its location starts with no register or
                # address); the reason at least tells the value.
                raise Unavailable(f"optimized out: the compiler knows it is {value.offset} "
                                  "here (DW_OP_stack_value) but keeps it nowhere")
            result = ImplicitLocation(value)
        elif name == "DW_OP_implicit_value":
            data = bytes(args[0])
            known = f" ({int.from_bytes(data, 'little')})" if len(data) <= 8 else ""
            raise Unavailable(f"optimized out: the compiler knows its value{known} here "
                              "(DW_OP_implicit_value) but keeps it nowhere")
        else:
            raise Unavailable(f"its location uses {name}, which rawprobe cannot translate "
                              f"(operation {index + 1} of {len(ops)})")
    if result is not None:
        return result
    return MemoryLocation(_top(stack, "the end of the expression"))


def _convert(value: Value, type_offset: int, context: EvaluationContext) -> Value:
    """``DW_OP_convert`` to an integer type (DWARF 5, 2.5.1.6): its low bits stay what they
    were, which a fetch of that width or less reads as they are."""
    if type_offset == 0:
        return value  # the generic type: nothing changes
    base = context.base_type(type_offset)
    if base is None or base[1] in (0x03, 0x04, 0x0F):  # complex, float, decimal float
        raise Unavailable("its value is converted to a floating-point type (DW_OP_convert), "
                          "which a fetch-arg cannot do")
    bits = min(value.bits, base[0] * 8)
    if value.base is CONSTANT:
        return Value(CONSTANT, value.offset & ((1 << bits) - 1))
    if value.offset:
        raise Unavailable(f"its value is computed ({value.describe()}), which a fetch-arg "
                          "cannot do")
    return Value(value.base, 0, bits)


def _low_mask(mask: Value, value: Value) -> bool:
    """Whether ``mask`` is a constant keeping the low 8, 16 or 32 bits."""
    return mask.base is CONSTANT and mask.offset in (0xFF, 0xFFFF, 0xFFFFFFFF) and \
        value.offset == 0


def _register(number: int, context: EvaluationContext) -> str:
    name = context.register_name(number)
    if name is None:
        raise Unavailable(f"it is in DWARF register {number} (a vector or floating-point "
                          "register), which a uprobe cannot read")
    return name


def _add(left: Value, right: Value, subtract: bool) -> Value:
    if right.base is CONSTANT:
        return left.plus(-right.offset if subtract else right.offset)
    if left.base is CONSTANT and not subtract:
        return right.plus(left.offset)
    sign = "-" if subtract else "+"
    raise Unavailable(f"its value is computed ({left.describe()} {sign} {right.describe()}), "
                      "which a fetch-arg cannot do")


def _entry_value(ops: Sequence[Any], context: EvaluationContext) -> Value:
    """``DW_OP_entry_value``: the value a register had when the function was entered (DWARF 5,
    2.5.1.7). Only at the entry itself is that the register's current value."""
    names = [op.op_name for op in ops]
    register = None
    if len(names) == 1 and (names[0].startswith("DW_OP_reg") or names[0] == "DW_OP_regx"):
        number = ops[0].args[0] if names[0] == "DW_OP_regx" else int(names[0][9:])
        register = context.register_name(number)
    if register is None:
        raise Unavailable("its value is only known on entry to the function "
                          f"({' '.join(names) or 'an empty DW_OP_entry_value'})")
    if not context.at_function_entry:
        raise Unavailable(f"its value is only known on entry to the function (it was in "
                          f"%{register} then; probe the function's entry to read it)")
    return Value(Register(register))


def value_text(value: Value, file_offset: Callable[[int], int]) -> str | None:
    """The fetch-arg whose value is ``value``, or None when there is none (arithmetic).

    Args:
        value: The value.
        file_offset: Link-time address → the ``@+N`` number the kernel takes for it.
    """
    if value.base is CONSTANT:
        return f"\\{value.offset}"
    if value.offset != 0:
        return None
    if isinstance(value.base, Register):
        return value.base.name if value.base.name.startswith("$") else "%" + value.base.name
    if isinstance(value.base, Load):
        return memory_text(value.base.address, file_offset)
    return None  # an address itself: the kernel can read at it, not produce it


def memory_text(address: Value, file_offset: Callable[[int], int]) -> str | None:
    """The fetch-arg that reads memory at ``address`` (``+8(%di)``, ``@+0x4010``), or None.

    Args:
        address: Where to read.
        file_offset: Link-time address → the ``@+N`` number the kernel takes for it.
    """
    if isinstance(address.base, FileAddress):
        return f"@+{file_offset(address.base.address) + address.offset:#x}"
    if address.base is CONSTANT:
        return None  # an absolute address means nothing once the file is relocated
    inner = value_text(Value(address.base), file_offset)
    if inner is None:
        return None
    return f"{address.offset:+d}({inner})"
