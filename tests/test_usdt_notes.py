"""Reading SDT notes: hand-built note bytes, and the compiled fixtures against readelf."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from helpers import ADD_SOURCE, build_c
from test_usdt_programs import (
    fixture_program,
    readelf_notes,
    semaphore_program,
    usdt_library,
)

from rawprobe import NotElfError, RawprobeError, TargetNotFoundError, UsageError
from rawprobe._usdt import (
    SdtNote,
    UsdtNoteError,
    UsdtNotFoundError,
    list_usdt_probes,
    parse_stapsdt_notes,
    split_argument_specs,
)

PYTHON = Path("/usr/bin/python3.11")
LIBSTDCXX = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")


def note_bytes(
    provider: bytes = b"prov",
    name: bytes = b"probe",
    arguments: bytes = b"-4@%edi",
    pc: int = 0x1130,
    base: int = 0x2004,
    semaphore: int = 0,
    *,
    address_size: int = 8,
    little_endian: bool = True,
    owner: bytes = b"stapsdt",
    note_type: int = 3,
    terminate: bool = True,
) -> bytes:
    """One ELF note as sys/sdt.h's _SDT_ASM_BODY lays it out (4-byte alignment)."""
    order = "<" if little_endian else ">"
    word = "Q" if address_size == 8 else "I"
    desc = struct.pack(f"{order}3{word}", pc, base, semaphore)
    desc += provider + b"\0" + name + b"\0" + arguments + (b"\0" if terminate else b"")
    owner_bytes = owner + b"\0"

    def pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    return struct.pack(f"{order}3I", len(owner_bytes), len(desc), note_type) + \
        pad(owner_bytes) + pad(desc)


# -- the parser on hand-built bytes ------------------------------------------------------------


def test_one_note() -> None:
    notes = parse_stapsdt_notes(note_bytes(semaphore=0x4010))
    assert notes == [SdtNote("prov", "probe", 0x1130, 0x2004, 0x4010, "-4@%edi")]
    assert notes[0].argument_specs == ("-4@%edi",)


def test_several_notes_in_section_order() -> None:
    data = note_bytes(name=b"first", arguments=b"") + note_bytes(name=b"second", pc=0x1200,
                                                                 arguments=b"8@%rax 4@$5")
    first, second = parse_stapsdt_notes(data)
    assert (first.name, first.argument_specs) == ("first", ())
    assert (second.name, second.pc, second.argument_specs) == ("second", 0x1200,
                                                               ("8@%rax", "4@$5"))


def test_notes_of_other_owners_and_types_are_skipped() -> None:
    data = (note_bytes(owner=b"GNU", note_type=3) + note_bytes(note_type=1)
            + note_bytes(name=b"kept"))
    assert [note.name for note in parse_stapsdt_notes(data)] == ["kept"]


@pytest.mark.parametrize(("address_size", "little_endian"),
                         [(8, True), (8, False), (4, True), (4, False)])
def test_word_size_and_byte_order(address_size: int, little_endian: bool) -> None:
    data = note_bytes(pc=0x8048123, base=0x8049000, semaphore=0x804a010,
                      address_size=address_size, little_endian=little_endian)
    (note,) = parse_stapsdt_notes(data, address_size=address_size, little_endian=little_endian)
    assert (note.pc, note.base, note.semaphore) == (0x8048123, 0x8049000, 0x804a010)


def test_trailing_zero_padding_is_ignored() -> None:
    assert len(parse_stapsdt_notes(note_bytes() + b"\0" * 8)) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (note_bytes()[:-8], "runs past the section's end"),
        (note_bytes() + b"\x01\0\0", "truncated note header"),
        (note_bytes(terminate=False, arguments=b"8@%rax!"), "not NUL-terminated"),
        (note_bytes(name=b""), "empty name"),
        (note_bytes(provider=b""), "empty provider"),
        (note_bytes(name=b"a b"), "is not a probe name"),
        (note_bytes(provider=b"\xff\xfe"), "is not text"),
        (note_bytes(arguments=b"8@%rax\x01"), "not printable"),
    ],
)
def test_malformed_notes(data: bytes, message: str) -> None:
    with pytest.raises(UsdtNoteError, match=message) as error:
        parse_stapsdt_notes(data)
    assert error.value.exit_status == 2


def test_descriptor_too_short() -> None:
    header = struct.pack("<3I", 8, 10, 3) + b"stapsdt\0" + b"\0" * 12
    with pytest.raises(UsdtNoteError, match="too short"):
        parse_stapsdt_notes(header)


def test_split_argument_specs_keeps_aarch64_brackets_whole() -> None:
    assert split_argument_specs("-4@[sp, 96] 8@x1  -8@[x0]") == ("-4@[sp, 96]", "8@x1",
                                                                  "-8@[x0]")
    assert split_argument_specs("") == ()


# -- compiled programs, readelf as the oracle --------------------------------------------------


def real_files() -> list[Path]:
    files = [fixture_program("O0"), fixture_program("O2"), fixture_program("O2-nopie"),
             semaphore_program(), usdt_library()]
    return files + [path for path in (PYTHON, LIBSTDCXX) if path.exists()]


