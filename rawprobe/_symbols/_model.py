"""Plain records describing symbols and resolved probe locations.

These are immutable value objects. They are written as small slotted classes rather than
dataclasses on purpose: ``dataclasses`` imports ``inspect`` (and with it ``re``, ``ast``...),
about 15 ms on a cold interpreter, three times the budget of a whole warm symbol lookup.
"""

from __future__ import annotations

from .._values import Record as _Record

__all__ = ["FunctionAt", "Location", "OffsetDerivation", "Symbol", "TargetInfo"]


class FunctionAt(tuple):  # type: ignore[type-arg]
    """The function holding a file offset: ``(name, file_offset, size, offset, kind)``.

    Attributes:
        name: Its preferred symbol name.
        file_offset: Where the function starts in the file.
        size: Its size in bytes (0 when unknown).
        offset: How far into it the asked offset is.
        kind: ``func`` or ``ifunc``.
    """

    __slots__ = ()

    def __new__(cls, name: str, file_offset: int, size: int, offset: int,
                kind: str = "func") -> FunctionAt:
        return tuple.__new__(cls, (name, file_offset, size, offset, kind))

    @property
    def name(self) -> str:
        return str(self[0])

    @property
    def file_offset(self) -> int:
        return int(self[1])

    @property
    def size(self) -> int:
        return int(self[2])

    @property
    def offset(self) -> int:
        return int(self[3])

    @property
    def kind(self) -> str:
        return str(self[4])

    def describe(self) -> str:
        """``name`` at the start of the function, ``name+0x10`` inside it."""
        return self.name if not self.offset else f"{self.name}+{self.offset:#x}"


# Fields are set through object.__setattr__ (the records refuse normal assignment), one call per
# field: a helper taking **kwargs costs twice as much, which shows when listing 50,000 functions.
_setattr = object.__setattr__


class Symbol(_Record):
    """A probe-able function of an ELF file: one address, with every name it has there.

    Attributes:
        name: The symbol's name as its symbol table spells it, without a version suffix
            (mangled, for C++).
        address: ``st_value``, the virtual address in the ELF's own address space.
        size: ``st_size`` in bytes (the largest among the aliases; 0 when no table says).
        file_offset: Where ``address`` lies in the file, through its executable PT_LOAD segment.
        source: The symbol source that gave ``name``: ``dynsym``, ``symtab`` (the file's own),
            ``debuglink``, ``build-id`` (a separate debug file) or ``minidebuginfo``.
        kind: ``func``, or ``ifunc`` for STT_GNU_IFUNC (the address is the resolver's).
        version: The symbol version (``GLIBC_2.2.5``), or None for an unversioned symbol.
        default_version: True when ``version`` is the default one (``name@@VERSION``).
        binding: ``global``, ``weak``, ``local`` or ``unique``.
        aliases: The other names at the same address (versioned spelling, e.g.
            ``__libc_malloc@@GLIBC_2.2.5``).
        demangled: The demangled C++ name, or None.
        sources: Every symbol source that lists this name at this address.
        warning: Something a user should know before probing here (e.g. IFUNC), or None.
    """

    __slots__ = (
        "address",
        "aliases",
        "binding",
        "default_version",
        "demangled",
        "file_offset",
        "kind",
        "name",
        "size",
        "source",
        "sources",
        "version",
        "warning",
    )

    name: str
    address: int
    size: int
    file_offset: int
    source: str
    kind: str
    version: str | None
    default_version: bool
    binding: str
    aliases: tuple[str, ...]
    demangled: str | None
    sources: tuple[str, ...]
    warning: str | None

    def __init__(
        self,
        name: str,
        address: int,
        size: int,
        file_offset: int,
        source: str,
        kind: str = "func",
        version: str | None = None,
        default_version: bool = False,
        binding: str = "global",
        aliases: tuple[str, ...] = (),
        demangled: str | None = None,
        sources: tuple[str, ...] = (),
        warning: str | None = None,
    ) -> None:
        _setattr(self, "name", name)
        _setattr(self, "address", address)
        _setattr(self, "size", size)
        _setattr(self, "file_offset", file_offset)
        _setattr(self, "source", source)
        _setattr(self, "kind", kind)
        _setattr(self, "version", version)
        _setattr(self, "default_version", default_version)
        _setattr(self, "binding", binding)
        _setattr(self, "aliases", aliases)
        _setattr(self, "demangled", demangled)
        _setattr(self, "sources", sources or (source,))
        _setattr(self, "warning", warning)

    @property
    def versioned_name(self) -> str:
        """``name@@VERSION`` (default version), ``name@VERSION``, or just ``name``."""
        return versioned_name(self.name, self.version, self.default_version)


