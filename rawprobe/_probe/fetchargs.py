"""The fetch-arg language of the kernel's uprobe_events, parsed into a small syntax tree.

Grammar (Documentation/trace/uprobetracer.rst, and /sys/kernel/tracing/README):

    ARG       := [NAME=]FETCHARG[:TYPE]
    FETCHARG  := %REG | $argN | $retval | $stack | $stackN | $comm | @ADDR | @+OFFSET
               | +|-[u]OFFS(FETCHARG) | \\IMM | \\"STRING"
    TYPE      := s8..s64 | u8..u64 | x8..x64 | char | string | ustring | symbol
               | b<width>@<offset>/<container-bits> | TYPE[N]

plus aliases for bpftrace users: ``arg0``..``arg5`` (0-based ABI argument registers),
``retval``, and ``str`` for ``string``. A missing NAME becomes ``argN`` (1-based position), as
the kernel does. The tree says *what* to fetch; :mod:`rawprobe._plan.compile` decides *how*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import FetchArgError
from .._sys.arch import ARCH

__all__ = [
    "MAX_ARRAY_LEN",
    "ArgType",
    "Comm",
    "Deref",
    "EventField",
    "FetchArg",
    "FileOffset",
    "Immediate",
    "ImmediateString",
    "Memory",
    "ProbeRelative",
    "Register",
    "Source",
    "StackEntry",
    "StackPointer",
    "UsdtArg",
    "UsdtArgument",
    "c_integer",
    "parse_event_field",
    "parse_fetcharg",
]

MAX_ARRAY_LEN = 64  # kernel/trace/trace_probe.h: MAX_ARRAY_LEN
MAX_NESTING = 8  # dereference levels; the BPF side's RP_MAX_DEREF


@dataclass(frozen=True)
class Register:
    """A register, by its kernel name (``di``, ``ax``)."""

    name: str


@dataclass(frozen=True)
class StackPointer:
    """``$stack``: the stack pointer's value."""


@dataclass(frozen=True)
class StackEntry:
    """``$stackN``: the N-th word on the stack."""

    index: int


@dataclass(frozen=True)
class Comm:
    """``$comm``: the task's command name."""


@dataclass(frozen=True)
class Memory:
    """``@ADDR``: the memory at an absolute address."""

    address: int


@dataclass(frozen=True)
class FileOffset:
    """``@+OFFSET``: the memory at a file offset of the probed file, where it is mapped."""

    offset: int


@dataclass(frozen=True)
class Immediate:
    """``\\IMM``: a constant."""

    value: int


@dataclass(frozen=True)
class ImmediateString:
    """``\\"STRING"``: a constant string."""

    value: str


@dataclass(frozen=True)
class UsdtArg:
    """``$argN`` (1-based): the N-th argument of a function (ABI) or of a USDT probe."""

    index: int


@dataclass(frozen=True)
class ProbeRelative:
    """The run-time address of the probed instruction plus ``delta``.

    Not written by users: it expresses ``%rip``-relative USDT operands (a global variable at a
    fixed distance from the probe site, wherever the file is mapped).
    """

    delta: int


@dataclass(frozen=True)
class EventField:
    """A field of a kernel tracepoint's record, by its name in the event's ``format`` file
    (``tp:`` probes)."""

    name: str


@dataclass(frozen=True)
class Deref:
    """``+|-OFFS(INNER)``: the memory at INNER's value plus ``offset``."""

    offset: int
    inner: Source


Source = (
    Register
    | StackPointer
    | StackEntry
    | Comm
    | Memory
    | FileOffset
    | Immediate
    | ImmediateString
    | UsdtArg
    | ProbeRelative
    | EventField
    | Deref
)


@dataclass(frozen=True)
class ArgType:
    """How a fetched value is typed and printed.

    Attributes:
        name: The type as written, normalized (``s32``, ``string``, ``b4@3/32``, ``u8[4]``).
        kind: ``int``, ``char``, ``string``, ``symbol`` or ``bitfield``.
        size: Bytes per element (strings: 0).
        signed: Printed as signed decimal.
        hex: Printed as hexadecimal (``x`` types).
        count: Array length, or ``None`` for a scalar.
        bit_width: Bitfields: width in bits.
        bit_offset: Bitfields: offset in bits from the container's least significant bit.
    """

    name: str
    kind: str
    size: int
    signed: bool = False
    hex: bool = False
    count: int | None = None
    bit_width: int = 0
    bit_offset: int = 0

    @property
    def is_string(self) -> bool:
        return self.kind == "string"

    def element(self) -> ArgType:
        """The type of one element of an array type."""
        return ArgType(
            self.name.split("[", 1)[0],
            self.kind,
            self.size,
            self.signed,
            self.hex,
            None,
            self.bit_width,
            self.bit_offset,
        )


