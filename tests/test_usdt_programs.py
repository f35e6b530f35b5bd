"""Programs with USDT probes for the USDT tests, and proof that they cover what they are for.

Every program is compiled from the source here (cached by content), with ``<sys/sdt.h>``'s
``DTRACE_PROBEn`` macros. The tests in this module check, with ``readelf -n`` as the oracle,
that the compilers really produced the argument spec forms the other tests claim to cover
(register, sub-register, memory, constant, %rip-relative with a symbol before and after the
displacement, an index form) and the semaphores, sites and providers they rely on.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import build_c, require_tool

# -- the programs ------------------------------------------------------------------------------

FIXTURE_SOURCE = r"""
#include <sys/sdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct pair { int64_t first; int32_t second; };
struct pair global_pair = { -11, -22 };
int64_t global_counter = -5;
static int32_t static_counter = 77;
static int32_t static_limit = 1000;
const char *global_name = "global-name";
static int16_t table[4] = { 10, -20, 30, -40 };

__attribute__((noinline)) static void fire(int round, const char *word)
{
    int8_t s8 = (int8_t)(-3 * round);
    uint8_t u8 = (uint8_t)(250 + round);
    int16_t s16 = (int16_t)(-1000 * round);
    uint16_t u16 = (uint16_t)(60000 + round);
    int32_t s32 = -100000 * round;
    uint32_t u32 = 4000000000u + (uint32_t)round;
    int64_t s64 = -1099511627776LL * round;
    uint64_t u64 = 9223372036854775808ULL + (uint64_t)round;

    DTRACE_PROBE(fixture, zero);
    DTRACE_PROBE1(fixture, one, round);
    DTRACE_PROBE2(fixture, bytes, s8, u8);
    DTRACE_PROBE4(fixture, ints, s16, u16, s32, u32);
    DTRACE_PROBE3(fixture, wide, s64, u64, word);
    DTRACE_PROBE6(fixture, six, s8, u8, s16, u16, s32, s64);
    DTRACE_PROBE3(fixture, constants, 5, -7, 0x1234567890LL);
    DTRACE_PROBE3(fixture, symbols, global_pair.second, global_pair.first, static_limit);
    global_counter += round;
    static_counter += round;
    DTRACE_PROBE3(fixture, globals, global_counter, static_counter, global_name);
    DTRACE_PROBE2(fixture, indexed, table[round & 3], round);
    DTRACE_PROBE1(fixture, twice, round);
    DTRACE_PROBE1(fixture, twice, round + 100);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    const char *word = argc > 3 ? argv[3] : "hello";
    if (argc > 4)
        static_limit = atoi(argv[4]);
    /* A BPF program cannot fault pages in: touch the strings the probes point to (a volatile
       load, which the compiler cannot fold even where it knows the string). */
    (void)*(volatile const char *)word;
    (void)*(volatile const char *)global_name;
    if (pause_ms)
        usleep(pause_ms * 1000);
    for (int i = 1; i <= rounds; i++)
        fire(i, word);
    DTRACE_PROBE(fixture, shared);
    DTRACE_PROBE(other, shared);
    return 0;
}
"""
"""``fixture [ROUNDS [PAUSE_MS [WORD]]]``: after PAUSE_MS, ROUNDS rounds of probes whose values
:func:`expected_values` gives; then ``fixture:shared`` and ``other:shared`` once each."""

FIXTURE_BUILDS = {
    "O0": ("-O0",),
    "O2": ("-O2",),
    "O2-nopie": ("-O2", "-fno-pie", "-no-pie"),
}
"""Memory operands (-O0), registers and %rip-relative operands (-O2), and the same in a
position-dependent executable, where GCC writes ``sym+8(%rip)`` rather than ``8+sym(%rip)``."""

FIXTURE_PROBES = ("zero", "one", "bytes", "ints", "wide", "six", "constants", "symbols",
                  "globals", "indexed", "twice", "twice")
"""The probes ``fire()`` hits each round, in order."""


def expected_values(round_number: int, word: str = "hello") -> dict[str, list[object]]:
    """What each probe of :data:`FIXTURE_SOURCE` passes in round ``round_number`` (from 1).

    ``twice`` has two sites, so two lists; ``indexed`` lists only its second argument, the
    first being an index form at -O2.
    """
    r = round_number
    triangle = r * (r + 1) // 2
    s8 = (-3 * r + 128) % 256 - 128
    u8 = (250 + r) % 256
    return {
        "zero": [],
        "one": [r],
        "bytes": [s8, u8],
        "ints": [-1000 * r, 60000 + r, -100000 * r, 4000000000 + r],
        "wide": [-(2**40) * r, 2**63 + r, word],
        "six": [s8, u8, -1000 * r, 60000 + r, -100000 * r, -(2**40) * r],
        "constants": [5, -7, 0x1234567890],
        "symbols": [-22, -11, 1000],
        "globals": [-5 + triangle, 77 + triangle, "global-name"],
        "indexed": [[10, -20, 30, -40][r & 3], r],
        "twice": [[r], [r + 100]],
    }


SEMAPHORE_SOURCE = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* As dtrace -h writes it: the kernel raises the semaphore while the probe is planted. */
volatile unsigned short guarded_tick_semaphore __attribute__((section(".probes")));
#define GUARDED_TICK_ENABLED() __builtin_expect(guarded_tick_semaphore, 0)

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    int guarded = 0;
    for (int i = 1; i <= rounds; i++) {
        if (GUARDED_TICK_ENABLED()) {
            guarded++;
            DTRACE_PROBE2(guarded, tick, i, guarded);
        }
        if (pause_ms)
            usleep(pause_ms * 1000);
    }
    printf("guarded=%d\n", guarded);
    return 0;
}
"""
"""``semaphore [ROUNDS [PAUSE_MS]]``: ROUNDS rounds (PAUSE_MS apart); a round runs the code
guarded by ``guarded:tick``'s semaphore only while the probe is planted; prints how many did."""

