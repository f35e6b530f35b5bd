"""LOCATION → file offsets: symbol lookup over a file's index, and the offset arithmetic.

The index of a file comes from memory (same process), else from the on-disk cache when its key
still matches the file and every debug file that shaped it, else from reading the ELF (the only
path that imports pyelftools). Everything here after that works on the index alone.
"""

from __future__ import annotations

import os

from .._errors import SymbolNotFoundError, UsageError
from .._host.files import stat_target
from ._cache import default_cache
from ._debuginfo import debug_roots
from ._errors import (
    AmbiguousLocationError,
    GoReturnProbeError,
    LocationError,
    NoSymbolsError,
    OffsetMismatchError,
    UndefinedSymbolError,
)
from ._index import (
    FileKey,
    IndexFormatError,
    SymbolEntry,
    SymbolIndex,
    current_key,
    file_key,
    split_version,
)
from ._model import Location, OffsetDerivation, Symbol, TargetInfo
from ._target import split_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "clear_memory",
    "describe_target",
    "list_functions",
    "open_index",
    "resolve_location",
    "resolve_one",
]

_PF_X = 0x1  # p_flags: executable (ELF gABI)
_SHF_EXECINSTR = 0x4
_GLOB_CHARS = ("*", "?", "[")
_BINDING_RANK = {"global": 0, "weak": 1, "unique": 1, "local": 2}

# Indexes already opened by this process: (path, debug roots) → index, least recently opened
# first. A tracer attaching to many files keeps the most recent ones.
_opened: dict[tuple[str, tuple[str, ...]], SymbolIndex] = {}
_OPENED_MAX = 64


def _remember(memo_key: tuple[str, tuple[str, ...]], index: SymbolIndex) -> None:
    _opened.pop(memo_key, None)
    _opened[memo_key] = index
    while len(_opened) > _OPENED_MAX:
        del _opened[next(iter(_opened))]


def _still_valid(index: SymbolIndex, path: str, key: FileKey) -> bool:
    if index.key != key or index.path != path:
        return False
    return all(current_key(dep) == dep_key for dep, dep_key in index.dependencies)