@pytest.mark.parametrize("index", range(7))
def test_sites_agree_with_readelf(index: int) -> None:
    files = real_files()
    if index >= len(files):
        pytest.skip("no such file on this host")
    path = files[index]
    expected = readelf_notes(path)
    sites = list_usdt_probes(str(path))
    assert len(sites) == len(expected) > 0
    data = path.read_bytes()
    for site, note in zip(sites, expected, strict=True):
        assert (site.provider, site.name) == (note["Provider"], note["Name"])
        assert site.address == int(note["Location"], 16)  # no prelink here
        assert " ".join(site.argument_specs) == note["Arguments"]
        semaphore = int(note["Semaphore"], 16)
        assert site.semaphore_address == (semaphore or None)
        # Every site is sys/sdt.h's _SDT_NOP: the uprobe goes on a one-byte nop.
        assert data[site.file_offset] == 0x90, (site, hex(data[site.file_offset]))


def section_file_offset(path: Path, address: int) -> int:
    """The section-based formula (sh_offset + address - sh_addr), to cross-check segments."""
    with path.open("rb") as stream:
        for section in ELFFile(stream).iter_sections():
            start = section["sh_addr"]
            if section["sh_type"] != "SHT_NOBITS" and start and \
                    start <= address < start + section["sh_size"]:
                return int(section["sh_offset"] + address - start)
    raise AssertionError(f"no section holds {address:#x}")


def test_offsets_agree_with_the_section_formula() -> None:
    for path in real_files():
        for site in list_usdt_probes(str(path)):
            assert site.file_offset == section_file_offset(path, site.address)
            if site.semaphore_address is not None:
                assert site.semaphore_offset == section_file_offset(path,
                                                                    site.semaphore_address)
            else:
                assert site.semaphore_offset is None


def test_python_semaphores_are_in_probes_section() -> None:
    if not PYTHON.exists():
        pytest.skip("no /usr/bin/python3.11 on this host")
    sites = {site.name: site for site in list_usdt_probes(str(PYTHON))}
    assert "function__entry" in sites
    assert all(site.semaphore_offset is not None for site in sites.values())


# -- prelink adjustment, damaged files ---------------------------------------------------------


def patched_copy(source: Path, tmp_path: Path, patch: object) -> Path:
    """A copy of ``source`` whose first SDT note's descriptor ``patch(desc) -> desc`` edits."""
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    with copy.open("rb") as stream:
        section = ELFFile(stream).get_section_by_name(".note.stapsdt")
        offset = section["sh_offset"]
    data = bytearray(copy.read_bytes())
    desc_start = offset + 12 + 8  # header, "stapsdt\0"
    new_desc = patch(bytes(data[desc_start : desc_start + 24]))  # type: ignore[operator]
    data[desc_start : desc_start + 24] = new_desc
    copy.write_bytes(bytes(data))
    return copy


def test_prelink_moves_probe_and_semaphore_by_the_base_difference(tmp_path: Path) -> None:
    original = semaphore_program()
    (site,) = list_usdt_probes(str(original))
    shift = 0x10000

    def as_before_prelink(desc: bytes) -> bytes:
        # The note keeps the link-time addresses; prelink moved .stapsdt.base by ``shift``.
        pc, base, semaphore = struct.unpack("<3Q", desc)
        return struct.pack("<3Q", pc + shift, base + shift, semaphore + shift)

    (moved,) = list_usdt_probes(str(patched_copy(original, tmp_path, as_before_prelink)))
    assert moved.address == site.address
    assert moved.file_offset == site.file_offset
    assert moved.semaphore_address == site.semaphore_address
    assert moved.semaphore_offset == site.semaphore_offset


def test_probe_outside_any_executable_segment(tmp_path: Path) -> None:
    def elsewhere(desc: bytes) -> bytes:
        _pc, base, semaphore = struct.unpack("<3Q", desc)
        return struct.pack("<3Q", 0x7FFF0000, base, semaphore)

    copy = patched_copy(semaphore_program(), tmp_path, elsewhere)
    with pytest.raises(UsdtNoteError, match="in no executable segment"):
        list_usdt_probes(str(copy))


def test_semaphore_outside_any_writable_segment(tmp_path: Path) -> None:
    def in_code(desc: bytes) -> bytes:
        pc, base, _semaphore = struct.unpack("<3Q", desc)
        return struct.pack("<3Q", pc, base, pc)

    copy = patched_copy(semaphore_program(), tmp_path, in_code)
    with pytest.raises(UsdtNoteError, match="in no writable segment"):
        list_usdt_probes(str(copy))


def test_semaphore_in_bss(tmp_path: Path) -> None:
    with semaphore_program().open("rb") as stream:
        bss = ELFFile(stream).get_section_by_name(".bss")["sh_addr"]

    def in_bss(desc: bytes) -> bytes:
        pc, base, _semaphore = struct.unpack("<3Q", desc)
        return struct.pack("<3Q", pc, base, bss)

    copy = patched_copy(semaphore_program(), tmp_path, in_bss)
    with pytest.raises(UsdtNoteError, match=r"past the bytes the file holds \(in .bss\)"):
        list_usdt_probes(str(copy))


def test_file_without_notes_points_to_plain_list() -> None:
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))
    with pytest.raises(UsdtNotFoundError) as error:
        list_usdt_probes(str(program))
    message = str(error.value)
    assert "has no USDT probes" in message and f"rawprobe list {program}" in message
    assert isinstance(error.value, UsageError) and error.value.exit_status == 2


def test_missing_and_non_elf_files(tmp_path: Path) -> None:
    with pytest.raises(TargetNotFoundError):
        list_usdt_probes(str(tmp_path / "missing"))
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(NotElfError, match="not an ELF file"):
        list_usdt_probes(str(script))
    truncated = tmp_path / "truncated"
    truncated.write_bytes(fixture_program("O2").read_bytes()[:200])
    with pytest.raises(RawprobeError):
        list_usdt_probes(str(truncated))
