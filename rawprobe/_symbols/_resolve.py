"""Target lookup and symbol → file offset resolution over .symtab and .dynsym."""

from __future__ import annotations

import difflib
import fnmatch
import os
from functools import lru_cache

from .._errors import NotElfError, SymbolNotFoundError, TargetNotFoundError, UsageError
from ._model import Location, Symbol

__all__ = ["find_target", "list_functions", "resolve_location"]

_LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
)


def find_target(target: str, pid: int | None = None) -> str:
    """Return the absolute path of the file a probe's TARGET names.

    Args:
        target: A path (anything containing ``/``) or a library name (``libc``, ``libc.so.6``).
        pid: When given, a library name is looked up in that process's mappings first.

    Raises:
        TargetNotFoundError: Nothing of that name exists.
    """
    if "/" in target:
        if not os.path.exists(target):
            raise TargetNotFoundError(f"{target}: no such file")
        return os.path.realpath(target)
    if pid is not None:
        found = _library_in_maps(target, pid)
        if found:
            return found
    for directory in _LIBRARY_DIRS:
        for candidate in _library_file_names(target):
            path = os.path.join(directory, candidate)
            if os.path.exists(path):
                return os.path.realpath(path)
    raise TargetNotFoundError(
        f"{target}: not a file, and no library of that name in the linker's directories; "
        "give a path"
    )


def _library_file_names(name: str) -> list[str]:
    base = name if name.startswith("lib") else "lib" + name
    if ".so" in base:
        return [base]
    return [base + ".so.6", base + ".so.1", base + ".so.0", base + ".so"]


def _library_in_maps(name: str, pid: int) -> str | None:
    stem = name if name.startswith("lib") else "lib" + name
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    base = os.path.basename(path)
                    if base == stem or base.startswith(stem + ".so") or base.startswith(stem + "-"):
                        return f"/proc/{pid}/root{path}"
    except OSError:
        return None
    return None


class _Image:
    """The functions of one ELF file and its loadable segments."""

    def __init__(self, path: str) -> None:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        self.path = path
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise TargetNotFoundError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise NotElfError(f"{path}: is a directory, not an ELF file") from None
        except OSError as error:
            raise TargetNotFoundError(f"{path}: {error.strerror}") from None
        with stream:
            if stream.read(4) != b"\x7fELF":
                raise NotElfError(f"{path}: not an ELF file (no ELF magic)")
            stream.seek(0)
            try:
                elf = ELFFile(stream)
                self.segments = [
                    (seg["p_vaddr"], seg["p_memsz"], seg["p_offset"], seg["p_filesz"])
                    for seg in elf.iter_segments()
                    if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1  # PF_X
                ]
                self.functions = self._read_functions(elf)
            except ELFError as error:
                raise NotElfError(f"{path}: corrupt ELF file ({error})") from None

    def _read_functions(self, elf: object) -> dict[str, Symbol]:
        functions: dict[str, Symbol] = {}
        for source, section_name in (("symtab", ".symtab"), ("dynsym", ".dynsym")):
            section = elf.get_section_by_name(section_name)  # type: ignore[attr-defined]
            if section is None:
                continue
            for sym in section.iter_symbols():
                kind = sym["st_info"]["type"]
                if kind not in ("STT_FUNC", "STT_LOOS") or sym["st_shndx"] == "SHN_UNDEF":
                    continue
                name = sym.name.split("@", 1)[0]
                if not name or name in functions:
                    continue
                file_offset = self.file_offset(sym["st_value"])
                if file_offset is None:
                    continue
                functions[name] = Symbol(
                    name=name,
                    address=sym["st_value"],
                    size=sym["st_size"],
                    file_offset=file_offset,
                    source=source,
                    kind="ifunc" if kind == "STT_LOOS" else "func",
                )
        return functions

    def file_offset(self, address: int) -> int | None:
        """File offset of a virtual address, through the executable PT_LOAD segment holding it."""
        for vaddr, memsz, offset, filesz in self.segments:
            if vaddr <= address < vaddr + min(memsz, filesz):
                return address - vaddr + offset
        return None

    def address(self, file_offset: int) -> int | None:
        for vaddr, _memsz, offset, filesz in self.segments:
            if offset <= file_offset < offset + filesz:
                return file_offset - offset + vaddr
        return None


@lru_cache(maxsize=32)
def _image(path: str, _mtime_ns: int, _size: int) -> _Image:
    return _Image(path)


def _open_image(path: str) -> _Image:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    return _image(path, stat.st_mtime_ns, stat.st_size)


def list_functions(path: str, pattern: str = "*") -> list[Symbol]:
    """Functions of ``path`` whose names match the glob ``pattern``, sorted by file offset."""
    image = _open_image(path)
    return sorted(
        (sym for name, sym in image.functions.items() if fnmatch.fnmatchcase(name, pattern)),
        key=lambda sym: (sym.file_offset, sym.name),
    )


def resolve_location(
    path: str, location: str, *, force: bool = False, retprobe: bool = False
) -> list[Location]:
    """Resolve LOCATION (``SYMBOL``, ``SYMBOL+OFF``, ``0xOFFSET`` or a glob) in ``path``.

    Raises:
        SymbolNotFoundError: No function of that name (close names are suggested).
        UsageError: An offset outside the symbol or outside any executable segment.
    """
    image = _open_image(path)
    if location.lower().startswith("0x"):
        try:
            file_offset = int(location, 16)
        except ValueError:
            raise UsageError(f"{location!r} is not a hexadecimal file offset") from None
        address = image.address(file_offset)
        if address is None and not force:
            raise UsageError(
                f"file offset {file_offset:#x} is in no executable segment of {path}"
            )
        owner = _symbol_at(image, file_offset)
        return [
            Location(
                path=path,
                file_offset=file_offset,
                symbol=owner.name if owner else None,
                symbol_offset=file_offset - owner.file_offset if owner else 0,
                address=address if address is not None else file_offset,
                source="offset",
            )
        ]
    name, _, offset_text = location.partition("+")
    symbol_offset = 0
    if offset_text:
        try:
            symbol_offset = int(offset_text, 0)
        except ValueError:
            raise UsageError(f"{location!r}: offset {offset_text!r} is not a number") from None
    if any(ch in name for ch in "*?["):
        matches = list_functions(path, name)
        if not matches:
            raise SymbolNotFoundError(name, path)
    else:
        sym = image.functions.get(name)
        if sym is None:
            close = difflib.get_close_matches(name, image.functions.keys(), n=5, cutoff=0.6)
            raise SymbolNotFoundError(name, path, close)
        matches = [sym]
    locations = []
    for sym in matches:
        if symbol_offset and sym.size and symbol_offset >= sym.size and not force:
            raise UsageError(
                f"{sym.name}+{symbol_offset:#x} lies past the end of {sym.name} "
                f"(size {sym.size:#x})"
            )
        locations.append(
            Location(
                path=path,
                file_offset=sym.file_offset + symbol_offset,
                symbol=sym.name,
                symbol_offset=symbol_offset,
                address=sym.address + symbol_offset,
                source=sym.source,
            )
        )
    return locations


def _symbol_at(image: _Image, file_offset: int) -> Symbol | None:
    for sym in image.functions.values():
        if sym.file_offset <= file_offset < sym.file_offset + max(sym.size, 1):
            return sym
    return None