def open_index(
    path: str,
    *,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> SymbolIndex:
    """The symbol index of ``path``: from this process's memory, the disk cache, or the ELF.

    Args:
        path: The file (absolute or relative).
        debug_root: Global debug directories (colon-separated string or sequence); None means
            ``$RAWPROBE_DEBUG_ROOT`` or ``/usr/lib/debug``.
        use_cache: False to ignore (and not write) the disk cache.

    Returns:
        The index.

    Raises:
        TargetNotFoundError: The file does not exist or cannot be read.
        NotElfError: It is not an ELF file rawprobe can probe (see its subclasses).
    """
    path = os.path.abspath(path)
    info = stat_target(path)
    key = file_key(info)
    roots = debug_roots(debug_root)
    memo_key = (path, roots)
    index = _opened.get(memo_key)
    if index is not None and _still_valid(index, path, key):
        return index
    cache = default_cache() if use_cache else None
    entry_name = cache.entry_name(path + "\0" + ":".join(roots), key) if cache else ""
    if cache is not None:
        data = cache.read(entry_name)
        if data is not None:
            try:
                index = SymbolIndex.from_bytes(data)
            except IndexFormatError:
                index = None
            if index is not None and _still_valid(index, path, key):
                _remember(memo_key, index)
                return index
    # The cold path: only now is pyelftools imported.
    from ._elf import build_index_data
    from ._index import encode_index

    found = build_index_data(path, roots, split_root(path)[0])
    found.key = key
    encoded = encode_index(found)
    index = SymbolIndex.from_bytes(encoded)
    # Cache only what was read from the file the key describes (it may change while we read).
    if cache is not None and current_key(path) == key:
        cache.write(entry_name, encoded)
    _remember(memo_key, index)
    return index


def clear_memory() -> None:
    """Forget the indexes opened by this process (the disk cache is untouched)."""
    _opened.clear()


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


def _defining_library(index: SymbolIndex, name: str, path: str, roots: tuple[str, ...]) -> str:
    """The library among ``path``'s DT_NEEDED that defines function ``name`` (or ``""``)."""
    named = index.undefined.get(name, "")
    process_root, inner = split_root(path)
    candidates = [named] if named else []
    candidates += [needed for needed in index.needed if needed not in candidates]
    origin = os.path.dirname(inner)
    for library in candidates:
        found = _find_needed(library, index.search_dirs, origin, process_root)
        if found is None:
            continue
        if named and library == named:
            return found
        try:
            needed_index = open_index(found, debug_root=roots)
        except (UsageError, OSError):
            continue
        if any(
            needed_index.entry(record).binding != "local"
            for record in needed_index.find_name(name)
        ):
            return found
    return ""


def _find_needed(
    library: str, search_dirs: list[str], origin: str, process_root: str
) -> str | None:
    """Where the dynamic linker would find a DT_NEEDED library: DT_RUNPATH/DT_RPATH (with
    ``$ORIGIN``), then its cache, then its trusted directories (glibc ``elf/dl-load.c``)."""
    from ._arch import host_arch
    from ._ldcache import lookup_library, read_ld_cache

    if "/" in library:
        return process_root + library if os.path.isfile(process_root + library) else None
    for directory in search_dirs:
        directory = directory.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        candidate = f"{process_root}{directory.rstrip('/')}/{library}"
        if os.path.isfile(candidate):
            return candidate
    arch = host_arch()
    if arch is None:
        return None
    entry = lookup_library(read_ld_cache(process_root), library, arch.ld_cache_flags)
    if entry is not None and os.path.isfile(process_root + entry.path):
        return process_root + entry.path
    for directory in arch.library_dirs:
        candidate = f"{process_root}{directory}/{library}"
        if os.path.isfile(candidate):
            return candidate
    return None


def _not_found(index: SymbolIndex, name: str, path: str, roots: tuple[str, ...]) -> UsageError:
    bare = split_version(name)[0]
    if bare in index.undefined:
        library = _defining_library(index, bare, path, roots)
        return UndefinedSymbolError(bare, path, library or None)
    if index.count == 0:
        return NoSymbolsError(name, path, roots, bool(index.build_id))
    import difflib

    pool = set(index.names())
    for text in index.demangled_names():
        if text:
            pool.add(text.split("(", 1)[0])
    close = difflib.get_close_matches(bare, pool, n=5, cutoff=0.6)
    return SymbolNotFoundError(name, path, close)


# -- public API -----------------------------------------------------------------------------


def _ifunc_warning(index: SymbolIndex, name: str) -> str:
    implementations = sorted(
        {
            candidate
            for candidate in index.names()
            if candidate.startswith(f"__{name}_") and candidate != f"__{name}_chk"
        }
    )
    text = (
        f"{name} is a GNU indirect function (STT_GNU_IFUNC): its address is the resolver, "
        "which the dynamic linker runs once to pick an implementation; a probe here does not "
        "fire on calls"
    )
    if implementations:
        shown = ", ".join(implementations[:6]) + (", ..." if len(implementations) > 6 else "")
        text += f"; probe the implementation this CPU uses instead ({shown})"
    else:
        text += "; probe the implementation it selects instead (install debug symbols to see them)"
    return text


def _is_offset_literal(location: str) -> bool:
    text = location.lower()
    if text.startswith("0x"):
        return len(text) > 2 and all(char in "0123456789abcdef" for char in text[2:])
    return location.isdigit()


def _split_symbol_offset(location: str) -> tuple[str, int]:
    name, plus, offset_text = location.rpartition("+")
    if plus and name and offset_text:
        try:
            offset = int(offset_text, 0)
        except ValueError:
            return location, 0
        if offset < 0:
            raise LocationError(f"{location!r}: the offset must not be negative")
        return name, offset
    return location, 0


def _location_for(
    index: SymbolIndex,
    path: str,
    function: _Function,
    chosen: SymbolEntry,
    symbol_offset: int,
    location: str,
    force: bool,
) -> Location:
    warnings = []
    if symbol_offset:
        if function.size == 0:
            if not force:
                raise LocationError(
                    f"{location!r}: the size of {chosen.name} is unknown (st_size 0), so "
                    f"+{symbol_offset:#x} cannot be checked to stay inside it; pass --force to "
                    "probe there anyway"
                )
            warnings.append(f"{chosen.name} has no size; +{symbol_offset:#x} is unchecked")
        elif symbol_offset >= function.size:
            if not force:
                raise LocationError(
                    f"{location!r}: {chosen.name} is {function.size:#x} bytes long, so "
                    f"+{symbol_offset:#x} lies past its end; give an offset below "
                    f"{function.size:#x} (or --force)"
                )
            warnings.append(f"+{symbol_offset:#x} lies past the end of {chosen.name} (forced)")
    address = function.address + symbol_offset
    derivation = _derive(index, address)
    if derivation is None:
        raise LocationError(
            f"{location!r}: address {address:#x} is in no executable segment of {path}"
        )
    mismatch = _check_agreement(derivation, location, force)
    if mismatch:
        warnings.append(mismatch)
    kind = function.kind
    if kind == "ifunc" and symbol_offset == 0:
        warnings.append(_ifunc_warning(index, chosen.name))
    return Location(
        path=path,
        file_offset=derivation.file_offset,
        symbol=chosen.name,
        symbol_offset=symbol_offset,
        address=address,
        source=chosen.source,
        kind=kind,
        version=chosen.version or None,
        default_version=chosen.default_version,
        aliases=function.aliases(chosen),
        demangled=chosen.demangled or None,
        size=function.size,
        sources=chosen.sources,
        warning="; ".join(warnings) or None,
        derivation=derivation,
    )


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


def _resolve_offset(
    index: SymbolIndex, path: str, location: str, force: bool
) -> Location:
    file_offset = int(location, 16) if location.lower().startswith("0x") else int(location)
    for vaddr, _memsz, offset, filesz, flags in index.segments:
        if flags & _PF_X and offset <= file_offset < offset + filesz:
            address = file_offset - offset + vaddr
            break
    else:
        raise LocationError(
            f"file offset {file_offset:#x} is in no executable segment of {path}; "
            f"run 'rawprobe list {path}' for the offsets of its functions"
        )
    derivation = _derive(index, address)
    if derivation is None:  # pragma: no cover - the loop above found the segment
        raise LocationError(f"file offset {file_offset:#x} cannot be mapped in {path}")
    warnings = []
    mismatch = _check_agreement(derivation, location, force)
    if mismatch:
        warnings.append(mismatch)
    function = _containing_function(index, address)
    if function is None or function.address != address:
        if function is None:
            where = "is not inside any known function"
            boundary = None
        else:
            chosen = min(function.entries, key=_preference)
            where = f"is {address - function.address:#x} bytes into {chosen.name}"
            into = address - function.address
            from .._plan.insn import is_instruction_boundary  # its tables take ms to build

            try:
                boundary = is_instruction_boundary(path, file_offset - into, function.size,
                                                   file_offset)
            except (OSError, ValueError):
                boundary = None
        if not boundary:
            if not force:
                why = ("which is not where an instruction starts" if boundary is False
                       else "where rawprobe cannot check that an instruction starts")
                raise LocationError(
                    f"file offset {file_offset:#x} {where} of {path}, {why}: a uprobe in the "
                    "middle of an instruction corrupts the program. Use SYMBOL or "
                    "SYMBOL+OFFSET at an instruction, or pass --force if you know it is one"
                )
            warnings.append(f"{file_offset:#x} {where}: not a checked instruction (forced)")
    if function is None:
        return Location(
            path=path,
            file_offset=file_offset,
            symbol=None,
            symbol_offset=0,
            address=address,
            source="offset",
            warning="; ".join(warnings) or None,
            derivation=derivation,
        )
    chosen = min(function.entries, key=_preference)
    if function.kind == "ifunc" and function.address == address:
        warnings.append(_ifunc_warning(index, chosen.name))
    return Location(
        path=path,
        file_offset=file_offset,
        symbol=chosen.name,
        symbol_offset=address - function.address,
        address=address,
        source="offset",
        kind=function.kind,
        version=chosen.version or None,
        default_version=chosen.default_version,
        aliases=function.aliases(chosen),
        demangled=chosen.demangled or None,
        size=function.size,
        sources=chosen.sources,
        warning="; ".join(warnings) or None,
        derivation=derivation,
    )


def resolve_location(
    path: str,
    location: str,
    *,
    force: bool = False,
    retprobe: bool = False,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> list[Location]:
    """Resolve a probe's LOCATION in the file ``path`` to file offsets.

    LOCATION is one of:

    - ``SYMBOL``: a function, by its symbol name (``malloc``), versioned name
      (``malloc@@GLIBC_2.2.5``, ``memcpy@GLIBC_2.2.5``) or C++ name, mangled (``_ZN2ns1fEi``),
      demangled (``ns::f(int)``) or without parameters (``ns::f``: every overload). A bare
      name of a versioned symbol means its default version, as the linker binds it;
    - ``SYMBOL+OFFSET``: OFFSET bytes into the function, which must stay within its size;
    - ``0xOFFSET`` (or decimal): a file offset, as the kernel takes it; it must lie in an
      executable segment, and unless ``force`` at the start of a known function;
    - a glob (``mem*``, ``ns::Foo::*``): one Location per matching function.

    Args:
        path: The file to probe (usually from :func:`find_target`).
        location: The LOCATION text.
        force: Accept what would otherwise be refused: an offset past a function's end or not at
            a function's start, a section/segment disagreement, a return probe on Go code.
            Locations keep a ``warning`` saying what was forced.
        retprobe: The probe is a return probe (refused on Go programs unless ``force``).
        debug_root: Global debug directories; None means ``$RAWPROBE_DEBUG_ROOT`` or
            ``/usr/lib/debug``.
        use_cache: False to bypass the on-disk symbol cache.

    Returns:
        One Location per distinct function (several for globs, for C++ overloads named without
        parameters, and for a name that several local symbols share).

    Raises:
        TargetNotFoundError: ``path`` does not exist.
        NotElfError: ``path`` is not a probe-able ELF file.
        SymbolNotFoundError: No function matches (close names are suggested);
            :class:`UndefinedSymbolError` when the file only calls it.
        LocationError: A bad offset or version (:class:`OffsetMismatchError` when the file's
            headers disagree about the offset).
        GoReturnProbeError: ``retprobe`` on a Go program without ``force``.
        UsageError: An empty or malformed LOCATION.
    """
    location = location.strip()
    if not location:
        raise UsageError("empty LOCATION: give a function name, NAME+OFFSET or 0xOFFSET")
    path = os.path.abspath(path)
    roots = debug_roots(debug_root)
    index = open_index(path, debug_root=roots, use_cache=use_cache)
    if index.go_evidence and retprobe and not force:
        raise GoReturnProbeError(
            f"{path} is a Go program ({index.go_evidence}): a return probe replaces the return "
            "address on the stack with a trampoline, and Go's runtime, which moves goroutine "
            "stacks and walks them for garbage collection and tracebacks, then finds a return "
            "address it does not know and crashes the program; probe the function's entry "
            "instead (or its RET instructions by offset), or pass --force to risk it"
        )
    if _is_offset_literal(location):
        return [_resolve_offset(index, path, location, force)]
    name, symbol_offset = _split_symbol_offset(location)
    bare, version, default = split_version(name)
    records = _find_exact(index, bare)
    if records:
        entries = _filter_versions(
            [index.entry(record) for record in records], version, default, location, path
        )
        by_address: dict[int, list[SymbolEntry]] = {}
        for entry in entries:
            by_address.setdefault(entry.address, []).append(entry)
        locations = []
        for address in sorted(by_address):
            function = _function_at(index, by_address[address][0].index)
            chosen = min(by_address[address], key=_preference)
            locations.append(
                _location_for(index, path, function, chosen, symbol_offset, location, force)
            )
        return locations
    if any(char in name for char in _GLOB_CHARS):
        found = _glob_functions(index, name)
        if found:
            return [
                _location_for(index, path, function, chosen, symbol_offset, location, force)
                for function, chosen in sorted(found, key=lambda item: item[0].address)
            ]
    raise _not_found(index, name, path, roots)


def resolve_one(
    path: str,
    location: str,
    *,
    force: bool = False,
    retprobe: bool = False,
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> Location:
    """Like :func:`resolve_location`, for a LOCATION that must name exactly one function.

    Raises:
        AmbiguousLocationError: It matches several (a glob, overloads, same-named locals).
        (and everything :func:`resolve_location` raises)
    """
    locations = resolve_location(
        path, location, force=force, retprobe=retprobe, debug_root=debug_root,
        use_cache=use_cache,
    )
    if len(locations) > 1:
        raise AmbiguousLocationError(
            location,
            os.path.abspath(path),
            [f"{loc.versioned_name or '?'} at {loc.file_offset:#x}" for loc in locations],
        )
    return locations[0]


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

