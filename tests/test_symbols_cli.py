"""``rawprobe list`` / ``rawprobe resolve`` output, human and JSON, and TARGET:LOCATION parsing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fixtures_symbols import NOPIE_FLAGS, PIE_FLAGS
from fixtures_symbols.programs import C_PROGRAM, CPP_PROGRAM, FAKE_GO_PROGRAM
from helpers import CompileC

from rawprobe import RawprobeError, SymbolNotFoundError, TargetNotFoundError, UsageError
from rawprobe._probe.words import split_place
from rawprobe._symbols import resolve_one
from rawprobe.cli._symbols import run_list, run_resolve

pytestmark = pytest.mark.usefixtures("private_symbol_cache")


@pytest.fixture(scope="module")
def program(compile_c: CompileC) -> Path:
    return compile_c(C_PROGRAM, name="nopie", flags=NOPIE_FLAGS)


@pytest.mark.parametrize(
    ("text", "target", "location"),
    [
        ("libc:malloc", "libc", "malloc"),
        ("/usr/bin/bash:readline", "/usr/bin/bash", "readline"),
        ("./a.out:0x1139", "./a.out", "0x1139"),
        ("/opt/app:ns::Foo::bar(int) const", "/opt/app", "ns::Foo::bar(int) const"),
        ("app:::global_scope", "app", "::global_scope"),
        ("/srv/my:dir/app:main", "/srv/my:dir/app", "main"),
        ("libstdc++:std::foo[abi:cxx11]()", "libstdc++", "std::foo[abi:cxx11]()"),
        ("libc:malloc%return", "libc", "malloc%return"),
        ("libc:memcpy@GLIBC_2.2.5", "libc", "memcpy@GLIBC_2.2.5"),
    ],
)
def test_split_place(text: str, target: str, location: str) -> None:
    assert split_place(text) == (target, location)


@pytest.mark.parametrize("text", ["malloc", "libc:", ":malloc", "ns::f", ""])
def test_split_probe_place_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="TARGET:LOCATION"):
        split_place(text)


def test_list_json(program: Path) -> None:
    out = io.StringIO()
    assert run_list(str(program), None, pid=None, json_output=True, out=out) == 0
    rows = json.loads(out.getvalue())
    assert isinstance(rows, list) and rows
    for row in rows:
        assert isinstance(row["name"], str)
        for key in ("file_offset", "address", "size"):
            assert isinstance(row[key], int)
        assert row["source"] in ("dynsym", "symtab", "debuglink", "build-id", "minidebuginfo")
    by_name = {row["name"]: row for row in rows}
    assert by_name["add"]["file_offset"] == resolve_one(str(program), "add").file_offset
    assert "alias_work" in by_name["real_work"]["aliases"]
    assert by_name["chooser"]["kind"] == "ifunc"


def test_list_table(program: Path) -> None:
    out = io.StringIO()
    assert run_list(str(program), "[ah]*", pid=None, json_output=False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "FILE_OFFSET",
        "ADDRESS",
        "SIZE",
        "SOURCE",
        "KIND",
        "NAME",
        "ALIASES",
    ]
    add = next(line for line in lines if line.split()[-1] == "add")
    offset = resolve_one(str(program), "add").file_offset
    assert add.split()[0] == hex(offset)
    assert "symtab" in add
    assert "functions in" in lines[-1]


def test_list_nothing_matches(program: Path) -> None:
    out = io.StringIO()
    assert run_list(str(program), "nothing_*", pid=None, json_output=False, out=out) == 1
    assert "no functions matching" in out.getvalue()
    out = io.StringIO()
    assert run_list(str(program), "nothing_*", pid=None, json_output=True, out=out) == 1
    assert json.loads(out.getvalue()) == []


def test_list_demangles(compile_c: CompileC) -> None:
    binary = compile_c(CPP_PROGRAM, name="cart", flags=PIE_FLAGS, cxx=True)
    out = io.StringIO()
    run_list(str(binary), "shop::Cart::total*", pid=None, json_output=False, out=out)
    assert "shop::Cart::total(int) const" in out.getvalue()
    assert "shop::Cart::total(double) const" in out.getvalue()


def test_resolve_explains_the_arithmetic(program: Path) -> None:
    out = io.StringIO()
    assert run_resolve(f"{program}:add+4", pid=None, json_output=False, force=False, out=out) == 0
    text = out.getvalue()
    location = resolve_one(str(program), "add+4")
    derivation = location.derivation
    assert derivation is not None
    assert f"symbol value  {location.address - 4:#x}" in text
    assert "+ offset      0x4" in text
    assert (
        f"{location.address:#x} - {derivation.segment_vaddr:#x} + "
        f"{derivation.segment_offset:#x} = {location.file_offset:#x}"
    ) in text
    assert "section .text" in text and "agrees" in text
    assert "found in      symtab" in text  # an executable exports nothing: .symtab
    assert f"uprobe        {program}:{location.file_offset:#x}" in text


def test_resolve_json(program: Path) -> None:
    out = io.StringIO()
    run_resolve(f"{program}:*_work", pid=None, json_output=True, force=False, out=out)
    (line,) = out.getvalue().splitlines()  # aliases are one function
    record = json.loads(line)
    for key in ("name", "file_offset", "address", "size", "source"):
        assert key in record
    assert record["uprobe"] == f"{program}:{record['file_offset']:#x}"
    assert record["derivation"]["section_name"] == ".text"
    out = io.StringIO()
    run_resolve(f"{program}:[ah]*", pid=None, json_output=True, force=False, out=out)
    assert len(out.getvalue().splitlines()) >= 2


def test_resolve_offset_shows_inverse_arithmetic(program: Path) -> None:
    location = resolve_one(str(program), "helper")
    out = io.StringIO()
    run_resolve(
        f"{program}:{location.file_offset:#x}", pid=None, json_output=False, force=False, out=out
    )
    assert f"file offset   {location.file_offset:#x} (given)" in out.getvalue()
    assert "in function   helper+0x0" in out.getvalue()


def test_errors_are_raised_not_printed(program: Path, compile_c: CompileC) -> None:
    out = io.StringIO()
    with pytest.raises(SymbolNotFoundError):
        run_resolve(
            f"{program}:no_such_function", pid=None, json_output=False, force=False, out=out
        )
    with pytest.raises(TargetNotFoundError):
        run_list("/no/such/file", None, pid=None, json_output=False, out=out)
    fake_go = compile_c(FAKE_GO_PROGRAM, name="fakego", flags=PIE_FLAGS)
    assert out.getvalue() == ""
    # resolve gives attach's verdict: what attach refuses, resolve explains and refuses.
    with pytest.raises(UsageError, match=r"attach would refuse.*Go program") as caught:
        run_resolve(f"{fake_go}:handler%return", pid=None, json_output=False, force=False, out=out)
    assert isinstance(caught.value, RawprobeError) and caught.value.exit_status == 2
    assert "attach        refused: " in out.getvalue()
    run_resolve(f"{fake_go}:handler%return", pid=None, json_output=False, force=True, out=out)
    assert "handler" in out.getvalue()
