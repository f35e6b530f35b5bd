"""LOCATION → file offsets: symbol lookup over a file's index, and the offset arithmetic."""

from __future__ import annotations

import os

from .._errors import SymbolNotFoundError, UsageError
from ._debuginfo import debug_roots
from ._errors import (
    AmbiguousLocationError,
    LocationError,
    NoSymbolsError,
    UndefinedSymbolError,
)
from ._functions import (
    _check_agreement,
    _containing_function,
    _derive,
    _filter_versions,
    _find_exact,
    _Function,
    _function_at,
    _glob_functions,
    _preference,
)
from ._index import FileKey, SymbolEntry, SymbolIndex, split_version
from ._model import Location
from ._open import open_index
from ._target import split_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["resolve_location", "resolve_one"]

_GLOB_CHARS = ("*", "?", "[")
_PF_X = 0x1  # p_flags: executable (ELF gABI)


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
    from .._sys.arch import host_arch
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
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
    expect_key: FileKey | None = None,
) -> list[Location]:
    """Resolve a probe's LOCATION in the file ``path`` to file offsets.

    LOCATION is one of:

    - ``SYMBOL``: a function, by its symbol name (``malloc``), versioned name
      (``malloc@@GLIBC_2.2.5``, ``memcpy@GLIBC_2.2.5``) or C++ name, mangled (``_ZN2ns1fEi``),
      demangled (``ns::f(int)``) or without parameters (``ns::f``: every overload). A bare
      name of a versioned symbol means its default version, as the linker binds it;
    - ``SYMBOL+OFFSET``: OFFSET bytes into the function, which must stay within its size;
    - ``0xOFFSET`` (or decimal): a file offset, as the kernel takes it; it must lie in an
      executable segment (the function holding it, if any, is named);
    - a glob (``mem*``, ``ns::Foo::*``): one Location per matching function.

    Args:
        path: The file to probe (usually from :func:`find_target`).
        location: The LOCATION text.
        force: Accept what would otherwise be refused: an offset past a function's end, a
            section/segment disagreement. Locations keep a ``warning`` saying what was forced.
            (Whether a probe may go there, which instruction, which program, is decided for
            every site by :func:`rawprobe._plan.sites.check_site`.)
        debug_root: Global debug directories; None means ``$RAWPROBE_DEBUG_ROOT`` or
            ``/usr/lib/debug``.
        use_cache: False to bypass the on-disk symbol cache.
        expect_key: The identity of the file the caller opened (:class:`TargetChangedError`
            when ``path`` is another file by now).

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
        TargetChangedError: ``path`` no longer is the file ``expect_key`` describes.
        UsageError: An empty or malformed LOCATION.
    """
    location = location.strip()
    if not location:
        raise UsageError("empty LOCATION: give a function name, NAME+OFFSET or 0xOFFSET")
    path = os.path.abspath(path)
    roots = debug_roots(debug_root)
    index = open_index(path, debug_root=roots, use_cache=use_cache, expect_key=expect_key)
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
    debug_root: str | Sequence[str] | None = None,
    use_cache: bool = True,
) -> Location:
    """Like :func:`resolve_location`, for a LOCATION that must name exactly one function.

    Raises:
        AmbiguousLocationError: It matches several (a glob, overloads, same-named locals).
        (and everything :func:`resolve_location` raises)
    """
    locations = resolve_location(
        path, location, force=force, debug_root=debug_root, use_cache=use_cache,
    )
    if len(locations) > 1:
        raise AmbiguousLocationError(
            location,
            os.path.abspath(path),
            [f"{loc.versioned_name or '?'} at {loc.file_offset:#x}" for loc in locations],
        )
    return locations[0]