class OffsetDerivation(_Record):
    """How a virtual address became a file offset, and the cross-check that confirms it.

    The kernel wants a file offset (``Documentation/trace/uprobetracer.rst``). It is computed
    through the executable PT_LOAD segment that maps the address (ELF gABI, "Program Loading"):
    ``file_offset = address - p_vaddr + p_offset``. The same offset computed through the section
    that holds the address (``address - sh_addr + sh_offset``) must agree; when it does not, the
    file's headers contradict each other and a probe might land in the wrong place.

    Attributes:
        address: The virtual address being converted.
        segment_vaddr: ``p_vaddr`` of the containing executable PT_LOAD segment.
        segment_offset: ``p_offset`` of that segment.
        file_offset: The result through the segment (what rawprobe gives the kernel).
        section_name: Name of the section containing ``address``, or None (no section headers).
        section_address: ``sh_addr`` of that section (0 when there is none).
        section_offset: ``sh_offset`` of that section (0 when there is none).
        section_file_offset: The result through the section, or None when there is no section.
    """

    __slots__ = (
        "address",
        "file_offset",
        "section_address",
        "section_file_offset",
        "section_name",
        "section_offset",
        "segment_offset",
        "segment_vaddr",
    )

    address: int
    segment_vaddr: int
    segment_offset: int
    file_offset: int
    section_name: str | None
    section_address: int
    section_offset: int
    section_file_offset: int | None

    def __init__(
        self,
        address: int,
        segment_vaddr: int,
        segment_offset: int,
        file_offset: int,
        section_name: str | None = None,
        section_address: int = 0,
        section_offset: int = 0,
        section_file_offset: int | None = None,
    ) -> None:
        _setattr(self, "address", address)
        _setattr(self, "segment_vaddr", segment_vaddr)
        _setattr(self, "segment_offset", segment_offset)
        _setattr(self, "file_offset", file_offset)
        _setattr(self, "section_name", section_name)
        _setattr(self, "section_address", section_address)
        _setattr(self, "section_offset", section_offset)
        _setattr(self, "section_file_offset", section_file_offset)

    @property
    def agrees(self) -> bool | None:
        """True when both formulas agree, False when they do not, None when there is no section."""
        if self.section_file_offset is None:
            return None
        return self.section_file_offset == self.file_offset


