"""Regressions of the seams issue 13 named: one check_site for every site, one Session both
backends meet in full, one source for a plain count, typed probes without a round trip
through text."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from fixtures_symbols import PIE_FLAGS
from fixtures_symbols.programs import FAKE_GO_PROGRAM
from helpers import ADD_SOURCE, build_c, require_tool, run_rawprobe

import rawprobe
from rawprobe import UsageError
from rawprobe._probe.aggregations import AggregationSpec

BACKENDS = ("bpf", "tracefs")


# -- every site passes check_site --------------------------------------------------------------


def test_latency_on_a_go_function_is_refused() -> None:
    """--hist latency adds return probes itself: on a Go program they must be refused as a
    written r: probe is, by the command line and by the library."""
    program = build_c(FAKE_GO_PROGRAM, name="fakego", flags=PIE_FLAGS)
    result = run_rawprobe("attach", "--hist", "latency", f"p:{program}:handler", "--",
                          str(program))
    assert result.returncode == 2, result.stderr
    assert "Go program" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(UsageError, match="Go program"):
        rawprobe.latency(f"p:{program}:handler", command=[str(program)])
    # Its entry alone is fine.
    run_rawprobe("attach", "--count", f"p:{program}:handler", "--", str(program),
                 check_status=0)


USDT_SOURCE = r"""
#include <sys/sdt.h>
__attribute__((noinline)) int work(int x) {
    DTRACE_PROBE1(demo, mark, x);
    return x * 3;
}
int main(void) { return work(2) != 6; }
"""


def _note_pc_offset(program: Path) -> int:
    """The file offset of the first SDT note's pc field (.note.stapsdt: a 12-byte note
    header, "stapsdt\\0", then pc, base, semaphore)."""
    from elftools.elf.elffile import ELFFile

    with program.open("rb") as file:
        section = ELFFile(file).get_section_by_name(".note.stapsdt")
        assert section is not None
        return int(section["sh_offset"]) + 12 + 8


def test_a_usdt_site_inside_an_instruction_is_refused(tmp_path: Path) -> None:
    require_tool("gcc")
    original = build_c(USDT_SOURCE, name="usdt_site", flags=("-O2", "-no-pie", "-fno-pie"))
    program = tmp_path / "usdt_site"
    shutil.copy(original, program)
    data = bytearray(program.read_bytes())
    pc_at = _note_pc_offset(program)
    (pc,) = struct.unpack_from("<Q", data, pc_at)
    # Point the note one byte into `main`'s first instruction (endbr64, or push %rbp...
    # whatever it is, its second byte is not where an instruction starts).
    main = int(subprocess.run(["nm", str(program)], capture_output=True, text=True,
                              check=True).stdout.split(" T main")[0].split()[-1], 16)
    struct.pack_into("<Q", data, pc_at, main + 1)
    program.write_bytes(bytes(data))
    program.chmod(0o755)
    result = run_rawprobe("attach", f"usdt:{program}:demo:mark", "--", str(program))
    assert result.returncode == 2, result.stderr
    assert "refusing to probe" in result.stderr and "nop" in result.stderr
    # The untouched program's probe is accepted.
    assert pc != main + 1
    run_rawprobe("attach", f"usdt:{original}:demo:mark", "--", str(original), check_status=0)


# -- a plain count has one source ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_filtered_count_equals_bpftrace(backend: str) -> None:
    bpftrace = require_tool("bpftrace")
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g"))
    result = run_rawprobe("attach", "--backend", backend, "--json", "--count", "--filter",
                          "a > 3", f"p:{program}:add a=%di:s32", "--", str(program), "10",
                          check_status=0)
    counts = [line for line in result.stdout.splitlines() if line.startswith('{"counts"')]
    assert counts, result.stdout
    ours = rawprobe_count(counts[-1])
    oracle = subprocess.run(
        [bpftrace, "-e", f"uprobe:{program}:add /(int32)arg0 > 3/ {{ @n = count(); }}",
         "-c", f"{program} 10"], capture_output=True, text=True, timeout=120, check=True)
    match = re.search(r"@n: (\d+)", oracle.stdout)
    assert match, oracle.stdout + oracle.stderr
    assert ours == int(match.group(1)) == 7  # a = 1..10, and 4..10 pass


def rawprobe_count(line: str) -> int:
    import json

    rows = json.loads(line)["counts"]
    assert len(rows) == 1 and rows[0]["event"] == "add"
    return int(rows[0]["count"])


# -- the tracefs session meets the Session protocol in full -------------------------------------


def test_tracefs_tracer_iterates_with_asyncio_and_carries_stacks() -> None:
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g", "-fno-omit-frame-pointer"))

    async def collect() -> list[rawprobe.Event]:
        got = []
        async with rawprobe.Tracer(command=[str(program), "3"], backend="tracefs",
                                   stack=True) as tracer:
            tracer.add(f"p:{program}:add a=%di:s32")
            async for event in tracer.aevents(timeout=20):
                got.append(event)
            assert tracer.backend == "tracefs"
            assert tracer.fileno() >= 0
        return got

    events = asyncio.run(collect())
    assert [event.args["a"] for event in events] == [1, 2, 3]
    for event in events:
        assert event.stack is not None and len(event.stack) >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_counts_by_stack_on_both_backends(backend: str) -> None:
    program = build_c(ADD_SOURCE, name="main", flags=("-O0", "-g", "-fno-omit-frame-pointer"))
    with rawprobe.Tracer(command=[str(program), "5"], backend=backend,
                         aggregation=AggregationSpec("count", stack=True)) as tracer:
        tracer.add(f"p:{program}:add")
        tracer.run(20)
        table = tracer.aggregates()
    assert isinstance(table, rawprobe.CountTable)
    assert sum(row.count for row in table.rows) == 5
    (row,) = table.rows
    assert row.stack is not None and row.stack[0] == "add" and "main" in row.stack[1]


# -- typed probes need no text ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_path_with_a_space_through_the_library_and_the_cli(tmp_path: Path,
                                                             backend: str) -> None:
    folder = tmp_path / "my app"
    folder.mkdir()
    program = folder / "main: v2"
    shutil.copy(build_c(ADD_SOURCE, name="main", flags=("-O0", "-g")), program)
    with rawprobe.Tracer(command=[str(program), "2"], backend=backend) as tracer:
        tracer.add(rawprobe.Uprobe(str(program), "add", fetch={"a": "%di:s32"}))
        assert [event.args["a"] for event in tracer.events(timeout=20)] == [1, 2]
    quoted = str(program).replace('"', '\\"')
    result = run_rawprobe("attach", "--backend", backend, f'p:"{quoted}":add a=%di:s32',
                          "--", str(program), "2", check_status=0)
    assert [line.rsplit(" ", 1)[-1] for line in result.stdout.splitlines()] == ["a=1", "a=2"]
