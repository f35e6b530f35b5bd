"""For the same probe words, rawprobe's values equal the kernel's own uprobe tracer's.

Both tracers watch the same run of the same process: the kernel's through uprobe_events,
rawprobe's through its BPF programs. Every type and fetch form appears in the words below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import KernelTracer, build_c, run_rawprobe

from rawprobe._symbols import resolve_location

SOURCE = r"""
#include <stdio.h>
struct inner { int x; char name[16]; };
struct req {
    long id; unsigned flags; short s; signed char c; unsigned char bits;
    struct inner *in; const char *label; unsigned arr[4]; const char *strs[2];
    char tag[4]; unsigned short half;
};
unsigned int global_counter = 0xdeadbeef;
const char global_name[] = "global-name";
__attribute__((noinline)) long handle(struct req *r, long neg, unsigned long big, const char *s,
                                      char ch, void *bad) {
    global_counter++;
    return r->id * 2 + neg + (long)big + s[0] + ch + (bad != 0);
}
int main(void) {
    struct inner in = { .x = -77, .name = "inner-name" };
    struct req r = { .id = 1234567890123L, .flags = 0xbeef, .s = -300, .c = -5, .bits = 0xb4,
                     .in = &in, .label = "the-label", .arr = {1, 2, 3, 0xffffffff},
                     .strs = {"first", "second"}, .tag = {'a', 'b', 'c', 'd'}, .half = 65535 };
    long total = 0;
    for (int i = 0; i < 3; i++) {
        r.id += i;
        in.x -= i;
        total += handle(&r, -42 - i, 18446744073709551615UL - i,
                        i == 1 ? global_name : "plain string", 'Q' + i, (void *)16);
    }
    printf("%ld\n", total);
    return 0;
}
"""

# Integers of every size and sign, hex, bitfields, chars, nested dereferences, strings (heap,
# stack, .rodata, through pointers), string arrays, integer and char arrays, $comm, $stackN,
# $stack, immediates, @ADDR and @+OFFSET, negative offsets, +u user dereferences.
ENTRY_ARGS = [
    "id=+0(%di):s64 flags=+8(%di):x32 s=+12(%di):s16 c=+14(%di):s8 bits=+15(%di):b3@2/8",
    "x=+0(+16(%di)):s32 name=+4(+16(%di)):string label=+0(+24(%di)):string",
    "arr=+32(%di):u32[4] neg=%si:s64 big=%dx:u64 str=+0(%cx):string ch=%r8:char",
    "comm=$comm st=$stack0 stk=$stack imm=\\42:s32 strs=+48(%di):string[2] u=+u0(%di):u8",
    "d=%di tag=+64(%di):char[4] half=+68(%di):u16 x8=+14(%di):x8 x16=+12(%di):x16",
    "u32=+8(%di):u32 s32=+8(%di):s32 below=-8(%sp):x64 deep=+0(+0(+16(%di))):s16",
    "g=@{counter:#x}:x32 gn=@{name:#x}:string fo=@+{counter_offset:#x}:x32",
    "badstr=+0(%r9):string",
]
RETURN_ARGS = ["ret=$retval:s64 retx=$retval retu=$retval:u8 rets=$retval:s16 r32=%ax:x32"]


@pytest.fixture(scope="module")
def program() -> Path:
    # Not a PIE, so @ADDR can name the globals at fixed addresses.
    return build_c(SOURCE, name="oracle", flags=("-O0", "-no-pie"))


def symbol_address(path: Path, name: str) -> int:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        (symbol,) = ELFFile(stream).get_section_by_name(".symtab").get_symbol_by_name(name)
        return int(symbol["st_value"])


def file_offset_of_data(path: Path, address: int) -> int:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        for segment in ELFFile(stream).iter_segments():
            start = segment["p_vaddr"]
            if segment["p_type"] == "PT_LOAD" and start <= address < start + segment["p_filesz"]:
                return int(address - start + segment["p_offset"])
    raise AssertionError(f"{address:#x} is in no segment")


def test_values_equal_the_kernels(program: Path) -> None:
    offset = resolve_location(str(program), "handle")[0].file_offset
    counter = symbol_address(program, "global_counter")
    values = {
        "counter": counter,
        "name": symbol_address(program, "global_name"),
        "counter_offset": file_offset_of_data(program, counter),
    }
    entry_args = [args.format(**values) for args in ENTRY_ARGS]
    kernel_defs = [f"p:e{i} {program}:{offset:#x} {args}" for i, args in enumerate(entry_args)]
    kernel_defs += [f"r:r{i} {program}:{offset:#x} {args}" for i, args in enumerate(RETURN_ARGS)]
    words = [f"p:e{i} {program}:handle {args}" for i, args in enumerate(entry_args)]
    words += [f"r:r{i} {program}:handle {args}" for i, args in enumerate(RETURN_ARGS)]

    with KernelTracer(kernel_defs) as kernel:
        result = run_rawprobe("attach", *words, "--", str(program), check_status=0)
        expected = kernel.lines()

    ours = []
    for line in result.stdout.splitlines():
        if ": " not in line or not line[:2].isdigit():
            continue
        head, fields = line.split(": ", 1)
        ours.append((head.rsplit(" ", 1)[1], fields))
    assert len(expected) == 3 * len(words)
    assert [event for event, _ in ours] == [event for event, _ in expected]
    integer_faults = set()
    for (event, our_fields), (_, kernel_fields) in zip(ours, expected, strict=True):
        mine, theirs = split_fields(our_fields), split_fields(kernel_fields)
        assert list(mine) == list(theirs), event
        for name, value in mine.items():
            # The kernel prints an integer it could not read as 0; rawprobe says (fault).
            if value == "(fault)" and theirs[name] == "0":
                integer_faults.add(name)
                continue
            assert value == theirs[name], (event, name)
    assert integer_faults == {"deep"}  # a dereference of a non-pointer, by design


def split_fields(text: str) -> dict[str, str]:
    """name=value pairs of a trace line (values may hold spaces inside quotes or braces)."""
    fields: dict[str, str] = {}
    depth, quoted, start = 0, False, 0
    for position, char in enumerate(text + " "):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "{":
            depth += 1
        elif not quoted and char == "}":
            depth -= 1
        elif char == " " and not quoted and depth == 0:
            if position > start:
                name, value = text[start:position].split("=", 1)
                fields[name] = value
            start = position + 1
    return fields
