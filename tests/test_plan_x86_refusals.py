"""Which x86-64 instructions the kernel refuses a uprobe on (rawprobe._plan.x86_refusals).

Pure tests hold the tables against the kernel's own comments and decide hand-assembled
encodings; the kernel test plants a uprobe through tracefs on each of a set of instructions
assembled by gas at the start of functions of a running program, and compares what the kernel
did with what :func:`kernel_refuses` predicted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from helpers import build_c, require_kernel_tracing

from rawprobe._plan.x86_refusals import GOOD_2BYTE_INSNS, GOOD_INSNS_64, kernel_refuses

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="x86-64 instructions and the x86 kernel's rules"
)


# -- the tables -------------------------------------------------------------------------------


def test_good_insns_64_refuses_exactly_what_the_kernel_comment_lists() -> None:
    # The comment above good_insns_64 in arch/x86/kernel/uprobes.c: "genuinely invalid
    # opcodes", "opcodes we'll probably never support" and "opcodes which need some work".
    invalid = {0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x60, 0x61,
               0x62, 0x82, 0x9A, 0xCE, 0xD4, 0xD5, 0xD6, 0xEA}
    never = {*range(0x6C, 0x70), *range(0xE4, 0xE8), *range(0xEC, 0xF0), 0xCC, 0xF1, 0xF4,
             0xFA, 0xFB}
    needs_work = {0xCD, 0xCF}
    assert set(range(256)) - GOOD_INSNS_64 == invalid | never | needs_work


def test_good_2byte_insns_refuses_exactly_what_the_kernel_comment_lists() -> None:
    # The comment above good_2byte_insns: "Opcodes we don't support".
    refused = {0x00, 0x01, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x30, 0x34, 0x35, 0x37, 0x78,
               0x79, 0xAE}
    assert set(range(256)) - GOOD_2BYTE_INSNS == refused


# -- hand-assembled instructions --------------------------------------------------------------

ACCEPTED = [
    ("55", "push %rbp"),
    ("4155", "push %r13"),
    ("f30f1efa", "endbr64"),
    ("90", "nop"),
    ("0f1f440000", "nopl 0x0(%rax,%rax,1): the 5-byte NOP at patchable function entries"),
    ("4889e5", "mov %rsp,%rbp"),
    ("64488b042528000000", "mov %fs:0x28,%rax: FS and GS prefixes are allowed"),
    ("65488b0425", "mov %gs:..., %rax"),
    ("e800000000", "call rel32"),
    ("e9fbffffff", "jmp rel32"),
    ("7400", "je rel8"),
    ("0f8400000000", "je rel32"),
    ("c3", "ret"),
    ("f3c3", "repz ret"),
    ("f3a4", "rep movsb"),
    ("0f05", "syscall: 0Fh is set in good_insns_64, so good_2byte_insns is never consulted"),
    ("0f0b", "ud2, likewise"),
    ("0fa2", "cpuid"),
    ("660f3800c1", "pshufb: a three-byte opcode passes on its 0Fh"),
    ("9c", "pushf"),
    ("9d", "popf"),
    ("4863c7", "movslq %edi,%rax"),
    ("c5f458c2", "vaddps: VEX opcode 58h, set in the table (POP)"),
    ("c5f1ebd0", "vpor: VEX opcode EBh, set in the table (JMP rel8)"),
    ("c5f877", "vzeroupper: VEX opcode 77h"),
    ("62f17c4858c1", "vaddps zmm: EVEX opcode 58h"),
    ("8fe878c2c101", "vprotb (XOP): the kernel's decoder reads 8Fh as POP"),
    ("6690", "xchg %ax,%ax: a 66h NOP is no branch"),
    ("8ec0", "mov %eax,%es: only a load of SS masks the single-step trap"),
]

REFUSED = [
    ("cc", "int3", "int3"),
    ("f0ff07", "lock incl (%rdi)", "LOCK"),
    ("f00fb10f", "lock cmpxchg %ecx,(%rdi)", "LOCK"),
    ("66f00fc10f", "lock prefix after another prefix", "LOCK"),
    ("2e90", "cs nop", "CS segment"),
    ("662e0f1f840000000000", "cs nopw 0x0(%rax,%rax,1): GCC's padding", "CS segment"),
    ("3effe0", "notrack jmp *%rax", "DS segment"),
    ("3e7400", "je with a branch-taken hint", "DS segment"),
    ("2690", "es nop", "ES segment"),
    ("3690", "ss nop", "SS segment"),
    ("8ed0", "mov %eax,%ss", "SS"),
    ("1f", "opcode 1Fh (POP DS, the kernel's POP_SS_OPCODE)", "SS"),
    ("17", "pop %ss", "not in the kernel's table"),
    ("cd80", "int $0x80", "not in the kernel's table"),
    ("f4", "hlt", "not in the kernel's table"),
    ("fa", "cli", "not in the kernel's table"),
    ("ec", "in (%dx),%al", "not in the kernel's table"),
    ("6c", "insb", "not in the kernel's table"),
    ("f1", "int1", "not in the kernel's table"),
    ("c5fe6f07", "vmovdqu (%rdi),%ymm0: VEX opcode 6Fh (OUTS)", "6Fh"),
    ("c5f1d4d0", "vpaddq: VEX opcode D4h", "D4h"),
    ("c5f9efc0", "vpxor: VEX opcode EFh (OUT)", "EFh"),
    ("62f1fe486f07", "vmovdqu64 (%rdi),%zmm0: EVEX opcode 6Fh", "6Fh"),
    ("66e80000", "callw rel16", "operand-size prefix"),
    ("66e9fbff", "jmpw rel16", "operand-size prefix"),
    ("66eb00", "jmp rel8 with 66h", "operand-size prefix"),
    ("660f840000", "je rel16", "operand-size prefix"),
    ("667400", "je rel8 with 66h", "operand-size prefix"),
]


@pytest.mark.parametrize(("encoding", "what"), ACCEPTED)
def test_accepted(encoding: str, what: str) -> None:
    assert kernel_refuses(bytes.fromhex(encoding)) is None, what


@pytest.mark.parametrize(("encoding", "what", "reason"), REFUSED)
def test_refused(encoding: str, what: str, reason: str) -> None:
    refusal = kernel_refuses(bytes.fromhex(encoding))
    assert refusal is not None and reason in refusal, (what, refusal)


def test_only_four_different_prefixes_are_prefixes() -> None:
    # insn_get_prefixes() keeps four different legacy prefixes; a fifth ends them and is read
    # as the opcode: 2Eh, which is set in good_insns_64, and no longer a bad prefix.
    assert kernel_refuses(bytes.fromhex("6667f2642e90")) is None
    assert kernel_refuses(bytes.fromhex("66672e642e90")) is not None  # a repeat is no fifth


def test_trailing_bytes_do_not_matter() -> None:
    assert kernel_refuses(bytes.fromhex("55") + bytes(14)) is None
    assert kernel_refuses(bytes.fromhex("f0ff07") + b"\xcc" * 12) is not None


@pytest.mark.parametrize("encoding", ["", "66", "f0", "48", "c5f8", "62f17c48", "8e"])
def test_cut_short(encoding: str) -> None:
    with pytest.raises(ValueError):
        kernel_refuses(bytes.fromhex(encoding))


# -- the kernel's own verdict -----------------------------------------------------------------

# (function name, gas source of its first instruction). Each function is followed by a ret;
# none is ever called.
KERNEL_CASES = [
    ("f_push_rbp", "push %rbp"),
    ("f_endbr64", "endbr64"),
    ("f_nop", "nop"),
    ("f_nop5", ".byte 0x0f, 0x1f, 0x44, 0, 0"),  # nopl 0x0(%rax,%rax,1), which 6.18 optimizes
    ("f_mov", "mov %rsp,%rbp"),
    ("f_fs_mov", "mov %fs:0x28,%rax"),
    ("f_call", "call f_nop"),
    ("f_jcc", "je f_nop"),
    ("f_rep_movsb", "rep movsb"),
    ("f_syscall", "syscall"),
    ("f_ud2", "ud2"),
    ("f_cpuid", "cpuid"),
    ("f_pshufb", "pshufb %xmm1,%xmm0"),
    ("f_popf", "popfq"),
    ("f_vaddps", "vaddps %ymm2,%ymm1,%ymm0"),
    ("f_vpor", "vpor %xmm0,%xmm1,%xmm2"),
    ("f_vzeroupper", "vzeroupper"),
    ("f_evex_vaddps", "vaddps %zmm1,%zmm0,%zmm0"),
    ("f_xop_vprotb", "vprotb $1,%xmm1,%xmm0"),
    ("f_mov_es", "mov %eax,%es"),
    ("f_int3", "int3"),
    ("f_lock_incl", "lock incl (%rdi)"),
    ("f_lock_cmpxchg", "lock cmpxchg %ecx,(%rdi)"),
    ("f_cs_nop", "cs nop"),
    ("f_cs_nopw", "cs nopw 0x0(%rax,%rax,1)"),
    ("f_notrack_jmp", "notrack jmp *%rax"),
    ("f_es_nop", ".byte 0x26, 0x90"),
    ("f_ss_nop", ".byte 0x36, 0x90"),
    ("f_mov_ss", "mov %eax,%ss"),
    ("f_int80", "int $0x80"),
    ("f_hlt", "hlt"),
    ("f_cli", "cli"),
    ("f_in", "in (%dx),%al"),
    ("f_vmovdqu", "vmovdqu (%rdi),%ymm0"),
    ("f_vpaddq", "vpaddq %xmm0,%xmm1,%xmm2"),
    ("f_vpxor", "vpxor %xmm0,%xmm0,%xmm0"),
    ("f_evex_vmovdqu64", "vmovdqu64 (%rdi),%zmm0"),
    ("f_callw", ".byte 0x66, 0xe8, 0, 0"),
    ("f_je_data16", ".byte 0x66, 0x0f, 0x84, 0, 0"),
]


def _program_source() -> str:
    functions = "".join(
        f".globl {name}\\n.type {name},@function\\n{name}:\\n {instruction}\\n ret\\n"
        f".size {name}, .-{name}\\n"
        for name, instruction in KERNEL_CASES
    )
    return (
        "#include <stdio.h>\n#include <unistd.h>\n"
        f'__asm__(".text\\n{functions}");\n'
        'int main(void) { puts("ready"); fflush(stdout); pause(); return 0; }\n'
    )


def _file_offsets(path: Path) -> dict[str, tuple[int, bytes]]:
    """{function: (file offset, its first 15 bytes)} through the executable PT_LOAD segment."""
    wanted = {name for name, _ in KERNEL_CASES}
    found: dict[str, tuple[int, bytes]] = {}
    data = path.read_bytes()
    with path.open("rb") as file:
        elf = ELFFile(file)
        segments = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        for symbol in symtab.iter_symbols():
            if symbol.name not in wanted:
                continue
            address = symbol["st_value"]
            segment = next(
                s for s in segments if s["p_vaddr"] <= address < s["p_vaddr"] + s["p_filesz"]
            )
            file_offset = address - segment["p_vaddr"] + segment["p_offset"]
            found[symbol.name] = (file_offset, data[file_offset : file_offset + 15])
    assert set(found) == wanted
    return found


def _tracefs() -> Path:
    for candidate in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (candidate / "uprobe_events").exists():
            return candidate
    pytest.skip("tracefs with uprobe_events is not mounted")
    raise AssertionError("unreachable")


@contextmanager
def _running(program: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([str(program)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"  # main runs: the file is mapped
        yield process
    finally:
        process.kill()
        process.wait()


def _append(path: Path, line: str) -> None:
    """Write one line to a tracefs file without truncating it (tracefs cannot seek to the end,
    which open(..., "a") does)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def _kernel_verdict(tracefs: Path, group: str, event: str, path: Path, offset: int) -> int | None:
    """Define and enable a uprobe at ``path:offset``: None if the kernel planted it, else the
    errno with which enabling failed. The caller removes the definition."""
    _append(tracefs / "uprobe_events", f"p:{group}/{event} {path}:{offset:#x}\n")
    enable = tracefs / "events" / group / event / "enable"
    try:
        enable.write_text("1")
    except OSError as error:
        return error.errno
    enable.write_text("0")
    return None


