"""SDT argument specs translated into fetches, refusals, and fuzzing of the parsers."""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st
from test_usdt_programs import semaphore_program

from rawprobe import RawprobeError
from rawprobe._probe.fetchargs import Deref, Immediate, ProbeRelative, Register, Source
from rawprobe._sys.arch import ARM64, X86_64
from rawprobe._usdt import (
    UsdtArgumentError,
    UsdtNoteError,
    find_usdt_probes,
    list_usdt_probes,
    parse_stapsdt_notes,
    split_argument_specs,
    translate_argument,
)

PROBE = 0x1234
SYMBOLS = {"global_pair": 0x4010, "static_limit": 0x4020, "counter.0": 0x4030}


def lookup(name: str) -> int:
    if name not in SYMBOLS:
        raise LookupError(f"the symbol {name!r} is in neither .symtab nor .dynsym")
    return SYMBOLS[name]


def translate(spec: str, *, machine: str = "x86_64", relocatable: bool = True) -> object:
    argument = translate_argument(spec, machine=machine, probe_address=PROBE,
                                  symbol_address=lookup, relocatable=relocatable)
    assert argument.text == spec and argument.error is None
    return (argument.size, argument.signed, argument.source)


@pytest.mark.parametrize(
    ("spec", "size", "signed", "source"),
    [
        ("-4@%edi", 4, True, Register("di")),
        ("8@%rax", 8, False, Register("ax")),
        ("-2@%ax", 2, True, Register("ax")),
        ("1@%al", 1, False, Register("ax")),
        ("-1@%sil", 1, True, Register("si")),
        ("1@%dil", 1, False, Register("di")),
        ("1@%bpl", 1, False, Register("bp")),
        ("-8@%r8", 8, True, Register("r8")),
        ("-4@%r8d", 4, True, Register("r8")),
        ("2@%r15w", 2, False, Register("r15")),
        ("-1@%r9b", 1, True, Register("r9")),
        ("8@%rsp", 8, False, Register("sp")),
        ("8@-24(%rbp)", 8, False, Deref(-24, Register("bp"))),
        ("-8@16(%rsp)", 8, True, Deref(16, Register("sp"))),
        ("-4@112(%rsp)", 4, True, Deref(112, Register("sp"))),
        ("4@(%rdi)", 4, False, Deref(0, Register("di"))),
        ("4@0x10(%r12)", 4, False, Deref(16, Register("r12"))),
        ("4@$5", 4, False, Immediate(5)),
        ("-4@$-7", 4, True, Immediate(-7)),
        ("-8@$78187493520", 8, True, Immediate(78187493520)),
        ("8@$0x10", 8, False, Immediate(16)),
        ("8@$18446744073709551615", 8, False, Immediate(-1)),  # wraps like the register would
        # GNU as's integers: a leading 0 is octal, 0b binary
        ("4@$010", 4, False, Immediate(8)),
        ("4@$0b101", 4, False, Immediate(5)),
        ("-4@$-0x1F", 4, True, Immediate(-31)),
        ("4@010(%rbp)", 4, False, Deref(8, Register("bp"))),
    ],
)
def test_registers_memory_and_constants(spec: str, size: int, signed: bool,
                                        source: Source) -> None:
    assert translate(spec) == (size, signed, source)


@pytest.mark.parametrize(
    ("spec", "address"),
    [
        ("-4@8+global_pair(%rip)", 0x4018),  # what GCC writes in a PIE
        ("-4@global_pair+8(%rip)", 0x4018),  # ... and in a position-dependent executable
        ("-8@global_pair(%rip)", 0x4010),
        ("-8@global_pair-8(%rip)", 0x4008),
        ("4@static_limit(%rip)", 0x4020),
        ("4@counter.0(%rip)", 0x4030),  # a function's static, renamed by GCC
    ],
)
def test_rip_relative_symbols_are_probe_relative(spec: str, address: int) -> None:
    _size, _signed, source = translate(spec)  # type: ignore[misc]
    assert source == Deref(0, ProbeRelative(address - PROBE))


def test_rip_relative_number_is_relative_to_the_probe() -> None:
    assert translate("4@32(%rip)")[2] == Deref(0, ProbeRelative(32))  # type: ignore[index]
    assert translate("4@-8(%rip)")[2] == Deref(0, ProbeRelative(-8))  # type: ignore[index]


