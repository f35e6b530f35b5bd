"""What the DWARF reader answers with: plain, immutable values.

Addresses are ELF virtual addresses of the probed file (symbol values, ``p_vaddr`` space), the
same space as the symbol table; the caller turns the one it probes into a file offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CompiledVariable",
    "FunctionInstance",
    "LineAddress",
    "SourceLine",
    "Variable",
]

AddressRange = tuple[int, int]
"""``[low, high)`` in ELF virtual addresses."""


@dataclass(frozen=True)
class FunctionInstance:
    """One place a function's code is: its out-of-line body, or one inlined copy.

    Attributes:
        name: The function's name in the source.
        linkage_name: The symbol name when it differs (C++ mangled names), else None.
        entry_address: The first instruction executed (``DW_AT_entry_pc``, else
            ``DW_AT_low_pc``, else the start of the first range).
        probe_address: Where perf probe plants a function probe that reads variables: after the
            prologue when the unit is built without optimization (perf's ``skip_prologue``),
            else the entry. For inlined copies, the entry.
        ranges: The instance's code.
        inlined: True for an inlined copy (``DW_TAG_inlined_subroutine``).
        caller: For an inlined copy, the function it is inlined into (the outermost one).
        decl_file: The source file that declares the function, when known.
        decl_line: Its line there (perf's ``FUNC:0``), when known.
        call_file: For an inlined copy, the file of the call it replaces.
        call_line: For an inlined copy, the line of that call.
    """

    name: str
    linkage_name: str | None
    entry_address: int
    probe_address: int
    ranges: tuple[AddressRange, ...]
    inlined: bool
    caller: str | None
    decl_file: str | None
    decl_line: int | None
    call_file: str | None = None
    call_line: int | None = None

    @property
    def prologue_skipped(self) -> bool:
        """Whether :attr:`probe_address` is past the prologue rather than the entry."""
        return self.probe_address != self.entry_address


@dataclass(frozen=True)
class Variable:
    """A parameter, local or global as seen from one probe address.

    Attributes:
        name: Its name.
        kind: ``parameter`` or ``local``.
        type_text: Its type in C spelling (``const char *``, ``struct outer *``, ``int [4]``).
        perf_type_text: Its type as ``perf probe -V`` prints it (typedef names kept, qualifiers
            dropped, arrays shown as pointers: ``char*``, ``struct outer*``).
        available: Whether its value can be read at the address.
        reason: When not available, why (``optimized out here``...); else "".
        available_ranges: Where its value is readable, from its location list (empty for a
            single location valid throughout its scope, and when nowhere).
        decl_line: The line that declares it, when known.
        location: The DWARF location expression that applies at the address, as text
            (``DW_OP_fbreg -20``, ``DW_OP_reg5``; ``DW_AT_const_value 3``), "" when none does.
    """

    name: str
    kind: Literal["parameter", "local"]
    type_text: str
    perf_type_text: str
    available: bool
    reason: str
    available_ranges: tuple[AddressRange, ...]
    decl_line: int | None
    location: str = ""

    @property
    def perf_text(self) -> str:
        """The line ``perf probe -V`` prints for it: ``TYPE<TAB>NAME``."""
        return f"{self.perf_type_text}\t{self.name}"


@dataclass(frozen=True)
class CompiledVariable:
    """A variable expression translated into what the kernel's uprobe tracer reads.

    Attributes:
        expression: The expression as written (``o->in->x``).
        name: A name for the event field (the last identifier: ``x``).
        fetcharg: The kernel fetch-arg (``+0(+16(%di))``, ``-20(%bp)``, ``%si``, ``@+0x4010``,
            ``$retval``, ``\\42``). ``@+N`` is relative to the probed file as the kernel's
            uprobe tracer reads it: the run-time address of the probed instruction minus its
            file offset, plus N (``translate_user_vaddr`` in kernel/trace/trace_uprobe.c).
        type: The kernel type to read it as (``s32``, ``u64``, ``x64`` for pointers, ``string``,
            ``s8[16]``, ``b3@2/32``).
        type_text: The C type of the value read (``int``, ``const char *``).
        address: The probe address it was compiled for.
        dereferences: How many memory reads the fetch-arg nests (the kernel and rawprobe allow
            at most 8).
    """

    expression: str
    name: str
    fetcharg: str
    type: str
    type_text: str
    address: int
    dereferences: int

    @property
    def text(self) -> str:
        """``NAME=FETCHARG:TYPE``, a fetch-arg as uprobe_events takes it."""
        return f"{self.name}={self.fetcharg}:{self.type}"


@dataclass(frozen=True)
class LineAddress:
    """One address where a source line's code starts (an ``is_stmt`` row of the line table).

    Attributes:
        file: The source file, as the line table names it (full path when known).
        line: The line number.
        address: The address.
        function: The innermost function (inlined or not) whose code is there.
    """

    file: str
    line: int
    address: int
    function: str


@dataclass(frozen=True)
class SourceLine:
    """A source line of a function that has code, with every address where it starts."""

    file: str
    line: int
    addresses: tuple[int, ...]
