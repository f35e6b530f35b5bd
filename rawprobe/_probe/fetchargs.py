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

Where the kernel's grammar gives a word no meaning, it names a variable of the debug
information, as perf probe takes them (:class:`DebugVariable`)::

    DEBUGVAR  := BASE ACCESS* | $params | $vars
    BASE      := IDENT | @IDENT | $retval           (IDENT but the aliases arg0.. and retval)
    ACCESS    := ->IDENT | .IDENT | [INDEX]

with TYPE also ``s``, ``u`` or ``x`` (keep the width, change the sign or show in hex). A
missing NAME becomes the last identifier (``x`` for ``o->in->x``). An untyped ``$retval`` is
typed from the function's DWARF return type where there is one (bpftrace's ``retval`` stays
the return register, ``x64``). The planner compiles each at each probe site into the kernel
fetch-arg it stands for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import FetchArgError
from .._sys.arch import ARCH
from .argtypes import DEFAULT_TYPE, MAX_ARRAY_LEN, STRING_TYPE, ArgType, c_integer, parse_type

__all__ = [
    "MAX_ARRAY_LEN",
    "ArgType",
    "Comm",
    "DebugVariable",
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
    "debug_field_name",
    "parse_event_field",
    "parse_fetcharg",
]

MAX_NESTING = 8  # dereference levels; the BPF side's RP_MAX_DEREF
# $stackN: kernel/trace/trace_probe.h PARAM_MAX_STACK (THREAD_SIZE / sizeof(long), x86-64)
MAX_STACK_ENTRY = 2048
# The ranges of the kernel's own parsers (kernel/trace/trace_probe.c): kstrtol for a
# dereference offset, kstrtoul for an address, either for an immediate.
_S64 = (-(1 << 63), (1 << 63) - 1)
_U64 = (0, (1 << 64) - 1)
_IMM64 = (-(1 << 63), (1 << 64) - 1)


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
    """``@+OFFSET``: the memory at a file offset of the probed file, where it is mapped (at a
    return too: reckoned from the probed function's address, as the kernel does)."""

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


@dataclass(frozen=True)
class DebugVariable:
    """A variable named from the debug information (``a``, ``o->in->x``, ``arr[3]``,
    ``@counter``, ``$retval->len``), or several (``$params``, ``$vars``).

    Not fetched as such: the planner compiles it, at each probe site, into the kernel fetch-arg
    it stands for (:meth:`rawprobe._dwarf.DebugInfo.compile`).

    Attributes:
        expression: As written, without NAME and TYPE.
        cast: The TYPE written after it (``string``, ``u8``, ``x``...), or None: then the type
            follows the debug information.
        fallback: What to fetch when the file has no debug information for it (an untyped
            ``$retval``: the return register, as the kernel reads it), or None: it must have.
    """

    expression: str
    cast: str | None = None
    fallback: Source | None = None

    @property
    def expands(self) -> bool:
        """Whether it stands for several variables (``$params``, ``$vars``)."""
        return self.expression in EXPANSIONS


EXPANSIONS = ("$params", "$vars")

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
    | DebugVariable
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


_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DEBUG_EXPRESSION = re.compile(
    rf"(?:@{_IDENTIFIER}|\$retval|{_IDENTIFIER})"
    rf"(?:->{_IDENTIFIER}|\.{_IDENTIFIER}|\[(?:0[xX][0-9a-fA-F]+|[0-9]+)\])*")
_KERNEL_NAMES = re.compile(r"arg\d+|retval|\$retval")
_SIGN_CASTS = ("s", "u", "x")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
            index = int(match.group(1))
            if index > MAX_STACK_ENTRY:
                raise self.error(f"${name}: the kernel reads at most $stack{MAX_STACK_ENTRY}",
                                 position)
            return StackEntry(index)
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
            f"cannot parse fetch-arg {name!r} here: registers are written %REG, variables "
            "$NAME (aliases: arg0..arg5, retval); a variable of the debug information is "
            "written alone (a, a->member, a[N], a:string), not inside +OFFSET(...)",
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
        self.check_range(offset, _S64, "offset", position)
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
        self.check_range(value, _U64, "address" if not match.group(1) else "offset",
                         position)
        if match.group(1):
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
            value = c_integer(match.group(1))
        except ValueError:
            raise self.error(f"{match.group(1)!r} is not a number", position) from None
        self.check_range(value, _IMM64, "immediate", position)
        return Immediate(value), match.end()

    def check_range(self, value: int, bounds: tuple[int, int], what: str,
                    position: int) -> None:
        if not bounds[0] <= value <= bounds[1]:
            raise self.error(f"the {what} {value} does not fit in 64 bits", position)


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
    debug = None if usdt else _debug_variable(body, type_text, retprobe, word,
                                               column + body_start)
    if debug is not None:
        return _debug_fetcharg(debug, name if match else None, index, text, word, column,
                               body_start + split + 1)
    parser = _Parser(body, word, column + body_start, retprobe, usdt)
    source = parser.parse()
    if type_text is None:
        arg_type = _default_type(source)
    else:
        arg_type = parse_type(type_text, word, column + body_start + split + 1)
    _check_combination(source, arg_type, word, column + body_start)
    return FetchArg(name, source, arg_type, text, column, typed=type_text is not None)


def _debug_variable(
    body: str, type_text: str | None, retprobe: bool, word: str, column: int
) -> DebugVariable | None:
    """The debug variable a fetch-arg names, or None when it is the kernel's."""
    if body in EXPANSIONS:
        return DebugVariable(body, type_text)
    if _KERNEL_NAMES.fullmatch(body):
        if body == "$retval" and type_text is None and retprobe:
            return DebugVariable("$retval", None, Register(ARCH.return_register))
        return None
    if not _DEBUG_EXPRESSION.fullmatch(body):
        return None
    if body.startswith("$retval") and not retprobe:
        raise FetchArgError("$retval is only available on return probes (r:)", word, column)
    return DebugVariable(body, type_text)


def _debug_fetcharg(
    debug: DebugVariable, name: str | None, index: int, text: str, word: str, column: int,
    type_column: int,
) -> FetchArg:
    if debug.expands:
        if name is not None or debug.cast is not None:
            raise FetchArgError(f"{debug.expression} stands for several variables, each named "
                                "and typed after itself: write it alone", word, column)
        return FetchArg(debug.expression, debug, DEFAULT_TYPE, text, column, typed=False)
    if debug.cast is None or debug.cast in _SIGN_CASTS:
        arg_type = DEFAULT_TYPE
    else:
        arg_type = parse_type(debug.cast, word, column + type_column)
    if name is None:
        name = f"arg{index}" if debug.fallback is not None else debug_field_name(
            debug.expression)
    return FetchArg(name, debug, arg_type, text, column, typed=debug.cast is not None)


def debug_field_name(expression: str) -> str:
    """The field name of an unnamed debug variable: its last identifier (``x`` for
    ``o->in->x``, ``arr`` for ``arr[3]``, ``counter`` for ``@counter``), as perf probe names
    it."""
    members = re.findall(rf"(?:->|\.)({_IDENTIFIER})", expression)
    if members:
        return str(members[-1])
    match = re.search(_IDENTIFIER, expression)
    return match.group(0) if match else expression


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