def test_absolute_operands() -> None:
    # No register: the datum's own (link-time) address.
    assert translate("-4@global_pair+8")[2] == Deref(0, ProbeRelative(0x4018 - PROBE))  # type: ignore[index]
    assert translate("4@0x601040")[2] == Deref(0, ProbeRelative(0x601040 - PROBE))  # type: ignore[index]
    # SYM(%reg) in a position-dependent file only.
    assert translate("4@global_pair(%rax)", relocatable=False)[2] == Deref(  # type: ignore[index]
        0x4010, Register("ax"))
    with pytest.raises(UsdtArgumentError, match="position-independent"):
        translate("4@global_pair(%rax)", relocatable=True)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("8@(%rax,%rdx,8)", "an index register"),
        ("-2@(%rdx,%rcx,2)", "an index register"),
        ("-2@table(%rdx,%rdx)", "an index register"),
        ("8@-96(%rbp,%rax)", "an index register"),
        ("4@(,%rax,4)", "an index register"),
        ("1@%ah", "%ah is bits 8-15 of %ax"),
        ("-1@%dh", "%dh is bits 8-15 of %dx"),
        ("8@%fs:0x28", "segment-relative"),
        ("8@%fs:(%rax)", "segment-relative"),
        ("8@%xmm0", "not an x86-64 general-purpose register"),
        ("8@%cr3", "not an x86-64 general-purpose register"),
        ("4@(%eax)", "32-bit addressing"),
        ("8f@-8(%rbp)", "floating-point"),
        ("-4f@%xmm1", "floating-point"),
        ("3@%rax", "size 3"),
        ("16@%rax", "size 16"),
        ("0@%rax", "size 0"),
        ("%rax", "no SIZE@ prefix"),
        ("8@", "no operand"),
        ("8@$foo", "is not a number"),
        ("8@unknown(%rip)", "'unknown' is in neither .symtab nor .dynsym"),
        ("8@.LC0(%rip)", ""),
        ("8@a+b(%rip)", "two symbols"),
        ("8@8-global_pair(%rip)", "subtracted"),
        ("8@16abc(%rip)", "cannot read the displacement"),
        ("8@-24(%rbp", "cannot read the memory operand"),
        ("8@$99999999999999999999999", "does not fit in 64 bits"),
        ("8@$09", "'09' is not a number"),
        ("8@0b2(%rip)", "'0b2' is not a number"),
    ],
)
def test_refusals_name_the_spec(spec: str, reason: str) -> None:
    with pytest.raises(UsdtArgumentError) as error:
        translate(spec)
    assert error.value.spec == spec
    assert f"{spec!r}" in str(error.value) and reason in str(error.value)
    assert error.value.exit_status == 2


def test_local_labels_and_missing_symbol_tables() -> None:
    with pytest.raises(UsdtArgumentError, match="assembler-local label"):
        def local_label_lookup(name: str) -> int:
            raise LookupError(f"{name!r} is an assembler-local label, which no symbol table "
                              "keeps")
        translate_argument("8@.LC0(%rip)", symbol_address=local_label_lookup)
    with pytest.raises(UsdtArgumentError, match="no symbol table was given"):
        translate_argument("8@foo(%rip)")


@pytest.mark.parametrize(
    ("spec", "size", "signed", "source"),
    [
        ("-4@x0", 4, True, Register("x0")),
        ("8@w30", 8, False, Register("x30")),
        ("8@sp", 8, False, Register("sp")),
        ("-4@[sp, 96]", 4, True, Deref(96, Register("sp"))),
        ("8@[x19]", 8, False, Deref(0, Register("x19"))),
        ("-8@[x0, -16]", 8, True, Deref(-16, Register("x0"))),
        ("4@5", 4, False, Immediate(5)),
        ("-4@-9", 4, True, Immediate(-9)),
    ],
)
def test_aarch64_operands(spec: str, size: int, signed: bool, source: Source) -> None:
    # AArch64's forms as libbpf's usdt.c reads them; registers are ARM64's pt_regs names.
    assert translate(spec, machine="aarch64") == (size, signed, source)
    if isinstance(source, Register):
        assert source.name in ARM64.registers


