"""Functions of a file's index: names and their preference, addresses and the file offsets
they map to (cross-checked with the sections), the function holding an offset, listings.
"""

from __future__ import annotations

import os

from ._errors import LocationError, OffsetMismatchError
from ._index import SymbolEntry, SymbolIndex
from ._model import FunctionAt, OffsetDerivation, Symbol, TargetInfo
from ._open import open_index

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["describe_target", "function_at", "list_functions"]

_PF_X = 0x1  # p_flags: executable (ELF gABI)
_SHF_EXECINSTR = 0x4
_BINDING_RANK = {"global": 0, "weak": 1, "unique": 1, "local": 2}


# -- offsets --------------------------------------------------------------------------------


def _derive(index: SymbolIndex, address: int) -> OffsetDerivation | None:
    """Address → file offset through the executable PT_LOAD holding it, cross-checked with the
    section holding it. None when no executable segment maps ``address`` from the file."""
    for vaddr, _memsz, offset, filesz, flags in index.segments:
        if flags & _PF_X and vaddr <= address < vaddr + filesz:
            file_offset = address - vaddr + offset
            best = None
            for section in index.sections:
                name, sh_addr, sh_offset, sh_size, sh_flags, _progbits = section
                # Prefer the executable section where allocated ones overlap (.tbss and the like).
                if sh_addr <= address < sh_addr + sh_size and (
                    best is None or sh_flags & _SHF_EXECINSTR
                ):
                    best = section
            if best is None:
                return OffsetDerivation(address, vaddr, offset, file_offset)
            name, sh_addr, sh_offset = best[0], best[1], best[2]
            return OffsetDerivation(
                address,
                vaddr,
                offset,
                file_offset,
                section_name=name,
                section_address=sh_addr,
                section_offset=sh_offset,
                section_file_offset=address - sh_addr + sh_offset,
            )
    return None


def _check_agreement(derivation: OffsetDerivation, what: str, force: bool) -> str | None:
    if derivation.agrees is not False:
        return None
    text = (
        f"{what}: the program headers put address {derivation.address:#x} at file offset "
        f"{derivation.file_offset:#x} (PT_LOAD p_vaddr {derivation.segment_vaddr:#x}, p_offset "
        f"{derivation.segment_offset:#x}), but section {derivation.section_name} puts it at "
        f"{derivation.section_file_offset:#x} (sh_addr {derivation.section_address:#x}, "
        f"sh_offset {derivation.section_offset:#x})"
    )
    if not force:
        raise OffsetMismatchError(
            text + "; the file's headers contradict each other (damaged or unusually linked), "
            "so a probe could land mid-instruction; pass --force to use the program headers' "
            "offset, which is how the kernel maps the file"
        )
    return text + "; using the program headers' offset (forced)"


# -- names ----------------------------------------------------------------------------------


def _preference(entry: SymbolEntry) -> tuple[int, int, int, int, str]:
    """Sort key for the name that best represents a function among its aliases."""
    if entry.default_version:
        version_rank = 0
    elif not entry.version:
        version_rank = 1
    else:
        version_rank = 2
    underscores = len(entry.name) - len(entry.name.lstrip("_"))
    return (
        _BINDING_RANK.get(entry.binding, 1),
        version_rank,
        underscores,
        len(entry.name),
        entry.name,
    )


class _Function:
    """The records at one address: a function and all its names."""

    __slots__ = ("address", "entries", "size")

    def __init__(self, entries: list[SymbolEntry]) -> None:
        self.entries = entries
        self.address = entries[0].address
        self.size = max(entry.size for entry in entries)

    @property
    def kind(self) -> str:
        for entry in self.entries:
            if entry.kind == "ifunc":
                return "ifunc"
        return "func"

    def aliases(self, chosen: SymbolEntry) -> tuple[str, ...]:
        names: list[str] = []
        for entry in sorted(self.entries, key=_preference):
            if entry is chosen:
                continue
            spelled = entry.versioned_name
            if spelled not in names and spelled != chosen.versioned_name:
                names.append(spelled)
        return tuple(names)


def _function_at(index: SymbolIndex, record: int) -> _Function:
    return _Function([index.entry(i) for i in index.same_address(record)])


def _looks_cplusplus(name: str) -> bool:
    return "::" in name or "(" in name or "<" in name or "~" in name or " " in name