@dataclass(frozen=True)
class FetchArg:
    """One ``NAME=FETCHARG:TYPE`` of a probe word.

    Attributes:
        name: The field name (given, or ``argN`` by position).
        source: What to fetch.
        type: How to type it.
        text: The fetch-arg as written.
        column: Where it starts in the probe word (for error messages).
        typed: Whether the type was written (else it is the default for the source).
    """

    name: str
    source: Source
    type: ArgType
    text: str
    column: int
    typed: bool = True


@dataclass(frozen=True)
class UsdtArgument:
    """One argument of a USDT probe, as its SDT note describes it (``-4@%edi``).

    Attributes:
        size: Bytes of the value.
        signed: Whether the value is signed.
        source: Where it is: a register, memory (a :class:`Deref`), a constant, or memory at
            a :class:`ProbeRelative` address.
        text: The argument spec as written in the note.
        error: Why the spec cannot be translated, when it cannot; reading the argument is
            then refused with this message (the probe itself can still be planted).
    """

    size: int
    signed: bool
    source: Source
    text: str
    error: str | None = None

    @property
    def type(self) -> ArgType:
        return parse_type(f"{'s' if self.signed else 'u'}{self.size * 8}")


_INT_TYPE = re.compile(r"([sux])(8|16|32|64)")
_BITFIELD_TYPE = re.compile(r"b(\d+)@(\d+)/(8|16|32|64)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KERNEL_ONLY_TYPES = ("symstr", "%pd", "%pD")


def c_integer(text: str) -> int:
    """An integer as C (and the kernel's kstrtol with base 0) reads it: ``0x`` hexadecimal,
    a leading ``0`` octal, otherwise decimal; an optional sign.

    Raises:
        ValueError: Not such a number (``08``, say).
    """
    digits = text.lstrip("+-")
    negative = text.startswith("-")
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits[1:], 8)
    else:
        value = int(digits, 10)
    return -value if negative else value


