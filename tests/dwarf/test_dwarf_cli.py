"""``rawprobe list --vars`` and ``rawprobe list --lines`` against perf probe ``-V`` and ``-D``.

For every function of the test program, built every way, and for libc functions with
libc6-dbg: the variables ``perf probe -V`` lists as available are those ``rawprobe list --vars``
lists as readable (rawprobe may read more only where perf cannot evaluate the frame base, as
test_dwarf_perf.py explains), at the same sites; a line ``perf probe -D FUNC:N`` accepts is one
``rawprobe list --lines`` lists, at the same file offsets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dwarf_programs import BUILDS, FUNCTIONS, Build, build, build_params, marker_line
from helpers import build_c, run_rawprobe
from test_dwarf_perf import (
    LIBC,
    LIBC_FUNCTIONS,
    Elf,
    frame_base_ops,
    libc_info,
    perf,
    perf_definitions,
    perf_variables,
)

import rawprobe
import rawprobe._dwarf as dwarf


def list_json(*args: str) -> Any:
    done = run_rawprobe("list", "--json", *args, check_status=0)
    return json.loads(done.stdout)


def readable(site: dict[str, Any]) -> set[str]:
    """A site's readable variables as perf -V prints them: ``TYPE\\tNAME``."""
    return {f"{v['perf_type']}\t{v['name']}" for v in site["variables"] if v["available"]}


@pytest.mark.parametrize("spec", build_params())
def test_list_vars_matches_perf(spec: Build) -> None:
    path = str(build(spec))
    info = dwarf.open_debug_info(path)
    assert info is not None
    # Every function at once (a glob), and square, which only has inlined copies.
    listed = list_json("--vars", f"{path}:*")
    done = run_rawprobe("list", "--json", "--vars", f"{path}:square")
    if done.returncode == 0:
        listed += json.loads(done.stdout)
    else:
        # No code of it at all (clang folded every call of square away): perf finds
        # nothing either.
        assert not perf_variables(path, "square") and "no function" in done.stderr
    compared = 0
    for function in FUNCTIONS:
        theirs = perf_variables(path, function)
        ours = {site["address"]: site for site in listed if site["function"] == function}
        for (label, offset), their_set in theirs.items():
            address = info.functions(label, inlined=False)[0].entry_address + offset
            if address not in ours and offset == 0:
                # perf -V shows a function's entry; a probe that reads its variables goes
                # past the prologue (perf -D does that too), and list --vars shows that site:
                # what perf -V says there.
                instance = info.functions(label, inlined=False)[0]
                address = instance.probe_address
                delta = address - instance.entry_address
                (their_set,) = perf_variables(path, f"{label}+{delta}").values()
            assert address in ours, (spec.label, function, label, offset, sorted(ours))
            site = ours.pop(address)
            our_set = readable(site)
            assert their_set <= our_set, (spec.label, function, their_set - our_set)
            for extra in our_set - their_set:
                variable = next(v for v in site["variables"]
                                if f"{v['perf_type']}\t{v['name']}" == extra)
                assert variable["location"].startswith("DW_OP_fbreg"), (function, extra)
                assert frame_base_ops(info, address) > 1, (function, extra)
            # Each readable variable comes with the fetch-arg it compiles to.
            assert all(v["fetcharg"] for v in site["variables"] if v["available"]
                       and not v["type"].startswith("struct")), site
            compared += 1
        # Sites perf does not list have nothing readable.
        for site in ours.values():
            assert not readable(site), (spec.label, function, site)
    assert compared >= len(FUNCTIONS) - 2


@pytest.mark.parametrize("function", LIBC_FUNCTIONS)
def test_libc_list_vars_matches_perf(function: str) -> None:
    info = libc_info()
    (their_set,) = perf_variables(LIBC, function).values()
    (site,) = list_json("--vars", f"libc:{function}")
    ours = readable(site)
    assert their_set <= ours, their_set - ours
    for extra in ours - their_set:
        # perf reads the debug file, whose .eh_frame is SHT_NOBITS: without the frame address
        # it cannot read stack variables. rawprobe takes .eh_frame from libc.so.6 itself.
        variable = next(v for v in site["variables"]
                        if f"{v['perf_type']}\t{v['name']}" == extra)
        assert info.source == "build-id" and variable["location"].startswith("DW_OP_fbreg")


@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec.label) for spec in BUILDS
                                  if spec.compiler == "gcc"])