def _find_exact(index: SymbolIndex, name: str) -> list[int]:
    records = index.find_name(name)
    if records or not _looks_cplusplus(name):
        return records
    records = index.find_demangled(name)
    if records:
        return records
    # "ns::Foo::bar" names every overload of bar: demangled "ns::Foo::bar(...)" (after the
    # return type, for template functions); compiler clones (".cold" parts) are left out.
    return [
        record
        for record in index.find_demangled_function(name)
        if " [clone " not in index.entry(record).demangled
    ]


def _filter_versions(
    entries: list[SymbolEntry], version: str, default: bool, location: str, path: str
) -> list[SymbolEntry]:
    """The entries a probe's ``name@VERSION`` (either kind) or ``name@@VERSION`` (``default``:
    the default one only) names; for a bare name, the default version where there is one."""
    if version:
        kept = [
            entry
            for entry in entries
            if entry.version == version and (not default or entry.default_version)
        ]
        if not kept:
            available = sorted({entry.versioned_name for entry in entries if entry.version})
            hint = (
                f"; it has {', '.join(available)}"
                if available
                else "; it is not versioned: drop the @VERSION"
            )
            raise LocationError(f"{location!r}: no such version in {path}{hint}")
        return kept
    defaults = {entry.address for entry in entries if entry.default_version}
    if defaults:
        # A bare name means what the linker binds new references to: the default version
        # (ld's "name@@VERSION"; LSB "Symbol Versioning").
        return [entry for entry in entries if entry.address in defaults]
    return entries


def _compile_glob(pattern: str) -> Callable[[str], object]:
    import fnmatch
    import re

    return re.compile(fnmatch.translate(pattern)).match


def _glob_functions(index: SymbolIndex, pattern: str) -> list[tuple[_Function, SymbolEntry]]:
    """(function, the name that matched best) for each function with a name matching
    ``pattern`` (bare, versioned or demangled)."""
    matches = _compile_glob(pattern)
    names = index.names()
    demangled = index.demangled_names()
    matched_records = [
        record
        for record in range(index.count)
        if matches(names[record]) or (demangled[record] and matches(demangled[record]))
    ]
    if not matched_records and "@" in pattern:
        entries_by_name = [
            record for record in range(index.count) if matches(index.entry(record).versioned_name)
        ]
        matched_records = entries_by_name
    found: list[tuple[_Function, SymbolEntry]] = []
    seen: set[int] = set()
    for record in matched_records:
        address = index.address_of(record)
        if address in seen:
            continue
        seen.add(address)
        function = _function_at(index, record)
        matching = [
            entry
            for entry in function.entries
            if matches(entry.name) or (entry.demangled and matches(entry.demangled))
        ] or function.entries
        found.append((function, min(matching, key=_preference)))
    return found


def _containing_function(index: SymbolIndex, address: int) -> _Function | None:
    low, high = 0, index.count
    while low < high:  # first record with address > target
        middle = (low + high) // 2
        if index.address_of(middle) <= address:
            low = middle + 1
        else:
            high = middle
    record = low - 1
    checked = 0
    while record >= 0 and checked < 64:
        function = _function_at(index, record)
        if function.address == address or address < function.address + function.size:
            return function
        record = function.entries[0].index - 1
        checked += 1
    return None


