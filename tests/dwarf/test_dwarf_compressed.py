"""Compressed debug sections: read when honest, refused before they are inflated when they
would inflate past what they declare or past what rawprobe reads (a debug file is found by
name, and a planted one must not exhaust memory)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from dwarf_programs import Build, build
from elftools.elf.elffile import ELFFile
from helpers import require_tool, run_rawprobe

import rawprobe._dwarf as dwarf
import rawprobe._dwarf._elf as dwarf_elf
from rawprobe._dwarf import DwarfError

O0 = Build("gcc", "-O0")
_CHDR = struct.Struct("<IIQQ")


def compressed_copy(tmp_path: Path, style: str = "zlib") -> Path:
    require_tool("objcopy")
    copy = tmp_path / f"main-{style}"
    subprocess.run(["objcopy", f"--compress-debug-sections={style}", str(build(O0)),
                    str(copy)], check=True)
    return copy


def section_offset(path: Path, name: str) -> tuple[int, int]:
    with path.open("rb") as file:
        section = ELFFile(file).get_section_by_name(name)
        assert section is not None, name
        return section["sh_offset"], section["sh_flags"]


def declare(path: Path, name: str, size: int) -> None:
    """Rewrite the inflated size a compressed section declares."""
    offset, flags = section_offset(path, name)
    assert flags & (1 << 11), f"{name} is not SHF_COMPRESSED"
    with path.open("r+b") as file:
        file.seek(offset)
        kind, reserved, _size, align = _CHDR.unpack(file.read(_CHDR.size))
        file.seek(offset)
        file.write(_CHDR.pack(kind, reserved, size, align))


def test_compressed_sections_are_read(tmp_path: Path) -> None:
    plain = dwarf.open_debug_info(str(build(O0)))
    copy = compressed_copy(tmp_path)
    assert section_offset(copy, ".debug_info")[1] & (1 << 11)
    info = dwarf.open_debug_info(str(copy))
    assert plain is not None and info is not None
    assert [f.name for f in info.functions("add", inlined=False)] == \
        [f.name for f in plain.functions("add", inlined=False)]


def test_a_section_that_inflates_past_its_size_is_refused(tmp_path: Path) -> None:
    copy = compressed_copy(tmp_path)
    declare(copy, ".debug_info", 16)
    with pytest.raises(DwarfError, match=r"\.debug_info inflates past the 16 bytes"):
        dwarf.open_debug_info(str(copy))
    result = run_rawprobe("list", "--vars", f"{copy}:add", check_status=2)
    assert "inflates past the 16 bytes" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_section_larger_than_rawprobe_reads_is_refused(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    copy = compressed_copy(tmp_path)
    declare(copy, ".debug_info", 1 << 40)  # a terabyte: refused from the header alone
    with pytest.raises(DwarfError, match=r"\.debug_info inflates to 1048576 MiB, more than"):
        dwarf.open_debug_info(str(copy))
    honest = tmp_path / "honest"
    honest.mkdir()
    monkeypatch.setattr(dwarf_elf, "MAX_SECTION_SIZE", 64)
    with pytest.raises(DwarfError, match="more than rawprobe reads"):
        dwarf.open_debug_info(str(compressed_copy(honest)))


def test_an_unknown_compression_is_refused(tmp_path: Path) -> None:
    copy = compressed_copy(tmp_path)
    offset, _flags = section_offset(copy, ".debug_info")
    with copy.open("r+b") as file:
        file.seek(offset)
        file.write(struct.pack("<I", 7))
    with pytest.raises(DwarfError, match=r"ch_type 7"):
        dwarf.open_debug_info(str(copy))