class Location(_Record):
    """A resolved probe location: exactly what the kernel's uprobe needs, plus provenance.

    Attributes:
        path: The file the kernel will open (absolute).
        file_offset: Offset of the probed instruction in that file.
        symbol: The function containing it (the name asked for, or the best name when a glob or
            raw offset found it), or None.
        symbol_offset: Offset of the probed instruction from the start of ``symbol``.
        address: The probed instruction's virtual address in the ELF.
        source: The symbol source that gave the address (``offset`` for a raw file offset).
        kind: ``func`` or ``ifunc`` (see ``warning``).
        version: The symbol version of ``symbol``, or None.
        default_version: True when ``version`` is the default (``@@``) one.
        aliases: Other names of the function at ``address - symbol_offset``.
        demangled: The demangled C++ name of ``symbol``, or None.
        size: The size of ``symbol`` in bytes (0 when unknown or no symbol).
        sources: Every symbol source that lists ``symbol`` at this address.
        warning: Something a user should know before probing here (IFUNC, forced offsets), or None.
        derivation: How the address became the file offset, with the section cross-check, or None
            for a raw offset outside any known function.
    """

    __slots__ = (
        "address",
        "aliases",
        "default_version",
        "demangled",
        "derivation",
        "file_offset",
        "kind",
        "path",
        "size",
        "source",
        "sources",
        "symbol",
        "symbol_offset",
        "version",
        "warning",
    )

    path: str
    file_offset: int
    symbol: str | None
    symbol_offset: int
    address: int
    source: str
    kind: str
    version: str | None
    default_version: bool
    aliases: tuple[str, ...]
    demangled: str | None
    size: int
    sources: tuple[str, ...]
    warning: str | None
    derivation: OffsetDerivation | None

    def __init__(
        self,
        path: str,
        file_offset: int,
        symbol: str | None,
        symbol_offset: int,
        address: int,
        source: str,
        kind: str = "func",
        version: str | None = None,
        default_version: bool = False,
        aliases: tuple[str, ...] = (),
        demangled: str | None = None,
        size: int = 0,
        sources: tuple[str, ...] = (),
        warning: str | None = None,
        derivation: OffsetDerivation | None = None,
    ) -> None:
        _setattr(self, "path", path)
        _setattr(self, "file_offset", file_offset)
        _setattr(self, "symbol", symbol)
        _setattr(self, "symbol_offset", symbol_offset)
        _setattr(self, "address", address)
        _setattr(self, "source", source)
        _setattr(self, "kind", kind)
        _setattr(self, "version", version)
        _setattr(self, "default_version", default_version)
        _setattr(self, "aliases", aliases)
        _setattr(self, "demangled", demangled)
        _setattr(self, "size", size)
        _setattr(self, "sources", sources or (source,))
        _setattr(self, "warning", warning)
        _setattr(self, "derivation", derivation)

    @property
    def versioned_name(self) -> str | None:
        """``symbol`` with its version suffix (``malloc@@GLIBC_2.2.5``), or None."""
        if self.symbol is None:
            return None
        return versioned_name(self.symbol, self.version, self.default_version)

    @property
    def kernel_place(self) -> str:
        """``PATH:0xOFFSET``, the place as ``uprobe_events`` spells it."""
        return f"{self.path}:{self.file_offset:#x}"


class TargetInfo(_Record):
    """What rawprobe knows about a file as a whole.

    Attributes:
        path: The file.
        build_id: Its GNU build-id in hex, or None.
        machine: The machine it is built for (``x86_64``).
        go_evidence: Why it is taken for a Go program (e.g. ``section .go.buildinfo``), or None.
        debug_sources: (source, path) of each separate symbol source used: ``build-id`` or
            ``debuglink`` and the debug file, ``minidebuginfo`` and the section.
        function_count: How many probe-able functions (distinct addresses) it has.
        needed: Its DT_NEEDED libraries.
    """

    __slots__ = (
        "build_id",
        "debug_sources",
        "function_count",
        "go_evidence",
        "machine",
        "needed",
        "path",
    )

    path: str
    build_id: str | None
    machine: str
    go_evidence: str | None
    debug_sources: tuple[tuple[str, str], ...]
    function_count: int
    needed: tuple[str, ...]

    def __init__(
        self,
        path: str,
        build_id: str | None,
        machine: str,
        go_evidence: str | None,
        debug_sources: tuple[tuple[str, str], ...],
        function_count: int,
        needed: tuple[str, ...],
    ) -> None:
        _setattr(self, "path", path)
        _setattr(self, "build_id", build_id)
        _setattr(self, "machine", machine)
        _setattr(self, "go_evidence", go_evidence)
        _setattr(self, "debug_sources", debug_sources)
        _setattr(self, "function_count", function_count)
        _setattr(self, "needed", needed)

    @property
    def is_go(self) -> bool:
        """Whether the file is a Go program (return probes are refused there)."""
        return self.go_evidence is not None


def versioned_name(name: str, version: str | None, default_version: bool) -> str:
    """Spell a symbol with its version the way ``readelf``/``nm`` do.

    Args:
        name: The bare symbol name.
        version: Its version, or None.
        default_version: Whether the version is the default one.

    Returns:
        ``name@@version``, ``name@version`` or ``name``.
    """
    if not version:
        return name
    return f"{name}{'@@' if default_version else '@'}{version}"