@pytest.mark.parametrize("spec", ["8@x31", "8@v0", "8@[x0, x1]", "8@[x0, lsl 3]"])
def test_aarch64_refusals(spec: str) -> None:
    with pytest.raises(UsdtArgumentError):
        translate(spec, machine="aarch64")


def test_other_machines_are_refused() -> None:
    with pytest.raises(UsdtArgumentError, match="not s390"):
        translate("-8@%r0", machine="s390")


def test_every_x86_register_is_a_kernel_register() -> None:
    for spec in ("8@%rax", "8@%rbx", "8@%rcx", "8@%rdx", "8@%rsi", "8@%rdi", "8@%rbp",
                 "8@%rsp", "8@%rip", *(f"8@%r{n}" for n in range(8, 16))):
        source = translate(spec)[2]  # type: ignore[index]
        assert isinstance(source, Register) and source.name in X86_64.registers


# -- fuzzing: anything malformed is a RawprobeError, never a crash -----------------------------

SPEC_ALPHABET = st.sampled_from([
    *"-+@$%(),:[] #0123456789abcdefxrisplwhq.",
    "%rax", "%eax", "%al", "%ah", "%rip", "(%rbp)", "8@", "-4@", "global_pair", "0x", "x0", "sp",
    "f@",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(SPEC_ALPHABET, max_size=12).map("".join), st.sampled_from(["x86_64",
                                                                           "aarch64"]),
       st.booleans())
def test_fuzz_spec_strings(spec: str, machine: str, relocatable: bool) -> None:
    try:
        argument = translate_argument(spec, machine=machine, probe_address=PROBE,
                                      symbol_address=lookup, relocatable=relocatable)
    except RawprobeError:
        return
    assert argument.size in (1, 2, 4, 8)
    assert -(1 << 63) <= getattr(argument.source, "value", 0) < 1 << 63


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_unicode_spec_strings(spec: str) -> None:
    for machine in ("x86_64", "aarch64"):
        with contextlib.suppress(RawprobeError):
            translate_argument(spec, machine=machine, symbol_address=lookup)
    specs = split_argument_specs(spec)
    assert all(part and part == part.strip() for part in specs)
    assert "".join("".join(specs).split()) == "".join(spec.split())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([4, 8]), st.booleans(), st.sampled_from([4, 8]))
def test_fuzz_note_bytes(data: bytes, address_size: int, little_endian: bool,
                         alignment: int) -> None:
    with contextlib.suppress(UsdtNoteError):
        parse_stapsdt_notes(data, address_size=address_size, little_endian=little_endian,
                            alignment=alignment)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 200), st.integers(0, 80), st.integers(0, 5))
def test_fuzz_note_headers_around_real_descriptors(tail: bytes, namesz: int, descsz: int,
                                                   note_type: int) -> None:
    # Plausible headers with random sizes over a mix of real and random bytes.
    data = struct.pack("<3I", namesz, descsz, note_type) + b"stapsdt\0" + tail
    try:
        for note in parse_stapsdt_notes(data):
            assert note.provider and note.name
    except UsdtNoteError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzz_notes_inside_a_real_file(data: st.DataObject) -> None:
    # A real program whose .note.stapsdt bytes are replaced: reading and translating its
    # probes raises rawprobe's errors only, whatever the bytes.
    program = semaphore_program()
    image = bytearray(program.read_bytes())
    with program.open("rb") as stream:
        section = ELFFile(stream).get_section_by_name(".note.stapsdt")
        start, size = section["sh_offset"], section["sh_size"]
    if data.draw(st.booleans()):
        image[start : start + size] = data.draw(st.binary(min_size=size, max_size=size))
    else:  # a few bytes changed keep most notes plausible
        for _ in range(data.draw(st.integers(1, 6))):
            position = start + data.draw(st.integers(0, size - 1))
            image[position] = data.draw(st.integers(0, 255))
    with tempfile.NamedTemporaryFile(suffix=".elf", delete=False) as copy:
        copy.write(bytes(image))
    try:
        list_usdt_probes(copy.name)
        find_usdt_probes(copy.name, "*:*")
    except RawprobeError:
        pass
    finally:
        os.unlink(copy.name)