def _remove(tracefs: Path, group: str, events: list[str]) -> None:
    for event in events:
        enable = tracefs / "events" / group / event / "enable"
        try:
            if enable.exists() and enable.read_text().strip() != "0":
                enable.write_text("0")
            _append(tracefs / "uprobe_events", f"-:{group}/{event}\n")
        except OSError:
            pass


@pytest.mark.kernel
def test_the_kernel_refuses_what_kernel_refuses_predicts() -> None:
    require_kernel_tracing()
    tracefs = _tracefs()
    program = build_c(_program_source(), name="uprobe_refusals", flags=("-O0",))
    offsets = _file_offsets(program)
    group = f"rawprobe_refusals_{os.getpid()}"
    defined: list[str] = []
    mismatches: list[str] = []
    verdicts: dict[str, int | None] = {}
    try:
        with _running(program):
            for index, (name, instruction) in enumerate(KERNEL_CASES):
                offset, code = offsets[name]
                event = f"e{index}"
                defined.append(event)
                errno = _kernel_verdict(tracefs, group, event, program, offset)
                verdicts[name] = errno
                predicted = kernel_refuses(code)
                if (errno is not None) != (predicted is not None):
                    mismatches.append(
                        f"{instruction} ({code.hex()}): kernel "
                        f"{'refused, errno ' + str(errno) if errno else 'planted it'}, "
                        f"predicted {predicted or 'planted'}"
                    )
    finally:
        _remove(tracefs, group, defined)
    assert not mismatches, "\n".join(mismatches)
    # Both outcomes occurred: the test did plant probes and did see refusals.
    assert any(errno is None for errno in verdicts.values())
    assert any(errno is not None for errno in verdicts.values())