def test_list_lines_agrees_with_perf(spec: Build) -> None:
    """Every FUNC:N perf accepts is listed, at perf's file offsets; a listed line perf
    refuses is one where perf refuses the whole line for an address another line shares
    (rawprobe probes its other addresses). gcc's builds only: perf 6.1 cannot find the lines
    of clang-19's (``Failed to find debug information for address``, or a crash)."""
    path = str(build(spec))
    compared = 0
    for function in ("sum_squares", "arrays"):
        listing = list_json("--lines", f"{path}:{function}")
        ours = {line["relative"]: line["file_offsets"] for line in listing["lines"]}
        last = max(ours) if ours else 0
        for relative in range(0, last + 2):
            definitions, error = perf_definitions(path, f"{function}:{relative}")
            if definitions:
                assert relative in ours, (spec.label, function, relative, sorted(ours))
                assert sorted(ours[relative]) == sorted(o for o, _ in definitions)
                compared += 1
            elif relative in ours:
                assert "sharing the address" in error, (function, relative, error)
    assert compared >= 4


def test_list_lines_shows_the_source() -> None:
    path = build(Build("gcc", "-O0"))
    done = run_rawprobe("list", "--lines", f"{path}:sum_squares", check_status=0)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sum_squares in ") and "sum_squares:N" in lines[0]
    body = [line for line in lines[2:] if "LINE:loop_body" in line]
    assert body and body[0].split()[:2] == ["3", str(int(body[0].split()[1]))]


def test_libc_source_line_where_perf_puts_it() -> None:
    """A source line of libc (FUNC:N) is where perf probe puts it, and reads what perf's
    definition reads."""
    libc_info()
    (site,) = rawprobe.list_variables("libc", "getenv:8")
    definitions, error = perf_definitions(LIBC, "getenv:8 name")
    assert definitions, error
    ((offset, ((_, fetch, kind),)),) = definitions
    assert site.file_offset == offset
    assert site.fetchargs["name"] == f"{fetch}:{kind}"


def test_list_vars_and_lines_errors(tmp_path: Path) -> None:
    stripped = build_c("int main(void) { return 0; }", name="nodebug", flags=("-O1", "-s"))
    done = run_rawprobe("list", "--vars", f"{stripped}:main")
    assert done.returncode == 2 and "debug" in done.stderr and "Traceback" not in done.stderr
    path = build(Build("gcc", "-O0"))
    done = run_rawprobe("list", "--lines", f"{path}:sum_squarez")
    assert done.returncode == 2 and "sum_squares" in done.stderr, done.stderr
    done = run_rawprobe("list", "--vars", f"{path}:add", "extra")
    assert done.returncode == 2 and "GLOB" in done.stderr
    done = run_rawprobe("list", "--vars", "--usdt", f"{path}:add")
    assert done.returncode == 2
    done = run_rawprobe("list", "--vars", f"{path}:add%return")
    assert done.returncode == 2 and "$retval" in done.stderr
    done = run_rawprobe("list", "--vars", f"{path}:main.c:1")
    assert done.returncode == 2 and "main.c:1 cannot be probed" in done.stderr, done.stderr


def test_list_vars_text() -> None:
    path = build(Build("gcc", "-O2"))
    done = run_rawprobe("list", "--vars", f"{path}:square", check_status=0)
    # square is inlined (always_inline): each copy is listed with its own variables.
    headers = [line for line in done.stdout.splitlines() if line.startswith("square ")]
    assert headers and all("inlined into sum_squares" in line for line in headers)
    assert "(event square)" in headers[0]
    done = run_rawprobe("list", "--vars", f"{path}:sum_squares", check_status=0)
    text = done.stdout
    assert "parameter  int  n      %di:s32" in text
    assert "(not here: optimized out" in text and "readable at 0x" in text


def test_perf_and_rawprobe_see_one_file() -> None:
    """The differential tests read the same file perf reads (no stale cache)."""
    path = str(build(Build("clang-19", "-O1")))
    assert perf("-x", path, "-V", "add").returncode == 0
    (site,) = list_json("--vars", f"{path}:add")
    assert site["file_offset"] == Elf(path).file_offset(site["address"])


def test_resolve_a_source_line() -> None:
    path = build(Build("gcc", "-O0"))
    line = marker_line("loop_add")
    sites = rawprobe.list_variables(str(path), f"main.c:{line}")
    done = run_rawprobe("resolve", "--json", f"{path}:main.c:{line}", check_status=0)
    rows = [json.loads(text) for text in done.stdout.splitlines()]
    assert [row["file_offset"] for row in rows] == [site.file_offset for site in sites]
    assert all(row["name"] == "sum_squares" and row["refused"] is None for row in rows)
    done = run_rawprobe("resolve", f"{path}:main.c:{line}%return")
    assert done.returncode == 2 and "not on a source line" in done.stderr