def parse_type(text: str, word: str = "", column: int = 0) -> ArgType:
    """Parse a TYPE (the part after ``:``).

    Raises:
        FetchArgError: Unknown type or bad array length.
    """
    base, count = text, None
    array = re.fullmatch(r"(.+)\[(\d+)\]", text)
    if array:
        base, count = array.group(1), int(array.group(2))
        if not 0 < count <= MAX_ARRAY_LEN:
            raise FetchArgError(
                f"array length {count} out of range 1..{MAX_ARRAY_LEN}", word, column
            )
    if base == "str":
        base = "string"
    name = base + (f"[{count}]" if count is not None else "")
    match = _INT_TYPE.fullmatch(base)
    if match:
        letter, bits = match.group(1), int(match.group(2))
        return ArgType(name, "int", bits // 8, letter == "s", letter == "x", count)
    if base == "char":
        return ArgType(name, "char", 1, count=count)
    if base in ("string", "ustring"):
        return ArgType(name, "string", 0, count=count)
    if base == "symbol":
        return ArgType(name, "symbol", 8, hex=True, count=count)
    match = _BITFIELD_TYPE.fullmatch(base)
    if match:
        width, offset, container = (int(g) for g in match.groups())
        if width == 0 or width + offset > container:
            raise FetchArgError(
                f"bitfield {base}: {width} bits at bit {offset} do not fit in {container} bits",
                word,
                column,
            )
        return ArgType(
            name, "bitfield", container // 8, count=count, bit_width=width, bit_offset=offset
        )
    if base in _KERNEL_ONLY_TYPES:
        raise FetchArgError(f"type {base!r} applies to kernel probes only", word, column)
    raise FetchArgError(
        f"unknown type {base!r}: use s8..s64, u8..u64, x8..x64, char, string, ustring, symbol, "
        "b<width>@<offset>/<size>, or TYPE[N]",
        word,
        column,
    )


DEFAULT_TYPE = parse_type("x64")
STRING_TYPE = parse_type("string")


class _Parser:
    """Recursive-descent parser over one FETCHARG; positions are columns in the probe word."""

    def __init__(self, text: str, word: str, column: int, retprobe: bool, usdt: bool) -> None:
        self.text = text
        self.word = word
        self.column = column
        self.retprobe = retprobe
        self.usdt = usdt

    def error(self, message: str, position: int) -> FetchArgError:
        return FetchArgError(message, self.word, self.column + position)

    def parse(self) -> Source:
        source, end = self.source(0, 0)
        if end != len(self.text):
            raise self.error(f"unexpected {self.text[end:]!r}", end)
        return source

    def source(self, position: int, depth: int) -> tuple[Source, int]:
        text = self.text
        if position >= len(text):
            raise self.error("missing fetch-arg", position)
        char = text[position]
        if char in "+-":
            return self.deref(position, depth)
        if char == "%":
            match = _NAME.match(text, position + 1)
            if not match:
                raise self.error("missing register name after '%'", position)
            return self.register(match.group(0), position), match.end()
        if char == "$":
            match = re.compile(r"[a-z]+\d*").match(text, position + 1)
            if not match:
                raise self.error("unknown variable after '$'", position)
            return self.variable(match.group(0), position), match.end()
        if char == "@":
            return self.memory(position)
        if char == "\\":
            return self.immediate(position)
        match = _NAME.match(text, position)
        if match:
            return self.alias(match.group(0), position), match.end()
        raise self.error(f"cannot parse fetch-arg {text[position:]!r}", position)

    def register(self, name: str, position: int) -> Register:
        if name not in ARCH.registers:
            known = ", ".join("%" + reg for reg in ARCH.registers)
            raise self.error(f"unknown register %{name} on {ARCH.machine}; known: {known}",
                             position)
        return Register(name)

    def variable(self, name: str, position: int) -> Source:
        if name == "retval":
            if not self.retprobe:
                raise self.error("$retval is only available on return probes (r:)", position)
            return Register(ARCH.return_register)
        if name == "comm":
            return Comm()
        if name == "stack":
            return StackPointer()
        match = re.fullmatch(r"stack(\d+)", name)
        if match:
            return StackEntry(int(match.group(1)))
        match = re.fullmatch(r"arg(\d+)", name)
        if match:
            return self.argument(int(match.group(1)), position, one_based=True)
        raise self.error(
            f"unknown variable ${name}: use $argN, $retval, $stack, $stackN or $comm", position
        )

    def argument(self, index: int, position: int, one_based: bool) -> Source:
        shown = f"$arg{index}" if one_based else f"arg{index}"
        number = index if one_based else index + 1
        if self.usdt:
            if number < 1:
                raise self.error(f"{shown}: USDT arguments are numbered from $arg1", position)
            return UsdtArg(number)
        if self.retprobe:
            raise self.error(
                f"{shown} on a return probe: argument registers are clobbered by the time a "
                "function returns; capture them with an entry probe",
                position,
            )
        count = len(ARCH.argument_registers)
        if not 1 <= number <= count:
            low, high = ("$arg1", f"$arg{count}") if one_based else ("arg0", f"arg{count - 1}")
            raise self.error(
                f"{shown}: only the {count} register arguments ({low}..{high}) can be read",
                position,
            )
        return Register(ARCH.argument_registers[number - 1])

    def alias(self, name: str, position: int) -> Source:
        match = re.fullmatch(r"arg(\d+)", name)
        if match:
            return self.argument(int(match.group(1)), position, one_based=False)
        if name == "retval":
            return self.variable("retval", position)
        raise self.error(
            f"cannot parse fetch-arg {name!r}: registers are written %REG, variables $NAME "
            "(aliases: arg0..arg5, retval)",
            position,
        )

    def deref(self, position: int, depth: int) -> tuple[Source, int]:
        match = re.compile(r"([+-])(u?)(0[xX][0-9a-fA-F]+|\d+)\(").match(self.text, position)
        if not match:
            raise self.error("expected +|-[u]OFFSET(FETCHARG)", position)
        if depth + 1 > MAX_NESTING:
            raise self.error(
                f"dereferences nested too deep (at most {MAX_NESTING} levels)", position
            )
        try:
            offset = c_integer(match.group(3))
        except ValueError:
            raise self.error(f"{match.group(3)!r} is not a number", position) from None
        if match.group(1) == "-":
            offset = -offset
        inner, end = self.source(match.end(), depth + 1)
        if isinstance(inner, (Comm, ImmediateString)):
            raise self.error("cannot dereference $comm or a string constant", match.end())
        if end >= len(self.text) or self.text[end] != ")":
            raise self.error("missing ')'", end)
        return Deref(offset, inner), end + 1

    def memory(self, position: int) -> tuple[Source, int]:
        match = re.compile(r"@(\+?)(0[xX][0-9a-fA-F]+|\d+)").match(self.text, position)
        if not match:
            raise self.error(
                "expected @ADDR or @+OFFSET (symbols are resolved for kernel probes only)",
                position,
            )
        try:
            value = c_integer(match.group(2))
        except ValueError:
            raise self.error(f"{match.group(2)!r} is not a number", position) from None
        if match.group(1):
            if self.retprobe:
                raise self.error("@+OFFSET is only supported on entry probes", position)
            return FileOffset(value), match.end()
        return Memory(value), match.end()

    def immediate(self, position: int) -> tuple[Source, int]:
        text = self.text
        if text.startswith('\\"', position):
            end = text.find('"', position + 2)
            if end < 0:
                raise self.error("unterminated string constant", position)
            return ImmediateString(text[position + 2 : end]), end + 1
        match = re.compile(r"\\(-?(?:0[xX][0-9a-fA-F]+|\d+))").match(text, position)
        if not match:
            raise self.error("expected \\IMM (a number) or \\\"STRING\\\"", position)
        try:
            return Immediate(c_integer(match.group(1))), match.end()
        except ValueError:
            raise self.error(f"{match.group(1)!r} is not a number", position) from None


def parse_fetcharg(
    text: str,
    index: int,
    *,
    word: str = "",
    column: int = 0,
    retprobe: bool = False,
    usdt: bool = False,
) -> FetchArg:
    """Parse one ``[NAME=]FETCHARG[:TYPE]``.

    Args:
        text: The fetch-arg as written.
        index: Its 1-based position among the probe's fetch-args (for the default name).
        word: The whole probe word, and ``column`` where ``text`` starts in it (for errors).
        retprobe: Whether the probe is a return probe (``$retval`` allowed, ``$argN`` not).
        usdt: Whether ``$argN`` means a USDT argument.

    Raises:
        FetchArgError: Anything malformed, with the column it starts at.
    """
    name = f"arg{index}"
    body_start = 0
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", text)
    if match:
        name = match.group(1)
        body_start = match.end()
    elif "=" in text.split(":", 1)[0].split("(", 1)[0]:
        raise FetchArgError(
            "a field name must be a C identifier ([A-Za-z_][A-Za-z0-9_]*)", word, column
        )
    body = text[body_start:]
    type_text = None
    # The type follows the last ':' outside parentheses and string constants.
    depth, quoted, split = 0, False, -1
    for position, char in enumerate(body):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == ":" and depth == 0:
            split = position
    if split >= 0:
        type_text = body[split + 1 :]
        body = body[:split]
    parser = _Parser(body, word, column + body_start, retprobe, usdt)
    source = parser.parse()
    if type_text is None:
        arg_type = _default_type(source)
    else:
        arg_type = parse_type(type_text, word, column + body_start + split + 1)
    _check_combination(source, arg_type, word, column + body_start)
    return FetchArg(name, source, arg_type, text, column, typed=type_text is not None)


def _default_type(source: Source) -> ArgType:
    if isinstance(source, (Comm, ImmediateString)):
        return STRING_TYPE
    return DEFAULT_TYPE


def _check_combination(source: Source, arg_type: ArgType, word: str, column: int) -> None:
    if isinstance(source, (Comm, ImmediateString)) and not arg_type.is_string:
        raise FetchArgError("$comm and string constants can only be typed string", word, column)
    if arg_type.count is not None and not isinstance(source, (Deref, Memory, FileOffset)):
        raise FetchArgError(
            "an array type needs memory to read: write +0(FETCHARG):TYPE[N]", word, column
        )
    if arg_type.is_string and isinstance(source, Immediate):
        raise FetchArgError("a number is not a string; use \\\"TEXT\\\"", word, column)


_EVENT_FIELD = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)=)?([A-Za-z_][A-Za-z0-9_]*)(?::(.+))?")