LIBRARY_SOURCE = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>

unsigned short usdtlib_mark_semaphore __attribute__((section(".probes")));
static int guarded;

__attribute__((noinline)) int usdtlib_mark(int value, const char *label)
{
    if (!label[0])
        return 0;
    if (__builtin_expect(usdtlib_mark_semaphore, 0)) {
        guarded++;
        DTRACE_PROBE3(usdtlib, mark, value, label, guarded);
    }
    return value * 2;
}

int usdtlib_guarded(void) { return guarded; }
"""
"""``libusdtfix.so``: ``usdtlib:mark`` (value, label, guarded count), behind a semaphore."""

LIBRARY_USER_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int usdtlib_mark(int value, const char *label);
int usdtlib_guarded(void);

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1;
    int pause_ms = argc > 2 ? atoi(argv[2]) : 0;
    if (pause_ms)
        usleep(pause_ms * 1000);
    for (int i = 1; i <= rounds; i++)
        usdtlib_mark(7 * i, "lib-label");
    printf("guarded=%d\n", usdtlib_guarded());
    return 0;
}
"""
"""``libuser [ROUNDS [PAUSE_MS]]``: after PAUSE_MS, calls usdtlib_mark(7 * i, "lib-label")."""

THROWER_SOURCE = r"""
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? std::atoi(argv[1]) : 1;
    int caught = 0;
    for (int i = 0; i < rounds; i++) {
        try {
            throw std::runtime_error("boom");
        } catch (const std::exception &) {
            caught++;
        }
    }
    std::printf("caught=%d\n", caught);
    return 0;
}
"""
"""``thrower [ROUNDS]``: throws and catches a std::runtime_error ROUNDS times (libstdc++'s
``libstdcxx:throw`` and ``libstdcxx:catch`` probes fire)."""


def fixture_program(build: str) -> Path:
    """:data:`FIXTURE_SOURCE` built with the flags :data:`FIXTURE_BUILDS` names."""
    return build_c(FIXTURE_SOURCE, name="fixture", flags=FIXTURE_BUILDS[build])


def semaphore_program() -> Path:
    return build_c(SEMAPHORE_SOURCE, name="semaphore", flags=("-O2",))


def usdt_library() -> Path:
    return build_c(LIBRARY_SOURCE, name="libusdtfix",
                   flags=("-O2", "-shared", "-fPIC", "-Wl,-soname,libusdtfix.so"), suffix=".so")


def library_user() -> Path:
    """:data:`LIBRARY_USER_SOURCE` linked against :func:`usdt_library` (found by its rpath)."""
    directory = usdt_library().parent
    # -l after the source is not possible with build_c's argument order, so no --as-needed:
    # the library stays needed although the linker sees it before the code that calls it.
    return build_c(
        LIBRARY_USER_SOURCE,
        name="libuser",
        flags=("-O2", f"-L{directory}", f"-Wl,-rpath,{directory}", "-Wl,--no-as-needed",
               "-lusdtfix"),
    )


def thrower_program() -> Path:
    return build_c(THROWER_SOURCE, name="thrower", flags=("-O2",), cxx=True)


# -- what the compilers made of them -----------------------------------------------------------