def function_at(
    path: str,
    file_offset: int,
    *,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> FunctionAt | None:
    """The function of ``path`` holding ``file_offset``, under its preferred name (of the
    aliases at one address: global before weak before local, the default version, fewest
    leading underscores, then the shortest: ``malloc``, not ``__libc_malloc``).

    This is the one place rawprobe turns a file offset back into a function: stacks, the
    ``symbol`` type, the host's probe census and the planner's checks all ask here.

    Returns:
        The function and how far into it the offset is, or None when the offset is in no
        executable segment or no known function holds it.

    Raises:
        TargetNotFoundError, NotElfError: The file cannot be read as a probe-able ELF file.
    """
    index = open_index(os.path.abspath(path), debug_root=debug_root, use_cache=use_cache)
    for vaddr, _memsz, offset, filesz, flags in index.segments:
        if flags & _PF_X and offset <= file_offset < offset + filesz:
            address = file_offset - offset + vaddr
            break
    else:
        return None
    function = _containing_function(index, address)
    if function is None:
        return None
    chosen = min(function.entries, key=_preference)
    into = address - function.address
    return FunctionAt(chosen.name, file_offset - into, function.size, into, function.kind)


def list_functions(
    path: str,
    pattern: str = "*",
    *,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> list[Symbol]:
    """The probe-able functions of ``path`` whose names match a glob, one per address.

    Args:
        path: The file.
        pattern: A glob matched against bare, versioned (``name@@V``) and demangled C++ names.
        debug_root: Global debug directories (see :func:`resolve_location`).
        use_cache: False to bypass the on-disk symbol cache.

    Returns:
        Symbols sorted by file offset; each carries the other names at its address in
        ``aliases``.

    Raises:
        TargetNotFoundError: ``path`` does not exist.
        NotElfError: ``path`` is not a probe-able ELF file.
    """
    path = os.path.abspath(path)
    index = open_index(path, debug_root=debug_root, use_cache=use_cache)
    if pattern in ("", "*"):
        chosen_functions: list[tuple[_Function, SymbolEntry]] = []
        group: list[SymbolEntry] = []
        for entry in index.entries():
            if group and entry.address != group[0].address:
                chosen = group[0] if len(group) == 1 else min(group, key=_preference)
                chosen_functions.append((_Function(group), chosen))
                group = []
            group.append(entry)
        if group:
            chosen_functions.append((_Function(group), min(group, key=_preference)))
    else:
        chosen_functions = _glob_functions(index, pattern)
    offsets = _OffsetTable(index)
    symbols = []
    for function, chosen in chosen_functions:
        file_offset, agrees = offsets.lookup(function.address)
        if file_offset is None:
            continue
        kind = function.kind
        warning = None
        if kind == "ifunc":
            warning = "IFUNC: a probe here fires in the resolver, not on calls"
        elif agrees is False:
            warning = "program headers and section headers disagree about this offset"
        symbols.append(
            Symbol(
                name=chosen.name,
                address=function.address,
                size=function.size,
                file_offset=file_offset,
                source=chosen.source,
                kind=kind,
                version=chosen.version or None,
                default_version=chosen.default_version,
                binding=chosen.binding,
                aliases=function.aliases(chosen) if len(function.entries) > 1 else (),
                demangled=chosen.demangled or None,
                sources=chosen.sources,
                warning=warning,
            )
        )
    symbols.sort(key=lambda sym: (sym.file_offset, sym.name))
    return symbols


class _OffsetTable:
    """:func:`_derive` for many addresses at once, without building a derivation for each."""

    def __init__(self, index: SymbolIndex) -> None:
        self.segments = [
            (vaddr, vaddr + filesz, offset)
            for vaddr, _memsz, offset, filesz, flags in index.segments
            if flags & _PF_X
        ]
        self.index = index
        self.last_section: tuple[int, int, int] | None = None

    def lookup(self, address: int) -> tuple[int | None, bool | None]:
        """(file offset, whether the section-based offset agrees) of an address."""
        for start, end, offset in self.segments:
            if start <= address < end:
                file_offset = address - start + offset
                break
        else:
            return None, None
        last = self.last_section
        if last is None or not last[0] <= address < last[1]:
            derivation = _derive(self.index, address)
            if derivation is None or derivation.section_file_offset is None:
                return file_offset, None
            self.last_section = last = (
                derivation.section_address,
                derivation.section_address + self._section_size(derivation.section_address),
                derivation.section_offset - derivation.section_address,
            )
        return file_offset, address + last[2] == file_offset

    def _section_size(self, section_address: int) -> int:
        sizes = [
            size for _name, address, _offset, size, _flags, _bits in self.index.sections
            if address == section_address
        ]
        return max(sizes, default=1)


def describe_target(
    path: str,
    *,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> TargetInfo:
    """What rawprobe knows about a file as a whole: build-id, symbol sources, Go or not.

    Args:
        path: The file.
        debug_root: Global debug directories (see :func:`resolve_location`).
        use_cache: False to bypass the on-disk symbol cache.

    Returns:
        The summary.

    Raises:
        TargetNotFoundError: ``path`` does not exist.
        NotElfError: ``path`` is not a probe-able ELF file.
    """
    path = os.path.abspath(path)
    index = open_index(path, debug_root=debug_root, use_cache=use_cache)
    addresses = set()
    for record in range(index.count):
        addresses.add(index.address_of(record))
    return TargetInfo(
        path=path,
        build_id=index.build_id or None,
        machine=index.machine,
        go_evidence=index.go_evidence or None,
        debug_sources=tuple(index.debug_sources),
        function_count=len(addresses),
        needed=tuple(index.needed),
    )