def parse_event_field(text: str, *, word: str = "", column: int = 0) -> FetchArg:
    """Parse one field of a ``tp:`` probe: ``[NAME=]FIELD[:TYPE]``.

    FIELD is the field's name in the tracepoint's ``format`` file; without a TYPE it is read
    as the format file declares it. ``:string`` on a pointer field reads the string it points
    to (user memory, then kernel memory); an integer TYPE reads that many bytes of the field.

    Raises:
        FetchArgError: Anything malformed, with the column it starts at.
    """
    match = _EVENT_FIELD.fullmatch(text)
    if not match:
        raise FetchArgError(
            "a tracepoint field is [NAME=]FIELD[:TYPE], FIELD as its format file names it "
            "(e.g. filename:string, flags, prev_pid:s32)", word, column)
    alias, field, type_text = match.groups()
    if type_text is None:
        return FetchArg(alias or field, EventField(field), DEFAULT_TYPE, text, column, False)
    arg_type = parse_type(type_text, word, column + match.start(3))
    if arg_type.kind not in ("int", "char", "string") or (
            arg_type.kind == "string" and arg_type.count is not None):
        raise FetchArgError(f"type {type_text!r} does not apply to a tracepoint field: use "
                            "string, char, s8..s64, u8..u64 or x8..x64", word,
                            column + match.start(3))
    return FetchArg(alias or field, EventField(field), arg_type, text, column, True)