def readelf_notes(path: Path) -> list[dict[str, str]]:
    """The SDT notes of ``path`` as ``readelf -n`` prints them (the oracle)."""
    readelf = require_tool("readelf")
    text = subprocess.run([readelf, "-n", str(path)], capture_output=True, text=True,
                          check=True).stdout
    notes: list[dict[str, str]] = []
    for line in text.splitlines():
        field = re.match(r"\s*(Provider|Name|Arguments): ?(.*)$", line)
        if field and field.group(1) == "Provider":
            notes.append({})
        if field and notes:
            notes[-1][field.group(1)] = field.group(2).strip()
        elif notes and line.strip().startswith("Location:"):
            notes[-1].update(re.findall(r"(Location|Base|Semaphore): (0x[0-9a-f]+)", line))
    return notes


def specs_of(path: Path) -> dict[str, list[str]]:
    """``provider:name`` → the argument specs of its first site, from readelf."""
    specs: dict[str, list[str]] = {}
    for note in readelf_notes(path):
        specs.setdefault(f"{note['Provider']}:{note['Name']}", note["Arguments"].split())
    return specs


@pytest.fixture(params=sorted(FIXTURE_BUILDS))
def any_fixture(request: pytest.FixtureRequest) -> Iterator[Path]:
    yield fixture_program(request.param)


def test_unoptimized_build_has_memory_operands() -> None:
    specs = specs_of(fixture_program("O0"))
    assert specs["fixture:wide"] == ["-8@-24(%rbp)", "8@-32(%rbp)", "8@-48(%rbp)"]
    assert specs["fixture:bytes"] == ["-1@-1(%rbp)", "1@-2(%rbp)"]
    assert specs["fixture:ints"][1] == "2@-6(%rbp)"
    assert "-2@%ax" in specs["fixture:indexed"]  # a 16-bit register


def test_optimized_build_has_registers_and_sub_registers() -> None:
    specs = specs_of(fixture_program("O2"))
    every = [spec for values in specs.values() for spec in values]
    # 64-, 32-, 16- and 8-bit views of registers, numbered registers included
    assert any(re.fullmatch(r"-?8@%r[a-z]{2}", spec) for spec in every), every
    assert any(re.fullmatch(r"-?4@%e[a-z]{2}", spec) for spec in every), every
    assert any(re.fullmatch(r"-?2@%r1\dw", spec) for spec in every), every
    assert any(re.fullmatch(r"-?1@%r\d+b", spec) for spec in every), every


def test_constants_are_immediates(any_fixture: Path) -> None:
    assert specs_of(any_fixture)["fixture:constants"] == ["-4@$5", "-4@$-7", "-8@$78187493520"]


def test_optimized_builds_have_rip_relative_symbols() -> None:
    pie = specs_of(fixture_program("O2"))["fixture:symbols"]
    nopie = specs_of(fixture_program("O2-nopie"))["fixture:symbols"]
    assert pie == ["-4@8+global_pair(%rip)", "-8@global_pair(%rip)", "-4@static_limit(%rip)"]
    assert nopie[0] == "-4@global_pair+8(%rip)"  # the symbol first, then the displacement
    assert specs_of(fixture_program("O2"))["fixture:globals"][2] == "8@global_name(%rip)"


def test_optimized_builds_have_an_index_form() -> None:
    assert re.fullmatch(r"-2@\(%r[a-z0-9]+,%r[a-z0-9]+,2\)",
                        specs_of(fixture_program("O2"))["fixture:indexed"][0])
    assert re.fullmatch(r"-2@table\(%r[a-z0-9]+,%r[a-z0-9]+\)",
                        specs_of(fixture_program("O2-nopie"))["fixture:indexed"][0])


def test_fixture_sites_and_providers(any_fixture: Path) -> None:
    names = [f"{note['Provider']}:{note['Name']}" for note in readelf_notes(any_fixture)]
    assert names.count("fixture:twice") == 2  # one probe, two sites
    assert "fixture:shared" in names and "other:shared" in names
    assert all(int(note["Semaphore"], 16) == 0 for note in readelf_notes(any_fixture))


def test_semaphore_programs_have_semaphores() -> None:
    for path in (semaphore_program(), usdt_library()):
        notes = readelf_notes(path)
        assert len(notes) == 1 and int(notes[0]["Semaphore"], 16) != 0, notes


def test_semaphore_guards_code_when_untraced() -> None:
    result = subprocess.run([str(semaphore_program()), "3"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "guarded=0"
    result = subprocess.run([str(library_user()), "3"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "guarded=0"
