"""SDT argument specs (``-4@%edi``, ``8@-24(%rbp)``, ``4@$5``) translated into fetches.

A spec is ``SIZE@OPERAND`` (sys/sdt.h, ``_SDT_ARGFMT``): SIZE is the argument's size in bytes,
negative when the argument is signed, and OPERAND is the operand exactly as the compiler printed
it into the asm template, in the target's assembler syntax. The size governs; the register
named may be a wider or narrower alias of where the value is (sys/sdt.h, the note on gdb
PR24541), so a sub-register (``%edi``, ``%r8b``) stands for its full register and the value is
truncated to SIZE when it is stored.

Translations into the fetch-arg syntax tree of :mod:`rawprobe._probe.fetchargs`:

- ``-4@%edi`` → ``Register("di")``
- ``8@-24(%rbp)`` → ``Deref(-24, Register("bp"))``
- ``4@$5`` → ``Immediate(5)``
- ``8@sym+16(%rip)`` and ``8@16+sym(%rip)`` → ``Deref(0, ProbeRelative(sym + 16 - probe))``
- ``4@32(%rip)`` → ``Deref(0, ProbeRelative(32))``
- ``-4@sym`` (an absolute address, no register) → ``Deref(0, ProbeRelative(sym - probe))``

The displacement of a ``%rip``-relative operand with a symbol names the datum's link-time
address (``sym+16``), not a distance from the next instruction: the note is text, not an
instruction, and no assembler resolved it. The datum lies at a fixed distance from the probe
site wherever the file is mapped, and at a USDT site the instruction pointer is the probe's
address (kernel/events/uprobes.c: ``handle_swbp()`` sets it before the handlers run), so the
address is ``ip + (sym + 16 - probe)``. A purely numeric ``%rip`` displacement has no symbol to
name; it is read like any other base register's, the register's value at the probe plus the
displacement: ``ip + 32``.

Refused, never guessed: index forms (``8@(%rax,%rdx,8)``: two registers, and the BPF programs
add one register and a constant), high-byte registers (``%ah``), segment overrides (``%fs:8``),
floating-point arguments (``8f@...``), sizes other than 1, 2, 4 and 8, and symbols the file's
symbol tables do not define exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .._probe.fetchargs import Deref, Immediate, ProbeRelative, Register, Source, UsdtArgument
from ._errors import UsdtArgumentError

__all__ = ["MACHINES", "SymbolLookup", "translate_argument"]

SymbolLookup = Callable[[str], int]
"""Returns a symbol's link-time address; raises :class:`LookupError` saying why when it cannot
(the translator turns that into a :class:`UsdtArgumentError` naming the spec)."""

MACHINES = ("x86_64", "aarch64")
"""Machines (the kernel's names) whose operand syntax rawprobe translates."""

_SIZE_PREFIX = re.compile(r"(-?)(\d+)(f?)@(.*)", re.DOTALL)
_NUMBER = r"[+-]?(?:0[xXbB][0-9a-fA-F]+|\d+)"
_SYMBOL = r"[A-Za-z_.][A-Za-z0-9_.$]*"
_INT64_MIN = -(1 << 63)
_UINT64_LIMIT = 1 << 64


# -- x86-64 ------------------------------------------------------------------------------------

# Every general-purpose register name GNU as accepts in AT&T syntax, mapped to the pt_regs
# member the kernel calls it (arch/x86/include/asm/ptrace.h): 64-, 32-, 16- and low 8-bit views.
_X86_64_REGISTERS: dict[str, str] = {}
for _full, _views in {
    "ax": ("rax", "eax", "ax", "al"),
    "bx": ("rbx", "ebx", "bx", "bl"),
    "cx": ("rcx", "ecx", "cx", "cl"),
    "dx": ("rdx", "edx", "dx", "dl"),
    "si": ("rsi", "esi", "si", "sil"),
    "di": ("rdi", "edi", "di", "dil"),
    "bp": ("rbp", "ebp", "bp", "bpl"),
    "sp": ("rsp", "esp", "sp", "spl"),
    "ip": ("rip", "eip"),
    **{f"r{n}": (f"r{n}", f"r{n}d", f"r{n}w", f"r{n}b", f"r{n}l") for n in range(8, 16)},
}.items():
    for _view in _views:
        _X86_64_REGISTERS[_view] = _full
_X86_HIGH_BYTE = {"ah": "ax", "bh": "bx", "ch": "cx", "dh": "dx"}
_X86_64_ADDRESS_REGISTERS = {
    name for name in _X86_64_REGISTERS if name.startswith("r") and name[-1] not in "dwb"
}

_X86_MEMORY = re.compile(
    r"(?P<disp>[^(]*)\((?P<base>%[a-z0-9]+)?(?:,(?P<index>%[a-z0-9]+)?(?:,(?P<scale>\d+))?)?\)"
)


@dataclass(frozen=True)
class _Displacement:
    """A displacement ``N``, ``SYM``, ``SYM+N``, ``N+SYM`` or ``SYM-N``: a constant, maybe plus
    one symbol's address."""

    constant: int
    symbol: str | None


def _parse_displacement(text: str, spec: str) -> _Displacement:
    terms = re.findall(r"\s*([+-]?)\s*(" + _SYMBOL + r"|0[xXbB][0-9a-fA-F]+|\d+)\s*", text)
    if not text.strip() or "".join(sign + term for sign, term in terms) != re.sub(
        r"\s+", "", text
    ):
        raise UsdtArgumentError(spec, f"cannot read the displacement {text!r}")
    constant = 0
    symbol: str | None = None
    for position, (sign, term) in enumerate(terms):
        if position and not sign:
            raise UsdtArgumentError(spec, f"cannot read the displacement {text!r}")
        if term[0].isdigit():
            value = _integer(term, spec)
            constant += -value if sign == "-" else value
            continue
        if sign == "-":
            raise UsdtArgumentError(spec, f"a symbol subtracted ({text!r}) is not an address")
        if symbol is not None:
            raise UsdtArgumentError(spec, f"two symbols in the displacement {text!r}")
        symbol = term
    return _Displacement(constant, symbol)


def _integer(text: str, spec: str) -> int:
    """An integer as GNU as reads one: ``0x`` hex, ``0b`` binary, a leading ``0`` octal, else
    decimal (the assembler syntax the operand is written in; GCC itself writes decimal)."""
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    try:
        if digits[:2] in ("0x", "0X"):
            return sign * int(digits[2:], 16)
        if digits[:2] in ("0b", "0B"):
            return sign * int(digits[2:], 2)
        if len(digits) > 1 and digits.startswith("0"):
            return sign * int(digits[1:], 8)
        return sign * int(digits, 10)
    except ValueError:
        raise UsdtArgumentError(spec, f"{text!r} is not a number") from None


def _wrap64(value: int, spec: str) -> int:
    """``value`` as the signed 64-bit number the BPF side adds (address arithmetic wraps)."""
    if not _INT64_MIN <= value < _UINT64_LIMIT:
        raise UsdtArgumentError(spec, f"{value} does not fit in 64 bits")
    return value - _UINT64_LIMIT if value >= 1 << 63 else value


def _symbol(lookup: SymbolLookup, name: str, spec: str) -> int:
    try:
        return lookup(name)
    except LookupError as error:
        reason = error.args[0] if error.args else f"no symbol {name!r}"
        raise UsdtArgumentError(spec, str(reason)) from None


def _x86_register(name: str, spec: str) -> str:
    register = name.removeprefix("%")
    if register in _X86_HIGH_BYTE:
        raise UsdtArgumentError(
            spec,
            f"%{register} is bits 8-15 of %{_X86_HIGH_BYTE[register]}, and rawprobe reads a "
            "register's low bytes only",
        )
    full = _X86_64_REGISTERS.get(register)
    if full is None:
        raise UsdtArgumentError(
            spec, f"%{register} is not an x86-64 general-purpose register rawprobe can read"
        )
    return full


def _translate_x86_64(operand: str, spec: str, probe_address: int,
                      symbol_address: SymbolLookup, relocatable: bool) -> Source:
    if operand.startswith("%"):
        if ":" in operand:
            raise UsdtArgumentError(spec, "a segment-relative operand (thread-local data)")
        return Register(_x86_register(operand, spec))
    if operand.startswith("$"):
        if not re.fullmatch(_NUMBER, operand[1:]):
            raise UsdtArgumentError(spec, f"the constant {operand[1:]!r} is not a number")
        return Immediate(_wrap64(_integer(operand[1:], spec), spec))
    if ":" in operand:
        raise UsdtArgumentError(spec, "a segment-relative operand (thread-local data)")
    match = _X86_MEMORY.fullmatch(operand)
    if match is None:
        if "(" in operand or ")" in operand:
            raise UsdtArgumentError(spec, f"cannot read the memory operand {operand!r}")
        # No register: an absolute address, e.g. -4@counter in code built without -fPIC.
        displacement = _parse_displacement(operand, spec)
        address = displacement.constant
        if displacement.symbol is not None:
            address += _symbol(symbol_address, displacement.symbol, spec)
        return Deref(0, ProbeRelative(_wrap64(address - probe_address, spec)))
    if match.group("index") is not None or match.group("scale") is not None:
        raise UsdtArgumentError(
            spec,
            "an index register: the address is BASE + INDEX * SCALE + DISP, and rawprobe's "
            "fetches add a constant to one register only",
        )
    base_text = match.group("base")
    if base_text is None:
        raise UsdtArgumentError(spec, f"cannot read the memory operand {operand!r}")
    base = base_text.removeprefix("%")
    if base not in _X86_64_ADDRESS_REGISTERS:
        if base in _X86_64_REGISTERS or base in _X86_HIGH_BYTE:
            raise UsdtArgumentError(
                spec, f"%{base} as an address register (32-bit addressing in a 64-bit program)"
            )
        raise UsdtArgumentError(spec, f"%{base} is not an x86-64 address register")
    disp_text = match.group("disp")
    displacement = _parse_displacement(disp_text, spec) if disp_text.strip() else \
        _Displacement(0, None)
    if base == "rip":
        if displacement.symbol is None:
            return Deref(0, ProbeRelative(_wrap64(displacement.constant, spec)))
        target = _symbol(symbol_address, displacement.symbol, spec) + displacement.constant
        return Deref(0, ProbeRelative(_wrap64(target - probe_address, spec)))
    register = Register(_X86_64_REGISTERS[base])
    if displacement.symbol is None:
        return Deref(_wrap64(displacement.constant, spec), register)
    if relocatable:
        # SYM(%reg) adds a link-time address to a register: right only where the file is
        # loaded at its link-time address. A position-independent file cannot contain it.
        raise UsdtArgumentError(
            spec,
            f"{displacement.symbol}(%{base}) adds an absolute address to a register, and this "
            "file is position-independent",
        )
    address = _symbol(symbol_address, displacement.symbol, spec) + displacement.constant
    return Deref(_wrap64(address, spec), register)


# -- AArch64 -----------------------------------------------------------------------------------

_AARCH64_MEMORY = re.compile(r"\[\s*([a-z0-9]+)\s*(?:,\s*#?(" + _NUMBER + r")\s*)?\]")


def _aarch64_register(name: str, spec: str) -> str:
    # x0..x30 (64-bit) and w0..w30 (their 32-bit views) name pt_regs' regs[0..30]; sp is sp
    # (arch/arm64/include/uapi/asm/ptrace.h, struct user_pt_regs).
    match = re.fullmatch(r"[xw](\d+)", name)
    if match and int(match.group(1)) <= 30:
        return f"x{int(match.group(1))}"
    if name in ("sp", "wsp"):
        return "sp"
    raise UsdtArgumentError(spec, f"{name} is not an AArch64 register rawprobe can read")


def _translate_aarch64(operand: str, spec: str, probe_address: int,
                       symbol_address: SymbolLookup, relocatable: bool) -> Source:
    # The operand forms GCC prints for sys/sdt.h's "nor" constraint on AArch64, as libbpf's
    # usdt.c reads them: x1, 5, [sp], [x0, 16].
    if operand.startswith("["):
        match = _AARCH64_MEMORY.fullmatch(operand)
        if match is None:
            raise UsdtArgumentError(spec, f"cannot read the memory operand {operand!r}")
        offset = _integer(match.group(2), spec) if match.group(2) else 0
        return Deref(_wrap64(offset, spec), Register(_aarch64_register(match.group(1), spec)))
    if re.fullmatch(_NUMBER, operand.removeprefix("#")):
        return Immediate(_wrap64(_integer(operand.removeprefix("#"), spec), spec))
    return Register(_aarch64_register(operand, spec))


_TRANSLATORS = {"x86_64": _translate_x86_64, "aarch64": _translate_aarch64}


def translate_argument(
    spec: str,
    *,
    machine: str = "x86_64",
    probe_address: int = 0,
    symbol_address: SymbolLookup | None = None,
    relocatable: bool = True,
) -> UsdtArgument:
    """Translate one SDT argument spec into a :class:`UsdtArgument`.

    Args:
        spec: The spec as the note writes it (``-4@%edi``).
        machine: The ELF's machine, by the kernel's name (``x86_64``, ``aarch64``).
        probe_address: The probe's link-time address (after prelink adjustment), against
            which ``%rip``-relative and absolute operands are made probe-relative.
        symbol_address: Looks up a symbol named in an operand; ``None`` refuses symbols.
        relocatable: Whether the file is position-independent (ET_DYN), so that absolute
            link-time addresses added to a register would be wrong.

    Returns:
        The argument: its size, signedness, where it is, and the spec.

    Raises:
        UsdtArgumentError: A spec rawprobe cannot translate; the message names it and why.
    """
    match = _SIZE_PREFIX.fullmatch(spec.strip())
    if match is None:
        raise UsdtArgumentError(spec, "no SIZE@ prefix, so the argument's size is unknown")
    sign, size_text, float_flag, operand = match.groups()
    size = int(size_text)
    if float_flag:
        raise UsdtArgumentError(
            spec, "a floating-point argument; rawprobe reads integers and pointers only"
        )
    if size not in (1, 2, 4, 8):
        raise UsdtArgumentError(spec, f"size {size}: arguments are 1, 2, 4 or 8 bytes")
    if not operand:
        raise UsdtArgumentError(spec, "no operand after '@'")
    translator = _TRANSLATORS.get(machine)
    if translator is None:
        raise UsdtArgumentError(
            spec, f"rawprobe reads USDT arguments of {', '.join(MACHINES)} programs, not "
            f"{machine}"
        )

    def refuse_symbol(name: str) -> int:
        raise LookupError(f"it names the symbol {name!r}, and no symbol table was given")

    source = translator(operand, spec, probe_address, symbol_address or refuse_symbol,
                        relocatable)
    return UsdtArgument(size=size, signed=sign == "-", source=source, text=spec)
